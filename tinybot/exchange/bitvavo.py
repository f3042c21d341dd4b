"""The live exchange: Bitvavo's REST v2 through ccxt, behind tinybot's contract.

Two classes, two keys:

* ``BitvavoReadOnly`` (``MarketData``) — built with the *read* key or none at
  all; its ``send_order``/``cancel_order`` raise ``ReadOnlyClientError``.
  ``read_only_client(cfg)`` builds one from ``TINYBOT_READ_KEY/SECRET``.
* ``BitvavoTrading`` (``Trading``) — gets the *trade* key and secret passed in
  by the executor's factory; it never reads a secret itself.

Reads go through ccxt's raw endpoint methods (``publicGetMarkets``,
``privateGetOrder`` …) so every number is parsed to ``Decimal`` from the
string Bitvavo sent, never through a float. Orders go through
``create_order``, with the exact amount string put back into the body.

Every way a send can end is classified by ONE function, ``classify_send``,
into accepted / refused / ambiguous (see ``ERROR_CODES`` and docs/LIVE.md).
This module is the only one that imports ccxt (~0.35 s, ~78 MB): nothing in
tinybot imports it at package import time.
"""
from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import ccxt

from .. import clock, crash
from ..config import Config, ConfigError
from .base import (
    Balance,
    Candle,
    ExchangeError,
    Fill,
    Kind,
    Market,
    Order,
    ReadOnlyClientError,
    SendOutcome,
    Side,
    Ticker,
    normalise_market,
)

# Bitvavo errorCode → (kind, why). Used for every send outcome that carries a
# code. "refused" only where Bitvavo says for sure that nothing was created:
# calling an order that exists "refused" would leave it untracked, while
# calling a refusal "ambiguous" costs one reconcile lookup. So any code not in
# this table is ambiguous.
ERROR_CODES: dict[int, tuple[Kind, str]] = {
    101: ("ambiguous", "unknown error; the order may or may not exist"),
    102: ("refused", "invalid JSON"),
    103: ("ambiguous", "rate limited"),
    104: ("ambiguous", "rate limited (too many new orders)"),
    105: ("ambiguous", "key or IP banned for exceeding the rate limit"),
    107: ("ambiguous", "matching engine overloaded"),
    108: ("ambiguous", "matching engine did not process the order in time"),
    109: ("ambiguous", "matching engine did not respond; the order may or may not exist"),
    110: ("ambiguous", "rate limited (HTTP 429)"),  # ccxt raises this as BadRequest
    **{c: ("refused", "parameter not supported or invalid") for c in range(200, 207)},
    **{c: ("refused", "amount or price out of range") for c in range(210, 216)},
    216: ("refused", "insufficient balance"),
    217: ("refused", "below the minimum order size"),
    220: ("ambiguous", "an open order with this clientOrderId already exists"),
    230: ("refused", "rejected by the matching engine"),
    231: ("refused", "rejected by the matching engine (market paused)"),
    234: ("refused", "market orders cannot be updated"),
    235: ("refused", "too many open orders on this book"),
    **{c: ("refused", "authentication failed") for c in range(300, 307)},  # 304: outside the access window
    307: ("refused", "key not allowed from this IP"),
    308: ("refused", "authentication failed"),
    309: ("refused", "invalid signature"),
    310: ("refused", "key does not allow trading"),
    311: ("refused", "key does not allow viewing the account"),
    312: ("refused", "key does not allow withdrawals"),
    317: ("refused", "account locked"),
}
RATE_LIMIT_CODES = frozenset({103, 104, 105, 110})
NOT_FOUND_CODES = frozenset({233, 240})
DEFAULT_BACKOFF_MS = 60_000
MAX_BACKOFF_MS = 15 * 60_000  # an IP ban lasts 15 minutes; never trust a header past that
MARKETS_TTL_MS = 5 * 60_000
PAGE_LIMIT = 1000  # Bitvavo's maximum for /orders and /trades
MAX_PAGES = 20
CANDLE_LIMIT = 1440

