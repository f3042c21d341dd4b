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
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_UP, Decimal, InvalidOperation
from typing import Callable, Iterable

from .faults import Fault, make_fault

TAKER_FEE = Decimal("0.0025")
MAKER_FEE = Decimal("0.0015")
FEE_QUANTUM = Decimal("1e-8")  # fees are rounded UP to 8 decimals
MIN_QUOTE = Decimal("5")

INTERVALS = {
    "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
    "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400,
}

OPEN_STATUSES = ("new", "partiallyFilled", "awaitingTrigger")
PERMISSIONS = frozenset({"view", "trade", "withdraw"})

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
    view-only key sees the orders the trading key placed.  The first key of
    an account brings its balances; later keys must not name any.
    """

    key: str
    secret: str
    permissions: frozenset = frozenset({"view", "trade"})
    balances: dict = field(default_factory=dict)
    account: str = ""


def s(x: Decimal) -> str:
    """Decimal → plain string, never scientific notation."""
    return format(x, "f")


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


def fee_of(quote: Decimal, rate: Decimal) -> Decimal:
    return (quote * rate).quantize(FEE_QUANTUM, rounding=ROUND_UP)


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

    def __init__(self, name: str, interval_s: int, history: int, seed: int, csv_rows: list | None):
        base, _, quote = name.partition("-")
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
            "status": "trading",
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
    ):
        if interval not in INTERVALS:
            raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
        self.lock = threading.RLock()
        self._clock = clock
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
            self.markets[name] = MarketState(name, INTERVALS[interval], history, seed, csv_rows.get(name))
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
        self._weights: dict[str, list[int]] = {}  # rate-limit identity → [window start ms, used]

    # --- clock -------------------------------------------------------------

    def now_ms(self) -> int:
        # Call the clock every time (never cache time.time): freezegun patches it.
        return int((self._clock() if self._clock else time.time()) * 1000)

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._ids.getrandbits(128), version=4))

    # --- accounts and balances ----------------------------------------------

    def add_account(self, account: SimAccount) -> None:
        bad_perms = set(account.permissions) - PERMISSIONS
        if bad_perms:
            raise ValueError(f"unknown permission(s) {sorted(bad_perms)} for key {account.key!r}; use view, trade, withdraw")
        with self.lock:
            if account.key in self.accounts:
                raise ValueError(f"duplicate API key {account.key!r}")
            sibling = next((k for k, a in self.accounts.items() if account.account and a.account == account.account),
                           None)
            self.accounts[account.key] = account
            if sibling is not None:
                if account.balances:
                    raise ValueError(f"key {account.key!r} joins account {account.account!r}: give balances"
                                     " on its first key only")
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
            base = [[newest - (n - 1 - i) * ivl, *c] for i, c in enumerate(m.candles)]
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

    # --- faults --------------------------------------------------------------

    def add_fault(self, kind: str, on: str = "create_order", count: int | None = 1,
                  delay: float | None = None, accept: bool | None = None,
                  status: int | None = None) -> Fault:
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
        """Spend `weight` of `ident`'s per-minute budget → (allowed, remaining, resetAt ms).

        A fixed one-minute window that starts with the first request; a request
        that does not fit is refused and costs nothing.
        """
        with self.lock:
            now = self.now_ms()
            window = self._weights.get(ident)
            if window is None or now >= window[0] + 60_000 or now < window[0]:
                window = self._weights[ident] = [now, 0]
            reset_at = window[0] + 60_000
            if window[1] + weight > self.rate_limit:
                return False, max(0, self.rate_limit - window[1]), reset_at
            window[1] += weight
            return True, self.rate_limit - window[1], reset_at

    # --- orders: views ---------------------------------------------------------

    def orders(self, key: str | None = None) -> list[dict]:
        """Every order the exchange accepted, oldest first, incl. operatorId and apiKey (the account's first key)."""
        key = self.owner(key)
        with self.lock:
            return [self._order_json(o) | {"apiKey": o["key"]}
                    for o in self._orders.values() if key in (None, o["key"])]

    def trades(self, key: str | None = None) -> list[dict]:
        """Every fill, oldest first, as GET /trades rows plus apiKey (the account's first key)."""
        key = self.owner(key)
        with self.lock:
            return [self._trade_json(t) | {"apiKey": t["key"]}
                    for t in self._trades if key in (None, t["key"])]

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
        if o["amount"] is not None:
            out["amount"] = s(o["amount"])
            out["amountRemaining"] = s(o["amount"] - o["filled"]) if o["status"] in OPEN_STATUSES else "0"
        if o["amountQuote"] is not None:
            out["amountQuote"] = s(o["amountQuote"])
            out["amountQuoteRemaining"] = "0" if o["status"] not in OPEN_STATUSES else s(o["amountQuote"])
        if o["price"] is not None:
            out["price"] = s(o["price"])
        held = o["held"] if o["status"] in OPEN_STATUSES else Decimal(0)
        out |= {
            "onHold": s(held),
            "onHoldCurrency": m.quote if o["side"] == "buy" else m.base,
            "filledAmount": s(o["filled"]),
            "filledAmountQuote": s(o["filledQuote"]),
            "feePaid": s(o["fee"]),
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
        return {"id": t["id"], "timestamp": t["timestamp"], "amount": s(t["amount"]),
                "price": s(t["price"]), "taker": t["taker"], "fee": s(t["fee"]),
                "feeCurrency": t["feeCurrency"], "settled": True}

    def _trade_json(self, t: dict) -> dict:
        out = {"id": t["id"], "orderId": t["orderId"]}
        if t["clientOrderId"]:
            out["clientOrderId"] = t["clientOrderId"]
        return out | {"timestamp": t["timestamp"], "market": t["market"], "side": t["side"]} | {
            k: v for k, v in self._fill_json(t).items() if k not in ("id", "timestamp")}

    # --- orders: the REST operations (called by the server under no lock) ------

    def create_order(self, key: str, body: dict) -> dict:
        allowed = {"market", "side", "orderType", "amount", "amountQuote", "price", "timeInForce",
                   "postOnly", "selfTradePrevention", "disableMarketProtection", "responseRequired",
                   "clientOrderId", "operatorId"}
        for k in body:
            if k not in allowed:
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
            raise bad(205, f"orderType parameter is invalid (the simulator models market and limit only).")
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

        with self.lock:
            m = self.market(body["market"])
            amount = amount_quote = price = None
            if otype == "market":
                if "price" in body:
                    raise bad(202, "price order parameter is not supported.")
                if post_only:
                    raise bad(202, "postOnly order parameter is not supported.")
                if ("amount" in body) == ("amountQuote" in body):
                    if "amount" in body:
                        raise bad(206, "Use either amount or amountQuote. The usage of both parameters at the same time is not supported.")
                    raise bad(203, "amount or amountQuote parameter is required.")
            else:
                if "amountQuote" in body:
                    raise bad(202, "amountQuote order parameter is not supported.")
                for k in ("amount", "price"):
                    if k not in body:
                        raise bad(203, f"{k} parameter is required.")
            if "amount" in body:
                amount = dec(body["amount"], "amount")
                if amount <= 0 or decimals_of(amount) > m.quantity_decimals:
                    raise bad(205, "amount parameter is invalid.")
            if "amountQuote" in body:
                amount_quote = dec(body["amountQuote"], "amountQuote")
                if amount_quote <= 0 or decimals_of(amount_quote) > m.notional_decimals:
                    raise bad(205, "amountQuote parameter is invalid.")
            if "price" in body:
                price = dec(body["price"], "price")
                if price <= 0:
                    raise bad(213, "Price is below the minimum allowed amount.")
                if decimals_of(price) > 15:
                    raise bad(215, "Price is too detailed. A maximum of 15 digits behind the decimal point are allowed.")
                if price % m.tick != 0:
                    raise bad(205, f"price parameter is invalid. It must be a multiple of the tickSize {s(m.tick)}.")

            bid, ask = m.bid_ask()
            ref = price if price is not None else (ask if side == "buy" else bid)
            notional = amount_quote if amount_quote is not None else amount * ref
            if notional < MIN_QUOTE:
                raise bad(217, f"Minimum order size in quote currency is {s(MIN_QUOTE)} {m.quote}.")
            if amount is not None and amount < m.min_base:
                raise bad(212, f"Amount is below the minimum allowed amount for this asset ({s(m.min_base)} {m.base}).")
            if cid is not None and any(
                o["clientOrderId"] == cid and o["market"] == m.name and o["key"] == key
                and o["status"] in OPEN_STATUSES for o in self._orders.values()
            ):
                raise bad(220, "clientOrderId conflict: an open order with this clientOrderId already exists in this market.")

            avail = self._available[key]
            if side == "buy":
                if otype == "market":
                    need = amount_quote if amount_quote is not None else amount * ask + fee_of(amount * ask, self.taker_fee)
                else:
                    need = amount * price + fee_of(amount * price, self.taker_fee)
                if avail.get(m.quote, Decimal(0)) < need:
                    raise bad(216, "You do not have sufficient balance to complete this operation.")
            else:
                if otype == "market" and amount_quote is not None:
                    amount = to_tick(amount_quote / bid, Decimal(1).scaleb(-m.quantity_decimals))
                    amount_quote = None
                    if amount <= 0:
                        raise bad(217, f"Minimum order size in quote currency is {s(MIN_QUOTE)} {m.quote}.")
                if avail.get(m.base, Decimal(0)) < amount:
                    raise bad(216, "You do not have sufficient balance to complete this operation.")

            now = self.now_ms()
            o = {
                "orderId": self._new_id(), "clientOrderId": cid, "key": key, "market": m.name,
                "created": now, "updated": now, "status": "new", "side": side, "orderType": otype,
                "amount": amount, "amountQuote": amount_quote, "price": price,
                "held": Decimal(0), "filled": Decimal(0), "filledQuote": Decimal(0), "fee": Decimal(0),
                "fills": [], "timeInForce": tif if otype == "limit" else "IOC", "postOnly": post_only,
                "selfTradePrevention": stp, "operatorId": operator_id,
            }
            self._orders[o["orderId"]] = o
            if otype == "market":
                self._fill_market(o, m, bid, ask)
            else:
                self._place_limit(o, m, bid, ask)
            return self._order_json(o)

    def _fill_market(self, o: dict, m: MarketState, bid: Decimal, ask: Decimal) -> None:
        if o["side"] == "buy" and o["amountQuote"] is not None:
            # The sim's model: debit exactly amountQuote; the taker fee comes out
            # of it; the rest buys base at the ask, rounded DOWN to
            # quantityDecimals. The sub-cent remainder stays with the exchange.
            fee = fee_of(o["amountQuote"], self.taker_fee)
            qty = to_tick((o["amountQuote"] - fee) / ask, Decimal(1).scaleb(-m.quantity_decimals))
            self._add(o["key"], m.quote, -o["amountQuote"])
            self._add(o["key"], m.base, qty)
            self._record_fill(o, m, qty, ask, fee, taker=True)
        elif o["side"] == "buy":
            fee = fee_of(o["amount"] * ask, self.taker_fee)
            self._add(o["key"], m.quote, -(o["amount"] * ask + fee))
            self._add(o["key"], m.base, o["amount"])
            self._record_fill(o, m, o["amount"], ask, fee, taker=True)
        else:
            fee = fee_of(o["amount"] * bid, self.taker_fee)
            self._add(o["key"], m.base, -o["amount"])
            self._add(o["key"], m.quote, o["amount"] * bid - fee)
            self._record_fill(o, m, o["amount"], bid, fee, taker=True)

    def _place_limit(self, o: dict, m: MarketState, bid: Decimal, ask: Decimal) -> None:
        crosses = o["price"] >= ask if o["side"] == "buy" else o["price"] <= bid
        if crosses and o["postOnly"]:
            o["status"] = "canceledPostOnly"
            return
        if not crosses and o["timeInForce"] in ("IOC", "FOK"):
            o["status"] = "canceledIOC" if o["timeInForce"] == "IOC" else "canceledFOK"
            return
        # Reserve funds the way Bitvavo shows onHold: amount×price plus the taker fee.
        if o["side"] == "buy":
            o["held"] = o["amount"] * o["price"] + fee_of(o["amount"] * o["price"], self.taker_fee)
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
        fee = fee_of(qty * price, self.taker_fee if taker else self.maker_fee)
        if o["side"] == "buy":
            self._add(key, m.quote, -o["held"], held=True)
            self._add(key, m.quote, o["held"] - qty * price - fee)
            self._add(key, m.base, qty)
        else:
            self._add(key, m.base, -o["held"], held=True)
            self._add(key, m.quote, qty * price - fee)
        self._record_fill(o, m, qty, price, fee, taker=taker)

    def _record_fill(self, o: dict, m: MarketState, qty: Decimal, price: Decimal, fee: Decimal, taker: bool) -> None:
        now = self.now_ms()
        t = {"id": self._new_id(), "orderId": o["orderId"], "clientOrderId": o["clientOrderId"],
             "key": o["key"], "market": m.name, "side": o["side"], "timestamp": now,
             "amount": qty, "price": price, "taker": taker, "fee": fee, "feeCurrency": m.quote}
        self._trades.append(t)
        o["fills"].append(t)
        o["filled"] += qty
        o["filledQuote"] += qty * price
        o["fee"] += fee
        o["status"] = "filled"
        o["updated"] = now

    def _match(self, m: MarketState, low: Decimal, high: Decimal) -> None:
        """Fill resting limit orders in `m` that a price range [low, high] crossed (as maker, at their price)."""
        for o in list(self._orders.values()):
            if o["market"] != m.name or o["orderType"] != "limit" or o["status"] not in OPEN_STATUSES:
                continue
            if (o["side"] == "buy" and low <= o["price"]) or (o["side"] == "sell" and high >= o["price"]):
                self._fill_limit(o, m, o["price"], taker=False)

    def _find(self, key: str, market: str | None, order_id: str | None, cid: str | None) -> dict:
        with self.lock:
            if order_id is not None:
                o = self._orders.get(order_id)
                if o and o["key"] == key and market in (None, o["market"]):
                    return o
                raise SimError(404, 240, "No order found. Please be aware that simultaneously updating the same order may return this error.")
            matches = [o for o in self._orders.values()
                       if o["key"] == key and o["clientOrderId"] == cid and market in (None, o["market"])]
            open_ = [o for o in matches if o["status"] in OPEN_STATUSES]
            if open_:
                return open_[-1]
            if matches and self.find_closed_by_client_id:
                return matches[-1]
            raise SimError(404, 240, "No order found. Please be aware that simultaneously updating the same order may return this error.")

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
            raise bad(206, "Use either orderId or clientOrderId. The usage of both parameters at the same time is not supported.")
        if order_id is not None and not is_uuid(order_id):
            raise bad(205, "orderId parameter is invalid.")
        if cid is not None and not is_uuid(cid):
            raise bad(205, "clientOrderId parameter is invalid.")
        return market, order_id, cid

    def get_order(self, key: str, params: dict) -> dict:
        # Market is optional when the clientOrderId is given (ccxt sends it anyway).
        market, order_id, cid = self._ids_from(params, market_required=params.get("clientOrderId") is None)
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
        with self.lock:
            rows = [o for o in self._orders.values() if o["key"] == key and o["market"] == params["market"]
                    and (start is None or o["created"] >= start) and (end is None or o["created"] <= end)]
            return [self._order_json(o) for o in reversed(rows)][:limit]

    def open_orders(self, key: str, params: dict) -> list[dict]:
        market, base = params.get("market"), params.get("base")
        if market is not None:
            self.market(market)
        with self.lock:
            rows = [o for o in self._orders.values() if o["key"] == key and o["status"] in OPEN_STATUSES
                    and market in (None, o["market"]) and base in (None, o["market"].split("-")[0])]
            return [self._order_json(o) for o in reversed(rows)]

    def list_trades(self, key: str | None, params: dict) -> list[dict]:
        """GET /trades (key given) or the public GET /{market}/trades (key None)."""
        if params.get("market") is None:
            raise bad(203, "market parameter is required.")
        self.market(params["market"])
        start, end, limit = self._window(params, 500, 1000)
        with self.lock:
            rows = [t for t in self._trades if key in (None, t["key"]) and t["market"] == params["market"]
                    and (start is None or t["timestamp"] >= start) and (end is None or t["timestamp"] <= end)]
            rows = list(reversed(rows))[:limit]
            if key is None:
                return [{"id": t["id"], "timestamp": t["timestamp"], "amount": s(t["amount"]),
                         "price": s(t["price"]), "side": t["side"]} for t in rows]
            return [self._trade_json(t) for t in rows]

    def balances_json(self, key: str, symbol: str | None = None) -> list[dict]:
        with self.lock:
            avail, held = self._available[key], self._in_order[key]
            assets = sorted(set(avail) | set(held), key=lambda a: (a != "EUR", a))
            return [{"symbol": a, "available": s(avail.get(a, Decimal(0))), "inOrder": s(held.get(a, Decimal(0)))}
                    for a in assets if symbol in (None, a)]

    # --- public market data ------------------------------------------------------

    def assets_json(self) -> list[dict]:
        names = {"EUR": "Euro", "BTC": "Bitcoin", "ETH": "Ethereum"}
        symbols = ["EUR"] + sorted({m.base for m in self.markets.values()} | {m.quote for m in self.markets.values()} - {"EUR"})
        out = []
        for sym in symbols:
            fiat = sym == "EUR"
            out.append({
                "symbol": sym, "name": names.get(sym, sym), "decimals": 2 if fiat else 8,
                "depositFee": "0", "depositConfirmations": 0 if fiat else 10, "depositStatus": "OK",
                "withdrawalFee": "0" if fiat else "0.0001", "withdrawalMinAmount": "0" if fiat else "0.001",
                "withdrawalStatus": "OK",
                # ccxt takes a currency's precision from its networks: without
                # SEPA on EUR, cost-based (amountQuote) market orders break.
                "networks": ["SEPA"] if fiat else [sym],
                "message": "",
            })
        return out

    def ticker_24h(self, name: str) -> dict:
        with self.lock:
            m = self.market(name)
            now = self.now_ms()
            rows = self.candles(name)[-(86_400_000 // self.interval_ms):]
            bid, ask = m.bid_ask()
            vol = sum((r[5] for r in rows), Decimal(0))
            vq = sum((r[5] * r[4] for r in rows), Decimal(0)).quantize(Decimal("0.01"))
            return {
                "market": name, "startTimestamp": now - 86_400_000, "timestamp": now,
                "open": s(rows[0][1]), "openTimestamp": rows[0][0],
                "high": s(max(r[2] for r in rows)), "low": s(min(r[3] for r in rows)),
                "last": s(m.last), "closeTimestamp": rows[-1][0],
                "bid": s(bid), "bidSize": "0.50000000", "ask": s(ask), "askSize": "0.50000000",
                "volume": s(vol), "volumeQuote": s(vq),
            }

    def book(self, name: str, depth: int) -> dict:
        with self.lock:
            m = self.market(name)
            bid, ask = m.bid_ask()
            n = max(1, min(depth, 50))
            size = lambda i: s((Decimal("0.1") * (i + 1)).quantize(Decimal(1).scaleb(-m.quantity_decimals)))
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
                "balances": {k: {r["symbol"]: {"available": r["available"], "inOrder": r["inOrder"]}
                                 for r in self.balances_json(k)} for k in self.accounts},
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
