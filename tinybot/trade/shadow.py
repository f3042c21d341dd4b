"""Shadow advisors' virtual books: their proposals, filled on paper at the next tick's price, under the live caps.

A shadow advisor (``[scoreboard] shadow`` in bot.toml) proposes like a live
one, but its proposals go to ``shadow_proposals``, never to ``proposals``:
nothing here approves, executes, counts in the live caps or notifies, and this
module imports no exchange client (it cannot reach the trade key).  The next
tick fills each pending proposal on paper at that tick's price — a buy at the
ask, a sell at the bid — by ``fees.settle`` with the configured fee rate, into
the shadow's own book (``shadow_fills``, read by the book's one step,
``tinybot.trade.book``).  The book starts with the live bot's starting money
and obeys the same rules as the live bot, counted on the shadow's own book:
the allowlist, ``risk.max_trade_eur``, ``risk.max_daily_eur``,
``risk.max_exposure_eur``, the cooldown and anti-flip windows (a protective
exit is exempt), the €5 minimum (``sizing.EXCHANGE_MINIMUM_EUR``), the EUR it
has and, for a sell, its own position.  A proposal those refuse is ``blocked``
with the guard's reason code, as ``tinybot why`` would show it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Mapping

from ..base import clock, fees, sizing
from ..store import db
from .book.steps import EMPTY, Fill, Position, Walk, ZERO, walk_fills
from .guards import Verdict, blocked, passed
from .proposals import Draft

SHADOW_LLM = "shadow:llm"  # gpt_usage_log.book of the shadow llm's calls (the live one's is "llm")


@dataclass(frozen=True)
class Pending:
    """A shadow proposal waiting for the next tick's price."""

    id: int
    advisor: str
    created_at: datetime
    market: str
    side: str
    amount_quote: Decimal | None
    amount: Decimal | None
    reason: str

    @classmethod
    def from_row(cls, r) -> "Pending":
        return cls(
            r["id"],
            r["advisor"],
            clock.from_iso(r["created_at"]),
            r["market"],
            r["side"],
            None if r["amount_quote"] is None else Decimal(r["amount_quote"]),
            None if r["amount"] is None else Decimal(r["amount"]),
            r["reason"],
        )


@dataclass
class VirtualBook:
    """One shadow's book: the money it started with, its fills walked by the book's step, what waits."""

    advisor: str
    started_at: datetime
    capital_eur: Decimal
    walk: Walk
    pending: list[Pending]

    @property
    def cash_eur(self) -> Decimal:
        return self.capital_eur + self.walk.delta.get("EUR", ZERO)

    def position(self, market: str) -> Position:
        return self.walk.books.get(market, {}).get(self.advisor, EMPTY)

    def positions(self) -> dict[str, Position]:
        return {m: bs[self.advisor] for m, bs in self.walk.books.items() if bs.get(self.advisor, EMPTY).base > 0}

    def held(self) -> dict[str, Decimal]:
        """Per asset what the book holds: EUR and coins, as the account would show them."""
        out = {"EUR": self.cash_eur}
        for m, p in self.positions().items():
            out[m.split("-")[0]] = p.base
        return out

    def spent_since(self, start: datetime) -> Decimal:
        return sum((s.fill.eur for s in self.walk.steps if s.fill.side == "buy" and s.fill.when >= start), ZERO)

    def last_fill(self, market: str, side: str | None, since: datetime) -> Fill | None:
        found = [
            s.fill
            for s in self.walk.steps
            if s.fill.market == market and s.fill.when > since and (side is None or s.fill.side == side)
        ]
        return found[-1] if found else None


def fills(conn: sqlite3.Connection, *, book: str | None = None, until: str | None = None) -> list[Fill]:
    """The shadows' paper fills as the book reads fills (of one shadow, or all), in order."""
    sql, args = "SELECT * FROM shadow_fills WHERE 1 = 1", []
    if book is not None:
        sql += " AND book = ?"
        args.append(book)
    if until is not None:
        sql += " AND executed_at <= ?"
        args.append(until)
    return [Fill.from_row(r) for r in conn.execute(sql + " ORDER BY executed_at, id", args)]