# Backoff deadlines (ms) per (API URL, key): shared by every client in the
# process, because Bitvavo counts per key (and per IP without one).
_backoff_until: dict[tuple[str, str | None], int] = {}


# --- classification ------------------------------------------------------------

def classify_send(result: Any) -> SendOutcome:
    """The one place a send's outcome is decided.

    ``result`` is whatever ``create_order`` returned, or the exception it raised.
    """
    if isinstance(result, BaseException):
        return _classify_exception(result)
    info = result.get("info") if isinstance(result, dict) else None
    if not isinstance(info, dict) or not info.get("orderId"):
        return SendOutcome.ambiguous(
            "Bitvavo answered 200 but the body is not an order; the order may or may not exist",
            code="no_order_in_200",
        )
    try:
        return SendOutcome.accepted(order_from_raw(info))
    except ExchangeError as e:
        return SendOutcome.ambiguous(
            f"Bitvavo accepted order {info['orderId']} but its answer could not be read: {e}",
            code="unreadable_order",
        )


def _classify_exception(exc: BaseException) -> SendOutcome:
    code, text = error_code(exc)
    if code is not None:
        kind, why = ERROR_CODES.get(code, ("ambiguous", "unexpected error code"))
        reason = f"Bitvavo: {text or why} (errorCode {code})"
        if kind == "refused":
            return SendOutcome.refused(reason, code=str(code))
        return SendOutcome.ambiguous(reason + "; reconcile decides", code=str(code))
    name = type(exc).__name__
    # ccxt raises these before any HTTP request (missing operatorId or
    # credentials), so nothing can exist.
    if isinstance(exc, (ccxt.ArgumentsRequired, ccxt.AuthenticationError, ccxt.PermissionDenied)):
        return SendOutcome.refused(f"not sent: {describe_error(exc)}", code=name)
    # Timeouts, resets, 5xx, rate limits without a code, anything unexpected:
    # the request may have reached the matching engine.
    return SendOutcome.ambiguous(f"{describe_error(exc)}; the order may or may not exist", code=name)


