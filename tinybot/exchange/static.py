"""A market-data source with fixed, settable prices: for tests and offline use.

It answers the read-only market-data half of the contract (markets, ticker,
candles); the paper exchange wraps it (or the real read-only client) to
become a full exchange.
"""

from __future__ import annotations

from decimal import Decimal

from ..base import clock
from ..base.markets import PAPER_HALF_SPREAD
from ..base.sizing import EXCHANGE_MINIMUM_EUR
from .base import Candle, ExchangeError, Market, Ticker
from ..base.markets import normalise_market

SPREAD = PAPER_HALF_SPREAD  # half-spread around the mid price (tinybot.base.markets)


def eur_market(name: str, *, tick: str = "1", qty_decimals: int = 8) -> Market:
    base, quote = name.split("-")
    return Market(
        name=name,
        base=base,
        quote=quote,
        status="trading",
        tick_size=Decimal(tick),
        quantity_decimals=qty_decimals,
        notional_decimals=2,
        min_quote=EXCHANGE_MINIMUM_EUR,
        min_base=Decimal("0"),
    )


class StaticMarketData:
    """Mid prices you set; bid/ask a small spread around them."""

    name = "static"

    def __init__(self, prices: dict[str, str | Decimal] | None = None, markets: dict[str, Market] | None = None):
        prices = prices or {"BTC-EUR": "60000", "ETH-EUR": "3000"}
        self.prices = {normalise_market(k): Decimal(str(v)) for k, v in prices.items()}
        self._markets = markets or {
            m: eur_market(m, tick="1" if self.prices[m] >= 1000 else "0.01") for m in self.prices
        }
        self.history: dict[str, list[Decimal]] = {m: [] for m in self.prices}
        self.fail_next: str | None = None  # make the next read raise ExchangeError (tests)

    def set_price(self, market: str, price: str | Decimal) -> None:
        market = normalise_market(market)
        self.history.setdefault(market, []).append(self.prices[market])
        self.prices[market] = Decimal(str(price))

    def _check(self) -> None:
        if self.fail_next:
            msg, self.fail_next = self.fail_next, None
            raise ExchangeError(msg)

    def markets(self) -> dict[str, Market]:
        self._check()
        return dict(self._markets)

    def ticker(self, market: str) -> Ticker:
        self._check()
        market = normalise_market(market)
        if market not in self.prices:
            raise ExchangeError(f"unknown market {market}")
        mid = self.prices[market]
        return Ticker(
            market=market,
            bid=mid * (1 - SPREAD),
            ask=mid * (1 + SPREAD),
            last=mid,
            timestamp_ms=clock.now_ms(),
        )

    def tickers(self, markets) -> dict[str, Ticker]:
        self._check()
        return {m: self.ticker(m) for m in map(normalise_market, markets) if m in self.prices}

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        self._check()
        market = normalise_market(market)
        from ..base.clock import parse_duration

        step = int(parse_duration(interval).total_seconds() * 1000)
        closes = (self.history.get(market, []) + [self.prices[market]])[-limit:]
        now = clock.now_ms() // step * step
        start = now - step * (len(closes) - 1)
        return [Candle(start + i * step, c, c, c, c, Decimal("1")) for i, c in enumerate(closes)]

    def server_time_ms(self) -> int:
        return clock.now_ms()
