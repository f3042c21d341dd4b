"""The scheduler: one lock, aligned tick slots, and the tick itself.

``tinybot run`` holds an exclusive ``fcntl.flock`` on the lock file next to
the database for as long as it runs.  The kernel drops a flock when its
process ends, however it ends, so a lock file left behind by a crash never
blocks a restart: the file is only a place to lock and to read the holder's
PID from.  A second ``tinybot run`` (or ``run --once``) on the same database
exits at once with ``EXIT_LOCKED``.

Ticks run on slots aligned to ``scheduler.interval`` (12:00, 12:01, ... for
``1m``; slots count from the Unix epoch in UTC).  A tick first claims its slot
with a row in ``ticks`` (``slot`` is UNIQUE), so a slot is processed at most
once, across restarts and across processes.

One tick::

    reconcile → safety rules (auto kill switch) → expire stale proposals
      → snapshot (read-only client)
      → advisors → proposals → approval policy → execute approved
      → sync fills → heartbeat

SIGINT/SIGTERM set a flag; the step in progress finishes (an order being
sent is sent and recorded), the tick stops before its next step, the lock is
released and the process exits 0.  An exception in a tick is logged with its
traceback, recorded (``ticks.status = 'failed'`` and an ``events`` row),
alerted (``tinybot.notify``) and the loop goes on.

An unreachable exchange is an *outage*, not an error: trading pauses (no
order is sent), one alert says so, the loop backs off (one interval,
doubling, up to ``MAX_BACKOFF``), and trading resumes by itself at the first
tick where the exchange answers and reconcile is clean (one more alert).
Outage ticks do not count towards the automatic kill switch; other failed
ticks do (``tinybot.safety``).

The loop survives a database write lock held by another process past the
busy timeout: each of its own writes is retried with backoff, with a message
while it waits.  Whatever ends the loop is logged (with its traceback when it
is a crash), recorded in the heartbeat (``stopped`` or ``died``) and alerted
("bot stopped"); a crash exits with ``exitcodes.ERROR``.  A run that died
without a word (``kill -9``, power loss) is alerted by the next start.

Before the first tick, ``run`` reconciles in-flight executions and then asks
the optional start ``gate`` (live mode: doctor's blocking checks); a refused
start is logged, alerted and returns ``exitcodes.REFUSED_START``.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

from . import clock, db, exitcodes, ledger
from .money import eur
from .config import Config
from .liveness import (  # noqa: F401  (re-exported: slots and liveness live in tinybot.liveness)
    DIED_PREFIX,
    EPOCH,
    HEARTBEAT_EVERY,
    HEARTBEAT_TICKS,
    beat_every,
    liveness,
    next_slot,
    slot_of,
    stale_after,
)
from .loop.logfile import attach_log_file, detach_log_file  # noqa: F401  (re-exported)

log = logging.getLogger("tinybot.scheduler")

EXIT_OK = exitcodes.OK
EXIT_LOCKED = exitcodes.LOCKED  # another `tinybot run` holds the lock; try again later
MAX_BACKOFF = timedelta(minutes=15)
# A cached closed candle is trusted at most this long: Bitvavo may still correct a candle after it closed.
CANDLE_CACHE_MAX_AGE = timedelta(minutes=15)
# Our own writes while another process holds the database's write lock past the busy timeout:
LOCK_RETRY_FIRST_S = 0.5
LOCK_RETRY_MAX_S = 30.0
FINAL_WRITE_PATIENCE_S = 20.0  # the last heartbeat on the way out waits at most this long
OUTAGE_KEY = "scheduler.outage_since"
SURPRISE_EVERY = 5  # ticks between scans for orders we have no row for (5 weight per market per scan)
# SD-card wear (docs/PERFORMANCE.md): an idle tick of the loop writes nothing; its row and the heartbeat
# are written together every HEARTBEAT_TICKS ticks, at most every HEARTBEAT_EVERY (beat_every), or at once
# when the state changes or a tick did something
PRUNE_EVERY = timedelta(hours=1)  # retention runs at most this often (again next tick if it hit its batch)
IDLE_LOG_EVERY = timedelta(hours=1)  # idle ticks log at DEBUG; one INFO line this often counts them


class TickPrices:
    """The read-only client for one tick: ticker() answers once per market, the rest passes through."""

    def __init__(self, inner):
        self._inner, self._tickers = inner, {}

    def ticker(self, market):
        if market not in self._tickers:
            self._tickers[market] = self._inner.ticker(market)
        return self._tickers[market]

    def __getattr__(self, name):
        return getattr(self._inner, name)


# --- the lock ---------------------------------------------------------------------
# One home: tinybot.runlock (backup --restore holds the same lock).  Re-exported here for callers and tests.
from .runlock import AlreadyRunning, RunLock, holder_pid, lock_is_held, pid_alive  # noqa: E402,F401


# --- slots ------------------------------------------------------------------------


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
    """A loop tick's row not written yet: ``tick_id`` None = the slot was never claimed (nothing the tick
    did needed a claim), the row is inserted whole."""

    slot: datetime
    started_at: str
    tick_id: int | None = None
    status: str = "running"
    finished_at: str | None = None
    summary: str = ""
    idle: bool = False  # nothing happened (Scheduler.is_idle) and the slot was never claimed

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


# --- heartbeat and liveness ------------------------------------------------------


def heartbeat(
    conn: sqlite3.Connection,
    cfg: Config,
    state: str,
    *,
    started_at: str,
    next_tick: datetime | None,
    detail: str = "",
    ticks: list[TickRecord] = (),
    restamp: tuple[str, bool] | None = None,
) -> None:
    """The heartbeat row, the loop's tick rows not written yet and, ``restamp`` = (read at, balances read),
    the new time of prices and balances read unchanged since they were written, in one commit."""
    with db.transaction(conn):
        for t in ticks:
            t.write(conn)
        if restamp is not None:
            at, balances_read = restamp
            conn.execute("UPDATE market_prices SET at = ? WHERE at < ?", (at, at))
            if balances_read:
                conn.execute("UPDATE account_balances SET at = ? WHERE at < ?", (at, at))
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


# --- the tick ---------------------------------------------------------------------


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the tick stops before its next step."""


