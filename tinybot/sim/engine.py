"""The simulator's order engine: it accepts, finds, cancels and lists orders, and fills them.

No HTTP and no lock here: the ``Simulator`` (simulator.py) holds an ``Engine``
and calls it under its one lock. The ``Engine`` keeps the order records and
hands them to its ``Matcher``, which fills them against a market's touch or a
candle's range, moves the balances (accounts.py) and records the fills. The
modes where Bitvavo's documents leave a choice, and the exchange's clock, are
here too, because the engine is where most of them act.

Money is ``Decimal`` throughout; numbers leave as strings (wire.py), as Bitvavo sends them.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Callable

from ..base import fees
from . import wire
from .accounts import Accounts
from .market import MarketState, lookup, to_tick
from .wire import OPEN_STATUSES, SimError, bad, s

TAKER_FEE = Decimal("0.0025")
MAKER_FEE = Decimal("0.0015")
MIN_QUOTE = Decimal(
    "5"
)  # the world's value, kept apart from the bot's (sizing.EXCHANGE_MINIMUM_EUR): a wrong belief of the bot must meet Bitvavo's real answer (217)

# How a market order may end besides "filled at once, completely" (docs get-orders: status values;
# BITVAVO.md: canceledMarketProtection is a market order stopped part-way, with fills).
OUTCOME_KINDS = ("filled", "partiallyFilled", "canceledMarketProtection", "expired")


# --- modes: where Bitvavo's documents leave a choice -------------------------------------------


@dataclass
class Modes:
    """How the simulator behaves where Bitvavo's documents leave a choice (docs/SIMULATOR.md).

    ``Simulator.set_mode`` changes them at run time (all but find_closed_by_client_id, set at
    start); ``candle_gaps`` is kept by each market, which draws with it.
    """

    rate_limit_code: int = 110
    trades_window: str = "refuse"
    orders_window: str | None = None
    balance_zero_rows: bool = False
    unsettled: float | str | None = None
    candle_revisions: int = 0
    # SRC_SDK_RIGHTS: reading orders and trades is a Trade right. A view-only key gets 310
    # on GET /order, /orders, /ordersOpen, /trades unless this relaxes it.
    view_key_reads_orders: bool = False
    clock_skew: float = 0.0  # seconds the exchange's clock is ahead of ours (may be < 0)
    # docs websocket-api/get-order and FIX OrderStatusRequest: a clientOrderId finds open orders only;
    # docs rest-api/get-order says either id. The hard reading by default; True turns lookups on.
    find_closed_by_client_id: bool = False
    # docs rest-api/get-candlestick-data: `end` must "align exactly with the end of the specified interval";
    # whether the candle that starts there comes back is not said. The hard reading by default: it does.
    candle_end: str = "inclusive"
    # docs get-orders / order lifecycle: a market order may end `expired` for lack of balance; the errors
    # page lists 216 for it. Which one a market order meets is not said: "refuse" (216) or "expire".
    short_balance: str = "refuse"
    # docs order lifecycle: a halted market refuses cancels too; the code (423-426, 431) and HTTP status
    # of that refusal are not documented, so both are settings.
    halted_cancel_code: int = 423
    halted_cancel_status: int = 400
    # Answer shapes seen live (issue 24): candle timestamps as strings, quantityDecimals/notionalDecimals as
    # integers, a filled amountQuote buy's fee as amountQuoteRemaining. False: the recorded/documented shapes.
    live_shapes: bool = True

    @staticmethod
    def check(modes: dict) -> dict:
        """`modes` (name → value) checked and converted; ValueError for an unknown name or a bad value."""
        for name in modes:
            if name not in MODES:
                raise ValueError(f"unknown mode {name!r}; use one of {', '.join(MODES)}")
        return {name: _MODE_CHECKS[name](value) for name, value in modes.items()}


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
    "short_balance": _check(
        lambda v: v if v in ("refuse", "expire") else _BAD, "short_balance must be 'refuse' or 'expire'"
    ),
    "halted_cancel_code": _check(
        lambda v: v if v in (423, 424, 425, 426, 431) else _BAD, "halted_cancel_code must be 423-426 or 431"
    ),
    "halted_cancel_status": _check(
        lambda v: v if isinstance(v, int) and 400 <= v <= 599 else _BAD, "halted_cancel_status must be 400..599"
    ),
    "live_shapes": bool,
    "candle_end": _check(
        lambda v: v if v in ("inclusive", "exclusive") else _BAD, "candle_end must be 'inclusive' or 'exclusive'"
    ),
}
MODES = tuple(_MODE_CHECKS)  # the modes set_mode may change, in the order modes() lists them


class Clock:
    """The exchange's clock in ms: `source` (unix seconds; default time.time) plus the clock_skew mode."""

    def __init__(self, source: Callable[[], float] | None, mode: Modes):
        self._source, self._mode = source, mode

    def now_ms(self) -> int:
        # Call the clock every time (never cache time.time): freezegun patches it.
        return int(((self._source() if self._source else time.time()) + self._mode.clock_skew) * 1000)