def started(conn: sqlite3.Connection) -> dict[str, tuple[datetime, Decimal]]:
    """advisor → (when its shadow book opened, the EUR it started with)."""
    return {
        r["advisor"]: (clock.from_iso(r["started_at"]), Decimal(r["capital_eur"]))
        for r in conn.execute("SELECT * FROM shadow_books ORDER BY advisor")
    }


def open_book(conn: sqlite3.Connection, advisor: str, capital_eur: Decimal, now: datetime) -> None:
    """The shadow's book, opened once with ``capital_eur`` (the live bot's starting money)."""
    with db.transaction(conn):
        conn.execute(
            "INSERT OR IGNORE INTO shadow_books (advisor, started_at, capital_eur) VALUES (?, ?, ?)",
            (advisor, clock.to_iso(now), str(capital_eur)),
        )


def load(conn: sqlite3.Connection, advisor: str) -> VirtualBook | None:
    row = conn.execute("SELECT * FROM shadow_books WHERE advisor = ?", (advisor,)).fetchone()
    if row is None:
        return None
    pending = [
        Pending.from_row(r)
        for r in conn.execute(
            "SELECT * FROM shadow_proposals WHERE advisor = ? AND state = 'pending' ORDER BY id", (advisor,)
        )
    ]
    return VirtualBook(
        advisor,
        clock.from_iso(row["started_at"]),
        Decimal(row["capital_eur"]),
        walk_fills(fills(conn, book=advisor)),
        pending,
    )


def record(conn: sqlite3.Connection, advisor: str, drafts: list[Draft], now: datetime) -> list[int]:
    """The shadow's drafts of this tick, pending until the next tick's price."""
    ids = []
    with db.transaction(conn):
        for d in drafts:
            cur = conn.execute(
                "INSERT INTO shadow_proposals (advisor, created_at, market, side, amount_quote, amount, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    advisor,
                    clock.to_iso(now),
                    d.market,
                    d.side,
                    None if d.amount_quote is None else str(d.amount_quote),
                    None if d.amount is None else str(d.amount),
                    d.reason,
                ),
            )
            ids.append(cur.lastrowid)
    return ids


# --- the guards, on the shadow's own book -------------------------------------------------------------------------


def spend(cfg, p: Pending, ask: Decimal) -> Decimal:
    """What the caps count for a shadow buy (sizing.max_spend_eur, as live)."""
    return sizing.max_spend_eur(cfg, amount_quote=p.amount_quote, amount=p.amount, ask=ask)


def _caps(cfg, book: VirtualBook, p: Pending, tickers, now: datetime) -> list[Verdict]:
    if p.side != "buy":
        return [passed("max_trade"), passed("daily_cap"), passed("exposure_cap")]
    r = cfg.risk
    # filled in order: every earlier proposal of the book is already booked (or blocked), none is in flight
    eur = spend(cfg, p, tickers[p.market].ask)
    today = book.spent_since(clock.day_start(now, cfg.tz))
    exposed = sum((x.cost_eur for x in book.positions().values()), ZERO)
    return [
        passed("max_trade")
        if eur <= r.max_trade_eur
        else blocked("max_trade", "over_max_trade", f"€{eur:.2f} is over risk.max_trade_eur (€{r.max_trade_eur})"),
        passed("daily_cap")
        if today + eur <= r.max_daily_eur
        else blocked("daily_cap", "over_daily_cap", f"€{today:.2f} + €{eur:.2f} is over risk.max_daily_eur"),
        passed("exposure_cap")
        if exposed + eur <= r.max_exposure_eur
        else blocked("exposure_cap", "over_exposure_cap", f"€{exposed:.2f} + €{eur:.2f} is over max_exposure_eur"),
    ]