@dataclass
class TickReport:
    slot: datetime
    status: str = "ok"  # ok | failed | skipped | interrupted
    prices: dict[str, Decimal] = field(default_factory=dict)
    proposals: list[str] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)  # manual approval: proposal ids waiting for a person
    orders: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    outage: bool = False  # the exchange could not be reached: trading pauses, the kill switch is not counted
    reconcile_failed: bool = False  # reconcile had errors while the exchange answered: counts as a failed tick

    @property
    def exit_code(self) -> int:
        """`run --once`: 0 when the tick ran (or its slot was already done), else why not."""
        if self.status == "skipped":
            return exitcodes.OK
        if self.outage:
            return exitcodes.UNREACHABLE
        if self.status != "ok" or self.reconcile_failed:
            return exitcodes.ERROR
        return exitcodes.OK

    def line(self) -> str:
        """The one terminal line for this tick."""
        t = self.slot.strftime("%H:%M:%S")
        if self.status == "skipped":
            return f"{t} slot already processed; skipped"
        parts = [f"{t} {self.status}"]
        if self.prices:
            parts.append(" ".join(f"{m} {_price(p)}" for m, p in self.prices.items()))
        parts.append(f"proposals: {', '.join(self.proposals) if self.proposals else 'none'}")
        if self.waiting:
            parts.append("waiting for approval: " + ", ".join(f"#{i}" for i in self.waiting))
        if self.orders:
            parts.append("orders: " + ", ".join(self.orders))
        if self.blocks:
            parts.append("blocked: " + ", ".join(self.blocks))
        for n in self.notes:
            parts.append(n)
        if self.errors:
            parts.append("errors: " + "; ".join(self.errors))
        return " | ".join(parts)


def _price(p: Decimal) -> str:
    return f"{p:.2f}" if p >= 1 else f"{p:.6f}"


def is_db_locked(e: BaseException) -> bool:
    """SQLite gave up waiting for another process's write lock (past the busy timeout)."""
    return isinstance(e, sqlite3.OperationalError) and any(
        w in str(e).lower() for w in ("database is locked", "database is busy", "database table is locked")
    )


def network_failure(exc: BaseException) -> bool | None:
    """True: the exchange could not be reached (timeout, refused, 5xx, rate limited); False: it answered
    and refused or made no sense; None: cannot tell from the exception alone (ask the exchange)."""
    from .exchange.base import ExchangeError, ReadOnlyClientError

    if isinstance(exc, ReadOnlyClientError) or not isinstance(exc, ExchangeError):
        return False
    if "rate limited until" in str(exc):
        return True  # tinybot's own backoff after a 429: the exchange will answer again later
    ccxt = sys.modules.get("ccxt")  # loaded if the error came from ccxt; never imported here
    seen = set()
    e = exc.__cause__ or exc.__context__
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (OSError, TimeoutError, ConnectionError)):
            return True
        if ccxt is not None and isinstance(e, ccxt.NetworkError):
            return True  # RequestTimeout, ExchangeNotAvailable (5xx, 109), DDoSProtection, rate limits
        if ccxt is not None and isinstance(
            e, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.BadRequest, ccxt.BadSymbol)
        ):
            return False
        e = e.__cause__ or e.__context__
    return None


