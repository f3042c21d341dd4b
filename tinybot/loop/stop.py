"""Stopping on SIGINT/SIGTERM: a flag the loop sets and every step of a tick checks before it starts."""

from __future__ import annotations

import logging

log = logging.getLogger("tinybot.scheduler")


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the tick stops before its next step."""


class Stop:
    """Why the loop was asked to stop (None: keep going), and the step in progress when it was."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.step = ""

    def request(self, reason: str) -> None:
        """The first request wins; the step in progress finishes (an order being sent is sent and recorded)."""
        if self.reason is None:
            self.reason = reason
            log.info("%s received; finishing %s and stopping", reason, self.step or "the current step")

    def checkpoint(self, next_step: str) -> None:
        """Before each step of a tick: stop here if asked to, else say which step runs now."""
        if self.reason:
            raise Interrupted(f"interrupted by {self.reason} before {next_step}")
        self.step = next_step
