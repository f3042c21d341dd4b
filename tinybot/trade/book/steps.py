"""The book's walk: one fill, one average-cost step, per advisor's book; periods and the LLM's cost."""

from __future__ import annotations
import sqlite3
from dataclasses import field, replace
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Iterable, Mapping

from ...base import clock
from ...base.config import EXTERNAL, MANUAL
from ...base.record import MutableRecord, Record, mutable_record, record


EUR_PLACES = Decimal("0.00000001")  # every EUR figure of a book, stored or computed, to 8 decimals


ZERO = Decimal(0)


MANUAL_SOURCES = ("cli", "telegram")  # a person proposed it


# A sell larger than its book (only fills from before books existed, or coins no book recorded) takes the
# rest from the market's other books in this order, then the others by name, dca (the long-run holding) last.
SPILL_FIRST = (EXTERNAL, MANUAL, "rules", "llm")


SPILL_LAST = ("dca",)


def q(d: Decimal) -> Decimal:
    """A EUR figure at the book's precision (EUR_PLACES, half-even)."""
    return d.quantize(EUR_PLACES, rounding=ROUND_HALF_EVEN)


def default_book(source: str, external: bool = False) -> str:
    """The book a proposal trades unless it names another: its advisor's; a person's is ``manual``."""
    if external:
        return EXTERNAL
    if source in MANUAL_SOURCES:
        return MANUAL
    return source


def spill_order(books: Iterable[str]) -> list[str]:
    names = set(books)
    first = [b for b in SPILL_FIRST if b in names]
    last = [b for b in SPILL_LAST if b in names]
    return first + sorted(names - set(first) - set(last)) + last


@record
class Fill(Record):
    """A fill as the book reads it (``trade_history``)."""

    market: str
    side: str
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    at: str  # ISO UTC (tinybot.base.clock), the exchange's time of the fill
    book: str = MANUAL
    external: bool = False  # an `--external` sell: coins outside every book, not tinybot's P/L
    id: int | None = None
    trade_id: str = ""
    order_id: str = ""
    execution_id: int | None = None

    @classmethod
    def from_row(cls, r) -> "Fill":
        keys = r.keys()
        external = bool(r["external"]) if "external" in keys else False
        book = r["book"] if "book" in keys and r["book"] else (EXTERNAL if external else MANUAL)
        return cls(
            r["market"],
            r["side"],
            Decimal(r["amount"]),
            Decimal(r["price"]),
            Decimal(r["fee"]),
            r["fee_currency"],
            r["executed_at"],
            book,
            external,
            r["id"] if "id" in keys else None,
            r["trade_id"] if "trade_id" in keys else "",
            r["order_id"] if "order_id" in keys else "",
            r["execution_id"] if "execution_id" in keys else None,
        )

    @property
    def asset(self) -> str:
        return self.market.split("-")[0]

    @property
    def when(self) -> datetime:
        return clock.from_iso(self.at)

    @property
    def quote(self) -> Decimal:
        """amount × price, exact."""
        return self.amount * self.price

    @property
    def fee_in_coin(self) -> Decimal:
        return self.fee if self.fee_currency == self.asset else ZERO

    @property
    def fee_in_eur(self) -> Decimal:
        return self.fee if self.fee_currency == "EUR" else ZERO

    @property
    def fee_eur(self) -> Decimal:
        """The fee's value in EUR: as charged, or a fee in the coin at the fill's price (a third currency: 0)."""
        return q(self.fee_in_eur + self.fee_in_coin * self.price)

    @property
    def eur(self) -> Decimal:
        """EUR that left the account (buy) or reached it (sell), the fee included when paid in EUR."""
        return self.quote + self.fee_in_eur if self.side == "buy" else self.quote - self.fee_in_eur

    @property
    def moves(self) -> dict[str, Decimal]:
        """What the fill moved on the account, per asset (Bitvavo settles quote ± fee)."""
        sign = 1 if self.side == "buy" else -1
        return {self.asset: sign * self.amount - self.fee_in_coin, "EUR": -sign * self.quote - self.fee_in_eur}


@record
class Position(Record):
    """One book's holding in one market, at average cost."""

    base: Decimal = ZERO
    cost_eur: Decimal = ZERO
    realised_eur: Decimal = ZERO
    fees_eur: Decimal = ZERO
    fills: int = 0
    last_buy_at: str | None = None

    def value(self, bid: Decimal) -> Decimal:
        return self.base * bid

    def unrealised(self, bid: Decimal) -> Decimal:
        return self.base * bid - self.cost_eur

    def __add__(self, other: "Position") -> "Position":
        last = max((t for t in (self.last_buy_at, other.last_buy_at) if t), default=None)
        return Position(
            self.base + other.base,
            self.cost_eur + other.cost_eur,
            self.realised_eur + other.realised_eur,
            self.fees_eur + other.fees_eur,
            self.fills + other.fills,
            last,
        )


