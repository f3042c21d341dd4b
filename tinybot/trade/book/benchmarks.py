"""Benchmarks that could have happened: the starting money held, or spread evenly (DCA), fees included."""

from __future__ import annotations
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable, Mapping

from ...base import clock, fees, sizing
from .steps import ZERO
from .valuation import Price, PriceHistory
from ...base.record import Record, record


@record
class Start(Record):
    """When tinybot started and with how much: what the benchmarks start from."""

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


@record
class BenchBuy(Record):
    """One buy of a benchmark, as the exchange would have filled it."""

    at: datetime
    market: str
    eur: Decimal  # amountQuote: what the buy cost, the fee included
    base: Decimal  # what it bought, after the fee, truncated to the market's decimals
    ask: Decimal


@record
class Benchmark(Record):
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
    minimum: Decimal = sizing.EXCHANGE_MINIMUM_EUR,
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
    minimum: Decimal = sizing.EXCHANGE_MINIMUM_EUR,
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
