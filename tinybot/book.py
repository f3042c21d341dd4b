"""The book: one walk over the fills, in order — every money figure tinybot shows is computed here.

A fill belongs to one *book*, named after the advisor whose proposal made it
(``dca``, ``rules``, ``llm``, a custom advisor's name; ``manual`` for the
CLI and Telegram; ``external`` for orders no proposal accounts for and for
``--external`` sells).  Each book keeps, per market, its own position at
average cost; the market's position is the sum of its books.

API (the names below are stable; new ones are added, none renamed):

* The step.  ``Fill`` (one ``trade_history`` row: ``Fill.from_row``;
  ``.quote``, ``.fee_eur`` — a fee in the coin valued at the fill's price —
  ``.moves`` — what it moved on the account, per asset) and ``Position``
  (``base``, ``cost_eur``, ``realised_eur``, ``fees_eur``, ``fills``,
  ``last_buy_at``; ``.value(bid)``, ``.unrealised(bid)``).
  ``apply(books, fill)`` is the average-cost step on one market's books
  (book → Position): a buy adds its EUR and fee to the cost; a sell takes
  its share of the cost and realises the difference, fee included.  EUR
  figures are kept to ``EUR_PLACES`` (8 decimals) at every step, so a stored
  position and a recomputed one agree digit for digit.
* The walk.  ``walk(conn, until=, market=)`` → ``Walk``: ``.books``
  (market → book → Position), ``.delta`` (asset → what every fill moved on
  the account), ``.external_eur``, ``.steps`` (each fill with what it
  realised per book), ``.market(m)``, ``.book_totals()``, ``.period(since,
  until)`` → ``Period`` (realised, fees, fills, buys, sells).
  ``walk_fills(fills)`` is the same over ``Fill`` objects; ``fills(conn,
  until=, market=)`` reads them.  ``buckets(walk, llm_costs, period, tz)``
  → period key → ``Bucket`` (realised, fees, LLM, fills) for ``daily``,
  ``weekly``, ``monthly`` (``period_key``).
* Costs.  ``llm_costs(conn, until=)`` → [(at, EUR)]; ``llm_cost(conn,
  since=, until=)``.
* Prices.  ``Price``; ``last_prices(conn, cfg)`` (the last tick, or fixed
  paper prices); ``PriceHistory(conn)`` (``price_log`` and the fills:
  ``.at(market, when)``, ``.as_of(when)``); ``prices_as_of(conn, cfg,
  until)`` — the one choice of prices the table and the chart both use.
* The start.  ``start(conn, cfg)`` → ``Start(at, capital_eur)``: the money
  tinybot had when it started (paper: ``[paper] starting_eur``; live: the
  EUR of the first balance snapshot).
* Benchmarks.  ``holding(...)`` and ``dca(...)`` → ``Benchmark`` (``name``,
  ``title``, ``capital_eur``, ``spent_eur``, ``buys``, ``markets``,
  ``pnl_at(when, bids, market=None)``): what the same money would have
  made, bought by market orders by amountQuote with the fee, never spending
  more than there was; ``benchmarks(conn, cfg, until=)`` builds both for the
  database, in ``traded_markets(conn, cfg)``.
* Views.  ``summary(conn, cfg, prices=, until=)`` → ``Summary`` (totals,
  per market, per book and market — ``lines`` — and the benchmarks);
  ``series(conn, cfg, since=, until=, prices=)`` → ``Series`` of ``Point``
  (net, realised, unrealised, fees, LLM, holding, DCA, per book): its last
  point is ``summary(...)`` to the digit, by construction; ``trades(conn,
  since=, until=)`` → ``Trade`` rows (fill, book, EUR value, fee in EUR,
  proposal, source, reason).
* The account.  ``balances(conn, cfg)``, ``baseline(conn, cfg)``,
  ``account_delta(conn, until=, recorded_by=)``, ``holdings_at(conn, cfg,
  when)`` → (baseline or None, asset → amount), ``drift(conn, cfg)``: the
  exchange's balances against the ledger *as it stood when they were read*
  (fills recorded after that moment are not in those balances, so they are
  not drift).
* Books.  ``default_book(source, external)``, ``BUILTIN_BOOKS``,
  ``MANUAL``, ``EXTERNAL``.

No exchange import: `tinybot pnl` and `status` read this without ccxt.
"""