EMPTY = Position()


def _take(pos: Position, coins: Decimal, proceeds: Decimal, fee: Decimal) -> tuple[Position, Decimal]:
    """``coins`` (at most pos.base) leave the book for ``proceeds`` EUR: its share of the cost goes with them."""
    if coins >= pos.base:
        removed, base = pos.cost_eur, ZERO
    else:
        removed, base = q(pos.cost_eur * coins / pos.base), pos.base - coins
    realised = q(proceeds - removed)
    cost = pos.cost_eur - removed if base > 0 else ZERO
    return replace(
        pos, base=base, cost_eur=cost, realised_eur=pos.realised_eur + realised, fees_eur=pos.fees_eur + fee
    ), realised


def _shares(total: Decimal, parts: list[Decimal], whole: Decimal) -> list[Decimal]:
    """``total`` split in proportion to ``parts`` (of ``whole``), each at EUR_PLACES, summing to ``total`` exactly."""
    out = [q(total * p / whole) for p in parts[:-1]]
    return out + [total - sum(out, ZERO)]


def apply(books: dict[str, Position], fill: Fill) -> dict[str, Decimal]:
    """The average-cost step: move one market's ``books`` (book → Position, changed in place) by ``fill``.

    Returns what the fill realised, per book.  An ``external`` fill moves no book.
    """
    if fill.external:
        return {}
    own = books.get(fill.book, EMPTY)
    fee = fill.fee_eur
    if fill.side == "buy":
        books[fill.book] = Position(
            own.base + fill.amount - fill.fee_in_coin,
            own.cost_eur + q(fill.quote + fill.fee_in_eur),
            own.realised_eur,
            own.fees_eur + fee,
            own.fills + 1,
            fill.at,
        )
        return {}
    leaving = fill.amount + fill.fee_in_coin  # a fee in the coin leaves the book too
    proceeds = fill.quote - fill.fee_in_eur
    parts: list[tuple[str, Decimal]] = []
    rest = leaving
    for name in [fill.book] + [b for b in spill_order(books) if b != fill.book]:
        held = books.get(name, EMPTY).base
        if rest <= 0 or held <= 0:
            continue
        take = min(held, rest)
        parts.append((name, take))
        rest -= take
    if rest > 0 or not parts:  # coins no book held: realised at no cost in the selling book
        parts.append((fill.book, rest))
    amounts = [c for _, c in parts]
    whole = sum(amounts, ZERO) or Decimal(1)
    realised: dict[str, Decimal] = {}
    for (name, coins), eur_share, fee_share in zip(
        parts, _shares(proceeds, amounts, whole), _shares(fee, amounts, whole)
    ):
        pos = books.get(name, EMPTY)
        if coins <= pos.base:
            pos, r = _take(pos, coins, eur_share, fee_share)
        else:  # the uncovered rest
            r = q(eur_share)
            pos = replace(pos, realised_eur=pos.realised_eur + r, fees_eur=pos.fees_eur + fee_share)
        books[name] = pos
        realised[name] = realised.get(name, ZERO) + r
    books[fill.book] = replace(books.get(fill.book, EMPTY), fills=books.get(fill.book, EMPTY).fills + 1)
    return realised


@record
class Step(Record):
    """One fill as the walk booked it."""

    fill: Fill
    realised: Mapping[str, Decimal]  # per book (more than one only when a sell was bigger than its book)

    @property
    def realised_eur(self) -> Decimal:
        return sum(self.realised.values(), ZERO)


@record
class Period(Record):
    """What the fills of a period did (``Walk.period``)."""

    realised_eur: Decimal
    fees_eur: Decimal
    fills: int
    buys: int
    sells: int


