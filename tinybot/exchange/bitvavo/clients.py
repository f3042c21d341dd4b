"""The two Bitvavo clients, which key each holds, and the only code here that places or cancels an order.

* ``BitvavoReadOnly`` (``MarketData``) — what every module but the executor
  gets (``read_only_client(cfg)``): the view key for market data and
  balances, the trade key behind a GET-only endpoint for order lookups, and
  its own ``send_order``/``cancel_order`` that raise.
* ``BitvavoTrading`` (``Trading``) — the trade key and secret, passed in by
  the executor's factory (it never reads a secret itself): the same reads,
  plus market orders and cancels.
* ``probe_key_rights`` — what each key may read, with GET requests only
  (for `tinybot doctor`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from ...base import clock, crash
from ...base.config import Config
from ...base.errors import ConfigError
from ...base.markets import normalise_market
from ..base import ExchangeError, Order, ReadOnlyClientError, SendOutcome, Side
from .endpoint import Endpoint
from .errors import NOT_FOUND_CODES, classify_send
from .reads import Reader

PRE_SEND_SCAN_MS = 86_400_000  # without a claim time, the pre-send scan looks back one day before sign_by


class BitvavoReadOnly:
    """Bitvavo market data, balances (view key) and order lookups (trade key, GET only); never trades."""

    name = "bitvavo"

    def __init__(
        self,
        cfg: Config,
        key: str | None = None,
        secret: str | None = None,
        *,
        lookup_key: str | None = None,
        lookup_secret: str | None = None,
        rate_limit: bool = True,
        sleep: Callable[[float], None] | None = None,
    ):
        self.cfg = cfg
        self._view = Endpoint(cfg, key, secret, rate_limit=rate_limit, sleep=sleep)
        self._lookup_ep = None
        if lookup_key and lookup_secret:
            self._lookup_ep = Endpoint(
                cfg, lookup_key, lookup_secret, rate_limit=rate_limit, get_only=True, sleep=sleep
            )
        self.url = self._view.url
        self.reader = Reader(self._view, self._lookup_ep)
        self.reader.expose_on(self)

    @property
    def client(self):
        """The view key's ccxt instance (for doctor and tests)."""
        return self._view.ccxt

    @property
    def skipped_markets(self) -> dict[str, str]:
        return self.reader.skipped_markets

    # --- no trading here --------------------------------------------------------
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
        raise ReadOnlyClientError("this is a read-only Bitvavo client: only the executor can place orders")

    def cancel_order(self, market: str, client_order_id: str) -> bool:
        raise ReadOnlyClientError("this is a read-only Bitvavo client: only the executor can cancel orders")


def read_only_client(cfg: Config, *, rate_limit: bool = True) -> BitvavoReadOnly:
    """The client advisors, status, doctor and reconcile get.

    Market data and balances: the view key (``TINYBOT_READ_KEY``), or none.
    Order and trade lookups, in live mode only: the trade key behind a
    GET-only endpoint (a view-only key cannot read orders on Bitvavo). Paper
    mode never reads the trade key.
    """
    secrets = cfg.secrets()
    pair = secrets.pair("TINYBOT_READ_KEY", "TINYBOT_READ_SECRET")
    key, secret = pair if pair else (None, None)
    lookup = secrets.pair("TINYBOT_TRADE_KEY", "TINYBOT_TRADE_SECRET") if cfg.mode == "live" else None
    lookup_key, lookup_secret = lookup if lookup else (None, None)
    return BitvavoReadOnly(cfg, key, secret, lookup_key=lookup_key, lookup_secret=lookup_secret, rate_limit=rate_limit)


