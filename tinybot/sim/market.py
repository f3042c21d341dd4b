"""Market state of the simulator: each market's limits, its seeded price path, candles and synthetic book.

A ``MarketState`` knows nothing of orders or accounts: the engine asks it for
the touch (``bid_ask``) and is told which price range a new candle covered.
"""

from __future__ import annotations

import csv
import math
import random
import zlib
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation

from .wire import SimError, bad, candle_rows

VOLUME_QUANTUM = Decimal("1e-8")  # candle volumes have 8 decimals

INTERVALS = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "2h": 7200,
    "4h": 14400,
    "6h": 21600,
    "8h": 28800,
    "12h": 43200,
    "1d": 86400,
}

# Market statuses an order can meet, and the definite refusal each gives on POST /order
# (errorCodes as listed on SRC_ERRORS; see /work/shared/BITVAVO.md "Definite refusals").
MARKET_STATUSES = {
    "trading": None,
    "halted": 423,
    "cancelOnly": 424,
    "auction": 425,
    "auctionMatching": 426,
    "delisted": 219,
}
_STATUS_TEXT = {
    423: "The market is halted: no orders can be placed.",
    424: "The market is in cancelOnly mode: orders can only be canceled.",
    425: "The market is in auction: market orders are not accepted.",
    426: "The market is matching its auction: orders are not accepted now.",
    219: "The market is no longer listed on Bitvavo.",
}

# Start price, tickSize, quantityDecimals, minOrderInBaseAsset per base asset.
# Roughly Bitvavo's shapes; anything unknown gets the generic row.
_MARKET_DEFAULTS = {
    "BTC": ("60000", "1", 8, "0.00001"),
    "ETH": ("3000", "0.1", 8, "0.0001"),
    "SOL": ("150", "0.01", 8, "0.001"),
    "XRP": ("0.50000", "0.00001", 6, "1"),
    "ADA": ("0.40000", "0.00001", 6, "1"),
    "DOGE": ("0.150000", "0.000001", 6, "1"),
}
_GENERIC_DEFAULTS = ("10.000", "0.001", 6, "0.01")


def to_tick(x: Decimal, tick: Decimal, rounding=ROUND_DOWN) -> Decimal:
    return (x / tick).to_integral_value(rounding=rounding) * tick


def lookup(markets: dict, name) -> MarketState:
    """The market called `name`, or the 205 Bitvavo answers for an unknown one."""
    m = markets.get(name) if isinstance(name, str) else None
    if m is None:
        raise bad(205, "market parameter is invalid.")
    return m


