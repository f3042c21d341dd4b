"""The loop of `tinybot run`: the run lock, signals, start and stop, and sleeping between tick slots.

``tinybot run`` holds an exclusive ``fcntl.flock`` on the lock file next to
the database for as long as it runs (tinybot.base.runlock).  The kernel drops a
flock when its process ends, however it ends, so a lock file left behind by
a crash never blocks a restart.  A second ``tinybot run`` (or ``run --once``)
on the same database exits at once with ``exitcodes.LOCKED``.

Ticks run on slots aligned to ``scheduler.interval`` (12:00, 12:01, ... for
``1m``; slots count from the Unix epoch in UTC: tinybot.store.liveness).  The loop
owns its collaborators and passes each what it needs:

* ``Tick`` (loop.tick) — the steps of one tick, the approval policy, executing;
* ``Beat`` (loop.beat) — tick rows and the heartbeat row, written together and
  only when needed, patiently while another process holds the database;
* ``Outage`` (loop.outage) — an unreachable exchange pauses trading and the
  loop backs off (one interval, doubling, up to 15 minutes) until it answers;
* ``Pruning`` (loop.retention), the outside ``heartbeat`` ping and the log file.

SIGINT/SIGTERM set a flag (loop.stop); the step in progress finishes, the
tick stops before its next step, the lock is released and the process exits
0.  Whatever ends the loop is logged (with its traceback when it is a crash),
recorded in the heartbeat (``stopped`` or ``died``) and alerted ("bot
stopped"); a crash exits with ``exitcodes.ERROR``.  A run that died without a
word (``kill -9``, power loss) is alerted by the next start.

Before the first tick, ``run`` reconciles in-flight executions and then asks
the optional start ``gate`` (live mode: doctor's blocking checks); a refused
start is logged, alerted and returns ``exitcodes.REFUSED_START``.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import threading
import time
import traceback
from datetime import datetime
from typing import Callable

from ..base import clock, exitcodes
from ..store import db
from ..trade import ledger, reconcile
from ..base.config import Config
from ..store.liveness import DIED_PREFIX, next_slot, slot_of
from ..owner.notify import Notifier, install_redaction
from ..base.runlock import RunLock
from ..owner.telegram import poller as telegram
from . import alerts, allowlist, heartbeat, retention
from .beat import FINAL_WRITE_PATIENCE_S, Beat
from .diskfull import DiskFull, is_disk_full
from .logfile import attach_log_file, detach_log_file
from .outage import Outage
from .stop import Interrupted, Stop
from .tick import Tick, TickReport

log = logging.getLogger("tinybot.scheduler")


class Scheduler:
    """Runs ticks for one config.  ``run()`` is the loop; ``tick()`` one slot.

    ``read_only`` / ``trading`` may be injected (tests); otherwise the tick
    builds them (tinybot.loop.tick.Tick).  ``before_tick(slot)`` is called
    before each tick (the demo advances its simulated price path there).
    ``gate(scheduler)`` is asked once before the first tick, after the
    start-up reconcile; it returns the reasons to refuse the start (an empty
    list: go).  ``conn`` None: the database at ``cfg.db_path`` is opened.
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
        if conn is None:
            cfg.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = db.open_db(cfg.db_path, after_migration=ledger.after_migration)
        self.conn = conn
        self.echo = echo
        self.before_tick = before_tick
        self.gate = gate
        self.started_at = clock.now_iso()
        self.last_slot: datetime | None = None
        self.stop = Stop()
        self._notifier = Notifier(cfg, conn)
        self.beat = Beat(cfg, stop=self.stop, echo=echo, started_at=self.started_at)
        self.outage = Outage(cfg, notifier=self._notifier, echo=echo)
        self.disk = DiskFull(cfg, notifier=self._notifier, echo=echo)
        self.ticks = Tick(
            cfg,
            stop=self.stop,
            beat=self.beat,
            outage=self.outage,
            notifier=self._notifier,
            read_only=read_only,
            trading=trading,
            cache_candles=cache_candles,
        )
        self.retention = retention.Pruning(cfg.scheduler.keep_days)
        self._sleep: Callable[[float], None] = time.sleep

    def notifier(self) -> Notifier:
        """Alerts (dedupe, rate limit, redaction): tinybot.owner.notify.  Never raises.  The start gate alerts here."""
        return self._notifier

    def request_stop(self, reason: str) -> None:
        self.stop.request(reason)

    # -- one slot --
    def tick(self, slot: datetime | None = None) -> TickReport:
        """One slot: its record opened, the tick's work, its record closed; then the outside ping, the daily
        digest and retention.  In the loop (``beat.lazy``) the slot is claimed only before the tick's first
        proposal or order, and its row is written with the next heartbeat; otherwise the slot is claimed
        first and the row finished here, as ``run --once`` and direct callers need."""
        conn = self.conn
        slot = slot or slot_of(clock.now(), self.cfg.scheduler.interval)
        self.last_slot = slot
        record = self.beat.open(conn, slot)
        if record is None:
            return TickReport(slot, status="skipped")
        report = self.ticks.run(conn, record, self.before_tick)
        self.beat.close(conn, record, report.status, report.line(), report.idle)
        if report.status in ("ok", "failed"):  # the outside view: a dead Pi goes silent (never raises)
            heartbeat.ping(self.cfg, report.status == "ok")
        self.ticks.digest(conn)
        self.retention.maybe_prune(conn)
        return report

    # -- the loop --
    def run(
        self, *, once: bool = False, until: datetime | None = None, sleep: Callable[[float], None] | None = None
    ) -> int:
        """Hold the lock and tick until stopped (or once).  Returns the exit code (tinybot.base.exitcodes).

        Raises ``AlreadyRunning`` if another process holds the lock.  ``once``:
        the tick's own exit code (``TickReport.exit_code``).
        """
        lock = RunLock(self.cfg.lock_path).acquire()
        restore = self._install_signals()
        self._sleep = self.beat.sleep = sleep or time.sleep
        self.beat.lazy = not once  # `run --once` claims first and finishes its row itself, as always
        handler = phone = None
        died: str | None = None
        refused: str | None = None
        try:
            handler = attach_log_file(self.cfg)
            try:
                install_redaction(self.cfg, logging.getLogger("tinybot"))  # secrets never reach the log file
            except Exception:
                log.exception("could not install log redaction")
            refused = self._start()
            if refused:
                return exitcodes.REFUSED_START
            if not once:  # the owner's phone, on its own thread and connection; nothing when chat_ids is empty
                phone = telegram.Background(self.cfg).start()
            code = self._loop(once=once, until=until)
            if self.stop.reason:
                self.echo(f"Stopped ({self.stop.reason}); lock released.")
            return code
        except Exception as e:
            died = f"{type(e).__name__}: {e}"
            if isinstance(e, sqlite3.Error):  # a fault of the file or its card (full, read-only): which, and the fix
                died = str(db.fault(e, self.cfg.db_path))
            log.error("scheduler DIED: %s\n%s", died, traceback.format_exc())
            self.echo(f"Error: tinybot run died: {died}. The traceback is in {self.cfg.log_path}.")
            return exitcodes.ERROR
        finally:
            self._stopped(once=once, died=died, refused=refused)
            if phone is not None:
                phone.stop()
            restore()
            lock.release()
            if handler is not None:
                detach_log_file(handler)

    def _loop(self, *, once: bool, until: datetime | None) -> int:
        """Tick once per slot until stopped or ``until``; ``once``: after one tick, with its exit code."""
        interval = self.cfg.scheduler.interval
        not_before: datetime | None = None  # backing off after an outage tick
        while not self.stop.reason:
            now = clock.now()
            if until is not None and now >= until:
                break
            slot = slot_of(now, interval)
            if (not_before is None or now >= not_before) and slot != self.last_slot:
                try:
                    report = self._tick_unless_full(slot)
                except Interrupted:
                    break  # stopped while waiting for the database lock
                if report is not None:
                    self.echo(report.line())
                if report is None or report.disk_full:
                    not_before = self.disk.backoff()
                else:
                    not_before = self.outage.backoff(report.outage)
                if once:
                    return report.exit_code if report is not None else exitcodes.ERROR
            wake = self._wake(interval, not_before, until)
            try:
                self._beat_between_ticks(wake, not_before)
            except Interrupted:
                break
            except sqlite3.Error as e:
                if not is_disk_full(e, self.cfg):
                    raise
                self.disk.begin(e)  # the heartbeat found no room: retry (and tick) after the backoff
                not_before = self.disk.backoff()
                wake = self._wake(interval, not_before, until)
            self._sleep_until(wake)
        return exitcodes.OK

    def _tick_unless_full(self, slot: datetime) -> TickReport | None:
        """The tick, unless the disk is still full (None: no tick, back off).  A tick that finds no room for
        its writes, wherever in the tick, reports ``disk_full`` and starts the pause (loop.diskfull)."""
        back = None
        if self.disk.paused:
            back = self.disk.retry(self.conn)
            if back is None:
                return None
        try:
            report = self.tick(slot)
        except sqlite3.Error as e:
            if not is_disk_full(e, self.cfg):
                raise
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            report = TickReport(slot, status="failed", errors=[f"disk full: {e}"], disk_full=True)
        if report.disk_full:
            self.disk.begin(report.errors[-1] if report.errors else "disk full")
        if back:
            report.notes.insert(0, back)
        return report

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

    def _beat_between_ticks(self, wake: datetime, not_before: datetime | None) -> None:
        if self.disk.paused:
            return  # nothing can be written; the retry's own write says when there is room again
        state = "backing_off" if not_before and not_before > clock.now() else "running"
        self.beat.beat(self.conn, state, wake, self.outage.detail(self.conn))

    def _sleep_until(self, wake: datetime) -> None:
        while not self.stop.reason:
            left = (wake - clock.now()).total_seconds()
            if left <= 0:
                return
            self._sleep(min(left, 0.5))

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

    # -- start and stop --
    def _start(self) -> str | None:
        """Say what a dead run left, close its ticks, say it started, reconcile what a crash left in doubt,
        then ask the start gate: why it refuses, or None."""
        conn, interval = self.conn, self.cfg.scheduler.interval
        self._previous_run_died(conn)
        self.beat.abandon_dead_ticks(conn)
        self._notifier.drain_events()  # the first drain ever skips history; this run's events get alerted
        log.info(
            "scheduler started: pid %s, mode %s, interval %s, approval %s, advisors %s",
            os.getpid(),
            self.cfg.mode,
            clock.format_duration(interval),
            self.cfg.scheduler.approval,
            ", ".join(self.cfg.active_advisors) or "(none)",
        )
        self.beat.starting(conn)
        self._startup_reconcile(conn)
        unlisted = allowlist.start_refusal(self.cfg, self.ticks.read_only())
        if unlisted:
            self.echo(f"Error: refusing to start: {unlisted}")
            return unlisted
        if self.gate is not None:
            reasons = self.gate(self)
            if reasons:
                return "; ".join(reasons)
        return None

    def _startup_reconcile(self, conn: sqlite3.Connection) -> None:
        """In-flight executions (submitting/unknown, e.g. after a kill -9 mid-order) are resolved first:
        the start gate then judges the account as it really is.  Failures are logged; ticks try again."""
        if not conn.execute(
            "SELECT 1 FROM trade_executions WHERE state IN ('submitting', 'unknown', 'submitted') LIMIT 1"
        ).fetchone():
            return
        try:
            rec = reconcile.reconcile(conn, self.cfg, self.ticks.read_only(), surprises=False)
        except Exception as e:
            log.warning("start-up reconcile failed (the first tick tries again): %s: %s", type(e).__name__, e)
            return
        for c in rec.changes:
            self.echo(f"  start-up reconcile: execution {c.execution_id} {c.before}→{c.after}")
            log.info("start-up reconcile: execution %s %s→%s: %s", c.execution_id, c.before, c.after, c.detail)
        for e in rec.errors:
            log.warning("start-up reconcile: %s", e)

    def _previous_run_died(self, conn: sqlite3.Connection) -> None:
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
        alerts.send(self._notifier, "bot_died", text, key=f"bot_died:{hb['pid']}:{hb['started_at']}", severity="error")

    def _stopped(self, *, once: bool, died: str | None, refused: str | None) -> None:
        """Last heartbeat, last log line and the "bot stopped" alert, whatever the way out."""
        if died:  # the schema's states are running/backing_off/stopped: a death is a stop whose detail says so
            detail = f"{DIED_PREFIX}{died}"
        elif refused:
            detail = f"refused to start: {refused}"
        else:
            detail = self.stop.reason or ("once" if once else "done")
        try:
            self.beat.beat(self.conn, "stopped", None, detail[:1000], force=True, patience_s=FINAL_WRITE_PATIENCE_S)
        except Exception:
            log.exception("could not write the final heartbeat")
        if died:
            log.error("scheduler stopped: DIED (%s)", died)
        else:
            log.info("scheduler stopped (%s)", detail)
        if refused:
            alerts.send(
                self._notifier,
                "start_refused",
                f"tinybot run REFUSED TO START (exit {exitcodes.REFUSED_START}; systemd"
                f" does not retry it): {refused}. Fix it, check with `tinybot doctor`, then start it again.",
                key=f"start_refused:{refused}",
                severity="error",
            )
            return
        if once and not died:
            return  # cron's `run --once` every few minutes: its stop is not news
        key = f"bot_stopped:{os.getpid()}:{self.started_at}"
        try:
            if died:
                text = (
                    f"tinybot run DIED ({died}); the traceback is in {self.cfg.log_path}."
                    " Trading stops until it runs again (systemd restarts it if configured)."
                )
                alerts.send(self._notifier, "bot_stopped", text, key=key, severity="error")
            else:
                text = f"tinybot run stopped ({detail}) in {self.cfg.path.parent}; nothing trades until it runs again."
                alerts.send(self._notifier, "bot_stopped", text, key=key, severity="warning")
        except Exception:
            log.exception("could not send the bot-stopped alert")