class Ids:
    """Order and fill ids: UUIDs from a seeded generator (same seed, same ids)."""

    def __init__(self, seed: int):
        self._rng = random.Random(seed)

    def new(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


# --- outcomes: how the next market orders end ------------------------------------------------


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


class Outcomes:
    """The armed outcomes, in the order they apply."""

    DEFAULT_FRACTION = {
        "filled": 1,
        "partiallyFilled": Decimal("0.5"),
        "canceledMarketProtection": Decimal("0.5"),
        "expired": 0,
    }

    def __init__(self):
        self._armed: list[Outcome] = []

    def add(self, kind: str, fraction, fills: int, step_ticks: int, on_hold, count: int | None) -> Outcome:
        if fraction is None:
            fraction = self.DEFAULT_FRACTION.get(kind, 1)
        outcome = Outcome(kind, fraction, fills, step_ticks, on_hold, count)
        self._armed.append(outcome)
        return outcome

    def all(self) -> list[Outcome]:
        return list(self._armed)

    def clear(self) -> None:
        self._armed.clear()

    def take(self) -> Outcome | None:
        """The outcome for the market order being placed now (uses up one of its count), or None."""
        if not self._armed:
            return None
        outcome = self._armed[0]
        if outcome.remaining is not None:
            outcome.remaining -= 1
            if outcome.remaining <= 0:
                self._armed.pop(0)
        return outcome


# --- settlement -------------------------------------------------------------------------
#
# What a fill moves comes from tinybot/base/fees.py, the one home of Bitvavo's settlement arithmetic
# that the paper exchange uses too. Its rules match every fill recorded in SRC_CCXT_FIXTURES:
# sell 0.00020002 BTC @ 34469 → gross 6.89448938, fee 0.02448938, net 6.87 (0.355 %); buy
# 0.0002 @ 34488 → gross 6.8976, fee 0.0224, total 6.92 (0.325 %); sell 0.0002 @ 34464 → fee
# 0.0228; a limit buy 0.0003 @ 30000 holds 9.03 (9.00 × 1.0025 = 9.0225 rounded up to the cent).
# tests/sim/test_sim_fidelity.py replays each recorded fill through the simulator.


def limit_buy_hold(amount: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """onHold of a resting limit buy: amount × price plus the taker fee, rounded UP to cents (recorded 9.03)."""
    return fees.by_base("buy", [(amount, price)], rate).eur


def _split(total: Decimal, n: int, quantum: Decimal) -> list[Decimal]:
    """`total` in `n` parts of whole quanta; the last part takes the remainder."""
    part = (total / n).quantize(quantum, rounding=ROUND_DOWN)
    return [part] * (n - 1) + [total - part * (n - 1)]


class Matcher:
    """Fills orders: market orders at once, limit orders at once or when the price reaches them.

    It moves the accounts' balances by tinybot/base/fees.py and records each fill in
    ``trades`` (oldest first). Order records are dicts owned by the ``Engine``.
    """

    def __init__(self, accounts: Accounts, clock: Clock, ids: Ids, mode: Modes, taker_fee: Decimal, maker_fee: Decimal):
        self.accounts, self.clock, self.ids, self.mode = accounts, clock, ids, mode
        self.taker_fee, self.maker_fee = taker_fee, maker_fee
        self.trades: list[dict] = []

    # --- market orders: fills and the ways they end ---------------------------------

    def fill_market(self, o: dict, m: MarketState, bid: Decimal, ask: Decimal, outcome: Outcome | None) -> None:
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
        qd, cents = fees.quantity_step(m.quantity_decimals), fees.quantity_step(m.notional_decimals)
        if o["side"] == "buy" and o["amountQuote"] is not None:
            # Each fill spends exactly its share of the budget (fees.buy_by_quote), so the order
            # costs exactly amountQuote when it fills completely.
            budget = (o["amountQuote"] * fraction).quantize(cents, rounding=ROUND_DOWN)
            for part, p in zip(_split(budget, n, cents), prices):
                fill = fees.buy_by_quote(part, p, m.quantity_decimals, self.taker_fee)
                if fill.base > 0:
                    self.accounts.move(o["key"], m.quote, -part)
                    self.accounts.move(o["key"], m.base, fill.base)
                    self.record_fill(o, m, fill.base, p, fill.fee, taker=True)
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
                self.accounts.move(o["key"], m.base, base_delta)
                self.accounts.move(o["key"], m.quote, quote_delta)
                for (part, p), fee in zip(fills, fees.split_fee(done.fee, [a * q for a, q in fills])):
                    self.record_fill(o, m, part, p, fee, taker=True)
        o["status"] = kind
        o["updated"] = self.clock.now_ms()
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
                else to_tick(o["amountQuote"] / m.bid_ask()[0], fees.quantity_step(m.quantity_decimals))
            )
            o["held"] = total - o["filled"]
            asset = m.base
        o["held"] = min(o["held"], self.accounts.available(o["key"]).get(asset, Decimal(0)))
        self.accounts.hold(o["key"], asset, o["held"])

    def finish_market(self, o: dict, m: MarketState) -> None:
        """A partiallyFilled market order completes at the current touch (called by advance)."""
        asset = m.quote if o["side"] == "buy" else m.base
        self.accounts.release(o["key"], asset, o["held"])
        o["held"] = Decimal(0)
        rest = dict(o)
        if o["amountQuote"] is not None and o["side"] == "buy":
            rest["amountQuote"] = o["amountQuote"] - o["filledQuote"] - o["fee"]
        elif o["amount"] is not None:
            rest["amount"] = o["amount"] - o["filled"]
        else:
            rest["amount"], rest["amountQuote"] = (
                to_tick(o["amountQuote"] / m.bid_ask()[0], fees.quantity_step(m.quantity_decimals)) - o["filled"],
                None,
            )
        before = len(o["fills"])
        bid, ask = m.bid_ask()
        self.fill_market(rest, m, bid, ask, None)
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

    def place_limit(self, o: dict, m: MarketState, bid: Decimal, ask: Decimal) -> None:
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
        self.accounts.hold(o["key"], asset, o["held"])
        if crosses:  # marketable limit: fills at once at the touch, as taker
            self.fill_limit(o, m, ask if o["side"] == "buy" else bid, taker=True)

    def fill_limit(self, o: dict, m: MarketState, price: Decimal, taker: bool) -> None:
        key, qty = o["key"], o["amount"]
        done = fees.by_base(o["side"], [(qty, price)], self.taker_fee if taker else self.maker_fee)
        if o["side"] == "buy":
            self.accounts.move(key, m.quote, -o["held"], held=True)
            self.accounts.move(key, m.quote, o["held"] - done.eur)
            self.accounts.move(key, m.base, qty)
        else:
            self.accounts.move(key, m.base, -o["held"], held=True)
            self.accounts.move(key, m.quote, done.eur)
        self.record_fill(o, m, qty, price, done.fee, taker=taker)
        o["status"] = "filled"

    def record_fill(self, o: dict, m: MarketState, qty: Decimal, price: Decimal, fee: Decimal, taker: bool) -> None:
        now = self.clock.now_ms()
        # In the unsettled mode a fill comes back with settled=false and no fee until it settles
        # (after `unsettled` seconds of the simulator's clock, or by settle_fills() for "manual").
        # The balance moves at once either way; only the reported fee waits.
        unsettled = self.mode.unsettled
        settled = unsettled is None
        settle_at = None if settled or unsettled == "manual" else now + int(float(unsettled) * 1000)
        t = {
            "id": self.ids.new(),
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
        self.trades.append(t)
        o["fills"].append(t)
        o["filled"] += qty
        o["filledQuote"] += qty * price
        o["fee"] += fee
        o["updated"] = now

    # --- settling fees ----------------------------------------------------------------

    def settle_due(self) -> None:
        now = self.clock.now_ms()
        for t in self.trades:
            if not t["settled"] and t["settle_at"] is not None and now >= t["settle_at"]:
                t["settled"] = True

    def settle_all(self) -> int:
        pending = [t for t in self.trades if not t["settled"]]
        for t in pending:
            t["settled"] = True
        return len(pending)


class Engine:
    """The exchange's orders: accepts, finds, cancels and lists them; its ``Matcher`` fills them.

    ``markets`` is the simulator's dict of market states (shared, not copied). Called under
    the simulator's lock.
    """

    def __init__(
        self,
        markets: dict[str, MarketState],
        accounts: Accounts,
        clock: Clock,
        mode: Modes,
        seed: int,
        taker_fee: Decimal,
        maker_fee: Decimal,
    ):
        self.markets, self.accounts, self.clock, self.mode = markets, accounts, clock, mode
        self.ids = Ids(seed)
        self.matcher = Matcher(accounts, clock, self.ids, mode, taker_fee, maker_fee)
        self.outcomes = Outcomes()
        self.orders: dict[str, dict] = {}  # orderId → internal record (insertion = creation order)

    # --- views ---------------------------------------------------------------------------

    def order_json(self, o: dict, on_hold: Decimal | None = None) -> dict:
        self.matcher.settle_due()
        return wire.order_json(o, self.markets[o["market"]], on_hold, self.mode.live_shapes)

    def trade_json(self, t: dict) -> dict:
        self.matcher.settle_due()
        return wire.trade_json(t)

    def all_orders(self, books: str | None) -> list[dict]:
        """Every order of an account (None: of all), oldest first, plus its apiKey (the account's books key)."""
        return [self.order_json(o) | {"apiKey": o["key"]} for o in self.orders.values() if books in (None, o["key"])]

    def all_trades(self, books: str | None) -> list[dict]:
        return [self.trade_json(t) | {"apiKey": t["key"]} for t in self.matcher.trades if books in (None, t["key"])]

    # --- placing an order --------------------------------------------------------------------

    def _check_funds(self, key, m, side, otype, amount, amount_quote, price, bid, ask) -> None:
        avail = self.accounts.available(key)
        taker = self.matcher.taker_fee
        if side == "buy":
            if otype == "market":
                need = amount_quote if amount_quote is not None else fees.by_base("buy", [(amount, ask)], taker).eur
            else:
                need = limit_buy_hold(amount, price, taker)
            if avail.get(m.quote, Decimal(0)) < need:
                raise bad(216, "You do not have sufficient balance to complete this operation.")
            return
        base_needed = amount
        if otype == "market" and amount_quote is not None:
            base_needed = to_tick(amount_quote / bid, fees.quantity_step(m.quantity_decimals))
            if base_needed <= 0:
                raise bad(217, f"Minimum order size in quote currency is {s(MIN_QUOTE)} {m.quote}.")
        if avail.get(m.base, Decimal(0)) < base_needed:
            raise bad(216, "You do not have sufficient balance to complete this operation.")

    def _short_balance(self, key, m, side, otype, amount, amount_quote, price, bid, ask) -> bool:
        """216 for an order the balance cannot pay, unless the short_balance mode lets a market order be
        accepted and expire (True)."""
        try:
            self._check_funds(key, m, side, otype, amount, amount_quote, price, bid, ask)
        except SimError as e:
            if e.code == 216 and otype == "market" and self.mode.short_balance == "expire":
                return True
            raise
        return False

    def create_order(self, key: str, body: dict) -> dict:
        operator_id, side, otype, cid, tif, post_only, stp = wire.order_params(body)
        m = lookup(self.markets, body["market"])
        refusal = m.order_refusal()
        if refusal is not None:  # SRC_ERRORS: 219 delisted, 423-426 halted/cancelOnly/auction/auctionMatching
            raise refusal
        wire.order_shape(otype, body, post_only)
        amount, amount_quote, price = wire.order_amounts(m, body)
        bid, ask = m.bid_ask()
        ref = price if price is not None else (ask if side == "buy" else bid)
        notional = amount_quote if amount_quote is not None else amount * ref
        if notional < MIN_QUOTE:
            raise bad(217, f"Minimum order size in quote currency is {s(MIN_QUOTE)} {m.quote}.")
        if amount is not None and amount < m.min_base:
            raise bad(212, f"Amount is below the minimum allowed amount for this asset ({s(m.min_base)} {m.base}).")
        if cid is not None and any(
            o["clientOrderId"] == cid and o["market"] == m.name and o["key"] == key and o["status"] in OPEN_STATUSES
            for o in self.orders.values()
        ):
            raise bad(
                220, "clientOrderId conflict: an open order with this clientOrderId already exists in this market."
            )
        short = self._short_balance(key, m, side, otype, amount, amount_quote, price, bid, ask)

        now = self.clock.now_ms()
        o = {
            "orderId": self.ids.new(),
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
        self.orders[o["orderId"]] = o
        if short:  # accepted, and at once expired: nothing filled, nothing held
            o["status"] = "expired"
            return self.order_json(o)
        if otype == "market":
            self.matcher.fill_market(o, m, bid, ask, self.outcomes.take())
        else:
            self.matcher.place_limit(o, m, bid, ask)
        # An outcome's on_hold is shown in the create answer only.
        return self.order_json(o, o.pop("show_on_hold", None))

    def match(self, m: MarketState, low: Decimal, high: Decimal) -> None:
        """Fill resting limit orders in `m` that a price range [low, high] crossed (as maker, at their price)."""
        for o in list(self.orders.values()):
            if o["market"] != m.name or o["status"] not in OPEN_STATUSES:
                continue
            if o["orderType"] == "market":
                self.matcher.finish_market(o, m)
            elif (o["side"] == "buy" and low <= o["price"]) or (o["side"] == "sell" and high >= o["price"]):
                self.matcher.fill_limit(o, m, o["price"], taker=False)

    # --- finding and canceling -----------------------------------------------------------------

    def _find(self, key: str, market: str | None, order_id: str | None, cid: str | None) -> dict:
        if order_id is not None:
            o = self.orders.get(order_id)
            if o and o["key"] == key and market in (None, o["market"]):
                return o
            raise wire.order_not_found()
        matches = [
            o
            for o in self.orders.values()
            if o["key"] == key and o["clientOrderId"] == cid and market in (None, o["market"])
        ]
        open_ = [o for o in matches if o["status"] in OPEN_STATUSES]
        if open_:
            return open_[-1]
        if matches and self.mode.find_closed_by_client_id:
            return matches[-1]
        raise wire.order_not_found()

    def _ids_from(self, params: dict, *, market_required: bool) -> tuple[str | None, str | None, str | None]:
        market = params.get("market")
        if market is None and market_required:
            raise bad(203, "market parameter is required.")
        if market is not None:
            lookup(self.markets, market)
        order_id, cid = params.get("orderId"), params.get("clientOrderId")
        if order_id is None and cid is None:
            raise bad(203, "orderId or clientOrderId parameter is required.")
        if order_id is not None and cid is not None:
            # docs websocket-api/get-order: "If you set both, we use the clientOrderId to identify
            # the order" (the FIX OrderStatusRequest says the same of ClOrdID).
            order_id = None
        if order_id is not None and not wire.is_uuid(order_id):
            raise bad(205, "orderId parameter is invalid.")
        if cid is not None and not wire.is_uuid(cid):
            raise bad(205, "clientOrderId parameter is invalid.")
        return market, order_id, cid

    def get_order(self, key: str, params: dict) -> dict:
        # docs rest-api/get-order: market is required (ccxt's fetch_order always sends it).
        market, order_id, cid = self._ids_from(params, market_required=True)
        return self.order_json(self._find(key, market, order_id, cid))

    def cancel_order(self, key: str, params: dict) -> dict:
        market, order_id, cid = self._ids_from(params, market_required=True)
        op = params.get("operatorId")
        if op is None:
            raise bad(203, "operatorId parameter is required.")
        if not str(op).isdigit() or int(op) < 1:
            raise bad(205, "operatorId parameter is invalid.")
        self._refuse_if_halted(market)
        o = self._find(key, market, order_id, cid)
        if o["status"] not in OPEN_STATUSES:
            raise bad(233, "Order must be active (status new or partiallyFilled) to allow updating/cancelling.")
        self._cancel(o)
        return wire.canceled_json(o, int(op))

    def _refuse_if_halted(self, market: str | None) -> None:
        if market is not None and self.markets[market].status == "halted":
            raise SimError(
                self.mode.halted_cancel_status,
                self.mode.halted_cancel_code,
                "The market is halted: orders cannot be placed or canceled.",
            )

    def _cancel(self, o: dict) -> None:
        m = self.markets[o["market"]]
        self.accounts.release(o["key"], m.quote if o["side"] == "buy" else m.base, o["held"])
        o["status"] = "canceled"
        o["updated"] = self.clock.now_ms()

    def cancel_orders(self, key: str, params: dict) -> list[dict]:
        market = params.get("market")
        if market is not None:
            lookup(self.markets, market)
        op = params.get("operatorId")
        if op is None:
            raise bad(203, "operatorId parameter is required.")
        self._refuse_if_halted(market)
        out = []
        for o in self.orders.values():
            if o["key"] == key and o["status"] in OPEN_STATUSES and market in (None, o["market"]):
                self._cancel(o)
                out.append({"orderId": o["orderId"], "operatorId": int(op)})
        return out

    # --- lists ------------------------------------------------------------------------------------

    def list_orders(self, key: str, params: dict) -> list[dict]:
        if params.get("market") is None:
            raise bad(203, "market parameter is required.")
        lookup(self.markets, params["market"])
        start, end, limit = wire.window(params, 500, 1000)
        if self.mode.orders_window is not None:  # docs websocket-api/get-orders says 24 h; the REST page does not
            start, end = self._day_window(start, end, self.mode.orders_window)
        rows = [
            o
            for o in self.orders.values()
            if o["key"] == key
            and o["market"] == params["market"]
            and (start is None or o["created"] >= start)
            and (end is None or o["created"] <= end)
        ]
        return [self.order_json(o) for o in reversed(rows)][:limit]

    def open_orders(self, key: str, params: dict) -> list[dict]:
        market, base = params.get("market"), params.get("base")
        if market is not None:
            lookup(self.markets, market)
        rows = [
            o
            for o in self.orders.values()
            if o["key"] == key
            and o["status"] in OPEN_STATUSES
            and market in (None, o["market"])
            and base in (None, o["market"].split("-")[0])
        ]
        return [self.order_json(o) for o in reversed(rows)]

    def _day_window(self, start, end, how: str) -> tuple[int, int]:
        """docs rest-api/get-trade-history: "a time period of up to 24 hours"; end "cannot be more
        than 24 hours after the start". Without start the 24 h end at `end` (default now); without
        end they begin at `start`. A longer span is refused (205; the code is not documented) or,
        in clamp mode, cut to the 24 h after start."""
        day = 86_400_000
        if start is None and end is None:
            end = self.clock.now_ms()
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
        lookup(self.markets, params["market"])
        start, end, limit = wire.window(params, 500, 1000)
        start, end = self._day_window(start, end, self.mode.trades_window)
        rows = [
            t
            for t in self.matcher.trades
            if key in (None, t["key"])
            and t["market"] == params["market"]
            and (start is None or t["timestamp"] >= start)
            and (end is None or t["timestamp"] <= end)
        ]
        rows = list(reversed(rows))[:limit]
        if key is None:
            return [wire.public_trade_json(t) for t in rows]
        return [self.trade_json(t) for t in rows]
