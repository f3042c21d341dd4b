"""The exchange contract shared by the paper exchange and the live (ccxt) adapter.

Two roles, kept apart on purpose:

* ``MarketData`` — read-only: markets, tickers, candles, balances, and order
  *lookups*. Advisors, status, doctor and reconcile get only this.
* ``Trading`` — adds ``send_order`` and ``cancel_order``. Only the executor's
  factory (``tinybot.trade.executor.trading_exchange``) builds one.

All amounts are ``Decimal``; all times are unix milliseconds (ints) taken from
the caller's clock. ``send_order`` never raises for an exchange outcome: it
classifies every outcome into exactly one of three kinds (``SendOutcome``), in
one place per backend, so the executor has a single decision to make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol, Sequence, runtime_checkable

from ..base import exitcodes
from ..base.errors import TinybotError

Side = Literal["buy", "sell"]

# Exchange-side order statuses, normalised. Bitvavo's: new, awaitingTrigger,
# partiallyFilled (open); filled; canceled*, expired, rejected.
OPEN_STATUSES = frozenset({"new", "awaitingTrigger", "partiallyFilled"})
FINAL_STATUSES = frozenset({"filled", "canceled", "expired", "rejected"})


class ExchangeError(TinybotError):
    """A read (market data, balance, lookup) failed; nothing was changed."""

    exit_code = exitcodes.UNREACHABLE  # a read failed: nothing was changed


class ReadOnlyClientError(ExchangeError):
    """Somebody tried to place or cancel an order through a read-only client."""

    exit_code = exitcodes.ERROR  # a bug in the caller, not an unreachable exchange


@dataclass(frozen=True)
class Market:
    name: str  # Bitvavo's name, e.g. "BTC-EUR"
    base: str
    quote: str
    status: str  # "trading" when orders are accepted
    tick_size: Decimal  # price step
    quantity_decimals: int  # decimals allowed in a base amount
    notional_decimals: int  # decimals allowed in a quote amount
    min_quote: Decimal  # e.g. Decimal("5") on EUR markets
    min_base: Decimal


@dataclass(frozen=True)
class Ticker:
    market: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp_ms: int


@dataclass(frozen=True)
class Candle:
    timestamp_ms: int  # open time
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class Balance:
    available: Decimal
    in_order: Decimal


@dataclass(frozen=True)
class Fill:
    trade_id: str  # the exchange's trade id (UNIQUE in trade_history)
    order_id: str
    market: str
    side: Side
    amount: Decimal  # base
    price: Decimal
    fee: Decimal  # Decimal(0) while not settled: Bitvavo sends fee/feeCurrency only once `settled` is true
    fee_currency: str
    timestamp_ms: int
    settled: bool = True  # False: the fee is not known yet; a later lookup of the same fill corrects it


@dataclass(frozen=True)
class Order:
    order_id: str
    client_order_id: str | None
    market: str
    side: Side
    order_type: str  # "market" | "limit"
    status: str  # see OPEN_STATUSES / FINAL_STATUSES
    amount: Decimal | None  # base amount asked for (None for amountQuote orders)
    amount_quote: Decimal | None  # quote amount asked for (buy by EUR)
    filled_amount: Decimal
    filled_amount_quote: Decimal
    fee_paid: Decimal
    fee_currency: str | None
    created_ms: int
    fills: tuple[Fill, ...] = field(default_factory=tuple)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


Kind = Literal["accepted", "refused", "ambiguous"]


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one send, classified once.

    accepted  — the exchange has the order (``order`` is set).
    refused   — the exchange refused for sure; nothing exists (``reason``).
    ambiguous — the order may or may not exist: timeout, reset, 5xx, 101, 109,
                220, rate limit, a 200 that is not an order. Reconcile decides.
    """

    kind: Kind
    order: Order | None = None
    reason: str = ""
    code: str | None = None  # exchange error code or exception class, for the audit

    @classmethod
    def accepted(cls, order: Order) -> "SendOutcome":
        return cls("accepted", order=order)

    @classmethod
    def refused(cls, reason: str, code: str | None = None) -> "SendOutcome":
        return cls("refused", reason=reason, code=code)

    @classmethod
    def ambiguous(cls, reason: str, code: str | None = None) -> "SendOutcome":
        return cls("ambiguous", reason=reason, code=code)


@runtime_checkable
class MarketData(Protocol):
    """Read-only view of an exchange. Safe to hand to advisors."""

    name: str  # "paper" | "bitvavo"

    def markets(self) -> dict[str, Market]: ...

    def ticker(self, market: str) -> Ticker: ...

    def tickers(self, markets: Sequence[str]) -> dict[str, Ticker]:
        """Several markets' tickers in as few requests as the exchange allows (Bitvavo: one for all).
        A market it has no ticker for is left out: ``ticker`` says why.  Raises when nothing could be read."""

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        """Closed and current candles, oldest first."""

    def balances(self) -> dict[str, Balance]:
        """Balances by asset.  An asset missing from the mapping holds 0 (Bitvavo omits zero balances)."""

    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        """Look an order up by our client order id; None if the exchange says not found."""

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        """Recent orders (open and closed) created at or after since_ms; the reconcile fallback."""

    def open_orders(self, market: str) -> list[Order]: ...

    def trades_since(self, market: str, since_ms: int) -> list[Fill]: ...

    def server_time_ms(self) -> int: ...


# The methods of MarketData, by name: what a read-only wrapper passes through and a Bitvavo client
# takes from its reader.
READ_METHODS = (
    "markets",
    "ticker",
    "tickers",
    "candles",
    "balances",
    "fetch_order",
    "orders_since",
    "open_orders",
    "trades_since",
    "server_time_ms",
)


@runtime_checkable
class Trading(MarketData, Protocol):
    """An exchange that can place orders. Only the executor gets one."""

    def send_order(
        self,
        market: str,
        side: Side,
        *,
        client_order_id: str,
        amount_quote: Decimal | None = None,
        amount: Decimal | None = None,
        sign_by_ms: int | None = None,
        claimed_ms: int | None = None,
    ) -> SendOutcome:
        """Place a market order: buys by ``amount_quote`` (EUR), sells by ``amount`` (base).

        Never raises for an exchange outcome; classifies it.  ``sign_by_ms``:
        if the backend's own checks before the order request run past this
        moment, it sends nothing and refuses (code ``send_deadline``).  That
        bounds when a request can be signed, so reconcile knows when it can no
        longer land.  ``claimed_ms``: when the execution was claimed (its
        clientOrderId fixed).  Before sending, the backend looks the
        clientOrderId up and, when that finds nothing, scans the market's
        orders since ``claimed_ms`` (default: ``sign_by_ms`` - 1 day), because
        Bitvavo may not find a closed order by clientOrderId; an order found
        is not sent again (ambiguous, code ``220``).
        """

    def cancel_order(self, market: str, client_order_id: str) -> bool:
        """Cancel an open order; True if the exchange confirmed it."""
