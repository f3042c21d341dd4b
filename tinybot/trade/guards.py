"""Guards: one small function per rule, each returning a verdict with a reason code; the lists the executor,
auto-approval and Telegram's pre-check evaluate, in their order; and the record of each decision.

The DB-state guards (kill switch, expiry, approval, cooldown, anti-flip, the
caps) are evaluated by the executor *inside* the ``BEGIN IMMEDIATE``
transaction that moves an execution to ``submitting``, and they count
in-flight executions (submitting/submitted/unknown), not only fills
(tinybot.trade.committed): two proposals racing cannot both see room under a cap
or both be first after a cooldown.  The exchange guards (minimum, precision,
balance) use what the preflight read from the exchange just before, with no
lock held.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from ..base import clock, sizing
from . import committed
from .book.steps import default_book
from ..base.config import MANUAL
from ..base.config import Config

if TYPE_CHECKING:  # types only: `tinybot kill` imports guards (through proposals) and never the exchange contract
    from ..exchange.base import Balance, Market, Ticker


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

    def spend_eur(self) -> Decimal | None:
        """What the caps count: for a buy the most it can spend (fee and slippage included), else its value."""
        if self.side != "buy":
            return self.notional_eur()
        return sizing.max_spend_eur(
            self.cfg,
            amount_quote=_dec(self.proposal["amount_quote"]),
            amount=_dec(self.proposal["amount"]),
            ask=self.ticker.ask if self.ticker is not None else None,
        )

    @property
    def external(self) -> bool:
        return "external" in self.proposal.keys() and bool(self.proposal["external"])

    @property
    def book(self) -> str:
        """The book this proposal trades (tinybot.trade.book): its own, or the one it names."""
        keys = self.proposal.keys()
        named = self.proposal["book"] if "book" in keys else None
        return named or default_book(self.proposal["source"], self.external)

    def selling(self) -> Decimal | None:
        """Base amount a sell takes away: its amount, or for a sell by EUR what the executor sends instead
        (sell_amount: EUR / bid, truncated to the market's decimals).  None without a price."""
        if self.proposal["amount"] is not None:
            return Decimal(self.proposal["amount"])
        if self.ticker is None:
            return None
        return sell_amount(Decimal(self.proposal["amount_quote"]), self.ticker.bid, self.market)


def _dec(v) -> Decimal | None:
    return None if v is None else Decimal(v)


def sell_amount(amount_quote: Decimal, bid: Decimal, market: Market | None) -> Decimal:
    """A sell sized in EUR, as the base amount the executor sends: EUR / bid, truncated to the market's decimals.

    Sent by EUR, Bitvavo would sell EUR / *fill price*: a price falling before the fill would sell more coins
    than the guards counted — past the book's position, or leaving dust behind (issue 20 item 8).
    """
    from ..base.fees import truncate

    return truncate(amount_quote / bid, market.quantity_decimals if market is not None else 8)


def approval_hash(proposal) -> str:
    """Fingerprint of what was approved; a changed row no longer matches it."""
    fields = (
        proposal["market"],
        proposal["side"],
        proposal["amount_quote"],
        proposal["amount"],
        proposal["expires_at"],
    )
    text = "|".join("" if f is None else str(f) for f in fields)
    if "external" in proposal.keys() and proposal["external"]:
        text += "|external"  # selling coins tinybot did not buy is part of what was approved
    if (
        "book" in proposal.keys()
        and proposal["book"]
        and proposal["book"]
        != default_book(proposal["source"], "external" in proposal.keys() and bool(proposal["external"]))
    ):
        text += f"|book={proposal['book']}"  # so is selling from another advisor's book
    return hashlib.sha256(text.encode()).hexdigest()


def allowed_books(cfg: Config, source: str, side: str) -> tuple[str, ...] | None:
    """The books a proposer may trade in (None: any).  An advisor buys into its own book and sells from it;
    ``rules`` sells from ``rules.sell_from``, ``exits`` from ``exits.books``; ``top_up`` buys into the book it
    frees; a person (CLI, Telegram) names any book."""
    own = default_book(source)
    if own == MANUAL:
        return None
    if source == "top_up":
        return None if side == "buy" else ()
    if source == "exits":
        return tuple(cfg.exits.books) if side == "sell" else ()
    if source == "rules" and side == "sell":
        return tuple(cfg.rules.sell_from)
    return (own,)


# --- the guards --------------------------------------------------------------


def book(ctx: Context) -> Verdict:
    """A proposal trades only a book its proposer may use (bot.toml decides which books an advisor sells from)."""
    if ctx.external:
        return passed("book", "external: coins outside every book")
    allowed = allowed_books(ctx.cfg, ctx.proposal["source"], ctx.side)
    if allowed is None or ctx.book in allowed:
        return passed("book", f"the {ctx.book} book")
    key = {"rules": "rules.sell_from", "exits": "exits.books"}.get(ctx.proposal["source"])
    return blocked(
        "book",
        "book_not_allowed",
        f"{ctx.proposal['source']} may not {ctx.side} in the {ctx.book} book"
        + (
            f" (it may: {', '.join(allowed) or 'none'}; {key} in bot.toml)"
            if key
            else f" (only in {', '.join(allowed) or 'none'})"
        ),
    )


def kill_switch(ctx: Context) -> Verdict:
    """The row and the kill file beside the database, both read inside the send transaction."""
    from .killswitch import kill_file_of, read_kill_file

    row = ctx.conn.execute("SELECT trading_enabled, reason FROM kill_switch WHERE id = 1").fetchone()
    if row is None or not row["trading_enabled"]:
        reason = row["reason"] if row else "kill switch row missing"
        return blocked("kill_switch", "kill_switch_on", f"trading is disabled: {reason}")
    killed = read_kill_file(kill_file_of(ctx.conn))
    if killed is not None:
        return blocked(
            "kill_switch",
            "kill_switch_on",
            f"trading is disabled by the kill file {killed['path']}: {killed['reason']}",
        )
    return passed("kill_switch")


def approval(ctx: Context) -> Verdict:
    p = ctx.proposal
    if p["status"] != "approved":
        return blocked("approval", "not_approved", f"proposal is {p['status']}, not approved")
    if p["approval_hash"] != approval_hash(p):
        return blocked(
            "approval",
            "changed_after_approval",
            "the proposal's market, side, amount or expiry changed after it was approved",
        )
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


def _protective_exit(ctx: Context) -> bool:
    """A sell by the exits advisor (stop-loss, take-profit, trailing stop): not held back by cooldown or anti-flip."""
    return ctx.side == "sell" and ctx.proposal["source"] == "exits"


def cooldown(ctx: Context) -> Verdict:
    window: timedelta = ctx.cfg.risk.cooldown
    if window <= timedelta(0):
        return passed("cooldown", "cooldown is off")
    if _protective_exit(ctx):
        return passed("cooldown", "exempt: protective exit")
    last = committed.latest_trade(ctx.conn, ctx.name, None, ctx.now - window, ctx.execution_id)
    if last is not None:
        until = clock.from_iso(last["submitting_at"]) + window
        return blocked(
            "cooldown",
            "cooldown_active",
            f"last trade on {ctx.name} was at {last['submitting_at']} (execution {last['id']});"
            f" cooldown ends {clock.to_iso(until)}",
        )
    return passed("cooldown")


def anti_flip(ctx: Context) -> Verdict:
    window: timedelta = ctx.cfg.risk.anti_flip
    if window <= timedelta(0):
        return passed("anti_flip", "anti-flip is off")
    if _protective_exit(ctx):
        return passed("anti_flip", "exempt: protective exit")
    opposite = "sell" if ctx.side == "buy" else "buy"
    last = committed.latest_trade(ctx.conn, ctx.name, opposite, ctx.now - window, ctx.execution_id)
    if last is not None:
        until = clock.from_iso(last["submitting_at"]) + window
        return blocked(
            "anti_flip",
            "anti_flip",
            f"a {opposite} on {ctx.name} at {last['submitting_at']} (execution {last['id']});"
            f" no {ctx.side} before {clock.to_iso(until)}",
        )
    return passed("anti_flip")


def max_trade(ctx: Context) -> Verdict:
    if ctx.side != "buy":
        return passed("max_trade", "sells are bounded by what is held")
    notional = ctx.spend_eur()
    if notional is None:
        return blocked("max_trade", "no_price", "no price to value the trade")
    cap = ctx.cfg.risk.max_trade_eur
    if notional > cap:
        return blocked(
            "max_trade", "over_max_trade", f"€{notional:.2f} (fee included) is over risk.max_trade_eur (€{cap})"
        )
    return passed("max_trade", f"€{notional:.2f} of €{cap} (fee included)")


def daily_cap(ctx: Context) -> Verdict:
    if ctx.side != "buy":
        return passed("daily_cap", "sells do not spend")
    notional = ctx.spend_eur()
    if notional is None:
        return blocked("daily_cap", "no_price", "no price to value the trade")
    used = committed.spent_today(ctx.conn, ctx.now, ctx.execution_id, ctx.cfg.tz)
    cap = ctx.cfg.risk.max_daily_eur
    if used + notional > cap:
        return blocked(
            "daily_cap",
            "over_daily_cap",
            f"€{used:.2f} spent today (in flight included) + €{notional:.2f} is over risk.max_daily_eur (€{cap})",
        )
    return passed("daily_cap", f"€{used + notional:.2f} of €{cap} today")


def exposure_cap(ctx: Context) -> Verdict:
    if ctx.side != "buy":
        return passed("exposure_cap", "sells reduce exposure")
    notional = ctx.spend_eur()
    if notional is None:
        return blocked("exposure_cap", "no_price", "no price to value the trade")
    used = committed.exposure(ctx.conn, ctx.execution_id)
    cap = ctx.cfg.risk.max_exposure_eur
    if used + notional > cap:
        return blocked(
            "exposure_cap",
            "over_exposure_cap",
            f"€{used:.2f} exposed (in flight included) + €{notional:.2f} is over risk.max_exposure_eur (€{cap})",
        )
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
        return blocked(
            "exchange_minimum",
            "below_exchange_minimum",
            f"€{notional:.2f} is below the exchange minimum of €{ctx.market.min_quote}",
        )
    if ctx.proposal["amount"] is not None and Decimal(ctx.proposal["amount"]) < ctx.market.min_base:
        return blocked(
            "exchange_minimum",
            "below_exchange_minimum",
            f"{ctx.proposal['amount']} is below the minimum amount {ctx.market.min_base}",
        )
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
    from ..exchange.base import Balance

    if ctx.balances is None:
        return blocked("balance", "no_balance", "could not read a fresh balance")
    if ctx.side == "buy":
        need = ctx.spend_eur()  # by base amount the fee (and live slippage) come on top
        if need is None:
            return blocked("balance", "no_price", "no price to value the trade")
        have = ctx.balances.get("EUR", Balance(Decimal(0), Decimal(0))).available
        asset = "EUR"
    else:
        asset = ctx.market.base if ctx.market else ctx.name.split("-")[0]
        have = ctx.balances.get(asset, Balance(Decimal(0), Decimal(0))).available
        need = ctx.selling()
        if need is None:
            return blocked("balance", "no_price", "no price to value the trade")
    if have < need:
        return blocked("balance", "insufficient_balance", f"need {need:.8f} {asset}, have {have} available")
    return passed("balance", f"{have} {asset} available")


def own_position(ctx: Context) -> Verdict:
    """A sell is bounded by its book's position, not by the exchange balance; an external one by the coins
    outside every book."""
    if ctx.side != "sell":
        return passed("own_position", "buys are bounded by the caps")
    if ctx.external:
        return outside_books(ctx)
    selling = ctx.selling()
    if selling is None:
        return blocked("own_position", "no_price", "no price to value the trade")
    from .ledger import position_base

    bid = ctx.ticker.bid if ctx.ticker is not None else None
    held = position_base(ctx.conn, ctx.name, ctx.book) - committed.selling_in_flight(
        ctx.conn, ctx.name, ctx.execution_id, bid, ctx.book
    )
    if selling > held:
        others = _other_books(ctx)
        return blocked(
            "own_position",
            "over_own_position",
            f"selling {selling:.8f} but the {ctx.book} book's {ctx.name} position is {held:.8f}"
            " (sells in flight deducted)"
            + (f"; other books: {others}" if others else "")
            + "; to sell coins tinybot did not buy, propose it with --external",
        )
    return passed("own_position", f"{selling:.8f} of {held:.8f} in the {ctx.book} book")


def _other_books(ctx: Context) -> str:
    from .ledger import book_positions

    return ", ".join(
        f"{r['book']} {r['base']}"
        for r in book_positions(ctx.conn, ctx.name)
        if r["book"] != ctx.book and Decimal(r["base"]) > 0
    )


def outside_books(ctx: Context) -> Verdict:
    """An --external sell sells coins tinybot did not buy: at most the balance minus every book's position,
    minus the sells in flight (tinybot's and other external ones): never tinybot's own coins (issue 20 item 6)."""
    from ..exchange.base import Balance
    from .ledger import position_base

    selling = ctx.selling()
    if selling is None:
        return blocked("own_position", "no_price", "no price to value the trade")
    if ctx.balances is None:
        return blocked("own_position", "no_balance", "could not read a fresh balance")
    asset = ctx.market.base if ctx.market else ctx.name.split("-")[0]
    have = ctx.balances.get(asset, Balance(Decimal(0), Decimal(0))).available
    bid = ctx.ticker.bid if ctx.ticker is not None else None
    own = position_base(ctx.conn, ctx.name)
    flight = committed.selling_in_flight(ctx.conn, ctx.name, ctx.execution_id, bid) + committed.selling_in_flight(
        ctx.conn, ctx.name, ctx.execution_id, bid, external=True
    )
    room = have - own - flight
    if selling > room:
        return blocked(
            "own_position",
            "over_outside_books",
            f"selling {selling:.8f} {asset} as external, but only {max(room, Decimal(0)):.8f} is outside tinybot's"
            f" books ({have} available − {own} in its books − {flight} in sells in flight): an external sell"
            " never sells tinybot's own coins; sell those from their book (--book)",
        )
    return passed("own_position", f"external: {selling:.8f} of {room:.8f} outside tinybot's books")


def sellable_after(ctx: Context) -> Verdict:
    """A buy must leave the position sellable: worth the minimum plus risk.sellable_margin at the bid."""
    if ctx.side != "buy":
        return passed("sellable_after", "only buys can strand a position")
    if ctx.ticker is None:
        return blocked("sellable_after", "no_price", "no price to value the trade")
    from .ledger import position_base

    minimum = ctx.market.min_quote if ctx.market is not None else sizing.EXCHANGE_MINIMUM_EUR
    held = position_base(ctx.conn, ctx.name, ctx.book)
    base = held + sizing.bought_base(
        ctx.cfg,
        amount_quote=_dec(ctx.proposal["amount_quote"]),
        amount=_dec(ctx.proposal["amount"]),
        ask=ctx.ticker.ask,
    )
    value, need = base * ctx.ticker.bid, sizing.min_sellable_eur(ctx.cfg, minimum)
    if value < need:
        return blocked(
            "sellable_after",
            "would_strand",
            f"after this buy the {ctx.book} book's {ctx.name} position would be worth €{value:.2f} at the bid, under"
            f" €{need:.2f} (the €{minimum} minimum + risk.sellable_margin): it could not be sold again;"
            f" buy at least €{sizing.top_up_eur(ctx.cfg, held, ctx.ticker.bid, ctx.ticker.ask, minimum)}",
        )
    return passed("sellable_after", f"€{value:.2f} at the bid after the buy (≥ €{need:.2f})")


def no_dust(ctx: Context) -> Verdict:
    """A sell must not leave less than the exchange minimum behind: nobody could sell that rest."""
    if ctx.side != "sell" or ctx.external:
        return passed("no_dust", "buys and external sells leave no dust of tinybot's")
    selling = ctx.selling()
    if selling is None:
        return blocked("no_dust", "no_price", "no price to value the trade")
    from .ledger import position_base

    if ctx.ticker is None:
        return blocked("no_dust", "no_price", "no price to value what the sell leaves behind")
    # what stays in the book once this sell *and* its sells still in flight have filled
    held = position_base(ctx.conn, ctx.name, ctx.book) - committed.selling_in_flight(
        ctx.conn, ctx.name, ctx.execution_id, ctx.ticker.bid, ctx.book
    )
    rest = held - selling
    minimum = ctx.market.min_quote if ctx.market is not None else sizing.EXCHANGE_MINIMUM_EUR
    if rest > 0 and rest * ctx.ticker.bid < minimum:
        return blocked(
            "no_dust",
            "would_leave_dust",
            f"selling {selling:.8f} of the {ctx.book} book's {held:.8f} leaves {rest:.8f} {ctx.name.split('-')[0]}"
            f" (€{rest * ctx.ticker.bid:.2f}) behind, under the €{minimum} minimum: it could never be"
            f" sold; sell all ({held}) or less",
        )
    return passed("no_dust")


# Order matters only for the reason shown first; every guard is evaluated and recorded.
COMMIT_GUARDS = (
    kill_switch,
    approval,
    expiry,
    allowlist,
    market_open,
    cooldown,
    anti_flip,
    max_trade,
    daily_cap,
    exposure_cap,
    exchange_minimum,
    precision,
    balance,
    book,
    own_position,
    sellable_after,
    no_dust,
)


def evaluate(ctx: Context) -> list[Verdict]:
    return [g(ctx) for g in COMMIT_GUARDS]


# A proposal before it has an execution (Telegram shows this beside its buttons): what the database alone can
# judge, and, when a price is at hand, the two guards that need one.  Balance, minimum and precision wait for send.
PRECHECK_GUARDS = (
    kill_switch,
    expiry,
    allowlist,
    cooldown,
    anti_flip,
    max_trade,
    daily_cap,
    exposure_cap,
    own_position,
)
PRICED_PRECHECK_GUARDS = (sellable_after, no_dust)


# `[scheduler] approval = "auto"` approves a fresh proposal only if it fits these now (the rest wait for send).
AUTO_APPROVAL_GUARDS = (allowlist, max_trade, daily_cap, exposure_cap)


def auto_approval(ctx: Context) -> list[Verdict]:
    """What auto-approval asks of a proposal before approving it (recorded when one says no)."""
    return [g(ctx) for g in AUTO_APPROVAL_GUARDS]


def precheck(conn: sqlite3.Connection, cfg: Config, proposal, ticker: Ticker | None, now: datetime) -> list[Verdict]:
    """What the guards would say now about a proposal that has no execution (nothing recorded)."""
    ctx = Context(conn, cfg, now, proposal, None, None, ticker, None)
    return [g(ctx) for g in PRECHECK_GUARDS + (PRICED_PRECHECK_GUARDS if ticker is not None else ())]


def record(
    conn: sqlite3.Connection,
    proposal_id: int,
    execution_id: int | None,
    stage: str,
    verdicts: list[Verdict],
    now: datetime,
) -> None:
    conn.executemany(
        "INSERT INTO guard_decisions (proposal_id, execution_id, stage, guard, verdict, reason_code, detail, decided_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                proposal_id,
                execution_id,
                stage,
                v.guard,
                "pass" if v.ok else "block",
                v.code,
                v.detail,
                clock.to_iso(now),
            )
            for v in verdicts
        ],
    )
