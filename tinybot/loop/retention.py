"""Retention: what tinybot forgets, and when, so a year on a Pi's SD card stays small.

At a 1-minute tick the bot writes a ``ticks`` row every minute, and every
proposal leaves one ``guard_decisions`` row per guard.  Those, with the
``events`` log and the ``alert_log``, are the only tables that grow with
time rather than with money moved.  They are kept for ``keep_days``
(default 30: enough to answer "why did it (not) trade last week?") and then
deleted.

Kept forever, because they are small (a handful of rows per trade) and are
the record of money: ``proposals``, ``trade_executions``, ``trade_history``,
``positions``, the ``paper_*`` tables, ``gpt_usage_log`` (one row per LLM
call, at most one an hour by default; the budget sums a month of it).

Rules that keep the rest of tinybot right:

* **Never the newest row of a table.**  Tables here use ``INTEGER PRIMARY
  KEY`` without AUTOINCREMENT: if every row went, SQLite would hand out id 1
  again, and the alert cursors in ``ops_state`` (``id > cursor``) would skip
  new events and guard blocks.  Keeping the newest row keeps ids rising.
* **Not what a guard or a lookup still reads.**  ``events`` of the kinds
  other code queries by kind (surprise orders, kill-switch flips, the LLM
  budget) are kept; a surprise order forgotten could be reported again.
  Guard decisions of an execution that is not final yet (say ``unknown``
  for weeks) are kept.  The last tick (``tinybot status`` reads it) is kept
  by the newest-row rule.
* **Short transactions.**  At most ``batch`` rows per table per call, so a
  first run on a big database cannot hold the write lock for long; call it
  again.  The loop calls it at most every 6 hours (``Pruning``; again the next
  tick while ``Pruned.more``): each call deletes the rows that fell out of the
  window since the last, and a commit per minute for one row would be most
  of what an idle bot writes to the SD card (docs/PERFORMANCE.md).

Deleted pages go to SQLite's free list and are reused by new rows, so the
file stops growing once the window is full; it does not shrink unless you
``VACUUM`` (``sqlite-utils vacuum tinybot.db`` with the bot stopped).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..base import clock
from ..store import db
from ..trade.ledger import FINAL_STATES

log = logging.getLogger("tinybot.scheduler")  # the loop's log

DEFAULT_KEEP_DAYS = 30
DEFAULT_BATCH = 5000
PRUNE_EVERY = timedelta(hours=6)  # the loop prunes at most this often (again next tick if it hit its batch)

# What a year of tinybot takes with the defaults (1-minute tick, rules + dca,
# the paper or live account of a €25 bot); docs/PERFORMANCE.md shows the
# measurement behind it and bench/run.py checks it.
YEAR_BOUND_MIB = 25

# events other code looks up by kind: never pruned (they are rare).
KEEP_EVENT_KINDS = ("surprise_order", "kill_switch", "budget_exhausted")


@dataclass
class Pruned:
    counts: dict[str, int] = field(default_factory=dict)  # rows deleted, per table
    more: bool = False  # some table hit the batch limit: call prune again

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def cutoff(now: datetime, keep_days: int) -> str:
    return clock.to_iso(now - timedelta(days=keep_days))


def _rules(cut: str) -> list[tuple[str, str, tuple]]:
    """(table, WHERE on rows that may go, args): the whole retention rule in one place."""
    kinds = ",".join("?" * len(KEEP_EVENT_KINDS))
    final = ",".join("?" * len(FINAL_STATES))
    return [
        (
            "guard_decisions",
            "decided_at < ? AND NOT EXISTS (SELECT 1 FROM trade_executions e"
            f" WHERE e.id = guard_decisions.execution_id AND e.state NOT IN ({final}))",
            (cut, *FINAL_STATES),
        ),
        ("ticks", "slot < ? AND status != 'running'", (cut,)),
        ("events", f"at < ? AND kind NOT IN ({kinds})", (cut, *KEEP_EVENT_KINDS)),
        ("alert_log", "at < ? AND status != 'sending'", (cut,)),
    ]


def prune(
    conn: sqlite3.Connection,
    now: datetime | None = None,
    *,
    keep_days: int = DEFAULT_KEEP_DAYS,
    batch: int = DEFAULT_BATCH,
) -> Pruned:
    """Delete rows older than ``keep_days`` from the tables that grow with time; one transaction."""
    if keep_days < 1:
        raise ValueError("keep_days must be at least 1")
    now = now or clock.now()
    out = Pruned()
    more = False
    with db.transaction(conn):
        for table, where, args in _rules(cutoff(now, keep_days)):
            if not _has_table(conn, table):
                continue
            newest = conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0]
            if newest is None:
                out.counts[table] = 0
                continue
            # "+id" and no ORDER BY: the time index finds the old rows (with nothing due, one index
            # seek), instead of a walk of the whole table in id order
            cur = conn.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE {where} AND +id < ? LIMIT ?)",
                (*args, newest, batch),
            )
            out.counts[table] = cur.rowcount
            more = more or cur.rowcount >= batch
    out.more = more
    return out


def prune_all(conn: sqlite3.Connection, now: datetime | None = None, **kw) -> Pruned:
    """prune() until nothing is left to delete (for a one-off cleanup; the bot calls prune at most hourly)."""
    total = Pruned()
    while True:
        p = prune(conn, now, **kw)
        for k, v in p.counts.items():
            total.counts[k] = total.counts.get(k, 0) + v
        if not p.more:
            return total


class Pruning:
    """Retention inside the loop: prune() at most once every PRUNE_EVERY, and again the next tick while a
    batch limit was hit.  A failure is logged and tried again next tick (nothing is lost by waiting)."""

    def __init__(self, keep_days: int = DEFAULT_KEEP_DAYS):
        self.keep_days = keep_days
        self._at: datetime | None = None
        self._again = False

    def maybe_prune(self, conn: sqlite3.Connection, now: datetime | None = None) -> None:
        now = now or clock.now()
        if not self._again and self._at is not None and now - self._at < PRUNE_EVERY:
            return
        try:
            self._again = prune(conn, now, keep_days=self.keep_days).more
            self._at = now
        except Exception:
            log.exception("pruning old rows failed (nothing lost; tried again next tick)")


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None
