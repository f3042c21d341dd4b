"""What the loop writes about itself: tick rows, the heartbeat row, written together and only when needed.

A tick first claims its slot with a row in ``ticks`` (``slot`` is UNIQUE),
so a slot is processed at most once, across restarts and across processes.
``run --once`` and direct callers claim first and finish the row at the end
of the tick.  The loop holds the run lock between its ticks, so it only
checks that the slot is free and claims it just before the tick's first
write that must not happen twice (a proposal, an order).

SD-card wear (docs/PERFORMANCE.md): an idle tick of the loop writes nothing.
Its row, and the prices and balances it read, wait in memory and are written
with the next heartbeat, in one commit (one fsync): at once when the state
changes or a tick did something, else every ``beat_every`` (15 ticks, at most
15 minutes).  Balances read unchanged since they were written only get a new
time; the hourly price log keeps the first reading of each hour.  Nothing
that trades reads prices or balances from the database, and every write of
the trade path (claims, proposals, executions, fills, the kill switch) is
still its own commit at once.

The loop's own writes survive a database write lock held by another process
past the busy timeout: each is retried with backoff, with a message while it
waits, until a stop is requested (or a patience runs out).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from ..base import clock
from ..store import db
from ..analysis import pnl
from ..base.config import Config
from ..store.liveness import beat_every
from .stop import Interrupted, Stop

log = logging.getLogger("tinybot.scheduler")

# Our own writes while another process holds the database's write lock past the busy timeout:
LOCK_RETRY_FIRST_S = 0.5
LOCK_RETRY_MAX_S = 30.0
FINAL_WRITE_PATIENCE_S = 20.0  # the last heartbeat on the way out waits at most this long
IDLE_LOG_EVERY = timedelta(hours=1)  # idle ticks log at DEBUG; one INFO line this often counts them


# --- tick rows ----------------------------------------------------------------------


def claim_slot(conn: sqlite3.Connection, slot: datetime, started_at: str | None = None) -> int | None:
    """Insert the tick row for ``slot``; None if some process already claimed it."""
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO ticks (slot, started_at, status, pid) VALUES (?, ?, 'running', ?)"
            " ON CONFLICT (slot) DO NOTHING",
            (clock.to_iso(slot), started_at or clock.now_iso(), os.getpid()),
        )
        return cur.lastrowid if cur.rowcount == 1 else None


def slot_taken(conn: sqlite3.Connection, slot: datetime) -> bool:
    return conn.execute("SELECT 1 FROM ticks WHERE slot = ?", (clock.to_iso(slot),)).fetchone() is not None


def finish_tick(conn: sqlite3.Connection, tick_id: int, status: str, summary: str) -> None:
    with db.transaction(conn):
        _finish(conn, tick_id, status, summary)


def _finish(conn: sqlite3.Connection, tick_id: int, status: str, summary: str, finished_at: str | None = None) -> None:
    conn.execute(
        "UPDATE ticks SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
        (status, finished_at or clock.now_iso(), summary[:4000], tick_id),
    )


@dataclass
class TickRecord:
    """A tick's row not written yet: ``tick_id`` None = the slot was never claimed (nothing the tick
    did needed a claim), the row is inserted whole."""

    slot: datetime
    started_at: str
    tick_id: int | None = None
    status: str = "running"
    finished_at: str | None = None
    summary: str = ""
    idle: bool = False  # nothing happened (the tick's report says idle) and the slot was never claimed

    @property
    def label(self) -> str:
        """How the log names this tick: its row id, or '-' before the slot is claimed."""
        return str(self.tick_id) if self.tick_id is not None else "-"

    def write(self, conn: sqlite3.Connection) -> None:
        """Inside the caller's transaction."""
        if self.tick_id is not None:
            _finish(conn, self.tick_id, self.status, self.summary, self.finished_at)
        else:
            conn.execute(
                "INSERT INTO ticks (slot, started_at, finished_at, status, pid, summary)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (slot) DO NOTHING",
                (
                    clock.to_iso(self.slot),
                    self.started_at,
                    self.finished_at or clock.now_iso(),
                    self.status,
                    os.getpid(),
                    self.summary[:4000],
                ),
            )


