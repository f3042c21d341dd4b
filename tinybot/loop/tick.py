"""One tick of the loop: its steps in order, the approval policy, and executing approved proposals.

One tick::

    reconcile → safety rules (auto kill switch) → expire stale proposals
      → snapshot (read-only client) → outage over?
      → advisors → proposals → approval policy → execute approved → sync fills

Each step starts with a checkpoint: after SIGINT/SIGTERM the step in progress
finishes (an order being sent is sent and recorded) and the tick stops before
its next step.  An exception in a tick is logged with its traceback, recorded
(the tick fails, an ``events`` row) and alerted; the loop goes on.  An
unreachable exchange is an outage instead (tinybot.loop.outage).
"""

from __future__ import annotations

import logging
import sqlite3
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

from ..base import clock, exitcodes
from ..store import db
from ..owner import digest
from .. import exchange
from ..trade import executor, guards, proposals, reconcile, safety
from ..advisors import build_snapshot, run_advisor, shadow, watched_markets
from ..base.config import Config
from ..exchange.base import ExchangeError
from ..base.money import eur_text
from ..owner.notify import Notifier
from .beat import Beat, TickRecord
from .outage import Outage, classify, unreachable_now
from .outage import since as outage_since
from .stop import Interrupted, Stop

log = logging.getLogger("tinybot.scheduler")

# A cached closed candle is trusted at most this long: Bitvavo may still correct a candle after it closed.
CANDLE_CACHE_MAX_AGE = timedelta(minutes=15)
# The market table (statuses, minimum sizes) changes rarely; what trades does not rely on this copy: the
# executor reads the table afresh before every send.
MARKET_TABLE_MAX_AGE = timedelta(hours=1)
# The scan for orders we have no row for (5 weight a market and 24-hour slice) runs at start, at the tick after
# the balances moved (an order that fills or holds funds moves them), after a scan with errors, and otherwise
# every SURPRISE_EVERY ticks or SURPRISE_MAX_AGE, whichever comes first (half the scan's one-day lookback, so
# consecutive scans' windows overlap at any interval).
SURPRISE_EVERY = 60
SURPRISE_MAX_AGE = timedelta(hours=12)


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
    disk_full: bool = False  # a write found no room (loop.diskfull): trading pauses, the kill switch is not counted

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

    @property
    def idle(self) -> bool:
        """Nothing happened: no proposal, order, block, note, error or failure (its row may wait)."""
        return (
            self.status == "ok"
            and not self.outage
            and not self.reconcile_failed
            and not (self.proposals or self.waiting or self.orders or self.blocks or self.notes or self.errors)
        )

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


class TickPrices:
    """The read-only client for one tick: the watched markets' tickers in one request, read once (the first
    ticker asked for reads them all); the balances it read kept; the rest passes through."""

    def __init__(self, inner, watched: tuple[str, ...] = ()):
        self._inner, self._watched, self._tickers, self._asked = inner, watched, {}, set()
        self.balances_read: dict | None = None  # what balances() answered this tick (None: not read, or it failed)

    def ticker(self, market):
        if market not in self._tickers:
            self.tickers((market,))
        if market not in self._tickers:
            self._tickers[market] = self._inner.ticker(market)  # left out of the answer: asked alone
        return self._tickers[market]

    def tickers(self, markets):
        """These markets' tickers; those not read yet this tick are read with every watched market, at once."""
        missing = [m for m in markets if m not in self._asked]
        if missing:
            wanted = list(dict.fromkeys((*self._watched, *missing)))
            self._tickers.update(self._inner.tickers(wanted))
            self._asked.update(wanted)  # a market left out of the answer is asked alone, not in a batch again
        return {m: self._tickers[m] for m in markets if m in self._tickers}

    def balances(self):
        self.balances_read = dict(self._inner.balances())
        return self.balances_read

    def __getattr__(self, name):
        return getattr(self._inner, name)