class BitvavoTrading:
    """Bitvavo with the trade key: places market orders, each with clientOrderId and operatorId."""

    name = "bitvavo"

    def __init__(
        self,
        cfg: Config,
        key: str,
        secret: str,
        *,
        rate_limit: bool = True,
        sleep: Callable[[float], None] | None = None,
    ):
        if cfg.exchange.operator_id is None:
            raise ConfigError(f"live mode needs an operatorId: set [exchange] operator_id in {cfg.path}")
        if not (key and secret):
            raise ConfigError("live mode needs the trade key: set TINYBOT_TRADE_KEY and TINYBOT_TRADE_SECRET")
        self.cfg = cfg
        self.operator_id: int | None = cfg.exchange.operator_id
        self._ep = Endpoint(cfg, key, secret, rate_limit=rate_limit, operator_id=self.operator_id, sleep=sleep)
        self.url = self._ep.url
        self.reader = Reader(self._ep, self._ep)  # the trade key reads its own orders too
        self.reader.expose_on(self)

    @property
    def client(self):
        """The underlying ccxt instance (for doctor and tests)."""
        return self._ep.ccxt

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
        """A market order. Never raises for an exchange outcome: see ``classify_send``."""
        until = self._ep.banned_until_ms()
        if until:
            return SendOutcome.refused(f"not sent: {self._ep.backoff_message(until)}", code="rate_limited")
        market = normalise_market(market)
        prepared = self._prepare(market, side, client_order_id, amount_quote, amount, sign_by_ms, claimed_ms)
        if isinstance(prepared, SendOutcome):
            return prepared
        refusal = self._past_deadline(sign_by_ms)
        if refusal is not None:
            return refusal
        symbol, order_amount, params = prepared
        answer, failure = self._ep.attempt(self.client.create_order, symbol, "market", side, order_amount, None, params)
        if failure is not None:  # every exception is an outcome; classify_send sorts them
            return classify_send(failure, self._ep.last_status)
        crash.point("after_send_before_reply")
        return classify_send(answer)

    def _past_deadline(self, sign_by_ms: int | None) -> SendOutcome | None:
        """Refuse when the order request could no longer be signed by ``sign_by_ms``; else wait out pacing."""
        paced = self._ep.paced_until_ms()
        if paced and sign_by_ms is not None and paced > sign_by_ms:
            return SendOutcome.refused(
                f"not sent: this key's rate-limit budget is nearly spent until"
                f" {clock.to_iso(clock.from_ms(paced))}, past the send deadline",
                code="rate_limited",
            )
        try:
            self._ep.wait_for_budget()
        except ExchangeError as e:
            return SendOutcome.refused(f"not sent: {e}", code="rate_limited")
        if sign_by_ms is not None and clock.now_ms() > sign_by_ms:
            # the reads before were slow: a request signed now could land after the
            # moment reconcile is entitled to call this order absent
            return SendOutcome.refused(
                f"not sent: the checks before sending took until {clock.to_iso(clock.now())}, past the send"
                f" deadline {clock.to_iso(clock.from_ms(sign_by_ms))}",
                code="send_deadline",
            )
        return None

    def _prepare(
        self,
        market: str,
        side: str,
        cid: str,
        amount_quote: Decimal | None,
        amount: Decimal | None,
        sign_by_ms: int | None = None,
        claimed_ms: int | None = None,
    ) -> SendOutcome | tuple[str, str | None, dict]:
        """Every check before the order request; a refusal here sends nothing."""
        refusal = (
            self._check_arguments(side, cid, amount_quote, amount)
            or self._check_market(market, side, amount_quote, amount)
            or self._check_not_sent(market, cid, sign_by_ms, claimed_ms)
        )
        if refusal is not None:
            return refusal
        ccxt_market = (self.client.markets_by_id.get(market) or [None])[0]
        if ccxt_market is None:
            return SendOutcome.refused(f"unknown market {market}", code="205")
        params: dict[str, Any] = {"clientOrderId": cid, "operatorId": self.operator_id}
        if amount_quote is not None:
            # ccxt turns "cost" into a float and back; put the exact string in the body
            params["cost"] = _plain(amount_quote)
            params["amountQuote"] = _plain(amount_quote)
            return ccxt_market["symbol"], None, params
        params["amount"] = _plain(amount)
        return ccxt_market["symbol"], _plain(amount), params

    def _check_arguments(self, side: str, cid: str, amount_quote, amount) -> SendOutcome | None:
        if self.operator_id is None:  # ccxt would refuse too (ArgumentsRequired); say why first
            return SendOutcome.refused(
                f"not sent: live mode needs an operatorId: set [exchange] operator_id in {self.cfg.path}",
                code="no_operator_id",
            )
        if side not in ("buy", "sell"):
            return SendOutcome.refused(f"side must be 'buy' or 'sell', not {side!r}", code="205")
        try:
            if str(uuid.UUID(cid)) != cid.lower():
                raise ValueError
        except (ValueError, AttributeError, TypeError):
            return SendOutcome.refused(f"clientOrderId {cid!r} is not a UUID", code="205")
        if (amount_quote is None) == (amount is None):
            return SendOutcome.refused("give exactly one of amount_quote (EUR) or amount (base)", code="205")
        qty = amount_quote if amount_quote is not None else amount
        if not isinstance(qty, Decimal) or not qty.is_finite() or qty <= 0:
            return SendOutcome.refused(f"amount must be a positive Decimal, not {qty!r}", code="205")
        return None

    def _check_market(self, market: str, side: str, amount_quote, amount) -> SendOutcome | None:
        """The market trades, the amount has the right decimals and passes the minimums."""
        try:
            mkts = self.reader.cached_markets()
        except ExchangeError as e:
            return SendOutcome.refused(f"not sent: cannot read markets: {e}", code="preflight")
        m = mkts.get(market)
        if m is None:
            return SendOutcome.refused(f"unknown market {market}", code="205")
        if m.status != "trading":
            return SendOutcome.refused(f"market {market} is {m.status!r}, not trading", code="market_not_trading")
        if amount_quote is not None:
            if _decimals(amount_quote) > m.notional_decimals:
                return SendOutcome.refused(
                    f"€{_plain(amount_quote)} has more than {m.notional_decimals} decimals", code="205"
                )
            notional = amount_quote
        else:
            if _decimals(amount) > m.quantity_decimals:
                return SendOutcome.refused(
                    f"{_plain(amount)} {m.base} has more than {m.quantity_decimals} decimals", code="205"
                )
            if amount < m.min_base:
                return SendOutcome.refused(
                    f"{_plain(amount)} {m.base} is below the minimum of {_plain(m.min_base)} {m.base}", code="217"
                )
            try:
                t = self.reader.ticker(market)
            except ExchangeError as e:
                return SendOutcome.refused(f"no price for {market}: {e}", code="no_price")
            notional = amount * (t.ask if side == "buy" else t.bid)
        if notional < m.min_quote:
            return SendOutcome.refused(f"order below the minimum of €{_plain(m.min_quote)}", code="217")
        return None

    def _check_not_sent(self, market: str, cid: str, sign_by_ms, claimed_ms) -> SendOutcome | None:
        try:  # create_order needs ccxt's market table; load it now so a failure sends nothing
            self._ep.call("markets", self.client.load_markets)
        except ExchangeError as e:
            return SendOutcome.refused(f"not sent: {e}", code="preflight")
        # Bitvavo refuses a clientOrderId only while its order is *open* (220): a
        # resend after a fill would make a second order. Look it up first.
        try:
            existing = self._already_sent(market, cid, sign_by_ms, claimed_ms)
        except ExchangeError as e:
            return SendOutcome.refused(f"not sent: cannot check clientOrderId {cid}: {e}", code="preflight")
        if existing is not None:
            return SendOutcome.ambiguous(
                f"not sent: Bitvavo already has order {existing.order_id} ({existing.status}) with"
                f" clientOrderId {cid}; reconcile decides",
                code="220",
            )
        return None

    def _already_sent(self, market: str, cid: str, sign_by_ms: int | None, claimed_ms: int | None) -> Order | None:
        """The order with this clientOrderId, if Bitvavo has one: by id, then in the market's orders since the claim.

        Bitvavo may not find a closed order by clientOrderId (it is unique only
        among open orders), so "not found" is checked against the order list.
        """
        existing = self.reader.fetch_order(market, cid)
        if existing is not None:
            return existing
        if claimed_ms is not None:
            since = claimed_ms
        else:
            since = (sign_by_ms if sign_by_ms is not None else clock.now_ms()) - PRE_SEND_SCAN_MS
        for o in self.reader.orders_since(market, since):
            if o.client_order_id == cid:
                return o
        return None

    def cancel_order(self, market: str, client_order_id: str) -> bool:
        """True if Bitvavo confirmed; False if it has no open order with that id."""
        market = normalise_market(market)
        params = {"market": market, "clientOrderId": client_order_id, "operatorId": self.operator_id}
        try:
            raw = self._ep.call(f"cancel {client_order_id}", self.client.privateDeleteOrder, params, private=True)
        except ExchangeError as e:
            if getattr(e, "code", None) in NOT_FOUND_CODES:
                return False
            raise
        return isinstance(raw, dict) and bool(raw.get("orderId"))


