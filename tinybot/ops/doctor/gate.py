"""`tinybot run`'s start gate in live mode: what blocks the start, what only warns, and what an override sends.

It blocks only on what makes trading unsafe (``check.BLOCKS_START``: the database, the secrets file, keys
not separated or a trade key that does not authenticate or cannot read orders, no operatorId, clock skew)
and only warns about the rest (caps against the account, backup age, alerts, ...).  The CLI prints the
decision; the log lines and the "doctor ignored" alert are decided here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...base.config import Config
from .check import Check
from .checklist import run_checks

log = logging.getLogger("tinybot.run")  # these lines are about `tinybot run`'s start


def start_gate(cfg: Config, **kwargs) -> tuple[list[Check], list[Check]]:
    """For `tinybot run` in live mode: (checks that block the start, checks to warn about).

    Runs inside the scheduler, which holds the database open: the file scan for leaked secrets is left
    to `tinybot doctor` (see checklist.run_checks).
    """
    checks = run_checks(cfg, scan_files=False, **kwargs)
    return (
        [c for c in checks if c.blocks_start],
        [c for c in checks if c.status in ("fail", "warn") and not c.blocks_start],
    )


@dataclass(frozen=True)
class StartDecision:
    blocking: list[Check]
    warnings: list[Check]
    ignored: bool  # --ignore-doctor overrode blocking checks (logged and alerted)

    @property
    def refused(self) -> bool:
        return bool(self.blocking) and not self.ignored

    @property
    def summary(self) -> str:
        return "; ".join(f"{c.name}: {c.detail}" for c in self.blocking)

    @property
    def override(self) -> str:
        return f"STARTING LIVE DESPITE FAILING DOCTOR CHECKS (--ignore-doctor): {self.summary}"

    def reasons(self) -> list[str]:
        """Why the start is refused, one line per blocking check with its fix; empty when it may start."""
        return [f"{c.name}: {c.detail} (fix: {c.fix})" for c in self.blocking] if self.refused else []


def decide_start(cfg: Config, notifier, *, ignore: bool, **kwargs) -> StartDecision:
    """Run the gate, log its warnings; an override of blocking checks is logged and alerted (``notifier``).

    A refused start is not alerted here: the scheduler logs and alerts it as it stops.
    """
    blocking, warnings = start_gate(cfg, **kwargs)
    for c in warnings:
        log.warning("doctor: %s: %s (%s)", c.name, c.detail, c.fix or c.status)
    decision = StartDecision(blocking, warnings, ignored=ignore and bool(blocking))
    if decision.ignored:
        log.warning("%s", decision.override)
        notifier.alert("doctor_ignored", decision.override, key="doctor_ignored", severity="error")
    return decision
