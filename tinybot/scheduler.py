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
alerted (``tinybot.notify``) and the loop goes on; when the exchange cannot be reached the loop backs off
(one interval, doubling, up to ``MAX_BACKOFF``).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import sqlite3
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable

from . import clock, db, ledger
from .config import Config

log = logging.getLogger("tinybot.scheduler")

EXIT_OK = 0
EXIT_LOCKED = 75  # EX_TEMPFAIL: another `tinybot run` holds the lock; try again later
MAX_BACKOFF = timedelta(minutes=15)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SURPRISE_EVERY = 5  # ticks between scans for orders we have no row for (5 weight per market per scan)


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

class AlreadyRunning(Exception):
    """Another process holds the scheduler lock."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        who = f"PID {pid}" if pid else "another process (PID not written yet)"
        super().__init__(f"tinybot run is already running: {who} holds the lock {path}."
                         " Stop it first (Ctrl-C in its terminal, or kill -TERM"
                         f"{' ' + str(pid) if pid else ' <pid>'}); only one scheduler may run per database.")


class RunLock:
    """An exclusive, non-blocking flock on ``path``; the holder's PID is written into the file.

    Never unlink the file: a process could then lock a file that another
    process has just replaced, and two schedulers would run.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(self.path, holder_pid(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)  # an empty file = nobody holds it (the PID is only a hint anyway)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder_pid(path: Path, attempts: int = 20) -> int | None:
    """The PID written in the lock file; retried briefly, the holder writes it just after locking."""
    for i in range(attempts):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


def lock_is_held(path: Path) -> bool:
    """True if some process holds the flock.  Probes with a *shared* non-blocking lock.

    Only used by liveness when the lock file names a live PID, to tell a
    running scheduler from a recycled PID.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- slots ------------------------------------------------------------------------

def slot_of(now: datetime, interval: timedelta) -> datetime:
    """Start of the aligned slot containing ``now`` (slots count from the epoch, UTC)."""
    step = int(interval.total_seconds() * 1_000_000)
    us = (now - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=us // step * step)


def next_slot(now: datetime, interval: timedelta) -> datetime:
    return slot_of(now, interval) + interval


def claim_slot(conn: sqlite3.Connection, slot: datetime) -> int | None:
    """Insert the tick row for ``slot``; None if some process already claimed it."""
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO ticks (slot, started_at, status, pid) VALUES (?, ?, 'running', ?)"
            " ON CONFLICT (slot) DO NOTHING", (clock.to_iso(slot), clock.now_iso(), os.getpid()))
        return cur.lastrowid if cur.rowcount == 1 else None


def finish_tick(conn: sqlite3.Connection, tick_id: int, status: str, summary: str) -> None:
    with db.transaction(conn):
        conn.execute("UPDATE ticks SET status = ?, finished_at = ?, summary = ? WHERE id = ?",
                     (status, clock.now_iso(), summary[:4000], tick_id))


def abandon_dead_ticks(conn: sqlite3.Connection) -> list[int]:
    """Mark ticks left 'running' as failed.  Called under the lock: no scheduler on this DB is mid-tick."""
    with db.transaction(conn):
        rows = conn.execute("SELECT id, pid FROM ticks WHERE status = 'running'").fetchall()
        for r in rows:
            conn.execute("UPDATE ticks SET status = 'failed', finished_at = ?, summary = ? WHERE id = ?",
                         (clock.now_iso(), f"abandoned: process {r['pid']} ended mid-tick", r["id"]))
    return [r["id"] for r in rows]


# --- heartbeat and liveness ------------------------------------------------------

def heartbeat(conn: sqlite3.Connection, cfg: Config, state: str, *, started_at: str,
              next_tick: datetime | None, detail: str = "") -> None:
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO scheduler_heartbeat (id, pid, state, started_at, beat_at, interval_s, next_tick_at, detail)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid,"
            " state = excluded.state, started_at = excluded.started_at, beat_at = excluded.beat_at,"
            " interval_s = excluded.interval_s, next_tick_at = excluded.next_tick_at, detail = excluded.detail",
            (os.getpid(), state, started_at, clock.now_iso(), int(cfg.scheduler.interval.total_seconds()),
             clock.to_iso(next_tick) if next_tick else None, detail))


def liveness(conn: sqlite3.Connection, cfg: Config) -> dict:
    """Is `tinybot run` alive, when did it last tick, when does it tick next?  DB + lock file only.

    ``alive`` is True when the lock is held by a live process; ``stale`` when
    it is alive but its last sign of life is older than two intervals plus a
    minute (stuck?).  ``state`` is one of: running, backing_off, stopped,
    died (the last scheduler never stopped cleanly and no process holds the
    lock), never_run.
    """
    now = clock.now()
    interval = cfg.scheduler.interval
    hb = conn.execute("SELECT * FROM scheduler_heartbeat WHERE id = 1").fetchone()
    last = conn.execute("SELECT * FROM ticks ORDER BY slot DESC LIMIT 1").fetchone()
    lock_pid = holder_pid(cfg.lock_path, attempts=1) if cfg.lock_path.exists() else None
    alive = bool(lock_pid and pid_alive(lock_pid) and lock_is_held(cfg.lock_path))
    if hb is None:
        state = "running" if alive else "never_run"
    elif alive:
        state = hb["state"] if hb["state"] != "stopped" else "running"
    else:
        state = "stopped" if hb["state"] == "stopped" else "died"
    beat = clock.from_iso(hb["beat_at"]) if hb else None
    stale = bool(alive and beat and now - beat > 2 * interval + timedelta(minutes=1))
    next_tick = hb["next_tick_at"] if (hb and alive) else None
    return {
        "alive": alive,
        "state": state,
        "pid": lock_pid if alive else None,
        "stale": stale,
        "interval": clock.format_duration(interval),
        "approval": cfg.scheduler.approval,
        "advisors": list(cfg.advisors),
        "started_at": hb["started_at"] if hb else None,
        "beat_at": hb["beat_at"] if hb else None,
        "next_tick_at": next_tick,
        "detail": hb["detail"] if hb else "",
        "last_tick": dict(last) if last else None,
    }


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
    outage: bool = False
    exchange_counted: bool = False  # this tick's exchange failure was already counted for the safety rules

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


def _eur(d) -> str:
    return f"€{Decimal(d):.2f}"


class Scheduler:
    """Runs ticks for one config.  ``run()`` is the loop; ``tick()`` one slot.

    ``read_only`` / ``trading`` may be injected (tests); otherwise the
    read-only client comes from ``exchange.read_only`` and the trading one
    from ``executor.trading_exchange``, the only factory that may build it.
    ``before_tick(slot)`` is called before each claimed tick (the demo
    advances its simulated price path there).
    """

    def __init__(self, cfg: Config, conn: sqlite3.Connection | None = None, *,
                 echo: Callable[[str], None] = print, read_only=None, trading=None,
                 before_tick: Callable[[datetime], None] | None = None, cache_candles: bool = True):
        self.cfg = cfg
        self.conn = conn
        self.echo = echo
        self._ro = read_only
        self._trading = trading
        self.before_tick = before_tick
        self.stop_reason: str | None = None
        self.failures = 0  # consecutive outage ticks
        self.started_at = clock.now_iso()
        self.last_slot: datetime | None = None
        self.step = ""
        self._notifier = None
        self._tick_ro = None  # this tick's read-only client (tickers read once per tick)
        # Closed candles never change on Bitvavo: read them again only when the next one has closed.
        # The demo turns this off: its simulator replays an accelerated path under fixed timestamps.
        self._candle_cache: dict | None = {} if cache_candles else None
        self._reconciles = 0

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

    def _safety(self, conn, report: TickReport, *, exchange_ok: bool | None) -> None:
        """The automatic kill switch rules (tinybot.safety).  exchange_ok feeds the consecutive-errors count."""
        from . import safety

        turned_off = safety.check(conn, self.cfg, exchange_ok=exchange_ok,
                                  market_data=self._tick_ro or self._ro,
                                  notifier=self.notifier())
        if turned_off:
            report.errors.append("KILL SWITCH turned trading OFF: " + "; ".join(turned_off)
                                 + " (`tinybot resume` after checking)")

    def _after_tick(self, conn, report: TickReport) -> None:
        """Count the tick for the consecutive-errors rule, then send the alerts (events, block summary)."""
        from . import safety

        try:
            if report.outage and not report.exchange_counted:
                self._safety(conn, report, exchange_ok=False)
            elif report.status == "ok" and not report.exchange_counted:
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
    def tick(self, slot: datetime | None = None) -> TickReport:
        conn = self._connection()
        slot = slot or slot_of(clock.now(), self.cfg.scheduler.interval)
        report = TickReport(slot)
        self.last_slot = slot
        tick_id = claim_slot(conn, slot)
        if tick_id is None:
            report.status = "skipped"
            log.info("slot %s already claimed; skipped", clock.to_iso(slot))
            return report
        log.info("tick %s (slot %s) started", tick_id, clock.to_iso(slot))
        try:
            if self.before_tick:
                self.before_tick(slot)
            self._run_steps(conn, report)
        except Interrupted as e:
            report.status = "interrupted"
            report.notes.append(str(e))
        except Exception as e:
            report.status = "failed"
            from .exchange.base import ExchangeError

            report.outage = isinstance(e, ExchangeError)
            report.errors.append(f"{self.step}: {type(e).__name__}: {e}" if not report.outage else f"{self.step}: {e}")
            log.error("tick %s failed in %s:\n%s", tick_id, self.step, traceback.format_exc())
            try:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                with db.transaction(conn):
                    ledger.event(conn, "tick_failed", f"slot {clock.to_iso(slot)}: {report.errors[-1]}",
                                 severity="warning" if report.outage else "error")
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
        finish_tick(conn, tick_id, status, line)
        log.info("tick %s: %s", tick_id, line)
        try:  # old audit rows (ticks, guard decisions, events) go; fills and executions stay forever
            from . import retention

            retention.prune(conn, keep_days=self.cfg.scheduler.keep_days)
        except Exception:
            log.exception("pruning old rows failed (nothing lost; tried again next tick)")
        return report

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
        self._checkpoint("safety")
        report.exchange_counted = bool(rec.errors)
        self._safety(conn, report, exchange_ok=False if rec.errors else None)

        self._checkpoint("expire")
        expired = proposals.expire_stale(conn)
        if expired:
            report.notes.append("expired: " + ", ".join(f"#{i}" for i in expired))

        self._checkpoint("snapshot")
        snap = build_snapshot(conn, cfg, ro, sources=tuple(cfg.advisors), candle_cache=self._candle_cache)
        report.prices = {m: t.last for m, t in snap.tickers.items()}
        for p in snap.problems:
            report.errors.append(p)
            log.warning("snapshot: %s", p)

        created: list[int] = []
        for name in cfg.advisors:
            self._checkpoint(f"advisor {name}")
            outcome = run_advisor(name, snap, cfg)
            for err in outcome.errors:
                report.errors.append(f"advisor {name}: {err}")
            for d in outcome.drafts:
                pid = proposals.create(conn, d, source=name, ttl=cfg.risk.proposal_ttl)
                created.append(pid)
                amount = _eur(d.amount_quote) if d.amount_quote is not None else f"{d.amount}"
                report.proposals.append(f"#{pid} {name} {d.side} {d.market} {amount}")
                log.info("proposal %s from %s: %s %s %s — %s", pid, name, d.side, d.market, amount, d.reason)

        self._checkpoint("approval")
        for pid in created:
            self._apply_policy(conn, pid, snap, report)

        self._checkpoint("execute")
        self._execute_approved(conn, report)

        self._checkpoint("sync")
        if conn.execute("SELECT 1 FROM trade_executions WHERE state IN ('submitting', 'submitted', 'unknown')"
                        " LIMIT 1").fetchone():
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
        ctx = guards.Context(conn, self.cfg, clock.now(), row, None, snap.markets.get(row["market"]),
                             snap.tickers.get(row["market"]), dict(snap.balances))
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
            " ORDER BY p.id", (clock.now_iso(),)).fetchall()
        for r in rows:
            self._checkpoint(f"execute #{r['id']}")
            try:
                res = executor.execute(conn, self.cfg, self.trading(), r["id"])
            except executor.NotExecutable as e:
                report.errors.append(str(e))
                continue
            self.notifier().execution(res)
            ex = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (res.execution_id,)).fetchone() \
                if res.execution_id else None
            if res.state == "blocked":
                codes = [d["reason_code"] for d in conn.execute(
                    "SELECT reason_code FROM guard_decisions WHERE execution_id = ? AND verdict = 'block'"
                    " ORDER BY id", (res.execution_id,))]
                report.blocks.append(f"#{r['id']} {'+'.join(codes) or res.reason}")
                log.info("proposal %s blocked: %s", r["id"], res.reason)
            elif res.state == "claimed":
                report.errors.append(f"#{r['id']} not sent: {res.reason}")
            else:
                desc = f"#{r['id']} {ex['side']} {ex['market']} {res.state}"
                if ex["state"] == "filled" and Decimal(ex["filled_amount"]) > 0:
                    price = Decimal(ex["filled_quote"]) / Decimal(ex["filled_amount"])
                    desc += f" {ex['filled_amount']} @ {_price(price)} fee {_eur(ex['fee_paid'])}"
                elif res.reason:
                    desc += f" ({res.reason})"
                report.orders.append(desc)
                log.info("proposal %s: %s", r["id"], desc)

    # -- the loop --
    def run(self, *, once: bool = False, until: datetime | None = None,
            sleep: Callable[[float], None] | None = None) -> int:
        """Hold the lock and tick until stopped (or once).  Returns the exit code.

        Raises ``AlreadyRunning`` if another process holds the lock.
        """
        lock = RunLock(self.cfg.lock_path).acquire()
        restore = self._install_signals()
        handler = None
        try:
            handler = attach_log_file(self.cfg)
            try:
                from .notify import install_redaction

                install_redaction(self.cfg, logging.getLogger("tinybot"))  # secrets never reach the log file
            except Exception:
                log.exception("could not install log redaction")
            conn = self._connection()
            abandon_dead_ticks(conn)
            self.notifier().drain_events()  # the first drain ever skips history; this run's events get alerted
            interval = self.cfg.scheduler.interval
            log.info("scheduler started: pid %s, mode %s, interval %s, approval %s, advisors %s",
                     os.getpid(), self.cfg.mode, clock.format_duration(interval), self.cfg.scheduler.approval,
                     ", ".join(self.cfg.advisors) or "(none)")
            heartbeat(conn, self.cfg, "running", started_at=self.started_at, next_tick=clock.now())
            not_before: datetime | None = None
            while not self.stop_reason:
                now = clock.now()
                if until is not None and now >= until:
                    break
                slot = slot_of(now, interval)
                if (not_before is None or now >= not_before) and slot != self.last_slot:
                    report = self.tick(slot)
                    self.echo(report.line())
                    not_before = self._backoff(report)
                    if once:
                        break
                now = clock.now()
                # a tick that overran into the next slot: run that slot now (late) rather than skip it
                wake = now if slot_of(now, interval) != self.last_slot else next_slot(now, interval)
                if not_before is not None and wake < not_before:
                    wake = not_before  # backing off: the slot current at that time runs (late)
                if until is not None:
                    wake = min(wake, until)
                state = "backing_off" if not_before and not_before > clock.now() else "running"
                heartbeat(conn, self.cfg, state, started_at=self.started_at, next_tick=wake,
                          detail=f"{self.failures} outage tick(s) in a row" if state == "backing_off" else "")
                self._sleep_until(wake, sleep)
            if self.stop_reason:
                self.echo(f"Stopped ({self.stop_reason}); lock released.")
            return EXIT_OK
        finally:
            try:
                if self.conn is not None:
                    heartbeat(self.conn, self.cfg, "stopped", started_at=self.started_at, next_tick=None,
                              detail=self.stop_reason or "")
            except Exception:
                log.exception("could not write the final heartbeat")
            log.info("scheduler stopped (%s)", self.stop_reason or "done")
            restore()
            lock.release()
            if handler is not None:
                detach_log_file(handler)

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


# --- the log file -----------------------------------------------------------------

class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


def attach_log_file(cfg: Config) -> logging.Handler:
    """Full detail to a rotating log file next to the config; the terminal gets one line per tick."""
    cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
    import logging.handlers  # here: `tinybot status` imports this module for liveness() and needs no file handler

    handler = logging.handlers.RotatingFileHandler(
        cfg.log_path, maxBytes=cfg.scheduler.log_max_bytes, backupCount=cfg.scheduler.log_backups, encoding="utf-8")
    handler.setFormatter(_UTCFormatter("%(asctime)sZ %(levelname)s %(name)s [%(process)d] %(message)s"))
    root = logging.getLogger("tinybot")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("tinybot").removeHandler(handler)
    handler.close()
