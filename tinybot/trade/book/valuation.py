"""The prices the book values positions at: the last tick, fixed paper prices, or the price log at a moment."""

from __future__ import annotations
import bisect
import sqlite3
from datetime import datetime
from decimal import Decimal

from ...base import clock
from ...base.record import Record, record


@record
class Price(Record):
    """One market's last recorded (or configured) bid, ask and last price."""

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
        from ...base.markets import PAPER_HALF_SPREAD as SPREAD

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