from __future__ import annotations

import bisect
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Callable, Iterable, Mapping

from . import clock, fees

EUR_PLACES = Decimal("0.00000001")  # every EUR figure of a book, stored or computed, to 8 decimals
ZERO = Decimal(0)

MANUAL, EXTERNAL = "manual", "external"
BUILTIN_BOOKS = ("dca", "rules", "llm", MANUAL, EXTERNAL)
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


# --- one fill, one step ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fill:
    """A fill as the book reads it (``trade_history``)."""

    market: str
    side: str
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str
    at: str  # ISO UTC (tinybot.clock), the exchange's time of the fill
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


@dataclass(frozen=True)
class Position:
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


# --- the walk -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One fill as the walk booked it."""

    fill: Fill
    realised: Mapping[str, Decimal]  # per book (more than one only when a sell was bigger than its book)

    @property
    def realised_eur(self) -> Decimal:
        return sum(self.realised.values(), ZERO)


@dataclass(frozen=True)
class Period:
    """What the fills of a period did (``Walk.period``)."""

    realised_eur: Decimal
    fees_eur: Decimal
    fills: int
    buys: int
    sells: int


@dataclass
class Walk:
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


# --- the LLM's cost -----------------------------------------------------------------------------------


def llm_costs(conn: sqlite3.Connection, *, until: str | None = None) -> list[tuple[str, Decimal]]:
    """(when, EUR) of every settled LLM call, in time order (when = settled, else reserved)."""
    sql = "SELECT COALESCE(settled_at, reserved_at) AS at, cost_eur FROM gpt_usage_log WHERE cost_eur IS NOT NULL"
    args: list = []
    if until is not None:
        sql += " AND COALESCE(settled_at, reserved_at) <= ?"
        args.append(until)
    return [(r["at"], Decimal(r["cost_eur"])) for r in conn.execute(sql + " ORDER BY at, id", args)]


def llm_cost(conn: sqlite3.Connection, *, since: str | None = None, until: str | None = None) -> Decimal:
    """What the LLM cost after ``since`` up to ``until`` (ISO; None = open)."""
    return sum((c for at, c in llm_costs(conn, until=until) if since is None or at > since), ZERO)


# --- prices ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    bid: Decimal
    ask: Decimal
    last: Decimal
    at: str | None  # when it was read (ISO); None for configured fixed prices


def last_prices(conn: sqlite3.Connection, cfg=None) -> dict[str, Price]:
    """Prices from the last tick; in paper mode with fixed [paper] prices, those (with the paper spread)."""
    prices = {
        r["market"]: Price(Decimal(r["bid"]), Decimal(r["ask"]), Decimal(r["last"]), r["at"])
        for r in conn.execute("SELECT * FROM market_prices")
    }
    if cfg is not None and cfg.mode == "paper" and cfg.paper.prices:
        from .markets import PAPER_HALF_SPREAD as SPREAD

        for m, mid in cfg.paper.prices.items():
            prices.setdefault(m, Price(mid * (1 - SPREAD), mid * (1 + SPREAD), mid, None))
    return prices


class PriceHistory:
    """Prices over time: the hourly ``price_log`` and the fills' own prices (a fill is a price too)."""

    def __init__(self, conn: sqlite3.Connection | None = None):
        self._at: dict[str, list[str]] = {}
        self._prices: dict[str, list[Price]] = {}
        if conn is None:
            return
        rows = [
            (r["hour"], r["market"], Price(Decimal(r["bid"]), Decimal(r["ask"]), Decimal(r["last"]), r["hour"]))
            for r in conn.execute("SELECT hour, market, bid, ask, last FROM price_log")
        ]
        rows += [
            (
                r["executed_at"],
                r["market"],
                Price(Decimal(r["price"]), Decimal(r["price"]), Decimal(r["price"]), r["executed_at"]),
            )
            for r in conn.execute("SELECT executed_at, market, price FROM trade_history")
        ]
        for at, market, p in sorted(rows, key=lambda x: (x[1], x[0])):
            self.add(market, at, p)

    def add(self, market: str, at: str, price: Price) -> None:
        """Add a price; ``at`` must not be earlier than the market's last one."""
        self._at.setdefault(market, []).append(at)
        self._prices.setdefault(market, []).append(price)

    def markets(self) -> list[str]:
        return sorted(self._at)

    def at(self, market: str, when: datetime | str) -> Price | None:
        """The price at ``when``: the last one known then, else (before the first) the first one."""
        times = self._at.get(market)
        if not times:
            return None
        t = when if isinstance(when, str) else clock.to_iso(when)
        i = bisect.bisect_right(times, t)
        return self._prices[market][max(i - 1, 0)]

    def as_of(self, when: datetime | str) -> dict[str, Price]:
        out = {}
        for m in self.markets():
            p = self.at(m, when)
            if p is not None:
                out[m] = p
        return out