@dataclass
class Reading:
    """Prices and balances (None: their read failed) a loop tick read at ``at``, not written yet."""

    tickers: dict
    balances: dict | None
    at: datetime
    same_balances: bool = False  # as last written: only their time moves (one page fewer in the beat's commit)

    def write(self, conn: sqlite3.Connection) -> None:
        """Inside the caller's transaction."""
        if not self.same_balances:
            pnl.write_snapshot(conn, self.tickers, self.balances, self.at)
            return
        pnl.write_snapshot(conn, self.tickers, None, self.at)
        at = clock.to_iso(self.at)
        conn.execute("UPDATE account_balances SET at = ? WHERE at < ?", (at, at))

    @property
    def balances_seen(self) -> tuple | None:
        if self.balances is None:
            return None
        return tuple(sorted((a, b.available, b.in_order) for a, b in self.balances.items()))

    def after(self, waiting: list["Reading"]) -> list["Reading"]:
        """The readings to write with the next beat once this one joins ``waiting``: this one, and the earlier
        ones a later write would lose: the first reading of each hour (the hourly price log keeps it) and the
        last balances read when this read failed (written with the time they were read)."""
        keep = []
        for i, r in enumerate(waiting):
            first_of_hour = all(_hour(w.at) != _hour(r.at) for w in waiting[:i])
            last_balances = r.balances is not None and all(w.balances is None for w in [*waiting[i + 1 :], self])
            if first_of_hour or last_balances:
                keep.append(r)
        return keep + [self]


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def abandon_dead_ticks(conn: sqlite3.Connection) -> list[int]:
    """Mark ticks left 'running' as failed.  Called under the lock: no scheduler on this DB is mid-tick."""
    with db.transaction(conn):
        rows = conn.execute("SELECT id, pid FROM ticks WHERE status = 'running'").fetchall()
        for r in rows:
            conn.execute(
                "UPDATE ticks SET status = 'failed', finished_at = ?, summary = ? WHERE id = ?",
                (clock.now_iso(), f"abandoned: process {r['pid']} ended mid-tick", r["id"]),
            )
    return [r["id"] for r in rows]


# --- the heartbeat row ------------------------------------------------------------------


def heartbeat(
    conn: sqlite3.Connection,
    cfg: Config,
    state: str,
    *,
    started_at: str,
    next_tick: datetime | None,
    detail: str = "",
    ticks: list[TickRecord] = (),
    readings: list[Reading] = (),
) -> None:
    """The heartbeat row, the loop's tick rows and what its ticks read (prices, balances), not written yet,
    in one commit."""
    with db.transaction(conn):
        for t in ticks:
            t.write(conn)
        for r in readings:
            r.write(conn)
        conn.execute(
            "INSERT INTO scheduler_heartbeat (id, pid, state, started_at, beat_at, interval_s, next_tick_at, detail)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid,"
            " state = excluded.state, started_at = excluded.started_at, beat_at = excluded.beat_at,"
            " interval_s = excluded.interval_s, next_tick_at = excluded.next_tick_at, detail = excluded.detail",
            (
                os.getpid(),
                state,
                started_at,
                clock.now_iso(),
                int(cfg.scheduler.interval.total_seconds()),
                clock.to_iso(next_tick) if next_tick else None,
                detail,
            ),
        )


def is_db_locked(e: BaseException) -> bool:
    """SQLite gave up waiting for another process's write lock (past the busy timeout)."""
    return isinstance(e, sqlite3.OperationalError) and any(
        w in str(e).lower() for w in ("database is locked", "database is busy", "database table is locked")
    )


