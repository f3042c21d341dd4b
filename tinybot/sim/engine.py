"""The simulated exchange itself: accounts, markets, a price path, orders, fills.

No HTTP here. ``server.py`` turns requests into calls on a ``Simulator`` and
its answers (or ``SimError``) into Bitvavo-shaped responses. Everything that
touches state runs under one lock, so the HTTP threads, the auto-stepper and a
test poking ``sim.set_price`` never see half an update.

Money is ``Decimal`` throughout; numbers leave as strings, as Bitvavo sends them.
"""

from __future__ import annotations

import csv
import math
import random
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Callable, Iterable

from .. import fees
from .faults import Fault, make_fault

TAKER_FEE = Decimal("0.0025")
MAKER_FEE = Decimal("0.0015")
FEE_QUANTUM = Decimal("1e-8")  # candle volumes have 8 decimals
MIN_QUOTE = Decimal("5")

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

OPEN_STATUSES = ("new", "partiallyFilled", "awaitingTrigger")
PERMISSIONS = frozenset({"view", "trade", "withdraw"})

# Where each behaviour comes from (docs/SIMULATOR.md has the full table with the tests).
DOCS = "https://docs.bitvavo.com/docs"
SRC_ERRORS = DOCS + "/errors"
SRC_RATE_LIMITS = DOCS + "/rate-limits"
SRC_SDK_RIGHTS = (
    "github.com/bitvavo/python-bitvavo-api README, 'Possible rights are' (Trade: place, update, view and cancel orders)"
)
SRC_CCXT_FIXTURES = "github.com/ccxt/ccxt ts/src/test/static/response/bitvavo.json (recorded responses)"

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

# How a market order may end besides "filled at once, completely" (docs get-orders: status values;
# BITVAVO.md: canceledMarketProtection is a market order stopped part-way, with fills).
OUTCOME_KINDS = ("filled", "partiallyFilled", "canceledMarketProtection", "expired")

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