class Kept:
    """What the loop keeps between ticks, and when each is read again: the market table, the closed candles,
    and when the surprise scan is due."""

    def __init__(self, cache_candles: bool = True):
        # Closed candles rarely change: read them again once the next one has closed, and at the latest
        # after CANDLE_CACHE_MAX_AGE (Bitvavo can still correct a recent candle).  The demo turns the
        # cache off: its simulator replays an accelerated path under fixed timestamps.
        self._candle_cache: dict | None = {} if cache_candles else None
        self._candle_cache_at: datetime | None = None
        self._markets: dict | None = None  # the market table, read again after MARKET_TABLE_MAX_AGE
        self._markets_at: datetime | None = None
        self._balances_known: dict | None = None  # the newest balances a tick read
        self._scanned_at: datetime | None = None  # the last surprise scan without errors (None: not yet)
        self._ticks_since_scan = 0

    def candle_cache(self) -> dict | None:
        """The closed-candle cache; once it is CANDLE_CACHE_MAX_AGE old each entry is read again (its newest
        candles: a correction among them has the whole window read again)."""
        if self._candle_cache is None:
            return None
        now = clock.now()
        if self._candle_cache_at is None or now - self._candle_cache_at >= CANDLE_CACHE_MAX_AGE:
            for key, (_, closed) in self._candle_cache.items():
                self._candle_cache[key] = (None, closed)  # good for no slot: refreshed at its next read
            self._candle_cache_at = now
        return self._candle_cache

    def market_table(self, market_data) -> dict:
        """The market table, read again once it is MARKET_TABLE_MAX_AGE old (an outage raises then)."""
        now = clock.now()
        if self._markets is None or now - self._markets_at >= MARKET_TABLE_MAX_AGE:
            self._markets, self._markets_at = market_data.markets(), now
        return self._markets

    def _balances_moved(self, read: dict | None) -> bool:
        """Did the last tick read (``read``) other balances than the tick before it that read them?  (None:
        it read none; no news.)"""
        if read is None:
            return False
        moved = read != self._balances_known
        self._balances_known = read
        return moved

    def surprise_scan_due(self, balances_read: dict | None) -> bool:
        """At start, after the balances moved (``balances_read``: what the last tick read), after a reconcile with
        errors, else every SURPRISE_EVERY ticks or SURPRISE_MAX_AGE (see there)."""
        moved = self._balances_moved(balances_read)
        self._ticks_since_scan += 1
        return (
            moved
            or self._scanned_at is None
            or self._ticks_since_scan >= SURPRISE_EVERY
            or clock.now() - self._scanned_at >= SURPRISE_MAX_AGE
        )

    def scanned(self) -> None:
        """A surprise scan ran without errors."""
        self._scanned_at, self._ticks_since_scan = clock.now(), 0


