"""The Bitvavo a replay trades on: the simulator serving stored candles at their real times, priced at each open."""

from __future__ import annotations

import bisect
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ...analysis import candles
from ...base import clock
from ...trade.book.valuation import Price
from ...sim.accounts import SimAccount
from ...sim.market import INTERVALS, MarketState, to_tick
from ...sim.simulator import Simulator
from ...sim.wire import bad, candle_row

REPLAY_KEY, REPLAY_SECRET = "replay-key", "replay-secret"  # the simulator's throwaway account
DEFAULT_SLIPPAGE = Decimal("0.0005")  # 0.05 % against the order, on top of the simulator's spread


class ReplayMarket(MarketState):
    """A simulator market serving its stored candles at their real times; buys and sells pay extra slippage.

    The price at a moment is the open of the stored candle that contains it (as at the candle's
    first instant), or in a gap the last close before it.
    """

    def __init__(self, name: str, interval: str, series: list[candles.Candle], slippage: Decimal, limits=None):
        super().__init__(name, INTERVALS[interval], 1, 7, None)
        self.slippage = slippage
        if limits is not None:
            self.tick, self.quantity_decimals = limits.tick_size, limits.quantity_decimals
            self.notional_decimals, self.min_base = limits.notional_decimals, limits.min_base
        else:
            self.tick, self.min_base = _tick_of(series), Decimal(0)
        self.series = series
        self.stamps = [c.timestamp_ms for c in series]
        self.rows = [(c.timestamp_ms, c.open, c.high, c.low, c.close, c.volume) for c in series]
        self.step_ms = INTERVALS[interval] * 1000
        self._aggregated: dict = {}
        self._wire: dict[tuple[int, bool], dict[int, list]] = {}  # (interval ms, live shapes) → closed rows by time

    def bid_ask(self):
        bid, ask = super().bid_ask()
        if self.slippage:
            bid = max(to_tick(bid * (1 - self.slippage), self.tick, ROUND_FLOOR), self.tick)
            ask = to_tick(ask * (1 + self.slippage), self.tick, ROUND_CEILING)
        return bid, ask

    def price_at(self, now_ms: int) -> Decimal | None:
        """The open of the candle that contains now, else (a gap) the last close before now."""
        i = bisect.bisect_right(self.stamps, now_ms) - 1
        if i < 0:
            return None
        c = self.series[i]
        return c.open if now_ms < c.timestamp_ms + self.step_ms else c.close

    def move_to(self, now_ms: int) -> Decimal | None:
        """The last price becomes the price at now_ms (if there is one yet); returns it."""
        p = self.price_at(now_ms)
        if p is not None:
            self.candles[-1] = [p, p, p, p, Decimal(0)]
            self.nonce += 1
        return p

    def candles_at(self, now_ms: int, interval: str | None = None) -> list:
        """Stored candles up to now (the current one only its open, as at its first instant), oldest first.

        At most the 1440 newest (of the interval asked for): Bitvavo's limit per request.
        """
        step = self.step_ms
        want = INTERVALS[interval] * 1000 if interval else step
        if want < step or want % step:
            raise bad(205, "interval parameter is invalid.")
        end = bisect.bisect_right(self.stamps, now_ms)
        rows = self.rows[max(0, end - (1440 if want == step else want // step)) : end]
        if rows and rows[-1][0] + step > now_ms:
            ts, o = rows[-1][0], rows[-1][1]
            rows[-1] = (ts, o, o, o, o, Decimal(0))
        if want == step:
            return rows
        # a coarser interval: whole buckets built once, the one still open from its base candles so far
        closed = self._coarse(want)
        bucket = now_ms // want * want
        i = bisect.bisect_left(closed[0], bucket)
        out = list(closed[1][max(0, i - 1440) : i])
        current = [r for r in rows if r[0] >= bucket]
        if current:
            out.append(
                (
                    bucket,
                    current[0][1],
                    max(r[2] for r in current),
                    min(r[3] for r in current),
                    current[-1][4],
                    sum((r[5] for r in current), Decimal(0)),
                )
            )
        return out

    def candle_wire(self, rows: list, step_ms: int, now_ms: int, live: bool) -> list[list]:
        """As the simulator's, but a stored candle that has closed never changes: each is formatted once
        per replay (a tick's candle read re-sent the same 60 closed candles but one)."""
        closed = self._wire.setdefault((step_ms, live), {})
        out = []
        for r in rows:
            if r[0] + step_ms > now_ms:  # still open at now: only its open so far, as at its first instant
                out.append(candle_row(r, live))
                continue
            shaped = closed.get(r[0])
            if shaped is None:
                shaped = closed[r[0]] = candle_row(r, live)
            out.append(shaped)
        return out

    def _coarse(self, want: int) -> tuple[list[int], list[tuple]]:
        if want not in self._aggregated:
            stamps, rows = [], []
            for ts, o, hi, lo, c, v in self.rows:
                b = ts // want * want
                if rows and rows[-1][0] == b:
                    _, o0, h0, l0, _c0, v0 = rows[-1]
                    rows[-1] = (b, o0, max(h0, hi), min(l0, lo), c, v0 + v)
                else:
                    stamps.append(b)
                    rows.append((b, o, hi, lo, c, v))
            self._aggregated[want] = (stamps, rows)
        return self._aggregated[want]


def _tick_of(series: list[candles.Candle]) -> Decimal:
    """A tick size that fits every stored price (when Bitvavo's own was not stored)."""
    decimals = 0
    for c in series[-2000:]:
        for p in (c.open, c.high, c.low, c.close):
            exp = p.normalize().as_tuple().exponent
            decimals = max(decimals, -exp if isinstance(exp, int) else 0)
    return Decimal(1).scaleb(-decimals)


class ReplaySimulator(Simulator):
    """The simulator, serving stored candles at their real times; the price at a tick is that candle's open."""

    def __init__(
        self,
        series: dict[str, list[candles.Candle]],
        data_interval: dict[str, str],
        limits: dict,
        eur: Decimal,
        sim_clock: clock.Simulated,
        slippage: Decimal,
    ):
        finest = min(data_interval.values(), key=lambda i: INTERVALS[i])
        super().__init__(
            accounts=[SimAccount(REPLAY_KEY, REPLAY_SECRET, frozenset({"view", "trade"}), {"EUR": eur})],
            markets=tuple(series),
            interval=finest,
            history=1,
            clock=sim_clock.seconds,
        )
        for m in series:
            self.markets[m] = ReplayMarket(m, data_interval[m], series[m], slippage, limits.get(m))

    def price_at(self, market: str, now_ms: int) -> Decimal | None:
        return self.markets[market].price_at(now_ms)

    def move_to(self, now_ms: int) -> dict[str, Decimal]:
        """Every market's price becomes the one at now_ms; returns those that have one."""
        with self.lock:
            moved = {m: state.move_to(now_ms) for m, state in self.markets.items()}
        return {m: p for m, p in moved.items() if p is not None}

    def equity_and_exposure(self, prices: dict[str, Decimal]) -> tuple[Decimal, Decimal]:
        """The replay account's EUR plus its holdings at these prices, and the holdings alone."""
        bal = self.balance(REPLAY_KEY)
        exposure = sum((bal.get(m.split("-")[0], Decimal(0)) * p for m, p in prices.items()), Decimal(0))
        return bal.get("EUR", Decimal(0)) + exposure, exposure

    def quotes(self, at: datetime) -> dict[str, Price]:
        """The bid and ask per market at a moment (its price then, the spread and slippage around it)."""
        self.move_to(clock.to_ms(at))
        out = {}
        for m, state in self.markets.items():
            if self.price_at(m, clock.to_ms(at)) is None:
                continue
            bid, ask = state.bid_ask()
            out[m] = Price(bid, ask, self.price_at(m, clock.to_ms(at)), clock.to_iso(at))
        return out

    def quote(self, market: str, at: datetime) -> Price | None:
        """One market's bid and ask at a moment (None before its first candle): what a benchmark buys at."""
        return self.quotes(at).get(market)


def make_simulator(
    series: dict[str, list[candles.Candle]],
    data_interval: dict[str, str],
    limits: dict,
    eur: Decimal,
    sim_clock: clock.Simulated,
    slippage: Decimal,
) -> ReplaySimulator:
    return ReplaySimulator(series, data_interval, limits, eur, sim_clock, slippage)
