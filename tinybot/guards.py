"""Guards: one small function per rule, each returning a verdict with a reason code.

The DB-state guards (kill switch, expiry, approval, cooldown, anti-flip, the
caps) are evaluated by the executor *inside* the ``BEGIN IMMEDIATE``
transaction that moves an execution to ``submitting``, and they count
in-flight executions (submitting/submitted/unknown), not only fills: two
proposals racing cannot both see room under a cap or both be first after a
cooldown.  The exchange guards (minimum, precision, balance) use what the
preflight read from the exchange just before, with no lock held.
"""
from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from . import clock
from .config import Config
from .exchange.base import Balance, Market, Ticker

# States whose order exists (or may exist) on the exchange: these count
# against cooldown, anti-flip and the caps from the moment of `submitting`.
IN_FLIGHT = ("submitting", "submitted", "unknown")
COUNTED = IN_FLIGHT + ("filled",)


@dataclass(frozen=True)
class Verdict:
    guard: str
    ok: bool
    code: str  # 'ok' or a reason code like 'cooldown_active'
    detail: str = ""


def passed(guard: str, detail: str = "") -> Verdict:
    return Verdict(guard, True, "ok", detail)


def blocked(guard: str, code: str, detail: str) -> Verdict:
    return Verdict(guard, False, code, detail)


@dataclass(frozen=True)
class Context:
    """Everything a guard may look at.  ``conn`` is inside the send transaction."""

    conn: sqlite3.Connection
    cfg: Config
    now: datetime
    proposal: sqlite3.Row
    execution_id: int | None
    market: Market | None  # from preflight; None if the exchange does not list it
    ticker: Ticker | None
    balances: dict[str, Balance] | None

    @property
    def side(self) -> str:
        return self.proposal["side"]

    @property
    def name(self) -> str:
        return self.proposal["market"]

    def notional_eur(self) -> Decimal | None:
        """What this trade is worth in EUR: the EUR amount, or base × the price it would trade at."""
        if self.proposal["amount_quote"] is not None:
            return Decimal(self.proposal["amount_quote"])
        if self.ticker is None:
            return None
        price = self.ticker.ask if self.side == "buy" else self.ticker.bid
        return Decimal(self.proposal["amount"]) * price


def approval_hash(proposal) -> str:
    """Fingerprint of what was approved; a changed row no longer matches it."""
    fields = (proposal["market"], proposal["side"], proposal["amount_quote"], proposal["amount"], proposal["expires_at"])
    return hashlib.sha256("|".join("" if f is None else str(f) for f in fields).encode()).hexdigest()


# --- the guards --------------------------------------------------------------

def kill_switch(ctx: Context) -> Verdict:
    """The row and the kill file beside the database, both read inside the send transaction."""
    from .killswitch import kill_file_of, read_kill_file

    row = ctx.conn.execute("SELECT trading_enabled, reason FROM kill_switch WHERE id = 1").fetchone()
    if row is None or not row["trading_enabled"]:
        reason = row["reason"] if row else "kill switch row missing"
        return blocked("kill_switch", "kill_switch_on", f"trading is disabled: {reason}")
    killed = read_kill_file(kill_file_of(ctx.conn))
    if killed is not None:
        return blocked("kill_switch", "kill_switch_on",
                       f"trading is disabled by the kill file {killed['path']}: {killed['reason']}")
    return passed("kill_switch")


def approval(ctx: Context) -> Verdict:
    p = ctx.proposal
    if p["status"] != "approved":
        return blocked("approval", "not_approved", f"proposal is {p['status']}, not approved")
    if p["approval_hash"] != approval_hash(p):
        return blocked("approval", "changed_after_approval",
                       "the proposal's market, side, amount or expiry changed after it was approved")
    return passed("approval")


def expiry(ctx: Context) -> Verdict:
    expires = clock.from_iso(ctx.proposal["expires_at"])
    if ctx.now >= expires:
        return blocked("expiry", "proposal_expired", f"expired at {ctx.proposal['expires_at']}")
    return passed("expiry", f"expires in {int((expires - ctx.now).total_seconds())}s")


def allowlist(ctx: Context) -> Verdict:
    allowed = ctx.cfg.risk.allowlist
    if not allowed:
        return blocked("allowlist", "allowlist_empty", "risk.allowlist is empty: every market is blocked")
    if ctx.name not in allowed:
        return blocked("allowlist", "not_allowlisted", f"{ctx.name} is not in risk.allowlist ({', '.join(allowed)})")
    return passed("allowlist")