class Tick:
    """The work of each tick, with what it keeps between ticks: the clients and ``kept`` (Kept).

    ``read_only`` / ``trading`` may be injected (tests); otherwise the read-only client comes from
    ``exchange.read_only`` and the trading one from ``executor.trading_exchange``, the only factory that
    may build it.  ``beat`` claims the tick's slot before its first proposal or order, and records what the
    tick saw; ``outage`` is told when the exchange is back.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        stop: Stop,
        beat: Beat,
        outage: Outage,
        notifier: Notifier,
        read_only=None,
        trading=None,
        cache_candles: bool = True,
    ):
        self.cfg = cfg
        self.stop = stop
        self.beat = beat
        self.outage = outage
        self.notifier = notifier
        self._ro = read_only
        self._trading = trading
        self._prices: TickPrices | None = None  # the last tick's read-only client (tickers read once per tick)
        self.kept = Kept(cache_candles)

    def read_only(self):
        if self._ro is None:
            self._ro = exchange.read_only(self.cfg)
        return self._ro

    def trading(self):
        if self._trading is None:
            self._trading = executor.trading_exchange(self.cfg)
        return self._trading

    # -- one tick --
    def run(
        self, conn: sqlite3.Connection, record: TickRecord, before: Callable[[datetime], None] | None = None
    ) -> TickReport:
        """The steps, then what follows every tick, failed or not: the outage and the failed-ticks count,
        then the alerts.  ``before(slot)`` is called first (the demo moves its simulated prices there)."""
        report = TickReport(record.slot)
        label = record.label
        log.debug("tick %s (slot %s) started", label, clock.to_iso(record.slot))
        try:
            if before:
                before(record.slot)
            self.steps(conn, record, report)
        except Interrupted as e:
            report.status = "interrupted"
            report.notes.append(str(e))
        except Exception as e:
            self._failed(conn, report, e, label)
        finally:
            self.stop.step = ""
        try:
            self._after(conn, report)
        except Exception:
            log.exception("alerts after the tick failed")
        return report

    def steps(self, conn: sqlite3.Connection, record: TickRecord, report: TickReport) -> None:
        """The steps of one tick, in order; each starts with a checkpoint (a stop ends the tick there)."""
        cfg, stop = self.cfg, self.stop
        stop.checkpoint("reconcile")
        scan = self.kept.surprise_scan_due(self._prices.balances_read if self._prices else None)
        self._prices = prices = TickPrices(self.read_only(), watched_markets(cfg))  # shared by safety and snapshot
        clean = self._reconcile(conn, prices, report, scan)

        stop.checkpoint("safety")
        self._safety(conn, report, tick_ok=None)

        stop.checkpoint("expire")
        expired = proposals.expire_stale(conn)
        if expired:
            report.notes.append("expired: " + ", ".join(f"#{i}" for i in expired))

        stop.checkpoint("snapshot")
        snap = build_snapshot(
            conn,
            cfg,
            prices,
            sources=cfg.active_advisors,
            candle_cache=self.kept.candle_cache(),
            markets=self.kept.market_table(prices),
        )
        report.prices = {m: t.last for m, t in snap.tickers.items()}
        self.beat.record_snapshot(conn, snap)
        for p in snap.problems:
            report.errors.append(p)
            log.warning("snapshot: %s", p)
        back = self.outage.end(conn) if clean else None  # the exchange answered and reconcile is clean
        if back:
            report.notes.append(back)
        # clean: any outage has just ended; else one in progress (or this tick's own) pauses trading
        paused = None if clean else outage_since(conn) or (clock.now_iso() if report.outage else None)

        created: list[int] = []
        for name in cfg.active_advisors:  # advisors, plus exits and top_up when their settings turn them on
            stop.checkpoint(f"advisor {name}")
            created += self._propose(conn, record, name, snap, report)

        stop.checkpoint("approval")
        for pid in created:
            self._apply_policy(conn, pid, snap, report)

        if paused:
            report.notes.append(f"trading paused: exchange unreachable since {paused}; nothing sent")
            log.info("trading paused (exchange outage since %s): approved proposals wait", paused)
            return
        stop.checkpoint("execute")
        self._execute_approved(conn, record, report)

        stop.checkpoint("sync")
        self._sync(conn, prices, report)

        stop.checkpoint("shadow")
        self._shadow(conn, snap, report)

    # -- the steps --
    def _reconcile(self, conn: sqlite3.Connection, prices: TickPrices, report: TickReport, scan: bool) -> bool:
        """Resolve executions in doubt, sync fills, and with ``scan`` look for orders we have no row for (each
        scan covers a day); True when it had no errors."""
        rec = reconcile.reconcile(conn, self.cfg, prices, surprises=scan)
        if scan and not rec.errors:
            self.kept.scanned()
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
            report.outage = unreachable_now(prices)
            report.reconcile_failed = not report.outage
        return not rec.errors

    def _propose(self, conn: sqlite3.Connection, record: TickRecord, name: str, snap, report: TickReport) -> list[int]:
        """Ask one advisor; each valid draft becomes a proposal.  Returns their ids."""
        outcome = run_advisor(name, snap, self.cfg)
        for err in outcome.errors:
            report.errors.append(f"advisor {name}: {err}")
        created = []
        for d in outcome.drafts:
            self.beat.claim(conn, record)  # a restart must not make this slot's proposals twice
            pid = proposals.create(conn, d, source=name, ttl=self.cfg.risk.proposal_ttl)
            created.append(pid)
            amount = eur_text(d.amount_quote) if d.amount_quote is not None else f"{d.amount}"
            report.proposals.append(f"#{pid} {name} {d.side} {d.market} {amount}")
            log.info("proposal %s from %s: %s %s %s — %s", pid, name, d.side, d.market, amount, d.reason)
        return created

    def _apply_policy(self, conn: sqlite3.Connection, pid: int, snap, report: TickReport) -> None:
        """auto: approve when the proposal fits the allowlist and caps now; manual: leave it pending."""
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
        verdicts = guards.auto_approval(ctx)
        blocks = [v for v in verdicts if not v.ok]
        if blocks:
            with db.transaction(conn):
                guards.record(conn, pid, None, "approval", verdicts, ctx.now)
            for v in blocks:
                report.blocks.append(f"#{pid} {v.code} (not auto-approved)")
                log.info("proposal %s not auto-approved: %s: %s", pid, v.code, v.detail)
            return
        proposals.approve(conn, pid, by="auto")

    def _execute_approved(self, conn: sqlite3.Connection, record: TickRecord, report: TickReport) -> None:
        """Execute approved proposals that have no execution yet (or one left 'claimed' by a crash)."""
        rows = conn.execute(
            "SELECT p.id FROM proposals p LEFT JOIN trade_executions e ON e.proposal_id = p.id"
            " WHERE p.status = 'approved' AND p.expires_at > ? AND (e.id IS NULL OR e.state = 'claimed')"
            " ORDER BY p.id",
            (clock.now_iso(),),
        ).fetchall()
        for r in rows:
            self.stop.checkpoint(f"execute #{r['id']}")
            self.beat.claim(conn, record)
            try:
                res = executor.execute(conn, self.cfg, self.trading(), r["id"])
            except executor.NotExecutable as e:
                report.errors.append(str(e))
                continue
            self.notifier.execution(res)
            self._report_execution(conn, r["id"], res, report)

    def _report_execution(self, conn: sqlite3.Connection, pid: int, res, report: TickReport) -> None:
        """What one execution came to, on the tick's line and in the log."""
        ex = (
            conn.execute("SELECT * FROM trade_executions WHERE id = ?", (res.execution_id,)).fetchone()
            if res.execution_id
            else None
        )
        if res.state == "blocked":
            codes = [
                d["reason_code"]
                for d in conn.execute(
                    "SELECT reason_code FROM guard_decisions WHERE execution_id = ? AND verdict = 'block' ORDER BY id",
                    (res.execution_id,),
                )
            ]
            report.blocks.append(f"#{pid} {'+'.join(codes) or res.reason}")
            log.info("proposal %s blocked: %s", pid, res.reason)
        elif res.state == "claimed":
            report.errors.append(f"#{pid} not sent: {res.reason}")
        else:
            desc = f"#{pid} {ex['side']} {ex['market']} {res.state}"
            if ex["state"] == "filled" and Decimal(ex["filled_amount"]) > 0:
                price = Decimal(ex["filled_quote"]) / Decimal(ex["filled_amount"])
                desc += f" {ex['filled_amount']} @ {_price(price)} fee {eur_text(ex['fee_paid'])}"
            elif res.reason:
                desc += f" ({res.reason})"
            report.orders.append(desc)
            log.info("proposal %s: %s", pid, desc)

    def _sync(self, conn: sqlite3.Connection, prices: TickPrices, report: TickReport) -> None:
        """An execution still in flight: reconcile once more, so the tick's fills are booked in this tick."""
        if conn.execute(
            "SELECT 1 FROM trade_executions WHERE state IN ('submitting', 'submitted', 'unknown') LIMIT 1"
        ).fetchone():
            rec = reconcile.reconcile(conn, self.cfg, prices, surprises=False)
            for c in rec.changes:
                report.notes.append(f"synced #{c.execution_id}: {c.before}→{c.after}")
            report.errors.extend(rec.errors)

    def _shadow(self, conn: sqlite3.Connection, snap, report: TickReport) -> None:
        """[scoreboard] shadow advisors, on paper only (tinybot.advisors.shadow); their faults never fail the tick."""
        if self.cfg.scoreboard.shadow:
            try:
                done = shadow.step(conn, self.cfg, snap)
                report.notes += [f"shadow: {line}" for line in done.filled + done.blocked + done.proposed + done.errors]
            except Exception:
                log.exception("shadow advisors failed (the live tick is not affected)")

    def _safety(self, conn: sqlite3.Connection, report: TickReport, *, tick_ok: bool | None) -> None:
        """The automatic kill switch rules (tinybot.trade.safety).  tick_ok feeds the consecutive-errors count."""
        turned_off = safety.check(
            conn, self.cfg, tick_ok=tick_ok, market_data=self._prices or self._ro, notifier=self.notifier
        )
        if turned_off:
            report.errors.append(
                "KILL SWITCH turned trading OFF: " + "; ".join(turned_off) + " (`tinybot resume` after checking)"
            )

    # -- after the steps --
    def _failed(self, conn: sqlite3.Connection, report: TickReport, e: Exception, label: str) -> None:
        """An exception ended the steps: an outage, or an error with its traceback; recorded as an event."""
        report.status = "failed"
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        step = self.stop.step
        report.disk_full = db.disk_full(e, self.cfg.db_path)
        report.outage = not report.disk_full and classify(e, lambda: self._prices or self.read_only())
        if report.disk_full:
            report.errors.append(f"{step}: disk full: {e}")
            log.warning("tick %s: disk full in %s: %s", label, step, e)
            return  # nothing can be recorded; loop.diskfull alerts once and pauses
        if report.outage:
            report.errors.append(f"{step}: exchange unreachable: {e}")
            log.warning("tick %s: exchange unreachable in %s: %s", label, step, e)
        else:
            report.errors.append(f"{step}: {e}" if isinstance(e, ExchangeError) else f"{step}: {type(e).__name__}: {e}")
            log.error("tick %s failed in %s:\n%s", label, step, traceback.format_exc())
        try:
            # an outage is alerted once when it starts (and once when it ends), not every tick
            with db.transaction(conn):
                db.event(
                    conn,
                    "tick_failed",
                    f"slot {clock.to_iso(report.slot)}: {report.errors[-1]}",
                    severity="info" if report.outage else "error",
                )
        except sqlite3.Error:
            log.exception("could not record the failed tick as an event")

    def _after(self, conn: sqlite3.Connection, report: TickReport) -> None:
        """Outage bookkeeping, the consecutive-errors count, then the alerts (events, block summary)."""
        try:
            if report.disk_full:
                pass  # not counted towards the kill switch either: the loop pauses (loop.diskfull)
            elif report.outage:
                self.outage.begin(conn, report.errors)  # not counted towards the kill switch: it pauses instead
            elif report.status == "failed" or report.reconcile_failed:
                self._safety(conn, report, tick_ok=False)
            elif report.status == "ok":
                safety.consecutive_errors(conn, self.cfg, True)  # a good tick resets the count
        except Exception:
            log.exception("safety check after the tick failed")
        self.notifier.drain_events()  # kill switch, surprises, unknowns, tick failures: each alerted once
        self.notifier.summarise_blocks()

    def digest(self, conn: sqlite3.Connection) -> None:
        """Once a day at [alerts] digest_at (local time): the day's P/L, trades, fees, LLM cost, with a chart."""
        try:
            digest.maybe_send(conn, self.cfg, self.notifier)
        except Exception:
            log.exception("the daily digest failed (tried again next tick)")