class MarketState:
    """One market: its static limits and its candle path (oldest first)."""

    def __init__(
        self, name: str, interval_s: int, history: int, seed: int, csv_rows: list | None, gap_probability: float = 0.0
    ):
        base, _, quote = name.partition("-")
        self.status = "trading"
        # Bitvavo sends no candle for an interval without trades (BITVAVO.md "Candles"): with a
        # gap probability, that share of new candles has no trades and is left out of answers.
        self.gap_probability = gap_probability
        self.revisions = random.Random(seed * 7_919 + zlib.crc32(name.encode()))
        self.name, self.base, self.quote = name, base, quote
        start, tick, qd, min_base = _MARKET_DEFAULTS.get(base, _GENERIC_DEFAULTS)
        self.tick = Decimal(tick)
        self.quantity_decimals = qd
        self.notional_decimals = 2
        self.min_base = Decimal(min_base)
        self.interval_s = interval_s
        self.sigma = 0.0015 * math.sqrt(interval_s / 60)
        # crc32, not hash(): str hashes are salted per process, seeds must not be.
        self.rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))
        self.nonce = 0
        self.candles: list[list[Decimal]] = []  # [open, high, low, close, volume]
        self.future = list(csv_rows or [])  # CSV rows not yet revealed
        if self.future:
            shown, self.future = self.future[:history], self.future[history:]
            self.candles.extend(shown)
        last = self.candles[-1][3] if self.candles else Decimal(start)
        while len(self.candles) < history:
            self.candles.append(self._walk(last))
            last = self.candles[-1][3]

    def _walk(self, prev_close: Decimal) -> list[Decimal]:
        r = self.rng
        o = prev_close
        # Draw only when gaps are on, so the seeded path is the same as before without them.
        if self.gap_probability and r.random() < self.gap_probability:
            return [o, o, o, o, Decimal(0)]
        c = to_tick(o * Decimal(repr(math.exp(r.gauss(0, self.sigma)))), self.tick, ROUND_DOWN)
        c = max(c, self.tick)
        hi = max(o, c) * Decimal(repr(1 + abs(r.gauss(0, self.sigma / 2))))
        lo = min(o, c) * Decimal(repr(1 - abs(r.gauss(0, self.sigma / 2))))
        hi = to_tick(hi, self.tick, ROUND_CEILING)
        lo = max(to_tick(lo, self.tick, ROUND_FLOOR), self.tick)
        v = Decimal(repr(round(r.uniform(0.05, 3.0), 8))).quantize(VOLUME_QUANTUM)
        return [o, hi, lo, c, v]

    # --- the price path ---------------------------------------------------------------

    def step(self) -> list[Decimal]:
        """Close one more candle (the next CSV row, else a step of the walk); returns it."""
        candle = self.future.pop(0) if self.future else self._walk(self.last)
        self.candles.append(candle)
        self.nonce += 1
        if len(self.candles) > 20_000:  # bound memory under --step-every
            del self.candles[: len(self.candles) - 20_000]
        return candle

    def set_last(self, price) -> Decimal:
        """Force the last price: the newest candle's close (and high/low) move to it; returns it in ticks."""
        p = to_tick(Decimal(str(price)), self.tick)
        if p <= 0:
            raise ValueError(f"price {price} rounds to zero at tickSize {self.tick}")
        c = self.candles[-1]
        c[3], c[1], c[2] = p, max(c[1], p), min(c[2], p)
        self.nonce += 1
        return p

    @property
    def last(self) -> Decimal:
        return self.candles[-1][3]

    def bid_ask(self) -> tuple[Decimal, Decimal]:
        half = max(self.tick, to_tick(self.last * Decimal("0.0001"), self.tick, ROUND_CEILING))
        bid = max(self.last - half, self.tick)
        return bid, self.last + half

    def levels(self, depth: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The synthetic order book: (price, size) levels one tick apart either side of the touch."""
        bid, ask = self.bid_ask()
        n = max(1, min(depth, 50))
        sizes = [(Decimal("0.1") * (i + 1)).quantize(Decimal(1).scaleb(-self.quantity_decimals)) for i in range(n)]
        bids = [(bid - i * self.tick, sizes[i]) for i in range(n) if bid - i * self.tick > 0]
        asks = [(ask + i * self.tick, sizes[i]) for i in range(n)]
        return bids, asks

    def order_refusal(self) -> SimError | None:
        """The refusal a new order meets in this market's status, if any."""
        code = MARKET_STATUSES[self.status]
        return None if code is None else bad(code, _STATUS_TEXT[code])

    # --- candles ----------------------------------------------------------------------------

    def candles_at(self, now_ms: int, interval: str | None = None) -> list[list]:
        """Candles oldest first as [ts_ms, o, h, l, c, v] under the timestamp rule.

        Rule: the newest candle is the one whose interval contains the clock's
        now; each earlier one is one interval further back. So timestamps are
        always evenly spaced and end at now, however fast the path advances.
        """
        ivl = self.interval_s * 1000
        newest = now_ms // ivl * ivl
        n = len(self.candles)
        # A candle without volume had no trades: Bitvavo leaves it out (a gap in the series).
        base = [[newest - (n - 1 - i) * ivl, *c] for i, c in enumerate(self.candles) if c[4] != 0]
        want = INTERVALS[interval] * 1000 if interval else ivl
        if want == ivl:
            return base
        out: list[list] = []
        for ts, o, h, lo, c, v in base:  # aggregate into the coarser interval
            bucket = ts // want * want
            if out and out[-1][0] == bucket:
                row = out[-1]
                row[2], row[3], row[4], row[5] = max(row[2], h), min(row[3], lo), c, row[5] + v
            else:
                out.append([bucket, o, h, lo, c, v])
        return out

    def candle_wire(self, rows: list, step_ms: int, now_ms: int, live: bool) -> list[list]:
        """These candle rows of ``step_ms`` as GET /{market}/candles sends them (wire.candle_rows); at ``now_ms``."""
        return candle_rows(rows, live)

    def revise(self, k: int) -> None:
        """The newest candles change between calls (BITVAVO.md "Candles"): with candle_revisions=k,
        every candles request first revises the k closed candles before the newest one (close ±1
        tick, more volume) and adds volume to the newest. The last price is never moved."""
        r = self.revisions
        for c in self.candles[-1 - k : -1]:
            if c[4] == 0:
                continue
            c[3] = max(self.tick, c[3] + self.tick * r.choice((-1, 1)))
            c[1], c[2] = max(c[1], c[3]), min(c[2], c[3])
            c[4] += Decimal("0.001")
        if self.candles[-1][4] != 0:
            self.candles[-1][4] += Decimal("0.001")


def read_csv(path: str) -> dict[str, list]:
    """CSV columns: market,timestamp,open,high,low,close,volume (header required)."""
    rows: dict[str, list] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"market", "timestamp", "open", "high", "low", "close", "volume"}
        if not need <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: CSV header must have columns {','.join(sorted(need))}")
        for n, row in enumerate(reader, start=2):
            try:
                ts = int(row["timestamp"])
                ohlcv = [Decimal(row[k]) for k in ("open", "high", "low", "close", "volume")]
            except (InvalidOperation, ValueError):
                raise ValueError(f"{path}: line {n} is not timestamp,open,high,low,close,volume numbers") from None
            rows.setdefault(row["market"], []).append((ts, ohlcv))
    return {m: [c for _, c in sorted(r, key=lambda t: t[0])] for m, r in rows.items()}