class SimError(Exception):
    """A refusal the exchange answers with ``{"errorCode": code, "error": message}``."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def bad(code: int, message: str) -> SimError:
    return SimError(400, code, message)


@dataclass(frozen=True)
class SimAccount:
    """One API key of one (sub)account. ``permissions`` ⊆ {"view", "trade", "withdraw"}.

    Keys with the same non-empty ``account`` name share one account (balances,
    orders, trades), as several API keys of one Bitvavo account do: a
    view-only key sees the balance the trading key's orders moved (reading the
    orders themselves needs ``trade``, unless ``view_key_reads_orders``). The
    first key of an account brings its balances; later keys must not name any.
    """

    key: str
    secret: str
    permissions: frozenset = frozenset({"view", "trade"})
    balances: dict = field(default_factory=dict)
    account: str = ""


def s(x: Decimal) -> str:
    """Decimal → plain string without trailing zeros, never scientific notation.

    As Bitvavo writes numbers (SRC_CCXT_FIXTURES: "0.0002", "6.8976", "34469", "16.48").
    """
    return format(x.normalize(), "f") if x else "0"


def dec(value, name: str) -> Decimal:
    """Parse an incoming number (string or JSON number); 205 if it is not one."""
    if isinstance(value, bool) or value is None:
        raise bad(205, f"{name} parameter is invalid.")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise bad(205, f"{name} parameter is invalid.") from None
    if not d.is_finite():
        raise bad(205, f"{name} parameter is invalid.")
    return d


def decimals_of(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def to_tick(x: Decimal, tick: Decimal, rounding=ROUND_DOWN) -> Decimal:
    return (x / tick).to_integral_value(rounding=rounding) * tick


# --- settlement -------------------------------------------------------------------------
#
# What a fill moves comes from tinybot/fees.py, the one home of Bitvavo's settlement arithmetic
# that the paper exchange uses too. Its rules match every fill recorded in SRC_CCXT_FIXTURES:
# sell 0.00020002 BTC @ 34469 → gross 6.89448938, fee 0.02448938, net 6.87 (0.355 %); buy
# 0.0002 @ 34488 → gross 6.8976, fee 0.0224, total 6.92 (0.325 %); sell 0.0002 @ 34464 → fee
# 0.0228; a limit buy 0.0003 @ 30000 holds 9.03 (9.00 × 1.0025 = 9.0225 rounded up to the cent).
# tests/test_sim_fidelity.py replays each recorded fill through the simulator.


def quote_quantum(decimals: int) -> Decimal:
    return Decimal(1).scaleb(-decimals)


def limit_buy_hold(amount: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """onHold of a resting limit buy: amount × price plus the taker fee, rounded UP to cents (recorded 9.03)."""
    return fees.by_base("buy", [(amount, price)], rate).eur


def _split(total: Decimal, n: int, quantum: Decimal) -> list[Decimal]:
    """`total` in `n` parts of whole quanta; the last part takes the remainder."""
    part = (total / n).quantize(quantum, rounding=ROUND_DOWN)
    return [part] * (n - 1) + [total - part * (n - 1)]


def is_uuid(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


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
        v = Decimal(repr(round(r.uniform(0.05, 3.0), 8))).quantize(FEE_QUANTUM)
        return [o, hi, lo, c, v]

    def step(self) -> list[Decimal]:
        candle = self.future.pop(0) if self.future else self._walk(self.last)
        self.candles.append(candle)
        self.nonce += 1
        if len(self.candles) > 20_000:  # bound memory under --step-every
            del self.candles[: len(self.candles) - 20_000]
        return candle

    @property
    def last(self) -> Decimal:
        return self.candles[-1][3]

    def bid_ask(self) -> tuple[Decimal, Decimal]:
        half = max(self.tick, to_tick(self.last * Decimal("0.0001"), self.tick, ROUND_CEILING))
        bid = max(self.last - half, self.tick)
        return bid, self.last + half

    def describe(self) -> dict:
        return {
            "market": self.name,
            "status": self.status,
            "base": self.base,
            "quote": self.quote,
            "pricePrecision": None,
            "tickSize": s(self.tick),
            "minOrderInBaseAsset": s(self.min_base),
            "minOrderInQuoteAsset": "5.00",
            "maxOrderInBaseAsset": "1000000000.00000000",
            "maxOrderInQuoteAsset": "1000000000.00",
            "quantityDecimals": str(self.quantity_decimals),
            "notionalDecimals": str(self.notional_decimals),
            "maxOpenOrders": "100",
            "feeCategory": "A",
            "orderTypes": ["market", "limit"],
        }


@dataclass
class Outcome:
    """How the next market order(s) end (armed with ``Simulator.add_outcome``).

    kind             final status: filled | partiallyFilled | canceledMarketProtection | expired
    fraction         share of the order that fills (filled: 1; expired: 0 unless given)
    fills            number of fills, each one `step_ticks` ticks worse than the one before
    on_hold          onHold the *create answer* still shows although the order filled (later
                     lookups show "0"), as Bitvavo's answers sometimes do
    count            how many market orders it applies to (None: every one until cleared)
    """

    kind: str = "filled"
    fraction: Decimal = Decimal(1)
    fills: int = 1
    step_ticks: int = 1
    on_hold: Decimal | None = None
    count: int | None = 1
    remaining: int | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in OUTCOME_KINDS:
            raise ValueError(f"unknown outcome {self.kind!r}; use one of {', '.join(OUTCOME_KINDS)}")
        self.fraction = Decimal(str(self.fraction))
        if not 0 <= self.fraction <= 1:
            raise ValueError("outcome fraction must be between 0 and 1")
        if self.kind == "filled" and self.fraction != 1:
            raise ValueError("a filled outcome fills the whole order: leave fraction at 1")
        if self.kind in ("partiallyFilled", "canceledMarketProtection") and not 0 < self.fraction < 1:
            raise ValueError(f"a {self.kind} outcome needs 0 < fraction < 1")
        if (
            not isinstance(self.fills, int)
            or self.fills < 1
            or not isinstance(self.step_ticks, int)
            or self.step_ticks < 0
        ):
            raise ValueError("outcome fills must be >= 1 and step_ticks >= 0")
        if self.on_hold is not None:
            self.on_hold = Decimal(str(self.on_hold))
        if self.count is not None and (not isinstance(self.count, int) or self.count < 1):
            raise ValueError("outcome count must be a positive integer or None (every order)")
        if self.remaining is None:
            self.remaining = self.count

    def as_dict(self) -> dict:
        return {
            "kind": self.kind,
            "fraction": s(self.fraction),
            "fills": self.fills,
            "step_ticks": self.step_ticks,
            "on_hold": None if self.on_hold is None else s(self.on_hold),
            "count": self.count,
            "remaining": self.remaining,
        }


def _read_csv(path: str) -> dict[str, list]:
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


class Simulator:
    """A Bitvavo exchange in memory. ``serve()`` puts it on a loopback port."""

    def __init__(
        self,
        accounts: Iterable[SimAccount] = (),
        markets: Iterable[str] = ("BTC-EUR", "ETH-EUR"),
        seed: int = 7,
        candles_csv: str | None = None,
        clock: Callable[[], float] | None = None,
        interval: str = "1m",
        *,
        find_closed_by_client_id: bool = True,
        history: int = 1440,
        rate_limit: int = 1000,
        taker_fee: Decimal = TAKER_FEE,
        maker_fee: Decimal = MAKER_FEE,
        view_key_reads_orders: bool = False,
        rate_limit_code: int = 110,
        trades_window: str = "refuse",
        orders_window: str | None = None,
        balance_zero_rows: bool = False,
        unsettled: float | str | None = None,
        candle_gaps: float = 0.0,
        candle_revisions: int = 0,
        clock_skew: float = 0.0,
    ):
        if interval not in INTERVALS:
            raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
        self.lock = threading.RLock()
        self._clock = clock
        self.clock_skew = float(clock_skew)  # seconds the exchange's clock is ahead of ours (may be < 0)
        # SRC_SDK_RIGHTS: reading orders and trades is a Trade right. A view-only key gets 310
        # on GET /order, /orders, /ordersOpen, /trades unless this relaxes it.
        self.view_key_reads_orders = bool(view_key_reads_orders)
        self.set_mode(
            rate_limit_code=rate_limit_code,
            trades_window=trades_window,
            orders_window=orders_window,
            balance_zero_rows=balance_zero_rows,
            unsettled=unsettled,
            candle_revisions=candle_revisions,
        )
        self.interval = interval
        self.interval_ms = INTERVALS[interval] * 1000
        self.find_closed_by_client_id = find_closed_by_client_id
        self.rate_limit = rate_limit
        self.taker_fee, self.maker_fee = Decimal(taker_fee), Decimal(maker_fee)
        self.steps = 0
        self._ids = random.Random(seed)
        csv_rows = _read_csv(candles_csv) if candles_csv else {}
        self.markets: dict[str, MarketState] = {}
        for name in markets:
            if name.count("-") != 1 or not all(name.split("-")):
                raise ValueError(f"market {name!r} is not BASE-QUOTE, e.g. BTC-EUR")
            self.markets[name] = MarketState(
                name, INTERVALS[interval], history, seed, csv_rows.get(name), gap_probability=float(candle_gaps)
            )
        self.accounts: dict[str, SimAccount] = {}
        self._owner: dict[str, str] = {}  # api key -> the key that owns the account's books
        self._available: dict[str, dict[str, Decimal]] = {}
        self._in_order: dict[str, dict[str, Decimal]] = {}
        for acct in accounts:
            self.add_account(acct)
        self._orders: dict[str, dict] = {}  # orderId → internal record (insertion = creation order)
        self._trades: list[dict] = []
        self._faults: list[Fault] = []
        self._servers: list = []
        self._weights: dict[str, list[int]] = {}  # rate-limit identity → [minute start ms, used, banned until ms]
        self._outcomes: list[Outcome] = []

    # --- modes (each also settable at run time: POST /_sim/mode) -------------------

    MODES = (
        "rate_limit_code",
        "trades_window",
        "orders_window",
        "balance_zero_rows",
        "unsettled",
        "candle_gaps",
        "candle_revisions",
        "view_key_reads_orders",
        "clock_skew",
    )

    def set_mode(self, **modes) -> dict:
        """Change how the simulator behaves where Bitvavo's documents leave a choice; returns all modes.

        Every value is checked before any is applied: a bad one changes nothing.
        """
        for name in modes:
            if name not in self.MODES:
                raise ValueError(f"unknown mode {name!r}; use one of {', '.join(self.MODES)}")
        checked = {name: _MODE_CHECKS[name](value) for name, value in modes.items()}
        for name, value in checked.items():
            if name == "candle_gaps":
                for m in self.markets.values():
                    m.gap_probability = value
            else:
                setattr(self, name, value)
        return self.modes()

    def modes(self) -> dict:
        markets = getattr(self, "markets", {})
        return {
            "rate_limit_code": self.rate_limit_code,
            "trades_window": self.trades_window,
            "orders_window": self.orders_window,
            "balance_zero_rows": self.balance_zero_rows,
            "unsettled": self.unsettled,
            "candle_gaps": next(iter(markets.values())).gap_probability if markets else 0.0,
            "candle_revisions": self.candle_revisions,
            "view_key_reads_orders": self.view_key_reads_orders,
            "clock_skew": self.clock_skew,
        }

    # --- clock -------------------------------------------------------------

    def now_ms(self) -> int:
        # Call the clock every time (never cache time.time): freezegun patches it.
        return int(((self._clock() if self._clock else time.time()) + self.clock_skew) * 1000)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # --- accounts and balances ----------------------------------------------

    def add_account(self, account: SimAccount) -> None:
        bad_perms = set(account.permissions) - PERMISSIONS
        if bad_perms:
            raise ValueError(
                f"unknown permission(s) {sorted(bad_perms)} for key {account.key!r}; use view, trade, withdraw"
            )
        with self.lock:
            if account.key in self.accounts:
                raise ValueError(f"duplicate API key {account.key!r}")
            sibling = next(
                (k for k, a in self.accounts.items() if account.account and a.account == account.account), None
            )
            self.accounts[account.key] = account
            if sibling is not None:
                if account.balances:
                    raise ValueError(
                        f"key {account.key!r} joins account {account.account!r}: give balances on its first key only"
                    )
                self._owner[account.key] = self._owner[sibling]
                return
            self._owner[account.key] = account.key
            self._available[account.key] = {"EUR": Decimal(0)} | {
                a: Decimal(str(v)) for a, v in account.balances.items()
            }
            self._in_order[account.key] = {}

    def owner(self, key: str | None) -> str | None:
        """The key whose books an API key's account uses (itself unless it shares an account)."""
        return None if key is None else self._owner.get(key, key)

    def balance(self, key: str, *, in_order: bool = False) -> dict[str, Decimal]:
        """Available balances of a key's account (or what is held in orders)."""
        key = self.owner(key)
        with self.lock:
            src = self._in_order if in_order else self._available
            return dict(src[key])

    def set_balance(self, key: str, asset: str, available) -> None:
        key = self.owner(key)
        with self.lock:
            self._available[key][asset] = Decimal(str(available))

    def _add(self, key: str, asset: str, delta: Decimal, *, held: bool = False) -> None:
        book = (self._in_order if held else self._available)[key]
        book[asset] = book.get(asset, Decimal(0)) + delta

    # --- prices --------------------------------------------------------------

    def market(self, name) -> MarketState:
        m = self.markets.get(name) if isinstance(name, str) else None
        if m is None:
            raise bad(205, "market parameter is invalid.")
        return m

    def set_market_status(self, market: str, status: str) -> None:
        """Halt a market (or put it in cancelOnly, auction, auctionMatching, delisted, or back to trading).

        POST /order then gets the status's definite refusal (MARKET_STATUSES); a delisted market
        also leaves GET /markets. Canceling stays possible in every status.
        """
        if status not in MARKET_STATUSES:
            raise ValueError(f"unknown market status {status!r}; use one of {', '.join(MARKET_STATUSES)}")
        with self.lock:
            if market not in self.markets:
                raise ValueError(f"market must be one of {', '.join(self.markets)}")
            self.markets[market].status = status

    def listed_markets(self) -> list[MarketState]:
        return [m for m in self.markets.values() if m.status != "delisted"]

    def price(self, market: str) -> Decimal:
        """Last price (close of the newest candle)."""
        with self.lock:
            return self.markets[market].last

    def set_price(self, market: str, price) -> None:
        """Force the last price: the newest candle's close (and high/low) move to it."""
        with self.lock:
            m = self.markets[market]
            p = to_tick(Decimal(str(price)), m.tick)
            if p <= 0:
                raise ValueError(f"price {price} rounds to zero at tickSize {m.tick}")
            c = m.candles[-1]
            c[3], c[1], c[2] = p, max(c[1], p), min(c[2], p)
            m.nonce += 1
            self._match(m, p, p)

    def advance(self, steps: int = 1) -> int:
        """Close `steps` more candles in every market; fill limit orders they cross."""
        with self.lock:
            for _ in range(steps):
                for m in self.markets.values():
                    _o, hi, lo, _c, _v = m.step()
                    self._match(m, lo, hi)
                self.steps += 1
            return self.steps

    def candles(self, market: str, interval: str | None = None) -> list[list]:
        """Candles oldest first as [ts_ms, o, h, l, c, v] under the timestamp rule.

        Rule: the newest candle is the one whose interval contains the clock's
        now; each earlier one is one interval further back. So timestamps are
        always evenly spaced and end at now, however fast the path advances.
        """
        with self.lock:
            m = self.markets[market]
            ivl = self.interval_ms
            newest = self.now_ms() // ivl * ivl
            n = len(m.candles)
            # A candle without volume had no trades: Bitvavo leaves it out (a gap in the series).
            base = [[newest - (n - 1 - i) * ivl, *c] for i, c in enumerate(m.candles) if c[4] != 0]
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

    def revise_candles(self, market: str) -> None:
        """The newest candles change between calls (BITVAVO.md "Candles"): with candle_revisions=k,
        every candles request first revises the k closed candles before the newest one (close ±1
        tick, more volume) and adds volume to the newest. The last price is never moved."""
        k = self.candle_revisions
        if not k:
            return
        with self.lock:
            m = self.markets[market]
            r = m.revisions
            for c in m.candles[-1 - k : -1]:
                if c[4] == 0:
                    continue
                c[3] = max(m.tick, c[3] + m.tick * r.choice((-1, 1)))
                c[1], c[2] = max(c[1], c[3]), min(c[2], c[3])
                c[4] += Decimal("0.001")
            if m.candles[-1][4] != 0:
                m.candles[-1][4] += Decimal("0.001")

    # --- faults --------------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        on: str = "create_order",
        count: int | None = 1,
        delay: float | None = None,
        accept: bool | None = None,
        status: int | None = None,
    ) -> Fault:
        """Arm a fault for the next `count` requests of kind `on` (None = every one)."""
        return self.arm(make_fault(kind, on=on, count=count, delay=delay, accept=accept, status=status))

    def arm(self, fault: Fault) -> Fault:
        """Arm an already built fault (from ``parse_fault_spec``, the CLI or the admin endpoint)."""
        with self.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def faults(self) -> list[Fault]:
        with self.lock:
            return list(self._faults)

    def take_fault(self, request_kind: str) -> Fault | None:
        """The first armed fault matching this request; uses up one of its count."""
        with self.lock:
            for f in self._faults:
                if f.on in (request_kind, "any"):
                    if f.remaining is not None:
                        f.remaining -= 1
                        if f.remaining <= 0:
                            self._faults.remove(f)
                    f.fired += 1
                    return f
        return None

    # --- rate limit ------------------------------------------------------------

    def charge(self, ident: str, weight: int) -> tuple[bool, int, int]:
        """Spend `weight` of `ident`'s budget → (allowed, remaining, resetAt ms).

        Source SRC_RATE_LIMITS: the counter resets on wall-clock minutes ("every minute the
        system resets the counter at bitvavo-ratelimit-resetat"); a key that goes over is
        blocked until the end of the NEXT minute (over at 12:00:15 → free at 12:02:00); an IP
        (``ip:…``, unsigned calls) is blocked for 15 minutes. A refused request costs nothing.
        While blocked, resetAt is the moment the block ends. The clock is the simulator's, so
        tests move it instead of sleeping.
        """
        with self.lock:
            now = self.now_ms()
            minute = now // 60_000 * 60_000
            w = self._weights.get(ident)
            if w is None or w[0] != minute:
                w = self._weights[ident] = [minute, 0, w[2] if w else 0]
            if now < w[2]:
                return False, 0, w[2]
            if w[1] + weight > self.rate_limit:
                w[2] = now + 15 * 60_000 if ident.startswith("ip:") else minute + 120_000
                return False, 0, w[2]
            w[1] += weight
            return True, self.rate_limit - w[1], minute + 60_000

    def rate_limit_refusal(self, reset_at: int) -> SimError:
        """The 429 answer for a blocked identity, in the errorCode the rate_limit_code mode picks."""
        if self.rate_limit_code == 105:  # SRC_ERRORS (and ccxt's table): the text says when the ban ends
            return SimError(
                429,
                105,
                f"Your IP or API key has been banned for not respecting the rate limit. The ban expires at {reset_at}.",
            )
        return SimError(
            429,
            110,
            f"Rate limit exceeded: {self.rate_limit} weight per minute. Requests are allowed again at {reset_at}.",
        )

    # --- orders: views ---------------------------------------------------------

    def orders(self, key: str | None = None) -> list[dict]:
        """Every order the exchange accepted, oldest first, incl. operatorId and apiKey (the account's first key)."""
        key = self.owner(key)
        with self.lock:
            return [
                self._order_json(o) | {"apiKey": o["key"]} for o in self._orders.values() if key in (None, o["key"])
            ]

    def trades(self, key: str | None = None) -> list[dict]:
        """Every fill, oldest first, as GET /trades rows plus apiKey (the account's first key)."""
        key = self.owner(key)
        with self.lock:
            return [self._trade_json(t) | {"apiKey": t["key"]} for t in self._trades if key in (None, t["key"])]

    def _order_json(self, o: dict) -> dict:
        m = self.markets[o["market"]]
        out = {"orderId": o["orderId"]}
        if o["clientOrderId"]:
            out["clientOrderId"] = o["clientOrderId"]
        out |= {
            "market": o["market"],
            "created": o["created"],
            "updated": o["updated"],
            "status": o["status"],
            "side": o["side"],
            "orderType": o["orderType"],
        }
        # An order by amountQuote echoes amountQuote/amountQuoteRemaining and no amount, for
        # sells too (docs get-orders: "If you set amountQuote in your order, amount is not returned").
        # Remainders are what is left after the fills, whatever the status.
        sent = o.get("sent", {})
        if o["amountQuote"] is not None:
            out["amountQuote"] = sent.get("amountQuote", s(o["amountQuote"]))
            spent = o["filledQuote"] + (o["fee"] if o["side"] == "buy" else 0)
            out["amountQuoteRemaining"] = (
                "0" if o["status"] == "filled" else s(max(Decimal(0), o["amountQuote"] - spent))
            )
        elif o["amount"] is not None:
            out["amount"] = sent.get("amount", s(o["amount"]))
            out["amountRemaining"] = s(o["amount"] - o["filled"])
        if o["price"] is not None:
            out["price"] = sent.get("price", s(o["price"]))
        held = o["held"] if o["status"] in OPEN_STATUSES else Decimal(0)
        if o.get("show_on_hold") is not None:  # an outcome's on_hold: shown in the create answer only
            held = o.pop("show_on_hold")
        self._settle_due()
        out |= {
            "onHold": s(held),
            "onHoldCurrency": m.quote if o["side"] == "buy" else m.base,
            "filledAmount": s(o["filled"]),
            "filledAmountQuote": s(o["filledQuote"]),
            # feePaid counts settled fills only: an unsettled fill has no fee yet.
            "feePaid": s(sum((t["fee"] for t in o["fills"] if t["settled"]), Decimal(0))),
            "feeCurrency": m.quote,
            "fills": [self._fill_json(t) for t in o["fills"]],
            "selfTradePrevention": o["selfTradePrevention"],
            "visible": o["orderType"] == "limit",
            "timeInForce": o["timeInForce"],
            "postOnly": o["postOnly"],
            "disableMarketProtection": False,
            "operatorId": o["operatorId"],
        }
        return out

    @staticmethod
    def _fill_json(t: dict) -> dict:
        # BITVAVO.md: a fill carries fee and feeCurrency only once settled is true.
        out = {
            "id": t["id"],
            "timestamp": t["timestamp"],
            "amount": s(t["amount"]),
            "price": s(t["price"]),
            "taker": t["taker"],
        }
        if t["settled"]:
            out |= {"fee": s(t["fee"]), "feeCurrency": t["feeCurrency"]}
        return out | {"settled": t["settled"]}

    def _settle_due(self) -> None:
        now = self.now_ms()
        for t in self._trades:
            if not t["settled"] and t["settle_at"] is not None and now >= t["settle_at"]:
                t["settled"] = True

    def settle_fills(self) -> int:
        """Settle every unsettled fill now (POST /_sim/settle); returns how many."""
        with self.lock:
            pending = [t for t in self._trades if not t["settled"]]
            for t in pending:
                t["settled"] = True
            return len(pending)

    def _trade_json(self, t: dict) -> dict:
        self._settle_due()
        out = {"id": t["id"], "orderId": t["orderId"]}
        if t["clientOrderId"]:
            out["clientOrderId"] = t["clientOrderId"]
        return (
            out
            | {"timestamp": t["timestamp"], "market": t["market"], "side": t["side"]}
            | {k: v for k, v in self._fill_json(t).items() if k not in ("id", "timestamp")}
        )

    # --- orders: the REST operations (called by the server under no lock) ------

    def _check_funds(self, key, m, side, otype, amount, amount_quote, price, bid, ask) -> None:
        avail = self._available[key]
        if side == "buy":
            if otype == "market":
                need = (
                    amount_quote
                    if amount_quote is not None
                    else fees.by_base("buy", [(amount, ask)], self.taker_fee).eur
                )
            else:
                need = limit_buy_hold(amount, price, self.taker_fee)
            if avail.get(m.quote, Decimal(0)) < need:
                raise bad(216, "You do not have sufficient balance to complete this operation.")
            return
        base_needed = amount
        if otype == "market" and amount_quote is not None:
            base_needed = to_tick(amount_quote / bid, quote_quantum(m.quantity_decimals))
            if base_needed <= 0:
                raise bad(217, f"Minimum order size in quote currency is {s(MIN_QUOTE)} {m.quote}.")
        if avail.get(m.base, Decimal(0)) < base_needed:
            raise bad(216, "You do not have sufficient balance to complete this operation.")

    def create_order(self, key: str, body: dict) -> dict:
        operator_id, side, otype, cid, tif, post_only, stp = _order_params(body)
        with self.lock:
            m = self.market(body["market"])
            refusal = MARKET_STATUSES[m.status]
            if refusal is not None:  # SRC_ERRORS: 219 delisted, 423-426 halted/cancelOnly/auction/auctionMatching
                raise bad(refusal, _STATUS_TEXT[refusal])
            _order_shape(otype, body, post_only)
            amount, amount_quote, price = _order_amounts(m, body)
            bid, ask = m.bid_ask()
            ref = price if price is not None else (ask if side == "buy" else bid)
            notional = amount_quote if amount_quote is not None else amount * ref
            if notional < MIN_QUOTE:
                raise bad(217, f"Minimum order size in quote currency is {s(MIN_QUOTE)} {m.quote}.")
            if amount is not None and amount < m.min_base:
                raise bad(212, f"Amount is below the minimum allowed amount for this asset ({s(m.min_base)} {m.base}).")
            if cid is not None and any(
                o["clientOrderId"] == cid and o["market"] == m.name and o["key"] == key and o["status"] in OPEN_STATUSES
                for o in self._orders.values()
            ):
                raise bad(
                    220, "clientOrderId conflict: an open order with this clientOrderId already exists in this market."
                )
            self._check_funds(key, m, side, otype, amount, amount_quote, price, bid, ask)

            now = self.now_ms()
            o = {
                "orderId": self._new_id(),
                "clientOrderId": cid,
                "key": key,
                "market": m.name,
                "created": now,
                "updated": now,
                "status": "new",
                "side": side,
                "orderType": otype,
                "amount": amount,
                "amountQuote": amount_quote,
                "price": price,
                "held": Decimal(0),
                "filled": Decimal(0),
                "filledQuote": Decimal(0),
                "fee": Decimal(0),
                "fills": [],
                "timeInForce": tif if otype == "limit" else "IOC",
                "postOnly": post_only,
                "selfTradePrevention": stp,
                "operatorId": operator_id,
                # The amounts echo as they were sent ("10.00" stays "10.00"): no recording shows
                # Bitvavo rewriting them, and tests check what a client sent through this echo.
                "sent": {k: str(body[k]) for k in ("amount", "amountQuote", "price") if k in body},
            }
            self._orders[o["orderId"]] = o
            if otype == "market":
                self._fill_market(o, m, bid, ask, self._take_outcome())
            else:
                self._place_limit(o, m, bid, ask)
            return self._order_json(o)

    # --- market orders: fills and the ways they end ---------------------------------

    def add_outcome(
        self,
        kind: str = "filled",
        *,
        fraction=None,
        fills: int = 1,
        step_ticks: int = 1,
        on_hold=None,
        count: int | None = 1,
    ) -> Outcome:
        """Make the next `count` market orders end as `kind` (see ``Outcome``)."""
        if fraction is None:
            fraction = {
                "filled": 1,
                "partiallyFilled": Decimal("0.5"),
                "canceledMarketProtection": Decimal("0.5"),
                "expired": 0,
            }.get(kind, 1)
        outcome = Outcome(kind, fraction, fills, step_ticks, on_hold, count)
        with self.lock:
            self._outcomes.append(outcome)
        return outcome

    def outcomes(self) -> list[Outcome]:
        with self.lock:
            return list(self._outcomes)

    def clear_outcomes(self) -> None:
        with self.lock:
            self._outcomes.clear()

    def _take_outcome(self) -> Outcome | None:
        if not self._outcomes:
            return None
        outcome = self._outcomes[0]
        if outcome.remaining is not None:
            outcome.remaining -= 1
            if outcome.remaining <= 0:
                self._outcomes.pop(0)
        return outcome

    def _fill_market(self, o: dict, m: MarketState, bid: Decimal, ask: Decimal, outcome: Outcome | None) -> None:
        """Fill a market order now: completely at the touch unless an outcome says otherwise.

        Several fills walk the price `step_ticks` ticks further each (worse for the user). Every
        fill settles by the rules above: an amountQuote buy spends exactly its budget share, a
        base-amount fill moves whole cents against the user.
        """
        kind = outcome.kind if outcome else "filled"
        fraction = outcome.fraction if outcome else Decimal(1)
        n = outcome.fills if outcome else 1
        step = m.tick * (outcome.step_ticks if outcome else 0) * (1 if o["side"] == "buy" else -1)
        touch = ask if o["side"] == "buy" else bid
        prices = [max(m.tick, touch + step * i) for i in range(n)]
        qd, cents = quote_quantum(m.quantity_decimals), quote_quantum(m.notional_decimals)
        if o["side"] == "buy" and o["amountQuote"] is not None:
            # Each fill spends exactly its share of the budget (fees.buy_by_quote), so the order
            # costs exactly amountQuote when it fills completely.
            budget = (o["amountQuote"] * fraction).quantize(cents, rounding=ROUND_DOWN)
            for part, p in zip(_split(budget, n, cents), prices):
                fill = fees.buy_by_quote(part, p, m.quantity_decimals, self.taker_fee)
                if fill.base > 0:
                    self._add(o["key"], m.quote, -part)
                    self._add(o["key"], m.base, fill.base)
                    self._record_fill(o, m, fill.base, p, fill.fee, taker=True)
        else:
            # By base amount (a sell by amountQuote sells amountQuote / bid of base): the order
            # settles in whole cents against the user (fees.by_base); its fee is shared over the fills.
            total = (
                o["amount"] if o["amount"] is not None else fees.truncate(o["amountQuote"] / bid, m.quantity_decimals)
            )
            fills = [(part, p) for part, p in zip(_split(to_tick(total * fraction, qd), n, qd), prices) if part > 0]
            if fills:
                done = fees.by_base(o["side"], fills, self.taker_fee)
                base_delta, quote_delta = (done.base, -done.eur) if o["side"] == "buy" else (-done.base, done.eur)
                self._add(o["key"], m.base, base_delta)
                self._add(o["key"], m.quote, quote_delta)
                for (part, p), fee in zip(fills, fees.split_fee(done.fee, [a * q for a, q in fills])):
                    self._record_fill(o, m, part, p, fee, taker=True)
        o["status"] = kind
        o["updated"] = self.now_ms()
        if kind == "partiallyFilled":
            # The rest stays open and fills at the next advance(); its funds are held meanwhile.
            self._hold_rest(o, m)
        if outcome is not None and outcome.on_hold is not None:
            o["show_on_hold"] = outcome.on_hold

    def _hold_rest(self, o: dict, m: MarketState) -> None:
        if o["side"] == "buy":
            if o["amountQuote"] is not None:
                o["held"] = o["amountQuote"] - o["filledQuote"] - o["fee"]
            else:
                o["held"] = fees.by_base("buy", [(o["amount"] - o["filled"], m.bid_ask()[1])], self.taker_fee).eur
            asset = m.quote
        else:
            total = (
                o["amount"]
                if o["amount"] is not None
                else to_tick(o["amountQuote"] / m.bid_ask()[0], quote_quantum(m.quantity_decimals))
            )
            o["held"] = total - o["filled"]
            asset = m.base
        o["held"] = min(o["held"], self._available[o["key"]].get(asset, Decimal(0)))
        self._add(o["key"], asset, -o["held"])
        self._add(o["key"], asset, o["held"], held=True)

    def _finish_market(self, o: dict, m: MarketState) -> None:
        """A partiallyFilled market order completes at the current touch (called by advance)."""
        asset = m.quote if o["side"] == "buy" else m.base
        self._add(o["key"], asset, -o["held"], held=True)
        self._add(o["key"], asset, o["held"])
        o["held"] = Decimal(0)
        rest = dict(o)
        if o["amountQuote"] is not None and o["side"] == "buy":
            rest["amountQuote"] = o["amountQuote"] - o["filledQuote"] - o["fee"]
        elif o["amount"] is not None:
            rest["amount"] = o["amount"] - o["filled"]
        else:
            rest["amount"], rest["amountQuote"] = (
                to_tick(o["amountQuote"] / m.bid_ask()[0], quote_quantum(m.quantity_decimals)) - o["filled"],
                None,
            )
        before = len(o["fills"])
        bid, ask = m.bid_ask()
        self._fill_market(rest, m, bid, ask, None)
        for t in rest["fills"][before:]:
            t["orderId"] = o["orderId"]
        o["fills"], o["filled"], o["filledQuote"], o["fee"] = (
            rest["fills"],
            rest["filled"],
            rest["filledQuote"],
            rest["fee"],
        )
        o["status"], o["updated"] = "filled", rest["updated"]

    # --- limit orders -------------------------------------------------------------------

    def _place_limit(self, o: dict, m: MarketState, bid: Decimal, ask: Decimal) -> None:
        crosses = o["price"] >= ask if o["side"] == "buy" else o["price"] <= bid
        if crosses and o["postOnly"]:
            o["status"] = "canceledPostOnly"
            return
        if not crosses and o["timeInForce"] in ("IOC", "FOK"):
            o["status"] = "canceledIOC" if o["timeInForce"] == "IOC" else "canceledFOK"
            return
        # Reserve funds the way Bitvavo shows onHold: amount×price plus the taker fee, in whole
        # cents rounded up (SRC_CCXT_FIXTURES: 0.0003 @ 30000 holds 9.03).
        if o["side"] == "buy":
            o["held"] = limit_buy_hold(o["amount"], o["price"], self.taker_fee)
            asset = m.quote
        else:
            o["held"] = o["amount"]
            asset = m.base
        self._add(o["key"], asset, -o["held"])
        self._add(o["key"], asset, o["held"], held=True)
        if crosses:  # marketable limit: fills at once at the touch, as taker
            self._fill_limit(o, m, ask if o["side"] == "buy" else bid, taker=True)

    def _fill_limit(self, o: dict, m: MarketState, price: Decimal, taker: bool) -> None:
        key, qty = o["key"], o["amount"]
        done = fees.by_base(o["side"], [(qty, price)], self.taker_fee if taker else self.maker_fee)
        if o["side"] == "buy":
            self._add(key, m.quote, -o["held"], held=True)
            self._add(key, m.quote, o["held"] - done.eur)
            self._add(key, m.base, qty)
        else:
            self._add(key, m.base, -o["held"], held=True)
            self._add(key, m.quote, done.eur)
        self._record_fill(o, m, qty, price, done.fee, taker=taker)
        o["status"] = "filled"

    def _record_fill(self, o: dict, m: MarketState, qty: Decimal, price: Decimal, fee: Decimal, taker: bool) -> None:
        now = self.now_ms()
        # In the unsettled mode a fill comes back with settled=false and no fee until it settles
        # (after `unsettled` seconds of the simulator's clock, or by settle_fills() for "manual").
        # The balance moves at once either way; only the reported fee waits.
        settled = self.unsettled is None
        settle_at = None if settled or self.unsettled == "manual" else now + int(float(self.unsettled) * 1000)
        t = {
            "id": self._new_id(),
            "orderId": o["orderId"],
            "clientOrderId": o["clientOrderId"],
            "key": o["key"],
            "market": m.name,
            "side": o["side"],
            "timestamp": now,
            "amount": qty,
            "price": price,
            "taker": taker,
            "fee": fee,
            "feeCurrency": m.quote,
            "settled": settled,
            "settle_at": settle_at,
        }
        self._trades.append(t)
        o["fills"].append(t)
        o["filled"] += qty
        o["filledQuote"] += qty * price
        o["fee"] += fee
        o["updated"] = now

    def _match(self, m: MarketState, low: Decimal, high: Decimal) -> None:
        """Fill resting limit orders in `m` that a price range [low, high] crossed (as maker, at their price)."""
        for o in list(self._orders.values()):
            if o["market"] != m.name or o["status"] not in OPEN_STATUSES:
                continue
            if o["orderType"] == "market":
                self._finish_market(o, m)
            elif (o["side"] == "buy" and low <= o["price"]) or (o["side"] == "sell" and high >= o["price"]):
                self._fill_limit(o, m, o["price"], taker=False)

    def _find(self, key: str, market: str | None, order_id: str | None, cid: str | None) -> dict:
        with self.lock:
            if order_id is not None:
                o = self._orders.get(order_id)
                if o and o["key"] == key and market in (None, o["market"]):
                    return o
                raise SimError(
                    404,
                    240,
                    "No order found. Please be aware that simultaneously updating the same order may return this error.",
                )
            matches = [
                o
                for o in self._orders.values()
                if o["key"] == key and o["clientOrderId"] == cid and market in (None, o["market"])
            ]
            open_ = [o for o in matches if o["status"] in OPEN_STATUSES]
            if open_:
                return open_[-1]
            if matches and self.find_closed_by_client_id:
                return matches[-1]
            raise SimError(
                404,
                240,
                "No order found. Please be aware that simultaneously updating the same order may return this error.",
            )

    def _ids_from(self, params: dict, *, market_required: bool) -> tuple[str | None, str | None, str | None]:
        market = params.get("market")
        if market is None and market_required:
            raise bad(203, "market parameter is required.")
        if market is not None:
            self.market(market)
        order_id, cid = params.get("orderId"), params.get("clientOrderId")
        if order_id is None and cid is None:
            raise bad(203, "orderId or clientOrderId parameter is required.")
        if order_id is not None and cid is not None:
            # docs websocket-api/get-order: "If you set both, we use the clientOrderId to identify
            # the order" (the FIX OrderStatusRequest says the same of ClOrdID).
            order_id = None
        if order_id is not None and not is_uuid(order_id):
            raise bad(205, "orderId parameter is invalid.")
        if cid is not None and not is_uuid(cid):
            raise bad(205, "clientOrderId parameter is invalid.")
        return market, order_id, cid

    def get_order(self, key: str, params: dict) -> dict:
        # docs rest-api/get-order: market is required (ccxt's fetch_order always sends it).
        market, order_id, cid = self._ids_from(params, market_required=True)
        with self.lock:
            return self._order_json(self._find(key, market, order_id, cid))

    def cancel_order(self, key: str, params: dict) -> dict:
        market, order_id, cid = self._ids_from(params, market_required=True)
        op = params.get("operatorId")
        if op is None:
            raise bad(203, "operatorId parameter is required.")
        if not str(op).isdigit() or int(op) < 1:
            raise bad(205, "operatorId parameter is invalid.")
        with self.lock:
            o = self._find(key, market, order_id, cid)
            if o["status"] not in OPEN_STATUSES:
                raise bad(233, "Order must be active (status new or partiallyFilled) to allow updating/cancelling.")
            self._cancel(o)
            out = {"orderId": o["orderId"]}
            if o["clientOrderId"]:
                out["clientOrderId"] = o["clientOrderId"]
            return out | {"operatorId": int(op)}

    def _cancel(self, o: dict) -> None:
        m = self.markets[o["market"]]
        asset = m.quote if o["side"] == "buy" else m.base
        self._add(o["key"], asset, -o["held"], held=True)
        self._add(o["key"], asset, o["held"])
        o["status"] = "canceled"
        o["updated"] = self.now_ms()

    def cancel_orders(self, key: str, params: dict) -> list[dict]:
        market = params.get("market")
        if market is not None:
            self.market(market)
        op = params.get("operatorId")
        if op is None:
            raise bad(203, "operatorId parameter is required.")
        with self.lock:
            out = []
            for o in self._orders.values():
                if o["key"] == key and o["status"] in OPEN_STATUSES and market in (None, o["market"]):
                    self._cancel(o)
                    out.append({"orderId": o["orderId"], "operatorId": int(op)})
            return out

    @staticmethod
    def _window(params: dict, default_limit: int, max_limit: int) -> tuple[int | None, int | None, int]:
        def num(name):
            v = params.get(name)
            if v is None:
                return None
            if not str(v).isdigit():
                raise bad(205, f"{name} parameter is invalid.")
            return int(v)

        start, end, limit = num("start"), num("end"), num("limit")
        if limit is None:
            limit = default_limit
        if not 1 <= limit <= max_limit:
            raise bad(205, "limit parameter is invalid.")
        return start, end, limit

    def list_orders(self, key: str, params: dict) -> list[dict]:
        if params.get("market") is None:
            raise bad(203, "market parameter is required.")
        self.market(params["market"])
        start, end, limit = self._window(params, 500, 1000)
        if self.orders_window is not None:  # docs websocket-api/get-orders says 24 h; the REST page does not
            start, end = self._day_window(start, end, self.orders_window)
        with self.lock:
            rows = [
                o
                for o in self._orders.values()
                if o["key"] == key
                and o["market"] == params["market"]
                and (start is None or o["created"] >= start)
                and (end is None or o["created"] <= end)
            ]
            return [self._order_json(o) for o in reversed(rows)][:limit]

    def open_orders(self, key: str, params: dict) -> list[dict]:
        market, base = params.get("market"), params.get("base")
        if market is not None:
            self.market(market)
        with self.lock:
            rows = [
                o
                for o in self._orders.values()
                if o["key"] == key
                and o["status"] in OPEN_STATUSES
                and market in (None, o["market"])
                and base in (None, o["market"].split("-")[0])
            ]
            return [self._order_json(o) for o in reversed(rows)]

    def _day_window(self, start, end, how: str) -> tuple[int, int]:
        """docs rest-api/get-trade-history: "a time period of up to 24 hours"; end "cannot be more
        than 24 hours after the start". Without start the 24 h end at `end` (default now); without
        end they begin at `start`. A longer span is refused (205; the code is not documented) or,
        in clamp mode, cut to the 24 h after start."""
        day = 86_400_000
        if start is None and end is None:
            end = self.now_ms()
        if start is None:
            start = end - day
        elif end is None:
            end = start + day
        if end - start > day:
            if how == "refuse":
                raise bad(205, "end parameter is invalid: it cannot be more than 24 hours after start.")
            end = start + day
        return start, end

    def list_trades(self, key: str | None, params: dict) -> list[dict]:
        """GET /trades (key given) or the public GET /{market}/trades (key None)."""
        if params.get("market") is None:
            raise bad(203, "market parameter is required.")
        self.market(params["market"])
        start, end, limit = self._window(params, 500, 1000)
        start, end = self._day_window(start, end, self.trades_window)
        with self.lock:
            rows = [
                t
                for t in self._trades
                if key in (None, t["key"])
                and t["market"] == params["market"]
                and (start is None or t["timestamp"] >= start)
                and (end is None or t["timestamp"] <= end)
            ]
            rows = list(reversed(rows))[:limit]
            if key is None:
                return [
                    {
                        "id": t["id"],
                        "timestamp": t["timestamp"],
                        "amount": s(t["amount"]),
                        "price": s(t["price"]),
                        "side": t["side"],
                    }
                    for t in rows
                ]
            return [self._trade_json(t) for t in rows]

    def balances_json(self, key: str, symbol: str | None = None) -> list[dict]:
        """GET /balance rows. docs websocket-api/get-account-balance: without a symbol it "returns
        the balance for all assets above zero"; SRC_CCXT_FIXTURES (a 2023 recording) still lists
        zero rows, which balance_zero_rows=True reproduces. A symbol asked for is always answered."""
        key = self.owner(key)
        with self.lock:
            avail, held = self._available[key], self._in_order[key]
            assets = sorted(set(avail) | set(held) | ({symbol} if symbol else set()), key=lambda a: (a != "EUR", a))
            rows = [
                {"symbol": a, "available": s(avail.get(a, Decimal(0))), "inOrder": s(held.get(a, Decimal(0)))}
                for a in assets
                if symbol in (None, a)
            ]
            if symbol is None and not self.balance_zero_rows:
                rows = [r for r in rows if Decimal(r["available"]) or Decimal(r["inOrder"])]
            return rows

    # --- public market data ------------------------------------------------------

    def assets_json(self) -> list[dict]:
        names = {"EUR": "Euro", "BTC": "Bitcoin", "ETH": "Ethereum"}
        symbols = ["EUR"] + sorted(
            {m.base for m in self.markets.values()} | {m.quote for m in self.markets.values()} - {"EUR"}
        )
        out = []
        for sym in symbols:
            fiat = sym == "EUR"
            out.append(
                {
                    "symbol": sym,
                    "name": names.get(sym, sym),
                    "decimals": 2 if fiat else 8,
                    "depositFee": "0",
                    "depositConfirmations": 0 if fiat else 10,
                    "depositStatus": "OK",
                    "withdrawalFee": "0" if fiat else "0.0001",
                    "withdrawalMinAmount": "0" if fiat else "0.001",
                    "withdrawalStatus": "OK",
                    # ccxt takes a currency's precision from its networks: without
                    # SEPA on EUR, cost-based (amountQuote) market orders break.
                    "networks": ["SEPA"] if fiat else [sym],
                    "message": "",
                }
            )
        return out

    def ticker_24h(self, name: str) -> dict:
        with self.lock:
            m = self.market(name)
            now = self.now_ms()
            rows = self.candles(name)[-(86_400_000 // self.interval_ms) :]
            bid, ask = m.bid_ask()
            vol = sum((r[5] for r in rows), Decimal(0))
            vq = sum((r[5] * r[4] for r in rows), Decimal(0)).quantize(Decimal("0.01"))
            return {
                "market": name,
                "startTimestamp": now - 86_400_000,
                "timestamp": now,
                "open": s(rows[0][1]),
                "openTimestamp": rows[0][0],
                "high": s(max(r[2] for r in rows)),
                "low": s(min(r[3] for r in rows)),
                "last": s(m.last),
                "closeTimestamp": rows[-1][0],
                "bid": s(bid),
                "bidSize": "0.50000000",
                "ask": s(ask),
                "askSize": "0.50000000",
                "volume": s(vol),
                "volumeQuote": s(vq),
            }

    def book(self, name: str, depth: int) -> dict:
        with self.lock:
            m = self.market(name)
            bid, ask = m.bid_ask()
            n = max(1, min(depth, 50))

            def size(i):
                return s((Decimal("0.1") * (i + 1)).quantize(Decimal(1).scaleb(-m.quantity_decimals)))

            bids = [[s(bid - i * m.tick), size(i)] for i in range(n) if bid - i * m.tick > 0]
            asks = [[s(ask + i * m.tick), size(i)] for i in range(n)]
            return {"market": name, "nonce": m.nonce, "bids": bids, "asks": asks}

    def state_json(self) -> dict:
        """Everything a test or a person wants to look at, as JSON-ready data."""
        with self.lock:
            return {
                "time": self.now_ms(),
                "steps": self.steps,
                "prices": {n: s(m.last) for n, m in self.markets.items()},
                "balances": {
                    k: {
                        a: {"available": s(v), "inOrder": s(self._in_order[self.owner(k)].get(a, Decimal(0)))}
                        for a, v in sorted(self._available[self.owner(k)].items(), key=lambda i: (i[0] != "EUR", i[0]))
                    }
                    for k in self.accounts
                },
                "accounts": {
                    k: {"account": a.account or k, "books": self.owner(k), "permissions": sorted(a.permissions)}
                    for k, a in self.accounts.items()
                },
                "markets": {n: m.status for n, m in self.markets.items()},
                "modes": self.modes(),
                "outcomes": [x.as_dict() for x in self._outcomes],
                "orders": self.orders(),
                "trades": self.trades(),
                "faults": [f.as_dict() for f in self._faults],
            }

    # --- serving -------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False):
        """Start the REST server on a daemon thread; returns a handle (url, port, close())."""
        from .server import SimServer

        server = SimServer(self, host, port, verbose=verbose)
        self._servers.append(server)
        return server

    def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_ORDER_PARAMS = {
    "market",
    "side",
    "orderType",
    "amount",
    "amountQuote",
    "price",
    "timeInForce",
    "postOnly",
    "selfTradePrevention",
    "disableMarketProtection",
    "responseRequired",
    "clientOrderId",
    "operatorId",
}


def _order_params(body: dict) -> tuple:
    """The body's own checks (201 unknown, 203 missing, 205 invalid), before any market is looked at."""
    for k in body:
        if k not in _ORDER_PARAMS:
            raise bad(201, f"{k} body parameter is not supported.")
    for k in ("market", "side", "orderType", "operatorId"):
        if k not in body:
            raise bad(203, f"{k} parameter is required.")
    operator_id = body["operatorId"]
    if isinstance(operator_id, bool) or not isinstance(operator_id, int) or operator_id < 1:
        raise bad(205, "operatorId parameter is invalid.")
    side, otype = body["side"], body["orderType"]
    if side not in ("buy", "sell"):
        raise bad(205, "side parameter is invalid.")
    if otype not in ("market", "limit"):
        raise bad(205, "orderType parameter is invalid (the simulator models market and limit only).")
    cid = body.get("clientOrderId")
    if cid is not None and not is_uuid(cid):
        raise bad(205, "clientOrderId parameter is invalid.")
    tif = body.get("timeInForce", "GTC")
    if tif not in ("GTC", "IOC", "FOK"):
        raise bad(205, "timeInForce parameter is invalid.")
    post_only = body.get("postOnly", False)
    if not isinstance(post_only, bool):
        raise bad(205, "postOnly parameter is invalid.")
    stp = body.get("selfTradePrevention", "decrementAndCancel")
    if stp not in ("decrementAndCancel", "cancelOldest", "cancelNewest", "cancelBoth"):
        raise bad(205, "selfTradePrevention parameter is invalid.")
    return operator_id, side, otype, cid, tif, post_only, stp


def _order_shape(otype: str, body: dict, post_only: bool) -> None:
    """Which amounts an order type takes (202 not supported, 203 missing, 206 both)."""
    if otype == "market":
        if "price" in body:
            raise bad(202, "price order parameter is not supported.")
        if post_only:
            raise bad(202, "postOnly order parameter is not supported.")
        if ("amount" in body) == ("amountQuote" in body):
            if "amount" in body:
                raise bad(
                    206,
                    "Use either amount or amountQuote. The usage of both parameters at the same time is not supported.",
                )
            raise bad(203, "amount or amountQuote parameter is required.")
        return
    if "amountQuote" in body:
        raise bad(202, "amountQuote order parameter is not supported.")
    for k in ("amount", "price"):
        if k not in body:
            raise bad(203, f"{k} parameter is required.")


def _order_amounts(m, body: dict) -> tuple:
    """amount, amountQuote and price as Decimals.  Too many decimals is errorCode 429, a price off the tick
    size 422 (SRC_ERRORS, as listed in BITVAVO.md "Definite refusals"); a value that is no positive number
    stays 205."""
    amount = amount_quote = price = None
    if "amount" in body:
        amount = dec(body["amount"], "amount")
        if amount <= 0:
            raise bad(205, "amount parameter is invalid.")
        if decimals_of(amount) > m.quantity_decimals:
            raise bad(429, f"amount has too many decimals: {m.base} allows {m.quantity_decimals}.")
    if "amountQuote" in body:
        amount_quote = dec(body["amountQuote"], "amountQuote")
        if amount_quote <= 0:
            raise bad(205, "amountQuote parameter is invalid.")
        if decimals_of(amount_quote) > m.notional_decimals:
            raise bad(429, f"amountQuote has too many decimals: {m.quote} allows {m.notional_decimals}.")
    if "price" in body:
        price = dec(body["price"], "price")
        if price <= 0:
            raise bad(213, "Price is below the minimum allowed amount.")
        if decimals_of(price) > 15:
            raise bad(215, "Price is too detailed. A maximum of 15 digits behind the decimal point are allowed.")
        if price % m.tick != 0:
            # docs.bitvavo.com/releases/v2.12.0: prices must be multiples of the tick size.
            raise bad(422, f"Invalid price tick size: price must be a multiple of {s(m.tick)}.")
    return amount, amount_quote, price


def _check(ok, message: str):
    """A mode's validator: ``ok(value)`` says whether to take it; the value is returned as converted."""

    def check(value):
        converted = ok(value)
        if converted is _BAD:
            raise ValueError(message)
        return converted

    return check


_BAD = object()


def _count(value):
    return value if not isinstance(value, bool) and isinstance(value, int) and value >= 0 else _BAD


def _unsettled(u):
    if u is None or u == "manual" or (not isinstance(u, bool) and isinstance(u, (int, float)) and u >= 0):
        return u
    return _BAD


def _probability(value):
    p = float(value)
    return p if 0 <= p < 1 else _BAD


_MODE_CHECKS = {
    # SRC_RATE_LIMITS says 110; SRC_ERRORS says 105 ("banned ... expires at"). One per setting.
    "rate_limit_code": _check(lambda v: v if v in (105, 110) else _BAD, "rate_limit_code must be 105 or 110"),
    "trades_window": _check(
        lambda v: v if v in ("refuse", "clamp") else _BAD, "trades_window must be 'refuse' or 'clamp'"
    ),
    "orders_window": _check(
        lambda v: v if v in ("refuse", "clamp", None) else _BAD, "orders_window must be 'refuse' or 'clamp' or None"
    ),
    "balance_zero_rows": bool,
    "unsettled": _check(_unsettled, "unsettled must be None (fees settled at once), seconds >= 0, or 'manual'"),
    "candle_gaps": _check(_probability, "candle_gaps is a probability: 0 <= p < 1"),
    "candle_revisions": _check(_count, "candle_revisions must be an integer >= 0"),
    "view_key_reads_orders": bool,
    "clock_skew": float,
}