def _decimals(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _plain(d: Decimal) -> str:
    """The amount as the caller wrote it, never in scientific notation."""
    return format(d, "f")


@dataclass(frozen=True)
class KeyRights:
    """What one key could read, found out with GET requests only (nothing is placed or cancelled).

    ``balance`` / ``orders``: None when Bitvavo answered, else why not. A key
    that may read orders very likely has trade rights (Bitvavo: *Trade* =
    place, update, view and cancel orders).
    """

    role: str  # the name the caller gave the key, e.g. "read" or "trade"
    balance: str | None
    orders: str | None

    @property
    def reads_orders(self) -> bool:
        return self.orders is None


def probe_key_rights(
    cfg: Config, market: str, keys: dict[str, tuple[str, str]], *, rate_limit: bool = True
) -> list[KeyRights]:
    """For `tinybot doctor`: ``GET /balance`` and ``GET /ordersOpen?market=`` with each key, GET only.

    ``keys`` maps a role ("read", "trade") to (key, secret); the caller reads
    them. Each probe goes through a GET-only endpoint, so even a key with
    trade rights cannot place anything here.
    """
    out = []
    for role, (key, secret) in keys.items():
        ep = Endpoint(cfg, key, secret, rate_limit=rate_limit, get_only=True)
        answers: list[str | None] = []
        for what, fn, params in (
            ("balance", ep.ccxt.privateGetBalance, {}),
            ("open orders", ep.ccxt.privateGetOrdersOpen, {"market": normalise_market(market)}),
        ):
            try:
                ep.call(what, fn, params, private=True)
                answers.append(None)
            except ExchangeError as e:
                answers.append(str(e))
        out.append(KeyRights(role, *answers))
    return out