@mutable_record
class Walk(MutableRecord):
    """Every fill up to a moment, booked in order."""

    books: dict[str, dict[str, Position]] = field(default_factory=dict)  # market → book → Position
    delta: dict[str, Decimal] = field(default_factory=dict)  # asset → what the fills moved on the account
    external_eur: Decimal = ZERO  # proceeds of external sells, net of their fee: not tinybot's P/L
    steps: list[Step] = field(default_factory=list)

    def add(self, fill: Fill) -> Step:
        for asset, d in fill.moves.items():
            self.delta[asset] = self.delta.get(asset, ZERO) + d
        if fill.external:
            self.external_eur += fill.eur if fill.side == "sell" else -fill.eur
            step = Step(fill, {})
        else:
            step = Step(fill, apply(self.books.setdefault(fill.market, {}), fill))
        self.steps.append(step)
        return step

    def market(self, market: str) -> Position:
        """The market's position: the sum of its books."""
        return sum(self.books.get(market, {}).values(), EMPTY)

    def markets(self) -> list[str]:
        return sorted(self.books)

    def lines(self) -> list[tuple[str, str, Position]]:
        """(book, market, Position) for every book that ever held or traded, by book then market."""
        return sorted(((b, m, p) for m, bs in self.books.items() for b, p in bs.items()), key=lambda x: x[:2])

    def book_totals(self) -> dict[str, Position]:
        out: dict[str, Position] = {}
        for b, _, p in self.lines():
            out[b] = out.get(b, EMPTY) + p
        return out

    def period(self, since: str | None = None, until: str | None = None) -> Period:
        """The fills after ``since`` up to ``until`` (ISO; None = open): realised, fees (coin fees valued), counts."""
        chosen = [
            s
            for s in self.steps
            if not s.fill.external and (since is None or s.fill.at > since) and (until is None or s.fill.at <= until)
        ]
        return Period(
            sum((s.realised_eur for s in chosen), ZERO),
            sum((s.fill.fee_eur for s in chosen), ZERO),
            len(chosen),
            sum(1 for s in chosen if s.fill.side == "buy"),
            sum(1 for s in chosen if s.fill.side == "sell"),
        )


def fills(conn: sqlite3.Connection, *, until: str | None = None, market: str | None = None) -> list[Fill]:
    """The fills in the book's order (executed_at, then the order they were recorded)."""
    sql, args = "SELECT * FROM trade_history WHERE 1 = 1", []
    if until is not None:
        sql += " AND executed_at <= ?"
        args.append(until)
    if market is not None:
        sql += " AND market = ?"
        args.append(market)
    return [Fill.from_row(r) for r in conn.execute(sql + " ORDER BY executed_at, id", args)]


def walk_fills(items: Iterable[Fill]) -> Walk:
    w = Walk()
    for f in items:
        w.add(f)
    return w


def walk(conn: sqlite3.Connection, *, until: str | None = None, market: str | None = None) -> Walk:
    """Every fill up to ``until`` (ISO, inclusive; None = all), of one market or all, booked in order."""
    return walk_fills(fills(conn, until=until, market=market))


LIVE_LLM = "llm"  # gpt_usage_log.book of the live llm advisor's calls; a shadow's is "shadow:llm"


def llm_costs(conn: sqlite3.Connection, *, until: str | None = None, book: str = LIVE_LLM) -> list[tuple[str, Decimal]]:
    """(when, EUR) of every settled LLM call charged to ``book``, in time order (when = settled, else reserved)."""
    sql = (
        "SELECT COALESCE(settled_at, reserved_at) AS at, cost_eur FROM gpt_usage_log"
        " WHERE cost_eur IS NOT NULL AND book = ?"
    )
    args: list = [book]
    if until is not None:
        sql += " AND COALESCE(settled_at, reserved_at) <= ?"
        args.append(until)
    return [(r["at"], Decimal(r["cost_eur"])) for r in conn.execute(sql + " ORDER BY at, id", args)]


def llm_cost(conn: sqlite3.Connection, *, since: str | None = None, until: str | None = None) -> Decimal:
    """What the LLM cost after ``since`` up to ``until`` (ISO; None = open)."""
    return sum((c for at, c in llm_costs(conn, until=until) if since is None or at > since), ZERO)


PERIODS = ("daily", "weekly", "monthly")


def period_key(at: datetime, period: str, tz=None) -> str:
    """The day ('2026-11-27'), ISO week ('2026-W48') or month ('2026-11') of ``at`` (in ``tz``; None = UTC)."""
    local = at.astimezone(tz) if tz is not None else at
    if period == "daily":
        return local.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return local.strftime("%Y-%m")


@mutable_record
class Bucket(MutableRecord):
    """One period's figures (daily, weekly, monthly) of `tinybot pnl --by`."""

    realised_eur: Decimal = ZERO
    fees_eur: Decimal = ZERO
    llm_cost_eur: Decimal = ZERO
    fills: int = 0
    external_eur: Decimal = ZERO


def buckets(w: Walk, costs: list[tuple[str, Decimal]], period: str, tz=None) -> dict[str, Bucket]:
    """Realised P/L, fees, LLM cost and fills per period."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    out: dict[str, Bucket] = {}
    for s in w.steps:
        b = out.setdefault(period_key(s.fill.when, period, tz), Bucket())
        if s.fill.external:
            b.external_eur += s.fill.eur if s.fill.side == "sell" else -s.fill.eur
            continue
        b.realised_eur += s.realised_eur
        b.fees_eur += s.fill.fee_eur
        b.fills += 1
    for at, c in costs:
        out.setdefault(period_key(clock.from_iso(at), period, tz), Bucket()).llm_cost_eur += c
    return dict(sorted(out.items()))
