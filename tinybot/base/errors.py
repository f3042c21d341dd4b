"""The one root of the errors tinybot expects: each names what went wrong and the fix, and carries its exit code.

The CLI turns any ``TinybotError`` into one ``Error: …`` line and exits with
its ``exit_code`` (tinybot.base.exitcodes); anything else is a bug and raises.
Each room defines its own subclasses next to the code that raises them.
"""

from __future__ import annotations

from . import exitcodes


class TinybotError(Exception):
    """An error a person can act on: the message names the thing and the fix."""

    exit_code: int = exitcodes.ERROR


class ConfigError(TinybotError):
    """A config or secrets problem a person can fix; the message says where."""
