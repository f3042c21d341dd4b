"""The figures every view shows, computed once: the summary (tables), the series (charts) and the trades."""

from __future__ import annotations
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Iterable, Mapping

from ...base import clock
from .benchmarks import Benchmark, Start, benchmarks, start
from .steps import Fill, Position, Walk, ZERO, fills, llm_cost, llm_costs, walk
from .valuation import Price, PriceHistory, prices_as_of
from ...base.record import MutableRecord, Record, mutable_record, record


@record
class Line(Record):
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


@record
class Figures(Record):
    """The P/L of some books: realised, unrealised, fees and the LLM's cost."""

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


@mutable_record
class Summary(MutableRecord):
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


@record
class Point(Record):
    """The figures at one moment of the P/L curve, beside the holding benchmark's."""

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


@mutable_record
class Series(MutableRecord):
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


@record
class Trade(Record):
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


# --- the scoreboard's figures: each book marked at each day's end, and its drawdown ---------------------------------


def day_ends(start: datetime, end: datetime, tz=None) -> list[datetime]:
    """``start``, every local midnight after it (in ``tz``; None = UTC) before ``end``, then ``end``."""
    out = [start]
    day = clock.day_start(start, tz)
    while True:
        day = clock.day_start(day + timedelta(hours=36), tz)  # the next local midnight, DST or not
        if day >= end:
            break
        out.append(day)
    return out + ([end] if end > start else [])


@record
class Mark(Record):
    """Every book at one moment: its figures (fills and LLM cost up to then, valued at the bids then)."""

    at: datetime
    bids: Mapping[str, Decimal]
    lines: list[Line]
    by_book: Mapping[str, Figures]

    def fills(self, book: str) -> int:
        return sum((x.position.fills for x in self.lines if x.book == book), 0)

    def holds(self, book: str) -> bool:
        return any(x.position.base > 0 for x in self.lines if x.book == book)


def marks(
    items: Iterable[Fill],
    llm: list[tuple[str, Decimal]],
    moments: list[datetime],
    bids_at: Callable[[datetime], Mapping[str, Decimal]],
) -> list[Mark]:
    """The books of ``items`` (fills in the book's order) at each of ``moments`` (ascending): the same step and
    the same figures as ``summary``; ``llm`` is the llm book's cost ((when, EUR), in order)."""
    pending = sorted(items, key=lambda f: f.at)
    w, out, i, j, cost = Walk(), [], 0, 0, ZERO
    for at in moments:
        upto = clock.to_iso(at)
        while i < len(pending) and pending[i].at <= upto:
            w.add(pending[i])
            i += 1
        while j < len(llm) and llm[j][0] <= upto:
            cost += llm[j][1]
            j += 1
        bids = bids_at(at)
        lines = _lines(w.books, bids)
        out.append(Mark(at, bids, lines, _by_book(lines, cost)))
    return out


def max_drawdown(equity: list[Decimal]) -> Decimal:
    """The largest fall from a peak, as a share of that peak (0.25 = 25 %); 0 for a series that never fell."""
    peak, worst = None, ZERO
    for e in equity:
        peak = e if peak is None or e > peak else peak
        if peak > 0:
            worst = max(worst, (peak - e) / peak)
    return worst