def _latest(ctx: Context, side: str | None, since: datetime) -> sqlite3.Row | None:
    """Most recent counted execution on this market after `since` (a window ends at since + window exactly)."""
    sql = (
        "SELECT id, side, submitting_at FROM trade_executions"
        " WHERE market = ? AND submitting_at > ? AND +state IN (%s)" % ",".join("?" * len(COUNTED))
    )
    args: list = [ctx.name, clock.to_iso(since), *COUNTED]
    if side:
        sql += " AND side = ?"
        args.append(side)
    if ctx.execution_id is not None:
        sql += " AND id != ?"
        args.append(ctx.execution_id)
    return ctx.conn.execute(sql + " ORDER BY submitting_at DESC LIMIT 1", args).fetchone()


def cooldown(ctx: Context) -> Verdict:
    window: timedelta = ctx.cfg.risk.cooldown
    if window <= timedelta(0):
        return passed("cooldown", "cooldown is off")
    last = _latest(ctx, None, ctx.now - window)
    if last is not None:
        until = clock.from_iso(last["submitting_at"]) + window
        return blocked("cooldown", "cooldown_active",
                       f"last trade on {ctx.name} was at {last['submitting_at']} (execution {last['id']});"
                       f" cooldown ends {clock.to_iso(until)}")
    return passed("cooldown")


def anti_flip(ctx: Context) -> Verdict:
    window: timedelta = ctx.cfg.risk.anti_flip
    if window <= timedelta(0):
        return passed("anti_flip", "anti-flip is off")
    opposite = "sell" if ctx.side == "buy" else "buy"
    last = _latest(ctx, opposite, ctx.now - window)
    if last is not None:
        until = clock.from_iso(last["submitting_at"]) + window
        return blocked("anti_flip", "anti_flip",
                       f"a {opposite} on {ctx.name} at {last['submitting_at']} (execution {last['id']});"
                       f" no {ctx.side} before {clock.to_iso(until)}")
    return passed("anti_flip")


def max_trade(ctx: Context) -> Verdict:
    if ctx.side != "buy":
        return passed("max_trade", "sells are bounded by what is held")
    notional = ctx.notional_eur()
    if notional is None:
        return blocked("max_trade", "no_price", "no price to value the trade")
    cap = ctx.cfg.risk.max_trade_eur
    if notional > cap:
        return blocked("max_trade", "over_max_trade", f"€{notional:.2f} is over risk.max_trade_eur (€{cap})")
    return passed("max_trade", f"€{notional:.2f} of €{cap}")


def spent_today(conn: sqlite3.Connection, now: datetime, exclude_id: int | None = None) -> Decimal:
    """EUR committed to buys today (UTC): in-flight at their asked amount, done at what filled."""
    rows = conn.execute(
        "SELECT id, state, notional_eur, filled_quote, fee_paid FROM trade_executions"
        # "+state": never walk the state index (it holds every filled execution ever); today's rows come
        # from trade_executions_time, so this reads one day, however long the history
        " WHERE side = 'buy' AND submitting_at >= ? AND +state IN (%s)" % ",".join("?" * len(COUNTED + ("canceled",))),
        (clock.to_iso(clock.day_start(now)), *COUNTED, "canceled"),
    ).fetchall()
    total = Decimal(0)
    for r in rows:
        if r["id"] == exclude_id:
            continue
        if r["state"] in IN_FLIGHT:
            total += Decimal(r["notional_eur"] or 0)
        else:
            total += Decimal(r["filled_quote"]) + Decimal(r["fee_paid"])
    return total


def daily_cap(ctx: Context) -> Verdict:
    if ctx.side != "buy":
        return passed("daily_cap", "sells do not spend")
    notional = ctx.notional_eur()
    if notional is None:
        return blocked("daily_cap", "no_price", "no price to value the trade")
    used = spent_today(ctx.conn, ctx.now, ctx.execution_id)
    cap = ctx.cfg.risk.max_daily_eur
    if used + notional > cap:
        return blocked("daily_cap", "over_daily_cap",
                       f"€{used:.2f} spent today (in flight included) + €{notional:.2f} is over risk.max_daily_eur (€{cap})")
    return passed("daily_cap", f"€{used + notional:.2f} of €{cap} today")


def exposure(conn: sqlite3.Connection, exclude_id: int | None = None) -> Decimal:
    """EUR at cost in open positions, plus in-flight buys not yet filled."""
    total = sum((Decimal(r["cost_eur"]) for r in conn.execute("SELECT cost_eur FROM positions")), Decimal(0))
    for r in conn.execute(
        "SELECT id, notional_eur, filled_quote FROM trade_executions WHERE side = 'buy' AND state IN (%s)"
        % ",".join("?" * len(IN_FLIGHT)), IN_FLIGHT,
    ):
        if r["id"] != exclude_id:
            total += max(Decimal(r["notional_eur"] or 0) - Decimal(r["filled_quote"]), Decimal(0))
    return total