class Scheduler:
    """Runs ticks for one config.  ``run()`` is the loop; ``tick()`` one slot.

    ``read_only`` / ``trading`` may be injected (tests); otherwise the
    read-only client comes from ``exchange.read_only`` and the trading one
    from ``executor.trading_exchange``, the only factory that may build it.
    ``before_tick(slot)`` is called before each claimed tick (the demo
    advances its simulated price path there).  ``gate(scheduler)`` is asked
    once before the first tick, after the start-up reconcile; it returns the
    reasons to refuse the start (an empty list: go).
    """

    def __init__(
        self,
        cfg: Config,
        conn: sqlite3.Connection | None = None,
        *,
        echo: Callable[[str], None] = print,
        read_only=None,
        trading=None,
        before_tick: Callable[[datetime], None] | None = None,
        cache_candles: bool = True,
        gate: Callable[["Scheduler"], list[str]] | None = None,
    ):
        self.cfg = cfg
        self.conn = conn
        self.echo = echo
        self._ro = read_only
        self._trading = trading
        self.before_tick = before_tick
        self.gate = gate
        self.stop_reason: str | None = None
        self.failures = 0  # consecutive outage ticks
        self.started_at = clock.now_iso()
        self.last_slot: datetime | None = None
        self.step = ""
        self._notifier = None
        self._tick_ro = None  # this tick's read-only client (tickers read once per tick)
        self._sleep: Callable[[float], None] = time.sleep
        # Closed candles rarely change: read them again once the next one has closed, and at the latest
        # after CANDLE_CACHE_MAX_AGE (Bitvavo can still correct a recent candle).  The demo turns the
        # cache off: its simulator replays an accelerated path under fixed timestamps.
        self._candle_cache: dict | None = {} if cache_candles else None
        self._candle_cache_at: datetime | None = None
        self._reconciles = 0
        # SD-card wear (docs/PERFORMANCE.md): what the loop has not written yet, and when it last wrote
        self._tick: TickRecord | None = None  # the tick in progress
        self.lazy_ticks = False  # run() without once: ticks claim lazily, rows go with the heartbeat (tick())
        self._unwritten: list[TickRecord] = []  # finished loop ticks whose rows go with the next beat
        self._beat_at: datetime | None = None  # when the loop last wrote its heartbeat
        self._beat_said: tuple[str, str] | None = None  # (state, detail) it wrote then
        self._pruned_at: datetime | None = None
        self._prune_again = False
        self._idle_count = 0
        self._snapshot_seen: tuple | None = None  # the hour, prices and balances last written
        self._restamp: tuple[str, bool] | None = None  # read unchanged since: their new `at`, with the next beat
        self._idle_since: datetime | None = None

    # -- plumbing --
    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            self.cfg.db_path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = db.open_db(self.cfg.db_path)
        return self.conn

    def read_only(self):
        if self._ro is None:
            from .exchange import read_only

            self._ro = read_only(self.cfg)
        return self._ro

    def trading(self):
        if self._trading is None:
            from .executor import trading_exchange

            self._trading = trading_exchange(self.cfg)
        return self._trading

    def notifier(self):
        """Alerts (dedupe, rate limit, redaction): tinybot.notify.  Never raises."""
        if self._notifier is None:
            from .notify import Notifier

            self._notifier = Notifier(self.cfg, self._connection())
        return self._notifier

    def _alert(self, kind: str, text: str, *, key: str, severity: str) -> None:
        """An alert that must get out even when the database is locked (then without dedupe)."""
        sent = self.notifier().alert(kind, text, key=key, severity=severity)
        if sent.status == "failed" and "OperationalError" in sent.detail:
            from .notify import Notifier

            Notifier(self.cfg, None).alert(kind, text, key=key, severity=severity)

    def candle_cache(self) -> dict | None:
        """The closed-candle cache, emptied when it is older than CANDLE_CACHE_MAX_AGE."""
        if self._candle_cache is None:
            return None
        now = clock.now()
        if self._candle_cache_at is None or now - self._candle_cache_at >= CANDLE_CACHE_MAX_AGE:
            self._candle_cache.clear()
            self._candle_cache_at = now
        return self._candle_cache

    def write(self, what: str, fn: Callable[[], object], *, patience_s: float | None = None):
        """Run one of the scheduler's own writes; while another process holds the write lock past the
        busy timeout, say so and retry with backoff (until a stop is requested, or ``patience_s``)."""
        delay, since = LOCK_RETRY_FIRST_S, None
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not is_db_locked(e):
                    raise
                conn = self.conn
                if conn is not None and conn.in_transaction:
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
                if self.stop_reason and patience_s is None:
                    raise Interrupted(
                        f"interrupted by {self.stop_reason} while waiting for the database lock"
                    ) from None
                self._sleep(delay)
                delay = min(delay * 2, LOCK_RETRY_MAX_S)

    # -- outage state (kept in ops_state, so `status` and the next run see it) --
    def outage_since(self, conn) -> str | None:
        from .db import get_state

        return get_state(conn, OUTAGE_KEY) or None

    def _start_outage(self, conn, report: "TickReport") -> None:
        from .db import set_state

        if self.outage_since(conn):
            return
        since = clock.now_iso()
        set_state(conn, OUTAGE_KEY, since)
        why = "; ".join(report.errors[-2:]) or "no answer"
        log.warning("exchange outage started at %s: trading paused: %s", since, why)
        self._alert(
            "exchange_outage",
            f"exchange unreachable since {since}: trading is paused (nothing is sent)"
            f" until it answers again and reconcile is clean; tinybot resumes by itself. Last error: {why}",
            key=f"exchange_outage:{since}",
            severity="warning",
        )

    def _end_outage(self, conn, report: "TickReport") -> None:
        from .db import set_state

        since = self.outage_since(conn)
        if not since:
            return
        set_state(conn, OUTAGE_KEY, "")
        took = clock.format_duration(clock.now() - clock.from_iso(since))
        report.notes.append(f"exchange back after {took}; trading resumes")
        log.warning("exchange outage since %s is over (%s): reconcile clean, trading resumes", since, took)
        self._alert(
            "exchange_back",
            f"exchange answers again after {took} (outage since {since}); reconcile is clean and trading resumes",
            key=f"exchange_back:{since}",
            severity="info",
        )

    def _unreachable_now(self) -> bool:
        """Does the exchange answer at all?  Market data (public) and the balance (private, read key):
        a refusal (a bad key, a permission) is an answer, a timeout or a 5xx is not."""
        ro = self._tick_ro or self.read_only()
        try:
            ro.markets()
            ro.balances()
        except Exception as e:
            return network_failure(e) is not False
        return False

    def _classify(self, exc: BaseException) -> bool:
        """True when ``exc`` means the exchange could not be reached."""
        verdict = network_failure(exc)
        if verdict is None:
            from .exchange.base import ExchangeError

            verdict = isinstance(exc, ExchangeError) and self._unreachable_now()
        return verdict

    def _safety(self, conn, report: TickReport, *, tick_ok: bool | None) -> None:
        """The automatic kill switch rules (tinybot.safety).  tick_ok feeds the consecutive-errors count."""
        from . import safety

        turned_off = safety.check(
            conn, self.cfg, tick_ok=tick_ok, market_data=self._tick_ro or self._ro, notifier=self.notifier()
        )
        if turned_off:
            report.errors.append(
                "KILL SWITCH turned trading OFF: " + "; ".join(turned_off) + " (`tinybot resume` after checking)"
            )

    def _after_tick(self, conn, report: TickReport) -> None:
        """Outage bookkeeping, the consecutive-errors count, then the alerts (events, block summary)."""
        try:
            if report.outage:
                self._start_outage(conn, report)  # not counted towards the kill switch: it pauses instead
            elif report.status == "failed" or report.reconcile_failed:
                self._safety(conn, report, tick_ok=False)
            elif report.status == "ok":
                from . import safety

                safety.consecutive_errors(conn, self.cfg, True)  # a good tick resets the count
        except Exception:
            log.exception("safety check after the tick failed")
        notifier = self.notifier()
        notifier.drain_events()  # kill switch, surprises, unknowns, tick failures: each alerted once
        notifier.summarise_blocks()

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.info("%s received; finishing %s and stopping", reason, self.step or "the current step")

    def _checkpoint(self, next_step: str) -> None:
        if self.stop_reason:
            raise Interrupted(f"interrupted by {self.stop_reason} before {next_step}")
        self.step = next_step

    # -- one tick --
    def claim(self, conn) -> None:
        """Claim this tick's slot before its first write that must not happen twice (a proposal, an order).

        The loop's ticks claim lazily: an idle tick (reconcile, expire and the snapshot are idempotent)
        never claims, and writes no row of its own until the next heartbeat (SD-card wear)."""
        t = self._tick
        if t is None or t.tick_id is not None:
            return
        tick_id = self.write("claiming the tick's slot", lambda: claim_slot(conn, t.slot, t.started_at))
        if tick_id is None:
            raise Interrupted(f"slot {clock.to_iso(t.slot)} was claimed meanwhile by another process")
        t.tick_id = tick_id

    def tick(self, slot: datetime | None = None) -> TickReport:
        """One slot.  ``self.lazy_ticks`` (the loop, which holds the lock between ticks): the slot is claimed only
        before the tick's first proposal or order, and the tick's row is left in ``self._unwritten`` for
        the loop to write with its heartbeat.  Otherwise the slot is claimed first and the row finished
        here, as ``run --once`` and direct callers need."""
        conn = self._connection()
        slot = slot or slot_of(clock.now(), self.cfg.scheduler.interval)
        report = TickReport(slot)
        self.last_slot = slot
        self._tick = t = TickRecord(slot, clock.now_iso())
        lazy = self.lazy_ticks
        if lazy:
            if slot_taken(conn, slot):
                report.status = "skipped"
                log.info("slot %s already claimed; skipped", clock.to_iso(slot))
                return report
        else:
            t.tick_id = self.write("claiming the tick's slot", lambda: claim_slot(conn, slot, t.started_at))
            if t.tick_id is None:
                report.status = "skipped"
                log.info("slot %s already claimed; skipped", clock.to_iso(slot))
                return report
        tick_id = t.tick_id if t.tick_id is not None else "-"
        log.debug("tick %s (slot %s) started", tick_id, clock.to_iso(slot))
        try:
            if self.before_tick:
                self.before_tick(slot)
            self._run_steps(conn, report)
        except Interrupted as e:
            report.status = "interrupted"
            report.notes.append(str(e))
        except Exception as e:
            report.status = "failed"
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            report.outage = self._classify(e)
            if report.outage:
                report.errors.append(f"{self.step}: exchange unreachable: {e}")
                log.warning("tick %s: exchange unreachable in %s: %s", tick_id, self.step, e)
            else:
                from .exchange.base import ExchangeError

                report.errors.append(
                    f"{self.step}: {e}" if isinstance(e, ExchangeError) else f"{self.step}: {type(e).__name__}: {e}"
                )
                log.error("tick %s failed in %s:\n%s", tick_id, self.step, traceback.format_exc())
            try:
                # an outage is alerted once when it starts (and once when it ends), not every tick
                with db.transaction(conn):
                    ledger.event(
                        conn,
                        "tick_failed",
                        f"slot {clock.to_iso(slot)}: {report.errors[-1]}",
                        severity="info" if report.outage else "error",
                    )
            except sqlite3.Error:
                log.exception("could not record the failed tick as an event")
        finally:
            self.step = ""
        try:
            self._after_tick(conn, report)
        except Exception:
            log.exception("alerts after the tick failed")
        line = report.line()
        status = {"ok": "ok", "interrupted": "failed", "failed": "failed"}[report.status]
        t.status, t.summary, t.finished_at = status, line, clock.now_iso()
        t.idle = t.tick_id is None and self.is_idle(report)
        tick_id = t.tick_id if t.tick_id is not None else "-"
        if lazy:
            self._unwritten.append(t)  # written with the heartbeat right after (or, idle, within beat_every)
        else:
            self.write(
                "recording the tick",
                lambda: finish_tick(conn, t.tick_id, status, line),
                patience_s=FINAL_WRITE_PATIENCE_S if self.stop_reason else None,
            )
        self._log_tick(tick_id, report, line)
        if report.status in ("ok", "failed"):  # the outside view: a dead Pi goes silent (never raises)
            from .loop import heartbeat as outside

            outside.ping(self.cfg, report.status == "ok")
        self._digest(conn)
        self._prune(conn)
        return report

    @staticmethod
    def is_idle(report: TickReport) -> bool:
        """Nothing happened: no proposal, order, block, note, error or failure (its row may wait)."""
        return (
            report.status == "ok"
            and not report.outage
            and not report.reconcile_failed
            and not (
                report.proposals or report.waiting or report.orders or report.blocks or report.notes or report.errors
            )
        )

    def _log_tick(self, tick_id, report: TickReport, line: str) -> None:
        """A tick that did something: INFO.  Idle ticks: DEBUG, and one INFO line an hour counts them."""
        if not self.is_idle(report):
            log.info("tick %s: %s", tick_id, line)
            return
        log.debug("tick %s: %s", tick_id, line)
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

    def _prune(self, conn) -> None:
        """Old audit rows (ticks, guard decisions, events) go, at most once every PRUNE_EVERY (again next
        tick while a batch limit is hit); fills and executions stay forever."""
        now = clock.now()
        if not self._prune_again and self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        try:
            from .loop import retention

            self._prune_again = retention.prune(conn, now, keep_days=self.cfg.scheduler.keep_days).more
            self._pruned_at = now
        except Exception:
            log.exception("pruning old rows failed (nothing lost; tried again next tick)")

    def _record_snapshot(self, conn, snap) -> None:
        """What this tick saw, for `tinybot pnl`, `status` and the report: prices, balances (a failed balance
        read keeps the last snapshot, with its age), the hourly price log."""
        from . import pnl

        balances_read = not any(p.startswith("balances:") for p in snap.problems)
        tickers, balances = dict(snap.tickers), dict(snap.balances) if balances_read else None
        # the loop writes prices and balances read unchanged only as a new `at`, with its next heartbeat (every
        # beat_every after idle ticks: SD-card wear); `at` is then never later than the read it stands for
        seen = (
            clock.now().strftime("%Y%m%d%H"),  # a new hour: a new price_log row
            sorted((m, t.bid, t.ask, t.last) for m, t in tickers.items()),
            None if balances is None else sorted((a, b.available, b.in_order) for a, b in balances.items()),
        )
        if seen == self._snapshot_seen and self.lazy_ticks:
            self._restamp = (clock.now_iso(), balances is not None)  # with the next heartbeat (_beat)
            return
        try:
            pnl.record_snapshot(conn, tickers, balances)
            self._snapshot_seen, self._restamp = seen, None
        except sqlite3.Error:
            log.exception("could not record this tick's prices and balances (P/L shows the last ones)")

    def _digest(self, conn) -> None:
        """Once a day at [alerts] digest_at (local time): the day's P/L, trades, fees, LLM cost, with a chart."""
        from . import digest

        try:
            digest.maybe_send(conn, self.cfg, self.notifier())
        except Exception:
            log.exception("the daily digest failed (tried again next tick)")

    def _run_steps(self, conn: sqlite3.Connection, report: TickReport) -> None:
        from . import proposals, reconcile
        from .advisors import build_snapshot, run_advisor

        cfg = self.cfg
        self._checkpoint("reconcile")
        ro = TickPrices(self.read_only())  # one ticker read per market per tick, shared by safety and the snapshot
        self._tick_ro = ro
        # orders we have no row for: looked for at start and every SURPRISE_EVERY ticks (each scan covers a day)
        rec = reconcile.reconcile(conn, cfg, ro, surprises=self._reconciles % SURPRISE_EVERY == 0)
        self._reconciles += 1
        for c in rec.changes:
            report.notes.append(f"reconciled #{c.execution_id}: {c.before}→{c.after}")
        for s in rec.surprises:
            report.errors.append(f"SURPRISE {s}")
        for e in rec.errors:
            report.errors.append(e)
            log.warning("reconcile: %s", e)
        if rec.errors:
            # reconcile keeps its errors as text: whether the exchange answers at all tells an outage
            # (pause, resume by itself) from a refusal a person must look at (counts towards the switch)
            report.outage = self._unreachable_now()
            report.reconcile_failed = not report.outage
        self._checkpoint("safety")
        self._safety(conn, report, tick_ok=None)

        self._checkpoint("expire")
        expired = proposals.expire_stale(conn)
        if expired:
            report.notes.append("expired: " + ", ".join(f"#{i}" for i in expired))

        self._checkpoint("snapshot")
        snap = build_snapshot(conn, cfg, ro, sources=cfg.active_advisors, candle_cache=self.candle_cache())
        report.prices = {m: t.last for m, t in snap.tickers.items()}
        self._record_snapshot(conn, snap)
        for p in snap.problems:
            report.errors.append(p)
            log.warning("snapshot: %s", p)
        if not rec.errors:
            self._end_outage(conn, report)  # the exchange answered and reconcile is clean
        paused = self.outage_since(conn) or (clock.now_iso() if report.outage else None)

        created: list[int] = []
        for name in cfg.active_advisors:  # advisors, plus exits and top_up when their settings turn them on
            self._checkpoint(f"advisor {name}")
            outcome = run_advisor(name, snap, cfg)
            for err in outcome.errors:
                report.errors.append(f"advisor {name}: {err}")
            for d in outcome.drafts:
                self.claim(conn)  # a restart must not make this slot's proposals twice
                pid = proposals.create(conn, d, source=name, ttl=cfg.risk.proposal_ttl)
                created.append(pid)
                amount = eur(d.amount_quote) if d.amount_quote is not None else f"{d.amount}"
                report.proposals.append(f"#{pid} {name} {d.side} {d.market} {amount}")
                log.info("proposal %s from %s: %s %s %s — %s", pid, name, d.side, d.market, amount, d.reason)

        self._checkpoint("approval")
        for pid in created:
            self._apply_policy(conn, pid, snap, report)

        if paused:
            report.notes.append(f"trading paused: exchange unreachable since {paused}; nothing sent")
            log.info("trading paused (exchange outage since %s): approved proposals wait", paused)
            return
        self._checkpoint("execute")
        self._execute_approved(conn, report)

        self._checkpoint("sync")
        if conn.execute(
            "SELECT 1 FROM trade_executions WHERE state IN ('submitting', 'submitted', 'unknown') LIMIT 1"
        ).fetchone():
            rec = reconcile.reconcile(conn, cfg, ro, surprises=False)
            for c in rec.changes:
                report.notes.append(f"synced #{c.execution_id}: {c.before}→{c.after}")
            report.errors.extend(rec.errors)

    def _apply_policy(self, conn, pid: int, snap, report: TickReport) -> None:
        """auto: approve when the proposal fits the allowlist and caps now; manual: leave it pending."""
        from . import guards, proposals

        if self.cfg.scheduler.approval == "manual":
            report.waiting.append(pid)
            return
        row = proposals.get(conn, pid)
        ctx = guards.Context(
            conn,
            self.cfg,
            clock.now(),
            row,
            None,
            snap.markets.get(row["market"]),
            snap.tickers.get(row["market"]),
            dict(snap.balances),
        )
        verdicts = [g(ctx) for g in (guards.allowlist, guards.max_trade, guards.daily_cap, guards.exposure_cap)]
        blocks = [v for v in verdicts if not v.ok]
        if blocks:
            with db.transaction(conn):
                guards.record(conn, pid, None, "approval", verdicts, ctx.now)
            for v in blocks:
                report.blocks.append(f"#{pid} {v.code} (not auto-approved)")
                log.info("proposal %s not auto-approved: %s: %s", pid, v.code, v.detail)
            return
        proposals.approve(conn, pid, by="auto")

    def _execute_approved(self, conn, report: TickReport) -> None:
        """Execute approved proposals that have no execution yet (or one left 'claimed' by a crash)."""
        from . import executor

        rows = conn.execute(
            "SELECT p.id FROM proposals p LEFT JOIN trade_executions e ON e.proposal_id = p.id"
            " WHERE p.status = 'approved' AND p.expires_at > ? AND (e.id IS NULL OR e.state = 'claimed')"
            " ORDER BY p.id",
            (clock.now_iso(),),
        ).fetchall()
        for r in rows:
            self._checkpoint(f"execute #{r['id']}")
            self.claim(conn)
            try:
                res = executor.execute(conn, self.cfg, self.trading(), r["id"])
            except executor.NotExecutable as e:
                report.errors.append(str(e))
                continue
            self.notifier().execution(res)
            ex = (
                conn.execute("SELECT * FROM trade_executions WHERE id = ?", (res.execution_id,)).fetchone()
                if res.execution_id
                else None
            )
            if res.state == "blocked":
                codes = [
                    d["reason_code"]
                    for d in conn.execute(
                        "SELECT reason_code FROM guard_decisions WHERE execution_id = ? AND verdict = 'block'"
                        " ORDER BY id",
                        (res.execution_id,),
                    )
                ]
                report.blocks.append(f"#{r['id']} {'+'.join(codes) or res.reason}")
                log.info("proposal %s blocked: %s", r["id"], res.reason)
            elif res.state == "claimed":
                report.errors.append(f"#{r['id']} not sent: {res.reason}")
            else:
                desc = f"#{r['id']} {ex['side']} {ex['market']} {res.state}"
                if ex["state"] == "filled" and Decimal(ex["filled_amount"]) > 0:
                    price = Decimal(ex["filled_quote"]) / Decimal(ex["filled_amount"])
                    desc += f" {ex['filled_amount']} @ {_price(price)} fee {eur(ex['fee_paid'])}"
                elif res.reason:
                    desc += f" ({res.reason})"
                report.orders.append(desc)
                log.info("proposal %s: %s", r["id"], desc)

    # -- the loop --
    def run(
        self, *, once: bool = False, until: datetime | None = None, sleep: Callable[[float], None] | None = None
    ) -> int:
        """Hold the lock and tick until stopped (or once).  Returns the exit code (tinybot.exitcodes).

        Raises ``AlreadyRunning`` if another process holds the lock.  ``once``:
        the tick's own exit code (``TickReport.exit_code``).
        """
        lock = RunLock(self.cfg.lock_path).acquire()
        restore = self._install_signals()
        self._sleep = sleep or time.sleep
        self.lazy_ticks = not once  # `run --once` claims first and finishes its row itself, as always
        handler = None
        phone = None
        code = exitcodes.OK
        died: str | None = None
        refused: str | None = None
        try:
            handler = attach_log_file(self.cfg)
            try:
                from .notify import install_redaction

                install_redaction(self.cfg, logging.getLogger("tinybot"))  # secrets never reach the log file
            except Exception:
                log.exception("could not install log redaction")
            conn = self._connection()
            self._previous_run_died(conn)
            self.write("start-up: closing ticks a dead run left open", lambda: abandon_dead_ticks(conn))
            self.notifier().drain_events()  # the first drain ever skips history; this run's events get alerted
            interval = self.cfg.scheduler.interval
            refused = self._start(conn, interval)
            if refused:
                code = exitcodes.REFUSED_START
                return code
            if not once:  # the owner's phone, on its own thread and connection; nothing when chat_ids is empty
                from . import telegram

                phone = telegram.Background(self.cfg).start()
            not_before: datetime | None = None
            while not self.stop_reason:
                now = clock.now()
                if until is not None and now >= until:
                    break
                slot = slot_of(now, interval)
                if (not_before is None or now >= not_before) and slot != self.last_slot:
                    try:
                        report = self.tick(slot)
                    except Interrupted:
                        break  # stopped while waiting for the database lock
                    self.echo(report.line())
                    not_before = self._backoff(report)
                    if once:
                        code = report.exit_code
                        break
                wake = self._wake(interval, not_before, until)
                try:
                    self._beat_between_ticks(conn, wake, not_before)
                except Interrupted:
                    break
                self._sleep_until(wake, sleep)
            if self.stop_reason:
                self.echo(f"Stopped ({self.stop_reason}); lock released.")
            return code
        except Exception as e:
            died = f"{type(e).__name__}: {e}"
            log.error("scheduler DIED: %s\n%s", died, traceback.format_exc())
            self.echo(f"Error: tinybot run died: {died}. The traceback is in {self.cfg.log_path}.")
            code = exitcodes.ERROR
            return code
        finally:
            self._stopped(once=once, died=died, refused=refused)
            if phone is not None:
                phone.stop()
            restore()
            lock.release()
            if handler is not None:
                detach_log_file(handler)

    def _start(self, conn, interval) -> str | None:
        """Say it started, reconcile what a crash left in doubt, then the start gate: why it refuses, or None."""
        log.info(
            "scheduler started: pid %s, mode %s, interval %s, approval %s, advisors %s",
            os.getpid(),
            self.cfg.mode,
            clock.format_duration(interval),
            self.cfg.scheduler.approval,
            ", ".join(self.cfg.active_advisors) or "(none)",
        )
        self.write(
            "heartbeat",
            lambda: heartbeat(
                conn, self.cfg, "running", started_at=self.started_at, next_tick=clock.now(), detail="starting"
            ),
        )
        self._startup_reconcile(conn)
        if self.gate is not None:
            reasons = self.gate(self)
            if reasons:
                return "; ".join(reasons)
        return None

    def _wake(self, interval, not_before: datetime | None, until: datetime | None) -> datetime:
        """When the loop next wakes: the next slot, the current one if a tick overran into it (run late rather
        than skipped), the end of a backoff, or ``until``."""
        now = clock.now()
        wake = now if slot_of(now, interval) != self.last_slot else next_slot(now, interval)
        if not_before is not None and wake < not_before:
            wake = not_before  # backing off: the slot current at that time runs (late)
        if until is not None:
            wake = min(wake, until)
        return wake

    def _beat_between_ticks(self, conn, wake: datetime, not_before: datetime | None) -> None:
        state = "backing_off" if not_before and not_before > clock.now() else "running"
        outage = self.outage_since(conn)
        detail = (
            f"exchange unreachable since {outage}: trading paused; {self.failures} outage tick(s) in a row"
            if outage
            else ""
        )
        self._beat(conn, state, wake, detail)

    def _due(self, last: datetime, now: datetime) -> bool:
        """beat_every has passed since ``last`` (half a tick early: ticks start a few ms apart)."""
        interval = self.cfg.scheduler.interval
        return now - last >= beat_every(interval) - interval / 2

    def _beat(
        self,
        conn,
        state: str,
        next_tick: datetime | None,
        detail: str,
        *,
        force: bool = False,
        patience_s: float | None = None,
    ) -> None:
        """The heartbeat, with the tick rows not written yet, in one commit.  After idle ticks only, and
        the same state and detail as last written, nothing is written until beat_every has passed:
        `status` allows for that (``stale_after``)."""
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
        rows, restamp = list(self._unwritten), self._restamp
        self.write(
            "heartbeat",
            lambda: heartbeat(
                conn,
                self.cfg,
                state,
                started_at=self.started_at,
                next_tick=next_tick,
                detail=detail,
                ticks=rows,
                restamp=restamp,
            ),
            patience_s=patience_s,
        )
        del self._unwritten[: len(rows)]
        if self._restamp == restamp:
            self._restamp = None
        self._beat_at, self._beat_said = now, (state, detail)

    def _startup_reconcile(self, conn) -> None:
        """In-flight executions (submitting/unknown, e.g. after a kill -9 mid-order) are resolved first:
        the start gate then judges the account as it really is.  Failures are logged; ticks try again."""
        if not conn.execute(
            "SELECT 1 FROM trade_executions WHERE state IN ('submitting', 'unknown', 'submitted') LIMIT 1"
        ).fetchone():
            return
        from . import reconcile

        try:
            rec = reconcile.reconcile(conn, self.cfg, self.read_only(), surprises=False)
        except Exception as e:
            log.warning("start-up reconcile failed (the first tick tries again): %s: %s", type(e).__name__, e)
            return
        for c in rec.changes:
            self.echo(f"  start-up reconcile: execution {c.execution_id} {c.before}→{c.after}")
            log.info("start-up reconcile: execution %s %s→%s: %s", c.execution_id, c.before, c.after, c.detail)
        for e in rec.errors:
            log.warning("start-up reconcile: %s", e)

    def _previous_run_died(self, conn) -> None:
        """A heartbeat that still says running while we hold the lock: the last run never stopped (kill -9,
        power cut, OOM).  Say so once; its ticks are marked abandoned next."""
        try:
            hb = conn.execute("SELECT * FROM scheduler_heartbeat WHERE id = 1").fetchone()
        except sqlite3.Error:
            return
        if hb is None or hb["state"] == "stopped":
            return
        text = (
            f"the previous `tinybot run` (pid {hb['pid']}, started {hb['started_at']}) ended without"
            f" stopping (killed, crashed or power lost); its last sign of life was {hb['beat_at']}."
            " This run starts with a reconcile."
        )
        log.error("%s", text)
        self._alert("bot_died", text, key=f"bot_died:{hb['pid']}:{hb['started_at']}", severity="error")

    def _stopped(self, *, once: bool, died: str | None, refused: str | None) -> None:
        """Last heartbeat, last log line and the "bot stopped" alert, whatever the way out."""
        if died:  # the schema's states are running/backing_off/stopped: a death is a stop whose detail says so
            state, detail = "stopped", f"{DIED_PREFIX}{died}"
        elif refused:
            state, detail = "stopped", f"refused to start: {refused}"
        else:
            state, detail = "stopped", self.stop_reason or ("once" if once else "done")
        if self.conn is not None:
            try:
                self._beat(self.conn, state, None, detail[:1000], force=True, patience_s=FINAL_WRITE_PATIENCE_S)
            except Exception:
                log.exception("could not write the final heartbeat")
        if died:
            log.error("scheduler stopped: DIED (%s)", died)
        else:
            log.info("scheduler stopped (%s)", detail)
        if refused:
            self._alert(
                "start_refused",
                f"tinybot run REFUSED TO START (exit {exitcodes.REFUSED_START}; systemd"
                f" does not retry it): {refused}. Fix it, check with `tinybot doctor`, then start it again.",
                key=f"start_refused:{refused}",
                severity="error",
            )
            return
        if once and not died:
            return  # cron's `run --once` every few minutes: its stop is not news
        try:
            where = f"{self.cfg.path.parent}"
            if died:
                self._alert(
                    "bot_stopped",
                    f"tinybot run DIED ({died}); the traceback is in {self.cfg.log_path}."
                    " Trading stops until it runs again (systemd restarts it if configured).",
                    key=f"bot_stopped:{os.getpid()}:{self.started_at}",
                    severity="error",
                )
            else:
                self._alert(
                    "bot_stopped",
                    f"tinybot run stopped ({detail}) in {where}; nothing trades until it runs again.",
                    key=f"bot_stopped:{os.getpid()}:{self.started_at}",
                    severity="warning",
                )
        except Exception:
            log.exception("could not send the bot-stopped alert")

    def _backoff(self, report: TickReport) -> datetime | None:
        if not report.outage:
            self.failures = 0
            return None
        self.failures += 1
        wait = min(self.cfg.scheduler.interval * (2 ** (self.failures - 1)), MAX_BACKOFF)
        wait = max(wait, self.cfg.scheduler.interval)
        until = clock.now() + wait
        self.echo(f"  exchange unreachable ({self.failures} in a row); backing off {clock.format_duration(wait)}")
        log.warning("exchange outage %s in a row; backing off until %s", self.failures, clock.to_iso(until))
        return until

    def _sleep_until(self, wake: datetime, sleep: Callable[[float], None] | None) -> None:
        while not self.stop_reason:
            left = (wake - clock.now()).total_seconds()
            if left <= 0:
                return
            (sleep or time.sleep)(min(left, 0.5))

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def on_signal(signum, frame):
            self.request_stop(signal.Signals(signum).name)

        for s in (signal.SIGINT, signal.SIGTERM):
            previous[s] = signal.signal(s, on_signal)

        def restore():
            for s, h in previous.items():
                signal.signal(s, h)

        return restore