class Beat:
    """The loop's records of itself: which tick rows are not written yet, when the heartbeat was last written
    and what it said, and which prices and balances were last written."""

    def __init__(self, cfg: Config, *, stop: Stop, echo: Callable[[str], None], started_at: str):
        self.cfg = cfg
        self.stop = stop
        self.echo = echo
        self.started_at = started_at
        self.sleep: Callable[[float], None] = time.sleep  # between retries of a write the lock refused
        self.lazy = False  # the loop: slots claimed lazily, rows written with the heartbeat
        self._unwritten: list[TickRecord] = []  # finished loop ticks whose rows go with the next beat
        self._beat_at: datetime | None = None  # when the loop last wrote its heartbeat
        self._beat_said: tuple[str, str] | None = None  # (state, detail) it wrote then
        self._readings: list[Reading] = []  # what loop ticks read, written with the next beat
        self._balances_written: tuple | None = None  # the balances the last beat wrote
        self._idle_count = 0
        self._idle_since: datetime | None = None

    def write(self, conn: sqlite3.Connection, what: str, fn: Callable[[], object], *, patience_s: float | None = None):
        """Run one of the loop's own writes; while another process holds the write lock past the busy
        timeout, say so and retry with backoff (until a stop is requested, or ``patience_s``)."""
        delay, since = LOCK_RETRY_FIRST_S, None
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not is_db_locked(e):
                    raise
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                now = time.monotonic()
                if since is None:
                    since = now
                    msg = (
                        f"database {self.cfg.db_path} is locked by another process ({what}); waiting for it"
                        f" (an open `sqlite3` shell or a long command?); retrying with backoff"
                    )
                    self.echo("  " + msg)
                    log.warning("%s", msg)
                else:
                    log.warning("database still locked after %.0fs (%s); retrying in %.1fs", now - since, what, delay)
                if patience_s is not None and now - since >= patience_s:
                    raise
                if self.stop.reason and patience_s is None:
                    raise Interrupted(
                        f"interrupted by {self.stop.reason} while waiting for the database lock"
                    ) from None
                self.sleep(delay)
                delay = min(delay * 2, LOCK_RETRY_MAX_S)

    # -- a tick's row --
    def open(self, conn: sqlite3.Connection, slot: datetime) -> TickRecord | None:
        """The record of a tick in ``slot``, or None when a process already claimed the slot.  The loop (lazy)
        only checks that it is free; otherwise the slot is claimed now."""
        record = TickRecord(slot, clock.now_iso())
        if self.lazy:
            taken = slot_taken(conn, slot)
        else:
            record.tick_id = self.write(
                conn, "claiming the tick's slot", lambda: claim_slot(conn, slot, record.started_at)
            )
            taken = record.tick_id is None
        if taken:
            log.info("slot %s already claimed; skipped", clock.to_iso(slot))
            return None
        return record

    def claim(self, conn: sqlite3.Connection, record: TickRecord) -> None:
        """Claim the tick's slot before its first write that must not happen twice (a proposal, an order).

        The loop's ticks claim lazily: an idle tick (reconcile, expire and the snapshot are idempotent)
        never claims, and writes no row of its own until the next heartbeat (SD-card wear)."""
        if record.tick_id is not None:
            return
        tick_id = self.write(conn, "claiming the tick's slot", lambda: claim_slot(conn, record.slot, record.started_at))
        if tick_id is None:
            raise Interrupted(f"slot {clock.to_iso(record.slot)} was claimed meanwhile by another process")
        record.tick_id = tick_id

    def close(self, conn: sqlite3.Connection, record: TickRecord, outcome: str, line: str, idle: bool) -> None:
        """The tick is done (``outcome`` ok, failed or interrupted; ``line`` its summary; ``idle``: nothing
        happened): the loop keeps its row for the next heartbeat, others write it now; then its log line."""
        status = {"ok": "ok", "interrupted": "failed", "failed": "failed"}[outcome]
        record.status, record.summary, record.finished_at = status, line, clock.now_iso()
        record.idle = record.tick_id is None and idle
        if self.lazy:
            self._unwritten.append(record)  # written with the heartbeat right after (or, idle, within beat_every)
        else:
            self.write(
                conn,
                "recording the tick",
                lambda: finish_tick(conn, record.tick_id, status, line),
                patience_s=FINAL_WRITE_PATIENCE_S if self.stop.reason else None,
            )
        self._log(record.label, idle, line)

    def _log(self, label: str, idle: bool, line: str) -> None:
        """A tick that did something: INFO.  Idle ticks: DEBUG, and one INFO line an hour counts them."""
        if not idle:
            log.info("tick %s: %s", label, line)
            return
        log.debug("tick %s: %s", label, line)
        now = clock.now()
        self._idle_count += 1
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= IDLE_LOG_EVERY:
            log.info(
                "%s idle ticks since %s (nothing to do; each at DEBUG)",
                self._idle_count,
                clock.to_iso(self._idle_since),
            )
            self._idle_count, self._idle_since = 0, now

    # -- what the tick saw --
    def record_snapshot(self, conn: sqlite3.Connection, snap) -> None:
        """What this tick saw, for `tinybot pnl`, `status` and the report: prices, balances (a failed balance
        read keeps the last snapshot, with its age), the hourly price log.

        The loop writes its reads with its next heartbeat, in that commit (SD-card wear: a market's prices move
        every minute, and a commit a minute for them was most of an idle day's writes).  Nothing that trades
        reads them: they are for the owner's eyes, up to ``beat_every`` old, each with the time it was read."""
        balances_read = not any(p.startswith("balances:") for p in snap.problems)
        read = Reading(dict(snap.tickers), dict(snap.balances) if balances_read else None, clock.now())
        if not self.lazy:
            try:
                pnl.record_snapshot(conn, read.tickers, read.balances)
            except sqlite3.Error:
                log.exception("could not record this tick's prices and balances (P/L shows the last ones)")
            return
        self._readings = read.after(self._readings)

    # -- the heartbeat --
    def starting(self, conn: sqlite3.Connection) -> None:
        """The first heartbeat of a run, before its start-up reconcile: running, next tick now."""
        self.write(
            conn,
            "heartbeat",
            lambda: heartbeat(
                conn, self.cfg, "running", started_at=self.started_at, next_tick=clock.now(), detail="starting"
            ),
        )

    def abandon_dead_ticks(self, conn: sqlite3.Connection) -> None:
        self.write(conn, "start-up: closing ticks a dead run left open", lambda: abandon_dead_ticks(conn))

    def beat(
        self,
        conn: sqlite3.Connection,
        state: str,
        next_tick: datetime | None,
        detail: str,
        *,
        force: bool = False,
        patience_s: float | None = None,
    ) -> None:
        """The heartbeat, with the tick rows not written yet, in one commit.  After idle ticks only, and
        the same state and detail as last written, nothing is written until beat_every has passed:
        `status` allows for that (``liveness.stale_after``)."""
        now = clock.now()
        busy = any(not t.idle for t in self._unwritten)
        if not (
            force
            or busy
            or self._beat_at is None
            or self._beat_said != (state, detail)
            or self._due(self._beat_at, now)
        ):
            return
        rows, readings = list(self._unwritten), list(self._readings)
        balances = self._balances_written
        for r in readings:
            r.same_balances = r.balances is not None and r.balances_seen == balances
            balances = r.balances_seen or balances
        self.write(
            conn,
            "heartbeat",
            lambda: heartbeat(
                conn,
                self.cfg,
                state,
                started_at=self.started_at,
                next_tick=next_tick,
                detail=detail,
                ticks=rows,
                readings=readings,
            ),
            patience_s=patience_s,
        )
        del self._unwritten[: len(rows)]
        del self._readings[: len(readings)]
        self._balances_written = balances
        self._beat_at, self._beat_said = now, (state, detail)

    def _due(self, last: datetime, now: datetime) -> bool:
        """beat_every has passed since ``last`` (half a tick early: ticks start a few ms apart)."""
        interval = self.cfg.scheduler.interval
        return now - last >= beat_every(interval) - interval / 2
