"""`tinybot run`'s start gate in live mode: what blocks the start and what only warns.

It blocks only on what makes trading unsafe (``check.BLOCKS_START``: the database, the secrets file, keys
not separated or a trade key that does not authenticate or cannot read orders, no operatorId, clock skew)
and only warns about the rest (caps against the account, backup age, alerts, ...).
"""

from __future__ import annotations

from ..config import Config
from .check import Check
from .checklist import run_checks


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
