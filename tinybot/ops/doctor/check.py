"""The doctor's check model: one ``Check`` (pass / fail / warn / skip, what it saw, the fix) and what blocks a start."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from ...base.errors import ConfigError

# What `tinybot run` refuses to start on: each makes trading unsafe.  Everything else only warns.
BLOCKS_START = frozenset(
    {"database", "integrity", "kill_switch", "secrets_file", "keys_separated", "operator_id", "clock_skew", "trade_key"}
)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # 'pass' | 'fail' | 'warn' | 'skip'
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    @property
    def blocks_start(self) -> bool:
        return self.status == "fail" and self.name in BLOCKS_START

    def as_dict(self) -> dict:
        return asdict(self) | {"blocks_start": self.blocks_start}


def passed(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def warned(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warn", detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, "skip", detail)


def guarded(name: str, fn: Callable[[], Check]) -> Check:
    """A check that crashes is a failed check, not a crashed doctor."""
    try:
        return fn()
    except ConfigError as e:
        return failed(name, str(e), "fix the config or secrets file as the message says")
    except Exception as e:
        return failed(name, f"the check itself failed: {type(e).__name__}: {e}", "report this as a bug")