def _windows(cfg, book: VirtualBook, p: Pending, now: datetime) -> list[Verdict]:
    if p.side == "sell" and p.advisor == "exits":  # a protective exit, as live
        return [passed("cooldown", "exempt: protective exit"), passed("anti_flip", "exempt: protective exit")]
    out = []
    for name, code, window, side in (
        ("cooldown", "cooldown_active", cfg.risk.cooldown, None),
        ("anti_flip", "anti_flip", cfg.risk.anti_flip, "sell" if p.side == "buy" else "buy"),
    ):
        last = book.last_fill(p.market, side, now - window) if window.total_seconds() > 0 else None
        out.append(passed(name) if last is None else blocked(name, code, f"a {last.side} on {p.market} at {last.at}"))
    return out


def _settle(cfg, p: Pending, price: Decimal, decimals: int) -> fees.Settlement:
    return fees.settle(p.side, price, decimals, amount=p.amount, amount_quote=p.amount_quote, rate=sizing.fee_rate(cfg))


def verdicts(cfg, book: VirtualBook, p: Pending, tickers, markets, now: datetime) -> list[Verdict]:
    """The live bot's rules for one shadow proposal, counted on the shadow's own book, at this tick's prices."""
    if p.market not in cfg.risk.allowlist:
        return [blocked("allowlist", "not_allowlisted", f"{p.market} is not in risk.allowlist")]
    t, m = tickers.get(p.market), markets.get(p.market)
    if t is None or m is None:
        return [blocked("exchange_minimum", "no_price", f"no price for {p.market} this tick")]
    out = [passed("allowlist"), *_caps(cfg, book, p, tickers, now), *_windows(cfg, book, p, now)]
    s = _settle(cfg, p, t.ask if p.side == "buy" else t.bid, m.quantity_decimals)
    out.append(
        passed("exchange_minimum")
        if s.quote >= sizing.EXCHANGE_MINIMUM_EUR
        else blocked("exchange_minimum", "below_exchange_minimum", f"€{s.quote:.2f} is below €5")
    )
    if p.side == "buy":
        ok = s.eur <= book.cash_eur
        out.append(
            passed("balance")
            if ok
            else blocked("balance", "insufficient_balance", f"need €{s.eur:.2f}, have €{book.cash_eur:.2f}")
        )
    else:
        held = book.position(p.market).base
        out.append(
            passed("own_position")
            if s.base <= held
            else blocked("own_position", "over_own_position", f"selling {s.base} but the book holds {held}")
        )
    return out


@dataclass(frozen=True)
class Outcome:
    proposal: Pending
    state: str  # filled | blocked
    detail: str


def fill_pending(conn: sqlite3.Connection, cfg, tickers: Mapping, markets: Mapping, now: datetime) -> list[Outcome]:
    """Fill every waiting shadow proposal at this tick's prices (or block it, saying which rule), in order."""
    out = []
    for advisor in sorted(started(conn)):
        book = load(conn, advisor)
        for p in list(book.pending):
            out.append(_fill_one(conn, cfg, book, p, tickers, markets, now))
            book = load(conn, advisor)
    return out


def _fill_one(conn, cfg, book: VirtualBook, p: Pending, tickers, markets, now: datetime) -> Outcome:
    vs = verdicts(cfg, book, p, tickers, markets, now)
    bad = [v for v in vs if not v.ok]
    at = clock.to_iso(now)
    with db.transaction(conn):
        if bad:
            detail = "; ".join(f"{v.code}: {v.detail}" for v in bad)
            conn.execute(
                "UPDATE shadow_proposals SET state = 'blocked', decided_at = ?, detail = ? WHERE id = ?",
                (at, detail, p.id),
            )
            return Outcome(p, "blocked", detail)
        t = tickers[p.market]
        price = t.ask if p.side == "buy" else t.bid
        s = _settle(cfg, p, price, markets[p.market].quantity_decimals)
        conn.execute(
            "INSERT INTO shadow_fills (proposal_id, book, market, side, amount, price, fee, fee_currency, executed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'EUR', ?)",
            (p.id, p.advisor, p.market, p.side, str(s.base), str(price), str(s.fee), at),
        )
        detail = f"{s.base} @ {price} fee €{s.fee:.2f}"
        conn.execute(
            "UPDATE shadow_proposals SET state = 'filled', decided_at = ?, detail = ? WHERE id = ?", (at, detail, p.id)
        )
    return Outcome(p, "filled", detail)