def prices_as_of(conn: sqlite3.Connection, cfg, until: datetime | None = None) -> dict[str, Price]:
    """The prices a view values positions at: the last tick's now, or the price log's as of ``until``.

    The table and the chart beside it both use this, so their last figures agree.
    """
    if until is None:
        return last_prices(conn, cfg)
    return PriceHistory(conn).as_of(until)


# --- the start and the benchmarks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    at: datetime | None  # when tinybot started: its first balance snapshot, else its first price or fill
    capital_eur: Decimal | None  # the money it had then: paper's starting_eur, live the EUR of that snapshot
    snapshot_at: datetime | None = None  # its first balance snapshot: from then on it knows what the account held


def start(conn: sqlite3.Connection, cfg) -> Start:
    snap = conn.execute("SELECT MIN(at) FROM account_baseline").fetchone()[0]
    first = [
        t
        for t in (
            snap,
            conn.execute("SELECT MIN(hour) FROM price_log").fetchone()[0],
            conn.execute("SELECT MIN(executed_at) FROM trade_history").fetchone()[0],
        )
        if t
    ]
    at = clock.from_iso(min(first)) if first else None
    snapshot_at = clock.from_iso(snap) if snap else None
    if cfg.mode == "paper":
        return Start(at, cfg.paper.starting_eur, snapshot_at)
    row = conn.execute("SELECT amount FROM account_baseline WHERE asset = 'EUR'").fetchone()
    if snap is None:
        return Start(at, None)
    return Start(at, Decimal(row["amount"]) if row else ZERO, snapshot_at)


@dataclass(frozen=True)
class BenchBuy:
    at: datetime
    market: str
    eur: Decimal  # amountQuote: what the buy cost, the fee included
    base: Decimal  # what it bought, after the fee, truncated to the market's decimals
    ask: Decimal


@dataclass(frozen=True)
class Benchmark:
    """What the same money would have made: market buys by amountQuote at the ask, fee included, then held."""

    name: str  # "holding" | "dca"
    title: str  # how every view names it
    capital_eur: Decimal
    buys: tuple[BenchBuy, ...]

    @property
    def spent_eur(self) -> Decimal:
        return sum((b.eur for b in self.buys), ZERO)

    def held_at(self, when: datetime) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for b in self.buys:
            if b.at <= when:
                out[b.market] = out.get(b.market, ZERO) + b.base
        return out

    @property
    def markets(self) -> list[str]:
        return sorted({b.market for b in self.buys})

    def pnl_at(self, when: datetime, bids: Mapping[str, Decimal], market: str | None = None) -> Decimal | None:
        """Its value at ``when`` at these bids minus what it paid (of one market, or all); None if a held market
        has no bid.  What it never spent stays cash: neither gain nor loss."""
        held = {m: b for m, b in self.held_at(when).items() if market is None or m == market}
        if any(m not in bids for m in held):
            return None
        spent = sum((b.eur for b in self.buys if b.at <= when and (market is None or b.market == market)), ZERO)
        return sum((base * bids[m] for m, base in held.items()), ZERO) - spent


PriceAt = Callable[[str, datetime], "Price | None"]