def exposure_cap(ctx: Context) -> Verdict:
    if ctx.side != "buy":
        return passed("exposure_cap", "sells reduce exposure")
    notional = ctx.notional_eur()
    if notional is None:
        return blocked("exposure_cap", "no_price", "no price to value the trade")
    used = exposure(ctx.conn, ctx.execution_id)
    cap = ctx.cfg.risk.max_exposure_eur
    if used + notional > cap:
        return blocked("exposure_cap", "over_exposure_cap",
                       f"€{used:.2f} exposed (in flight included) + €{notional:.2f} is over risk.max_exposure_eur (€{cap})")
    return passed("exposure_cap", f"€{used + notional:.2f} of €{cap}")


def market_open(ctx: Context) -> Verdict:
    if ctx.market is None:
        return blocked("market_open", "unknown_market", f"the exchange does not list {ctx.name}")
    if ctx.market.status != "trading":
        return blocked("market_open", "market_not_trading", f"{ctx.name} is {ctx.market.status}, not trading")
    return passed("market_open")


def exchange_minimum(ctx: Context) -> Verdict:
    if ctx.market is None:
        return blocked("exchange_minimum", "unknown_market", f"the exchange does not list {ctx.name}")
    notional = ctx.notional_eur()
    if notional is None:
        return blocked("exchange_minimum", "no_price", "no price to value the trade")
    if notional < ctx.market.min_quote:
        return blocked("exchange_minimum", "below_exchange_minimum",
                       f"€{notional:.2f} is below the exchange minimum of €{ctx.market.min_quote}")
    if ctx.proposal["amount"] is not None and Decimal(ctx.proposal["amount"]) < ctx.market.min_base:
        return blocked("exchange_minimum", "below_exchange_minimum",
                       f"{ctx.proposal['amount']} is below the minimum amount {ctx.market.min_base}")
    return passed("exchange_minimum")


def precision(ctx: Context) -> Verdict:
    if ctx.market is None:
        return blocked("precision", "unknown_market", f"the exchange does not list {ctx.name}")
    if ctx.proposal["amount_quote"] is not None:
        d, allowed = Decimal(ctx.proposal["amount_quote"]), ctx.market.notional_decimals
    else:
        d, allowed = Decimal(ctx.proposal["amount"]), ctx.market.quantity_decimals
    if -d.normalize().as_tuple().exponent > allowed:
        return blocked("precision", "bad_precision", f"{d} has more than {allowed} decimals for {ctx.name}")
    return passed("precision")


def balance(ctx: Context) -> Verdict:
    if ctx.balances is None:
        return blocked("balance", "no_balance", "could not read a fresh balance")
    if ctx.side == "buy":
        need = ctx.notional_eur()
        if need is None:
            return blocked("balance", "no_price", "no price to value the trade")
        if ctx.proposal["amount"] is not None:  # buy by base pays the fee on top
            need = need * (1 + Decimal("0.0025"))
        have = ctx.balances.get("EUR", Balance(Decimal(0), Decimal(0))).available
        asset = "EUR"
    else:
        asset = ctx.market.base if ctx.market else ctx.name.split("-")[0]
        have = ctx.balances.get(asset, Balance(Decimal(0), Decimal(0))).available
        if ctx.proposal["amount"] is not None:
            need = Decimal(ctx.proposal["amount"])
        else:
            if ctx.ticker is None:
                return blocked("balance", "no_price", "no price to value the trade")
            need = Decimal(ctx.proposal["amount_quote"]) / ctx.ticker.bid
    if have < need:
        return blocked("balance", "insufficient_balance", f"need {need:.8f} {asset}, have {have} available")
    return passed("balance", f"{have} {asset} available")


# Order matters only for the reason shown first; every guard is evaluated and recorded.
COMMIT_GUARDS = (
    kill_switch, approval, expiry, allowlist, market_open, cooldown, anti_flip,
    max_trade, daily_cap, exposure_cap, exchange_minimum, precision, balance,
)


def evaluate(ctx: Context) -> list[Verdict]:
    return [g(ctx) for g in COMMIT_GUARDS]


def record(conn: sqlite3.Connection, proposal_id: int, execution_id: int | None, stage: str,
           verdicts: list[Verdict], now: datetime) -> None:
    conn.executemany(
        "INSERT INTO guard_decisions (proposal_id, execution_id, stage, guard, verdict, reason_code, detail, decided_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(proposal_id, execution_id, stage, v.guard, "pass" if v.ok else "block", v.code, v.detail, clock.to_iso(now))
         for v in verdicts],
    )