_CODE_RE = re.compile(r'"errorCode"\s*:\s*"?(\d+)')
_TEXT_RE = re.compile(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"')


def error_code(exc: BaseException) -> tuple[int | None, str]:
    """Bitvavo's ``errorCode`` and ``error`` text from a ccxt exception, if it carries them.

    ccxt puts ``"bitvavo " + body`` in the message; the class alone is not
    enough (HTTP 429 with errorCode 110 comes out as BadRequest).
    """
    msg = str(exc)
    m = _CODE_RE.search(msg)
    if not m:
        return None, ""
    t = _TEXT_RE.search(msg)
    text = t.group(1) if t else ""
    try:
        text = json.loads(f'"{text}"')
    except ValueError:
        pass
    return int(m.group(1)), text


def describe_error(exc: BaseException) -> str:
    """A one-line, readable account of a ccxt (or other) exception."""
    code, text = error_code(exc)
    if code is not None:
        return f"{text or 'error'} (errorCode {code})"
    if isinstance(exc, ccxt.RequestTimeout):
        return "no answer in time (timeout)"
    if isinstance(exc, (ccxt.DDoSProtection, ccxt.RateLimitExceeded)):
        return "rate limited (HTTP 429)"
    if isinstance(exc, ccxt.ExchangeNotAvailable):
        status = re.search(r"\b([45]\d\d)\b", str(exc))
        return f"exchange not available (HTTP {status.group(1) if status else '5xx'})"
    if isinstance(exc, ccxt.NetworkError):
        return "network error (connection reset or refused)"
    if isinstance(exc, ccxt.BaseError):
        text = re.sub(r"<[^>]*>", " ", str(exc))
        text = re.sub(r"\s+", " ", text).strip()
        return f"{type(exc).__name__}: {text[:200]}"
    return f"unexpected {type(exc).__name__}: {str(exc)[:200]}"


# --- raw Bitvavo JSON → contract objects -------------------------------------------

def _dec(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ExchangeError(f"Bitvavo sent no number for {what}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ExchangeError(f"Bitvavo sent {value!r} for {what}, not a number") from None
    if not d.is_finite():
        raise ExchangeError(f"Bitvavo sent {value!r} for {what}, not a number")
    return d


def _opt_dec(value: Any, what: str) -> Decimal | None:
    return None if value is None or value == "" else _dec(value, what)


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExchangeError(f"Bitvavo sent {value!r} for {what}, not a whole number") from None


def _field(raw: Any, key: str, what: str) -> Any:
    if not isinstance(raw, dict) or raw.get(key) is None:
        raise ExchangeError(f"Bitvavo's {what} has no {key!r}")
    return raw[key]


def _status(raw: str) -> str:
    # canceledAuction, canceledIOC, … are all "canceled" to tinybot
    return "canceled" if raw.startswith("canceled") else raw


def order_from_raw(raw: dict, client_order_id: str | None = None) -> Order:
    """An ``Order`` from Bitvavo's own order JSON (ccxt's ``order["info"]``)."""
    oid = str(_field(raw, "orderId", "order"))
    market = str(_field(raw, "market", "order"))
    side = _field(raw, "side", "order")
    if side not in ("buy", "sell"):
        raise ExchangeError(f"Bitvavo's order {oid} has side {side!r}")
    fills = []
    for f in raw.get("fills") or ():
        fills.append(Fill(
            trade_id=str(_field(f, "id", "fill")),
            order_id=oid,
            market=market,
            side=side,
            amount=_dec(f.get("amount"), "fill amount"),
            price=_dec(f.get("price"), "fill price"),
            fee=_opt_dec(f.get("fee"), "fill fee") or Decimal(0),
            fee_currency=str(f.get("feeCurrency") or raw.get("feeCurrency") or ""),
            timestamp_ms=_int(f.get("timestamp"), "fill timestamp"),
        ))
    return Order(
        order_id=oid,
        client_order_id=raw.get("clientOrderId") or client_order_id,
        market=market,
        side=side,
        order_type=str(raw.get("orderType") or "market"),
        status=_status(str(_field(raw, "status", "order"))),
        amount=_opt_dec(raw.get("amount"), "order amount"),
        amount_quote=_opt_dec(raw.get("amountQuote"), "order amountQuote"),
        filled_amount=_opt_dec(raw.get("filledAmount"), "filledAmount") or Decimal(0),
        filled_amount_quote=_opt_dec(raw.get("filledAmountQuote"), "filledAmountQuote") or Decimal(0),
        fee_paid=_opt_dec(raw.get("feePaid"), "feePaid") or Decimal(0),
        fee_currency=raw.get("feeCurrency") or None,
        created_ms=_int(raw.get("created"), "order created"),
        fills=tuple(fills),
    )


def fill_from_raw(raw: dict) -> Fill:
    """A ``Fill`` from one row of Bitvavo's ``GET /trades``."""
    side = _field(raw, "side", "trade")
    if side not in ("buy", "sell"):
        raise ExchangeError(f"Bitvavo's trade has side {side!r}")
    return Fill(
        trade_id=str(_field(raw, "id", "trade")),
        order_id=str(_field(raw, "orderId", "trade")),
        market=str(_field(raw, "market", "trade")),
        side=side,
        amount=_dec(raw.get("amount"), "trade amount"),
        price=_dec(raw.get("price"), "trade price"),
        fee=_opt_dec(raw.get("fee"), "trade fee") or Decimal(0),
        fee_currency=str(raw.get("feeCurrency") or ""),
        timestamp_ms=_int(raw.get("timestamp"), "trade timestamp"),
    )


def market_from_raw(raw: dict) -> Market:
    name = str(_field(raw, "market", "market"))
    return Market(
        name=name,
        base=str(_field(raw, "base", f"market {name}")),
        quote=str(_field(raw, "quote", f"market {name}")),
        status=str(_field(raw, "status", f"market {name}")),
        tick_size=_dec(raw.get("tickSize"), f"{name} tickSize"),
        quantity_decimals=_int(raw.get("quantityDecimals"), f"{name} quantityDecimals"),
        notional_decimals=_int(raw.get("notionalDecimals"), f"{name} notionalDecimals"),
        min_quote=_dec(raw.get("minOrderInQuoteAsset"), f"{name} minOrderInQuoteAsset"),
        min_base=_opt_dec(raw.get("minOrderInBaseAsset"), f"{name} minOrderInBaseAsset") or Decimal(0),
    )


def _shape(raw: Any) -> str:
    """What an unexpected answer looked like, without echoing HTML or control bytes."""
    if isinstance(raw, (str, bytes)):
        return f"not JSON ({len(raw)} characters)"
    text = json.dumps(raw, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _decimals(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def _plain(d: Decimal) -> str:
    """The amount as the caller wrote it, never in scientific notation."""
    return format(d, "f")


# --- the clients -----------------------------------------------------------------

class BitvavoReadOnly:
    """Bitvavo market data, balances and order lookups; cannot place or cancel orders."""

    name = "bitvavo"

    def __init__(self, cfg: Config, key: str | None = None, secret: str | None = None, *,
                 rate_limit: bool = True):
        self.cfg = cfg
        self.url = (cfg.exchange.url or "").rstrip("/") or None
        self.has_key = bool(key and secret)
        self._markets: dict[str, Market] | None = None
        self._markets_at = 0
        self._ccxt = self._build_ccxt(key, secret, rate_limit, self._operator_id_option())

    def _operator_id_option(self) -> int | None:
        return None  # the read-only client never places or cancels orders

    def _build_ccxt(self, key, secret, rate_limit, operator_id):
        options: dict[str, Any] = {
            # sent as Bitvavo-Access-Window: a request older than this is
            # refused (304), so an unanswered send cannot land later than that
            "recvWindow": int(self.cfg.exchange.access_window.total_seconds() * 1000),
            "operatorId": operator_id,
        }
        conf: dict[str, Any] = {
            "enableRateLimit": rate_limit,
            "timeout": int(self.cfg.exchange.timeout.total_seconds() * 1000),
            "options": options,
        }
        if key and secret:
            conf["apiKey"], conf["secret"] = key, secret
        if self.url:
            conf["urls"] = {"api": {"public": self.url, "private": self.url}}
        return ccxt.bitvavo(conf)

    @property
    def client(self):
        """The underlying ccxt instance (for doctor and tests)."""
        return self._ccxt

    # --- plumbing ---------------------------------------------------------------
    def _backoff_key(self) -> tuple[str, str | None]:
        return (self._ccxt.urls["api"]["private"], self._ccxt.apiKey or None)

    def rate_limited_until_ms(self) -> int | None:
        until = _backoff_until.get(self._backoff_key())
        return until if until and until > clock.now_ms() else None

    def _backoff_message(self, until: int) -> str:
        secs = max(1, (until - clock.now_ms() + 999) // 1000)
        return f"Bitvavo rate limited until {clock.to_iso(clock.from_ms(until))} ({secs}s); not calling it before then"

    def _check_backoff(self) -> None:
        until = self.rate_limited_until_ms()
        if until:
            raise ExchangeError(self._backoff_message(until))

    def _note_rate_limit(self, exc: BaseException) -> None:
        code, _ = error_code(exc)
        if code not in RATE_LIMIT_CODES and not (
            code is None and isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection))
        ):
            return
        now = clock.now_ms()
        until = now + DEFAULT_BACKOFF_MS
        headers = getattr(self._ccxt, "last_response_headers", None) or {}
        try:
            reset_at = int(headers.get("bitvavo-ratelimit-resetat"))
        except (TypeError, ValueError):
            reset_at = None
        if reset_at is not None and now < reset_at <= now + MAX_BACKOFF_MS:
            until = reset_at
        _backoff_until[self._backoff_key()] = until

    def _call(self, what: str, fn: Callable, *args, private: bool = False) -> Any:
        """One request: backoff check, ccxt call, readable ExchangeError on failure."""
        if private and not self.has_key:
            raise ExchangeError(f"{what} needs a read key: set TINYBOT_READ_KEY/SECRET")
        self._check_backoff()
        try:
            return fn(*args)
        except Exception as e:  # ccxt's errors, and anything else ccxt lets through
            self._note_rate_limit(e)
            err = ExchangeError(f"Bitvavo {what} failed: {describe_error(e)}")
            err.code = error_code(e)[0]  # 240/233 tell fetch_order "not found"
            raise err from None

    def _parse(self, what: str, fn: Callable, raw: Any) -> Any:
        try:
            return fn(raw)
        except ExchangeError as e:
            raise ExchangeError(f"Bitvavo {what}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise ExchangeError(f"Bitvavo sent an unexpected answer to {what}: {_shape(raw)}") from None

    # --- MarketData -------------------------------------------------------------
    def markets(self) -> dict[str, Market]:
        raw = self._call("markets", self._ccxt.publicGetMarkets, {})
        mkts = self._parse("markets", lambda r: {m.name: m for m in map(market_from_raw, r)}, raw)
        self._markets, self._markets_at = mkts, clock.now_ms()
        return dict(mkts)

    def _cached_markets(self) -> dict[str, Market]:
        if self._markets is None or clock.now_ms() - self._markets_at > MARKETS_TTL_MS:
            return self.markets()
        return self._markets

    def ticker(self, market: str) -> Ticker:
        market = normalise_market(market)
        raw = self._call(f"ticker {market}", self._ccxt.publicGetTicker24h, {"market": market})

        def parse(r):
            return Ticker(
                market=market,
                bid=_dec(r.get("bid"), f"{market} bid"),
                ask=_dec(r.get("ask"), f"{market} ask"),
                last=_dec(r.get("last"), f"{market} last"),
                timestamp_ms=_int(r.get("timestamp"), f"{market} timestamp"),
            )
        return self._parse(f"ticker {market}", parse, raw)

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        """Oldest first; at most 1440 (Bitvavo's limit per request)."""
        market = normalise_market(market)
        params = {"market": market, "interval": interval, "limit": max(1, min(int(limit), CANDLE_LIMIT))}
        raw = self._call(f"candles {market} {interval}", self._ccxt.publicGetMarketCandles, params)

        def parse(rows):
            out = [
                Candle(_int(r[0], "candle time"), _dec(r[1], "open"), _dec(r[2], "high"),
                       _dec(r[3], "low"), _dec(r[4], "close"), _dec(r[5], "volume"))
                for r in rows
            ]
            return sorted(out, key=lambda c: c.timestamp_ms)  # Bitvavo sends newest first
        return self._parse(f"candles {market}", parse, raw)

    def balances(self) -> dict[str, Balance]:
        raw = self._call("balance", self._ccxt.privateGetBalance, {}, private=True)
        return self._parse("balance", lambda rows: {
            str(r["symbol"]): Balance(_dec(r.get("available"), f"{r['symbol']} available"),
                                      _opt_dec(r.get("inOrder"), f"{r['symbol']} inOrder") or Decimal(0))
            for r in rows
        }, raw)

    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        market = normalise_market(market)
        what = f"order lookup {client_order_id}"
        try:
            raw = self._call(what, self._ccxt.privateGetOrder,
                             {"market": market, "clientOrderId": client_order_id}, private=True)
        except ExchangeError as e:
            if getattr(e, "code", None) in NOT_FOUND_CODES:
                return None
            raise
        return self._parse(what, lambda r: order_from_raw(r, client_order_id), raw)

    def _paged(self, what: str, fn: Callable, market: str, since_ms: int, ts_key: str, id_key: str) -> list[dict]:
        """All rows at or after since_ms, following Bitvavo's newest-first pages."""
        rows: dict[str, dict] = {}
        params: dict[str, Any] = {"market": market, "start": since_ms, "limit": PAGE_LIMIT}
        for _ in range(MAX_PAGES):
            page = self._call(what, fn, dict(params), private=True)
            if not isinstance(page, list):
                raise ExchangeError(f"Bitvavo sent an unexpected answer to {what}: {_shape(page)}")
            new = [r for r in page if isinstance(r, dict) and r.get(id_key) not in rows]
            for r in new:
                rows[r[id_key]] = r
            if len(page) < PAGE_LIMIT or not new:
                break
            params["end"] = min(_int(r.get(ts_key), ts_key) for r in page)
        else:
            raise ExchangeError(f"Bitvavo {what}: more than {MAX_PAGES * PAGE_LIMIT} rows since {since_ms}")
        return [r for r in rows.values() if _int(r.get(ts_key), ts_key) >= since_ms]

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        """Newest first, like the paper exchange."""
        market = normalise_market(market)
        what = f"orders {market}"
        rows = self._paged(what, self._ccxt.privateGetOrders, market, since_ms, "created", "orderId")
        orders = self._parse(what, lambda rs: [order_from_raw(r) for r in rs], rows)
        return sorted(orders, key=lambda o: o.created_ms, reverse=True)

    def open_orders(self, market: str) -> list[Order]:
        market = normalise_market(market)  # always with a market: without one the call weighs 100
        raw = self._call(f"open orders {market}", self._ccxt.privateGetOrdersOpen, {"market": market}, private=True)
        return self._parse(f"open orders {market}", lambda rs: [order_from_raw(r) for r in rs], raw)

    def trades_since(self, market: str, since_ms: int) -> list[Fill]:
        """Oldest first, like the paper exchange."""
        market = normalise_market(market)
        what = f"trades {market}"
        rows = self._paged(what, self._ccxt.privateGetTrades, market, since_ms, "timestamp", "id")
        fills = self._parse(what, lambda rs: [fill_from_raw(r) for r in rs], rows)
        return sorted(fills, key=lambda f: (f.timestamp_ms, f.trade_id))

    def server_time_ms(self) -> int:
        raw = self._call("time", self._ccxt.publicGetTime, {})
        return self._parse("time", lambda r: _int(r["time"], "time"), raw)

    # --- no trading here --------------------------------------------------------
    def send_order(self, market: str, side: Side, *, client_order_id: str,
                   amount_quote: Decimal | None = None, amount: Decimal | None = None) -> SendOutcome:
        raise ReadOnlyClientError("this is a read-only Bitvavo client: only the executor can place orders")

    def cancel_order(self, market: str, client_order_id: str) -> bool:
        raise ReadOnlyClientError("this is a read-only Bitvavo client: only the executor can cancel orders")


class BitvavoTrading(BitvavoReadOnly):
    """Bitvavo with the trade key: places market orders, each with clientOrderId and operatorId."""

    def __init__(self, cfg: Config, key: str, secret: str, *, rate_limit: bool = True):
        if cfg.exchange.operator_id is None:
            raise ConfigError(f"live mode needs an operatorId: set [exchange] operator_id in {cfg.path}")
        if not (key and secret):
            raise ConfigError("live mode needs the trade key: set TINYBOT_TRADE_KEY and TINYBOT_TRADE_SECRET")
        self.operator_id: int | None = cfg.exchange.operator_id
        super().__init__(cfg, key, secret, rate_limit=rate_limit)

    def _operator_id_option(self) -> int | None:
        return self.operator_id

    def send_order(self, market: str, side: Side, *, client_order_id: str,
                   amount_quote: Decimal | None = None, amount: Decimal | None = None,
                   sign_by_ms: int | None = None) -> SendOutcome:
        """A market order. Never raises for an exchange outcome: see ``classify_send``."""
        until = self.rate_limited_until_ms()
        if until:
            return SendOutcome.refused(f"not sent: {self._backoff_message(until)}", code="rate_limited")
        prepared = self._prepare(normalise_market(market), side, client_order_id, amount_quote, amount)
        if isinstance(prepared, SendOutcome):
            return prepared
        symbol, order_amount, params = prepared
        if sign_by_ms is not None and clock.now_ms() > sign_by_ms:
            # the reads above were slow: a request signed now could land after the
            # moment reconcile is entitled to call this order absent
            return SendOutcome.refused(
                f"not sent: the checks before sending took until {clock.to_iso(clock.now())}, past the send"
                f" deadline {clock.to_iso(clock.from_ms(sign_by_ms))}", code="send_deadline")
        try:
            result = self._ccxt.create_order(symbol, "market", side, order_amount, None, params)
        except Exception as e:  # every exception is an outcome; classify_send sorts them
            self._note_rate_limit(e)
            return classify_send(e)
        crash.point("after_send_before_reply")
        return classify_send(result)

    def _prepare(self, market: str, side: str, cid: str, amount_quote: Decimal | None,
                 amount: Decimal | None) -> SendOutcome | tuple[str, str | None, dict]:
        """Every check before the order request; a refusal here sends nothing."""
        if self.operator_id is None:  # ccxt would refuse too (ArgumentsRequired); say why first
            return SendOutcome.refused(
                f"not sent: live mode needs an operatorId: set [exchange] operator_id in {self.cfg.path}",
                code="no_operator_id")
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
        try:
            mkts = self._cached_markets()
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
                    f"€{_plain(amount_quote)} has more than {m.notional_decimals} decimals", code="205")
            notional = amount_quote
        else:
            if _decimals(amount) > m.quantity_decimals:
                return SendOutcome.refused(
                    f"{_plain(amount)} {m.base} has more than {m.quantity_decimals} decimals", code="205")
            if amount < m.min_base:
                return SendOutcome.refused(
                    f"{_plain(amount)} {m.base} is below the minimum of {_plain(m.min_base)} {m.base}", code="217")
            try:
                t = self.ticker(market)
            except ExchangeError as e:
                return SendOutcome.refused(f"no price for {market}: {e}", code="no_price")
            notional = amount * (t.ask if side == "buy" else t.bid)
        if notional < m.min_quote:
            return SendOutcome.refused(f"order below the minimum of €{_plain(m.min_quote)}", code="217")
        try:  # create_order needs ccxt's market table; load it now so a failure sends nothing
            self._call("markets", self._ccxt.load_markets)
        except ExchangeError as e:
            return SendOutcome.refused(f"not sent: {e}", code="preflight")
        # Bitvavo refuses a clientOrderId only while its order is *open* (220): a
        # resend after a fill would make a second order. Look it up first.
        try:
            existing = self.fetch_order(market, cid)
        except ExchangeError as e:
            return SendOutcome.refused(f"not sent: cannot check clientOrderId {cid}: {e}", code="preflight")
        if existing is not None:
            return SendOutcome.ambiguous(
                f"not sent: Bitvavo already has order {existing.order_id} ({existing.status}) with"
                f" clientOrderId {cid}; reconcile decides", code="220")
        ccxt_market = (self._ccxt.markets_by_id.get(market) or [None])[0]
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

    def cancel_order(self, market: str, client_order_id: str) -> bool:
        """True if Bitvavo confirmed; False if it has no open order with that id."""
        market = normalise_market(market)
        params = {"market": market, "clientOrderId": client_order_id, "operatorId": self.operator_id}
        try:
            raw = self._call(f"cancel {client_order_id}", self._ccxt.privateDeleteOrder, params, private=True)
        except ExchangeError as e:
            if getattr(e, "code", None) in NOT_FOUND_CODES:
                return False
            raise
        return isinstance(raw, dict) and bool(raw.get("orderId"))


def read_only_client(cfg: Config, *, rate_limit: bool = True) -> BitvavoReadOnly:
    """The client advisors, status, doctor and reconcile get: the read key, or none."""
    pair = cfg.secrets().pair("TINYBOT_READ_KEY", "TINYBOT_READ_SECRET")
    key, secret = pair if pair else (None, None)
    return BitvavoReadOnly(cfg, key, secret, rate_limit=rate_limit)