def _buyable(capital: Decimal, markets: list[str], minimum: Decimal) -> list[str]:
    """As many of the markets as the money buys at least the exchange minimum in, in their order."""
    return markets[: int(capital // minimum)] if minimum > 0 else markets


def _bench_buy(at: datetime, market: str, eur: Decimal, price_at: PriceAt, rate: Decimal, decimals: Mapping[str, int]):
    p = price_at(market, at)
    if p is None:
        return None
    base = fees.buy_by_quote(eur, p.ask, decimals.get(market, 8), rate).base
    return BenchBuy(at, market, eur, base, p.ask)


def holding(
    capital: Decimal,
    markets: list[str],
    at: datetime,
    price_at: PriceAt,
    *,
    fee_rate: Decimal = fees.TAKER_FEE,
    decimals: Mapping[str, int] | None = None,
    minimum: Decimal = Decimal("5"),
) -> Benchmark | None:
    """The money split evenly over the markets (each part at least the exchange minimum), bought at the start."""
    chosen = _buyable(capital, list(markets), minimum)
    if not chosen or capital <= 0:
        return None
    part = fees.cents_down(capital / len(chosen))
    buys = [_bench_buy(at, m, part, price_at, fee_rate, decimals or {}) for m in chosen]
    if any(b is None for b in buys):
        return None
    return Benchmark(
        "holding",
        f"holding: €{capital:.2f} put into {', '.join(chosen)} at the start and held (fees included)",
        capital,
        tuple(buys),
    )


def dca(
    capital: Decimal,
    markets: list[str],
    at: datetime,
    end: datetime,
    every: timedelta,
    price_at: PriceAt,
    *,
    fee_rate: Decimal = fees.TAKER_FEE,
    decimals: Mapping[str, int] | None = None,
    minimum: Decimal = Decimal("5"),
) -> Benchmark | None:
    """The money in equal buys spread evenly from the start to the end (every ``every`` at most, each part at
    least the exchange minimum), split over the markets."""
    chosen = _buyable(capital, list(markets), minimum)
    if not chosen or capital <= 0:
        return None
    span = max(end - at, timedelta(0))
    periods = int(span / every) + 1 if every > timedelta(0) else 1
    count = max(1, min(periods, int(capital // (minimum * len(chosen)))))
    part = fees.cents_down(capital / count / len(chosen))
    buys = []
    for i in range(count):
        when = at + span * i / count
        for m in chosen:
            b = _bench_buy(when, m, part, price_at, fee_rate, decimals or {})
            if b is None:
                return None
            buys.append(b)
    return Benchmark(
        "dca",
        f"DCA: €{capital:.2f} in {count} equal buy(s) of €{part:.2f} per market over the period (fees included)",
        capital,
        tuple(buys),
    )


def traded_markets(conn: sqlite3.Connection, cfg) -> list[str]:
    """The markets tinybot trades: those with its fills, else its allowlist."""
    found = [r[0] for r in conn.execute("SELECT DISTINCT market FROM trade_history WHERE external = 0 ORDER BY market")]
    return found or sorted(cfg.risk.allowlist)


def fee_rate(cfg) -> Decimal:
    from . import sizing

    return sizing.fee_rate(cfg)


def benchmarks(
    conn: sqlite3.Connection, cfg, *, until: datetime | None = None, history: PriceHistory | None = None
) -> tuple[Benchmark | None, Benchmark | None]:
    """Holding and DCA for this database: the start's money, the markets it trades, prices from the price log."""
    s = start(conn, cfg)
    if s.at is None or not s.capital_eur:
        return None, None
    history = history or PriceHistory(conn)
    markets = [m for m in traded_markets(conn, cfg) if history.at(m, s.at) is not None]
    end = until or clock.now()
    rate = fee_rate(cfg)
    hold = holding(s.capital_eur, markets, s.at, history.at, fee_rate=rate)
    spread = dca(s.capital_eur, markets, s.at, end, cfg.dca.every, history.at, fee_rate=rate)
    return hold, spread


# --- figures: one function for the table and the chart's last point ----------------------------------


@dataclass(frozen=True)
class Line:
    """One book in one market, valued."""

    book: str
    market: str
    position: Position
    bid: Decimal | None

    @property
    def value_eur(self) -> Decimal | None:
        return None if self.bid is None else self.position.value(self.bid)

    @property
    def unrealised_eur(self) -> Decimal | None:
        """None when something is held and there is no price for it."""
        if self.position.base == 0:
            return ZERO
        return None if self.bid is None else self.position.unrealised(self.bid)


@dataclass(frozen=True)
class Figures:
    realised_eur: Decimal
    unrealised_eur: Decimal  # priced positions only (``unpriced`` names the others)
    fees_eur: Decimal
    llm_cost_eur: Decimal
    unpriced: tuple[str, ...]

    @property
    def net_eur(self) -> Decimal:
        return self.realised_eur + self.unrealised_eur - self.llm_cost_eur


def _lines(books: Mapping[str, Mapping[str, Position]], bids: Mapping[str, Decimal]) -> list[Line]:
    return sorted(
        (Line(b, m, p, bids.get(m)) for m, bs in books.items() for b, p in bs.items()), key=lambda x: (x.book, x.market)
    )


def _figures(lines: list[Line], llm: Decimal) -> Figures:
    return Figures(
        sum((x.position.realised_eur for x in lines), ZERO),
        sum((x.unrealised_eur for x in lines if x.unrealised_eur is not None), ZERO),
        sum((x.position.fees_eur for x in lines), ZERO),
        llm,
        tuple(sorted({x.market for x in lines if x.unrealised_eur is None})),
    )


def _by_book(lines: list[Line], llm: Decimal) -> dict[str, Figures]:
    """Per book; the LLM's cost is the llm book's (it has a line even before its first fill)."""
    names = sorted({x.book for x in lines} | ({"llm"} if llm else set()))
    return {b: _figures([x for x in lines if x.book == b], llm if b == "llm" else ZERO) for b in names}


def _by_market(lines: list[Line]) -> dict[str, Figures]:
    return {m: _figures([x for x in lines if x.market == m], ZERO) for m in sorted({x.market for x in lines})}


@dataclass
class Summary:
    """Everything a view shows about the money, at one moment and one set of prices."""

    at: datetime
    prices: dict[str, Price]
    walk: Walk
    lines: list[Line]  # per book and market
    total: Figures
    by_book: dict[str, Figures]
    by_market: dict[str, Figures]
    holding: Benchmark | None
    dca: Benchmark | None
    start: Start

    @property
    def bids(self) -> dict[str, Decimal]:
        return {m: p.bid for m, p in self.prices.items()}

    @property
    def holding_eur(self) -> Decimal | None:
        return None if self.holding is None else self.holding.pnl_at(self.at, self.bids)

    @property
    def dca_eur(self) -> Decimal | None:
        return None if self.dca is None else self.dca.pnl_at(self.at, self.bids)

    def positions(self) -> dict[str, Position]:
        """Per market, the sum of its books, for what is held."""
        return {m: self.walk.market(m) for m in self.walk.markets() if self.walk.market(m).base > 0}


def summary(
    conn: sqlite3.Connection, cfg, *, prices: Mapping[str, Price] | None = None, until: datetime | None = None
) -> Summary:
    """The money at ``until`` (None = now, at the last tick's prices; else the price log's as of then)."""
    at = until or clock.now()
    upto = clock.to_iso(until) if until is not None else None
    prices = dict(prices) if prices is not None else prices_as_of(conn, cfg, until)
    w = walk(conn, until=upto)
    llm = llm_cost(conn, until=upto)
    lines = _lines(w.books, {m: p.bid for m, p in prices.items()})
    hold, spread = benchmarks(conn, cfg, until=at)
    return Summary(
        at,
        prices,
        w,
        lines,
        _figures(lines, llm),
        _by_book(lines, llm),
        _by_market(lines),
        hold,
        spread,
        start(conn, cfg),
    )


# --- series for the charts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    at: datetime
    realised_eur: Decimal
    unrealised_eur: Decimal
    fees_eur: Decimal
    llm_cost_eur: Decimal
    holding_eur: Decimal | None  # the holding benchmark's P/L then (None before a price for what it holds)
    dca_eur: Decimal | None
    by_book: Mapping[str, Decimal]  # each book's net P/L then (the llm book net of the LLM's cost)

    @property
    def net_eur(self) -> Decimal:
        return self.realised_eur + self.unrealised_eur - self.llm_cost_eur


@dataclass
class Series:
    """The money over time: one point per price-log hour, fill and LLM call, then the end at the view's prices."""

    points: list[Point]
    holding: Benchmark | None
    dca: Benchmark | None
    start: Start

    @property
    def times(self) -> list[datetime]:
        return [p.at for p in self.points]

    def values(self, name: str) -> list[Decimal | None]:
        """``net_eur``, ``realised_eur``, ``unrealised_eur``, ``fees_eur``, ``llm_cost_eur``, ``holding_eur``,
        ``dca_eur``, or ``book:NAME`` for one book's net."""
        if name.startswith("book:"):
            book = name[5:]
            return [p.by_book.get(book, ZERO) for p in self.points]
        return [getattr(p, name) for p in self.points]

    def books(self) -> list[str]:
        return sorted({b for p in self.points for b in p.by_book})


def _point(at: datetime, books, bids, llm: Decimal, hold, spread) -> Point:
    lines = _lines(books, bids)
    f = _figures(lines, llm)
    return Point(
        at,
        f.realised_eur,
        f.unrealised_eur,
        f.fees_eur,
        f.llm_cost_eur,
        None if hold is None else hold.pnl_at(at, bids),
        None if spread is None else spread.pnl_at(at, bids),
        {b: fig.net_eur for b, fig in _by_book(lines, llm).items()},
    )


def series(
    conn: sqlite3.Connection,
    cfg,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    prices: Mapping[str, Price] | None = None,
) -> Series:
    """Net P/L, its parts, both benchmarks and each book's net over time, from the start (points before
    ``since`` are walked, not kept).  The last point is at ``until`` (None = now) valued at ``prices`` (default:
    ``prices_as_of``), so it equals ``summary(conn, cfg, prices=prices, until=until)`` figure for figure."""
    end = until or clock.now()
    upto = clock.to_iso(until) if until is not None else None  # None: every fill, as summary() takes them
    lo = clock.to_iso(since) if since is not None else ""
    final = dict(prices) if prices is not None else prices_as_of(conn, cfg, until)
    history = PriceHistory(conn)
    hold, spread = benchmarks(conn, cfg, until=end, history=history)
    events: list[tuple[str, int, object]] = []
    for r in conn.execute(
        "SELECT hour, market, bid FROM price_log WHERE hour <= ? ORDER BY hour", (clock.to_iso(end),)
    ):
        events.append((r["hour"], 0, (r["market"], Decimal(r["bid"]))))
    events += [(f.at, 1, f) for f in fills(conn, until=upto)]
    events += [(at, 2, c) for at, c in llm_costs(conn, until=upto)]
    events.sort(key=lambda e: (e[0], e[1]))
    w, bids, llm, points = Walk(), {}, ZERO, []
    opened = since is None  # a point at `since` first: where the chart starts, with what was held then
    for at, kind, item in events:
        if not opened and at >= lo:
            points.append(_point(since, w.books, bids, llm, hold, spread))
            opened = True
        if kind == 0:
            bids[item[0]] = item[1]
        elif kind == 1:
            bids.setdefault(item.market, item.price)  # before the first logged price, the fill's own
            w.add(item)
        else:
            llm += item
        if at >= lo:
            points.append(_point(clock.from_iso(at), w.books, bids, llm, hold, spread))
    if not opened:
        points.append(_point(since, w.books, bids, llm, hold, spread))
    points.append(_point(end, w.books, {m: p.bid for m, p in final.items()}, llm, hold, spread))
    return Series(points, hold, spread, start(conn, cfg))


# --- trades, for tables ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trade:
    """A fill with what a table shows beside it."""

    fill: Fill
    realised_eur: Decimal  # what this fill realised (sells; 0 for buys)
    proposal_id: int | None
    source: str | None  # who proposed it (None: no proposal accounts for it)
    reason: str

    @property
    def book(self) -> str:
        return self.fill.book


def trades(conn: sqlite3.Connection, *, since: datetime | None = None, until: datetime | None = None) -> list[Trade]:
    """Every fill after ``since`` up to ``until``, in order, with its proposal's source and reason."""
    hi = clock.to_iso(until) if until is not None else None
    lo = clock.to_iso(since) if since is not None else None
    w = walk(conn, until=hi)
    about = {
        r["id"]: r
        for r in conn.execute(
            "SELECT h.id, p.id AS proposal_id, p.source, p.reason, e.exchange_order_id FROM trade_history h"
            " JOIN trade_executions e ON e.id = h.execution_id JOIN proposals p ON p.id = e.proposal_id"
        )
    }
    out = []
    for s in w.steps:
        if lo is not None and s.fill.at <= lo:
            continue
        r = about.get(s.fill.id)
        own = r is not None and (r["exchange_order_id"] is None or r["exchange_order_id"] == s.fill.order_id)
        out.append(
            Trade(
                s.fill,
                s.realised_eur,
                r["proposal_id"] if own else None,
                r["source"] if own else None,
                r["reason"] if own else "",
            )
        )
    return out


# --- the account: balances, baseline, drift --------------------------------------------------------------------


def balances(conn: sqlite3.Connection, cfg) -> tuple[dict[str, Decimal] | None, str | None]:
    """What the exchange reports the account holds, and when: the paper account now, or the last tick's snapshot."""
    if cfg.mode == "paper":
        rows = conn.execute("SELECT asset, available, in_order FROM paper_balances").fetchall()
        if not rows:
            return None, None
        return {r["asset"]: Decimal(r["available"]) + Decimal(r["in_order"]) for r in rows}, clock.now_iso()
    rows = conn.execute("SELECT * FROM account_balances").fetchall()
    if not rows:
        return None, None
    return {r["asset"]: Decimal(r["available"]) + Decimal(r["in_order"]) for r in rows}, max(r["at"] for r in rows)


def baseline(conn: sqlite3.Connection, cfg) -> dict[str, Decimal] | None:
    """What the account held before tinybot's first fill (paper: the starting balance)."""
    if cfg.mode == "paper":
        return {"EUR": cfg.paper.starting_eur}
    rows = conn.execute("SELECT asset, amount FROM account_baseline").fetchall()
    return {r["asset"]: Decimal(r["amount"]) for r in rows} if rows else None


def account_delta(
    conn: sqlite3.Connection, *, until: str | None = None, recorded_by: str | None = None
) -> dict[str, Decimal]:
    """What every fill up to ``until`` (executed then) or ``recorded_by`` (in the ledger by then) moved on the
    account, per asset (external ones included)."""
    sql, args = "SELECT * FROM trade_history WHERE 1 = 1", []
    if until is not None:
        sql += " AND executed_at <= ?"
        args.append(until)
    if recorded_by is not None:
        sql += " AND recorded_at <= ?"
        args.append(recorded_by)
    out: dict[str, Decimal] = {}
    for r in conn.execute(sql, args):
        for asset, d in Fill.from_row(r).moves.items():
            out[asset] = out.get(asset, ZERO) + d
    return out


def holdings_at(conn: sqlite3.Connection, cfg, when: datetime) -> tuple[dict[str, Decimal] | None, dict[str, Decimal]]:
    """(the baseline or None, what the ledger says the account held at ``when``: baseline + every fill to then)."""
    base = baseline(conn, cfg)
    moved = account_delta(conn, until=clock.to_iso(when))
    known = base or {}
    return base, {a: known.get(a, ZERO) + moved.get(a, ZERO) for a in sorted(set(known) | set(moved))}


def drift(conn: sqlite3.Connection, cfg) -> dict:
    """Per asset: the exchange's balance minus what the ledger held *at the balances' time*.

    The ledger as of then is the fills it had recorded by then (tinybot's own clock on both sides, so the
    exchange's clock and its millisecond timestamps do not matter): a tick reads the balances before it trades,
    and its own fills, recorded after, are not drift; money moved outside tinybot is.
    ``{"at", "assets", "note"}`` (amounts as decimal strings).
    """
    from . import money

    held, at = balances(conn, cfg)
    base = baseline(conn, cfg)
    if held is None or base is None:
        return {"at": None, "assets": {}, "note": "no balance snapshot yet: run a tick (`tinybot run --once`)"}
    moved = account_delta(conn, recorded_by=at)
    assets = {}
    for a in sorted(set(held) | set(base) | set(moved)):
        d = held.get(a, ZERO) - (base.get(a, ZERO) + moved.get(a, ZERO))
        assets[a] = money.cents(d) if a == "EUR" else money.plain(d)
    return {"at": at, "assets": assets, "note": ""}


# --- periods -------------------------------------------------------------------------------------------------


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


@dataclass
class Bucket:
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
