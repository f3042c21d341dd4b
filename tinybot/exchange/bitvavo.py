"""The live exchange: Bitvavo's REST v2 through ccxt, behind tinybot's contract.

Built by composition, one API key per ``_Endpoint`` (a ccxt instance, its
rate-limit state, readable errors):

* ``BitvavoReadOnly`` (``MarketData``) — what every module but the executor
  gets (``read_only_client(cfg)``). Market data and balances use the *view*
  key (``TINYBOT_READ_KEY``). Order and trade lookups need a key with trade
  rights (Bitvavo: *Trade* = place, update, **view** and cancel orders), so
  in live mode they use the *trade* key behind ``OrderLookups``: a facade
  with no method that places or cancels, over a ccxt instance that refuses
  any HTTP method but GET. Its own ``send_order``/``cancel_order`` raise.
* ``BitvavoTrading`` (``Trading``) — the trade key and secret, passed in by
  the executor's factory (it never reads a secret itself). It composes the
  same reads over its own endpoint and adds ``send_order``/``cancel_order``;
  it inherits from nothing that refuses to trade.

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
import logging
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
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
# this table is ambiguous. (110 is special: see ``_classify_exception``.)
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
    219: ("refused", "market is no longer listed"),  # ccxt leaves it unmapped
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
    313: ("refused", "key or account not allowed to do this"),
    **{c: ("refused", "account not allowed to do this") for c in range(316, 321)},  # 317: account locked
    422: ("refused", "price is not a multiple of the market's tick size"),
    423: ("refused", "market halted"),
    424: ("refused", "market is cancel-only"),
    425: ("refused", "market is in an auction"),
    426: ("refused", "market is matching its auction"),
    429: ("refused", "too many decimals"),
}
RATE_LIMIT_CODES = frozenset({103, 104, 105, 110})
NOT_FOUND_CODES = frozenset({233, 240})
MAX_BACKOFF_MS = 15 * 60_000  # an IP ban lasts 15 minutes; never trust a header or a text past that
PACE_RESERVE = 10  # weight kept in hand: below it, wait for the minute to end (balance/orders/trades weigh 5)
PACE_MAX_MS = 61_000  # the weight counter resets every wall-clock minute
MARKETS_TTL_MS = 5 * 60_000
PAGE_LIMIT = 1000  # Bitvavo's maximum for /orders and /trades
MAX_PAGES = 40  # per call, over every 24-hour slice
SLICE_MS = 23 * 3_600_000  # GET /trades spans at most 24 h a request: slices of 23 h leave an hour for clock skew
MAX_LOOKBACK_MS = 31 * 86_400_000  # a lookup further back than this is refused (one request per slice)
PRE_SEND_SCAN_MS = 86_400_000  # without a claim time, the pre-send scan looks back one day before sign_by
CANDLE_LIMIT = 1440

log = logging.getLogger("tinybot.exchange")


@dataclass
class _Pause:
    until_ms: int
    ban: bool  # True: Bitvavo refused us (429): nothing may be sent before until_ms.
    #            False: the minute's weight is nearly spent: reads wait, then go on.


# Rate-limit pauses per (API URL, key): shared by every client in the process,
# because Bitvavo counts per key (and per IP without one).
_backoff_until: dict[tuple[str, str | None], _Pause] = {}


# --- classification ------------------------------------------------------------


def classify_send(result: Any, http_status: int | None = None) -> SendOutcome:
    """The one place a send's outcome is decided.

    ``result`` is whatever ``create_order`` returned, or the exception it
    raised; ``http_status`` the status of the answer, when one came.
    """
    if isinstance(result, BaseException):
        return _classify_exception(result, http_status)
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


def _classify_exception(exc: BaseException, http_status: int | None = None) -> SendOutcome:
    code, text = error_code(exc)
    if code == 110 and http_status is not None and http_status != 429:
        # Bitvavo uses 110 for "invalid endpoint" too (HTTP 404): the request
        # reached no order book, and resending it would fail the same way
        return SendOutcome.refused(
            f"Bitvavo: {text or 'invalid endpoint'} (errorCode 110, HTTP {http_status}): a bug in tinybot or"
            f" ccxt, nothing was created",
            code="110",
        )
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


def _fee(raw: dict, what: str) -> tuple[bool, Decimal]:
    """(settled, fee) of one fill: Bitvavo sends fee and feeCurrency only once ``settled`` is true.

    An unsettled fill (``settled: false``, or no fee yet) has fee 0 for now;
    a later lookup of the same fill brings the real one.
    """
    fee = _opt_dec(raw.get("fee"), f"{what} fee")
    if raw.get("settled") is False or fee is None:
        return False, Decimal(0)
    return True, fee


def order_from_raw(raw: dict, client_order_id: str | None = None) -> Order:
    """An ``Order`` from Bitvavo's own order JSON (ccxt's ``order["info"]``)."""
    oid = str(_field(raw, "orderId", "order"))
    market = str(_field(raw, "market", "order"))
    side = _field(raw, "side", "order")
    if side not in ("buy", "sell"):
        raise ExchangeError(f"Bitvavo's order {oid} has side {side!r}")
    fills = []
    for f in raw.get("fills") or ():
        settled, fee = _fee(f, "fill")
        fills.append(
            Fill(
                trade_id=str(_field(f, "id", "fill")),
                order_id=oid,
                market=market,
                side=side,
                amount=_dec(f.get("amount"), "fill amount"),
                price=_dec(f.get("price"), "fill price"),
                fee=fee,
                fee_currency=str(f.get("feeCurrency") or raw.get("feeCurrency") or ""),
                timestamp_ms=_int(f.get("timestamp"), "fill timestamp"),
                settled=settled,
            )
        )
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
    settled, fee = _fee(raw, "trade")
    return Fill(
        trade_id=str(_field(raw, "id", "trade")),
        order_id=str(_field(raw, "orderId", "trade")),
        market=str(_field(raw, "market", "trade")),
        side=side,
        amount=_dec(raw.get("amount"), "trade amount"),
        price=_dec(raw.get("price"), "trade price"),
        fee=fee,
        fee_currency=str(raw.get("feeCurrency") or ""),
        timestamp_ms=_int(raw.get("timestamp"), "trade timestamp"),
        settled=settled,
    )


def markets_from_raw(rows: Any) -> tuple[dict[str, Market], dict[str, str]]:
    """Bitvavo's market table → (usable markets, {row: why it was skipped}).

    One malformed row (a new listing with a field missing, a typo upstream)
    must not make every market unusable: it is left out and reported.
    """
    if not isinstance(rows, list):
        raise ExchangeError(f"Bitvavo sent an unexpected answer to markets: {_shape(rows)}")
    good: dict[str, Market] = {}
    skipped: dict[str, str] = {}
    for i, row in enumerate(rows):
        name = str(row.get("market")) if isinstance(row, dict) and row.get("market") else f"row {i}"
        try:
            m = market_from_raw(row)
        except ExchangeError as e:
            skipped[name] = str(e)
            continue
        good[m.name] = m
    if rows and not good:
        raise ExchangeError(
            f"Bitvavo's market table has no usable row ({len(rows)} malformed, e.g. {next(iter(skipped.values()))})"
        )
    return good, skipped


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


# --- one key on one URL ------------------------------------------------------------


def _end_of_next_minute(now_ms: int) -> int:
    """Bitvavo blocks a key that went over until the end of the *next* minute (12:00:15 → 12:02:00)."""
    return (now_ms // 60_000 + 2) * 60_000


_BAN_AT_RE = re.compile(r"\b(\d{13})\b")


class _Endpoint:
    """One API key (or none) on one URL: its ccxt instance, its rate-limit pauses, readable errors.

    ``get_only``: the instance refuses every HTTP method but GET before a
    byte leaves, so a trade key used for lookups cannot place or cancel
    even through ccxt's own ``create_order``.
    """

    def __init__(
        self,
        cfg: Config,
        key: str | None,
        secret: str | None,
        *,
        rate_limit: bool,
        operator_id: int | None = None,
        get_only: bool = False,
        sleep: Callable[[float], None] | None = None,
    ):
        self.cfg = cfg
        self.url = (cfg.exchange.url or "").rstrip("/") or None
        self.has_key = bool(key and secret)
        self.sleep = sleep or time.sleep
        self.last_status: int | None = None
        self._ccxt = self._build(key, secret, rate_limit, operator_id)
        self._watch_responses()
        self.get_only = get_only
        if get_only:
            self._refuse_all_but_get()

    def _build(self, key, secret, rate_limit, operator_id):
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

    def _watch_responses(self) -> None:
        """Keep each answer's HTTP status: errorCode 110 means a rate limit only with HTTP 429."""
        real = self._ccxt.on_rest_response

        def on_rest_response(code, *rest):
            self.last_status = code
            return real(code, *rest)

        self._ccxt.on_rest_response = on_rest_response

    def _refuse_all_but_get(self) -> None:
        inst = self._ccxt
        real_fetch, session = inst.fetch, inst.session
        real_request = session.request

        def refuse(method):
            return ReadOnlyClientError(
                f"refused {method}: this Bitvavo client only looks orders up; only the executor places or cancels"
            )

        def fetch(url, method="GET", headers=None, body=None):
            if str(method).upper() != "GET":
                raise refuse(method)
            return real_fetch(url, method, headers, body)

        def request(method, url, *a, **k):
            if str(method).upper() != "GET":
                raise refuse(method)
            return real_request(method, url, *a, **k)

        inst.fetch = fetch
        session.request = request

    @property
    def ccxt(self):
        return self._ccxt

    def route(self, session, milliseconds: Callable[[], int]) -> None:
        """Send through ``session`` (requests.Session's ``request``), sign on ``milliseconds``, no throttle.

        For `tinybot replay` (see ``BitvavoReadOnly.route_requests``). A
        GET-only endpoint stays GET-only: its ``fetch`` already refuses, and
        the new session is wrapped the same way.
        """
        inst = self._ccxt
        inst.enableRateLimit = False  # the far end is in this process: a client-side throttle only sleeps
        inst.milliseconds = milliseconds
        inst.session = _GetOnlySession(session) if self.get_only else session

    # --- rate limits ------------------------------------------------------------
    def backoff_key(self) -> tuple[str, str | None]:
        return (self._ccxt.urls["api"]["private"], self._ccxt.apiKey or None)

    def banned_until_ms(self) -> int | None:
        p = _backoff_until.get(self.backoff_key())
        return p.until_ms if p and p.ban and p.until_ms > clock.now_ms() else None

    def paced_until_ms(self) -> int | None:
        p = _backoff_until.get(self.backoff_key())
        return p.until_ms if p and not p.ban and p.until_ms > clock.now_ms() else None

    def backoff_message(self, until: int) -> str:
        secs = max(1, (until - clock.now_ms() + 999) // 1000)
        return f"Bitvavo rate limited until {clock.to_iso(clock.from_ms(until))} ({secs}s); not calling it before then"

    def wait_for_budget(self) -> None:
        """Before a read: refuse during a ban; sleep out a nearly spent minute (never past PACE_MAX_MS)."""
        until = self.banned_until_ms()
        if until:
            raise ExchangeError(self.backoff_message(until))
        until = self.paced_until_ms()
        if until:
            self.sleep(min(until - clock.now_ms(), PACE_MAX_MS) / 1000)
            _backoff_until.pop(self.backoff_key(), None)

    def _headers(self) -> dict:
        return getattr(self._ccxt, "last_response_headers", None) or {}

    def note_answer(self) -> None:
        """After an answer: if the minute's weight is nearly spent, pause reads until it resets."""
        headers = self._headers()
        try:
            remaining = int(headers.get("bitvavo-ratelimit-remaining"))
            reset_at = int(headers.get("bitvavo-ratelimit-resetat"))
        except (TypeError, ValueError):
            return
        now = clock.now_ms()
        if remaining < PACE_RESERVE and now < reset_at <= now + PACE_MAX_MS:
            key = self.backoff_key()
            current = _backoff_until.get(key)
            if not (current and current.ban and current.until_ms >= reset_at):
                _backoff_until[key] = _Pause(reset_at, ban=False)

    def note_error(self, exc: BaseException) -> None:
        """After a 429 (errorCode 105 or 110): nothing reaches Bitvavo with this key until the ban ends."""
        code, text = error_code(exc)
        if code == 110 and self.last_status not in (None, 429):
            return  # 110 with HTTP 404: an invalid endpoint, not a rate limit
        if code not in RATE_LIMIT_CODES and not (
            code is None and isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection))
        ):
            return
        now = clock.now_ms()
        until = _end_of_next_minute(now)
        candidates = []
        stated = _BAN_AT_RE.search(text or "")
        if stated:  # 105: "… The ban expires at 1700200200000."
            candidates.append(int(stated.group(1)))
        try:
            candidates.append(int(self._headers().get("bitvavo-ratelimit-resetat")))
        except (TypeError, ValueError):
            pass
        for c in candidates:
            if now < c <= now + MAX_BACKOFF_MS:
                until = max(until, c)
        _backoff_until[self.backoff_key()] = _Pause(until, ban=True)

    # --- one request --------------------------------------------------------------
    def call(
        self,
        what: str,
        fn: Callable,
        *args,
        private: bool = False,
        no_key: str = "needs a read key: set TINYBOT_READ_KEY/SECRET",
    ) -> Any:
        """One request: budget check, ccxt call, readable ExchangeError on failure."""
        if private and not self.has_key:
            raise ExchangeError(f"{what} {no_key}")
        self.wait_for_budget()
        self.last_status = None
        self._ccxt.last_response_headers = None
        try:
            with localcontext():  # ccxt sets ROUND_HALF_UP on the thread's context: keep that inside ccxt
                result = fn(*args)
        except ReadOnlyClientError:
            raise
        except Exception as e:  # ccxt's errors, and anything else ccxt lets through
            self.note_error(e)
            err = ExchangeError(f"Bitvavo {what} failed: {describe_error(e)}")
            err.code = error_code(e)[0]  # 240/233 tell fetch_order "not found"
            raise err from None
        self.note_answer()
        return result


class _GetOnlySession:
    """A session that refuses every HTTP method but GET (a GET-only endpoint's, after ``route``)."""

    def __init__(self, session):
        self._session = session

    def request(self, method, url, *a, **k):
        if str(method).upper() != "GET":
            raise ReadOnlyClientError(
                f"refused {method}: this Bitvavo client only looks orders up; only the executor places or cancels"
            )
        return self._session.request(method, url, *a, **k)

    def __getattr__(self, name):
        return getattr(self._session, name)


def _parse(what: str, fn: Callable, raw: Any) -> Any:
    try:
        return fn(raw)
    except ExchangeError as e:
        raise ExchangeError(f"Bitvavo {what}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise ExchangeError(f"Bitvavo sent an unexpected answer to {what}: {_shape(raw)}") from None


# --- reads -------------------------------------------------------------------------


class _MarketReads:
    """Markets, tickers, candles, balances and the server time, over one endpoint."""

    def __init__(self, endpoint: _Endpoint):
        self._ep = endpoint
        self._markets: dict[str, Market] | None = None
        self._markets_at = 0
        self.skipped_markets: dict[str, str] = {}  # malformed rows left out of the last market table

    def markets(self) -> dict[str, Market]:
        raw = self._ep.call("markets", self._ep.ccxt.publicGetMarkets, {})
        mkts, skipped = markets_from_raw(raw)
        if skipped != self.skipped_markets:
            for name, why in skipped.items():
                log.warning("Bitvavo market %s left out: %s", name, why)
        self.skipped_markets = skipped
        self._markets, self._markets_at = mkts, clock.now_ms()
        return dict(mkts)

    def cached_markets(self) -> dict[str, Market]:
        if self._markets is None or clock.now_ms() - self._markets_at > MARKETS_TTL_MS:
            return self.markets()
        return self._markets

    def ticker(self, market: str) -> Ticker:
        market = normalise_market(market)
        raw = self._ep.call(f"ticker {market}", self._ep.ccxt.publicGetTicker24h, {"market": market})

        def parse(r):
            return Ticker(
                market=market,
                bid=_dec(r.get("bid"), f"{market} bid"),
                ask=_dec(r.get("ask"), f"{market} ask"),
                last=_dec(r.get("last"), f"{market} last"),
                timestamp_ms=_int(r.get("timestamp"), f"{market} timestamp"),
            )

        return _parse(f"ticker {market}", parse, raw)

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        """Oldest first; at most 1440 (Bitvavo's limit per request)."""
        market = normalise_market(market)
        params = {"market": market, "interval": interval, "limit": max(1, min(int(limit), CANDLE_LIMIT))}
        raw = self._ep.call(f"candles {market} {interval}", self._ep.ccxt.publicGetMarketCandles, params)

        def parse(rows):
            out = [
                Candle(
                    _int(r[0], "candle time"),
                    _dec(r[1], "open"),
                    _dec(r[2], "high"),
                    _dec(r[3], "low"),
                    _dec(r[4], "close"),
                    _dec(r[5], "volume"),
                )
                for r in rows
            ]
            return sorted(out, key=lambda c: c.timestamp_ms)  # Bitvavo sends newest first

        return _parse(f"candles {market}", parse, raw)

    def balances(self) -> dict[str, Balance]:
        """What /balance lists; Bitvavo leaves out zero balances, so a missing asset holds 0."""
        raw = self._ep.call("balance", self._ep.ccxt.privateGetBalance, {}, private=True)
        return _parse(
            "balance",
            lambda rows: {
                str(r["symbol"]): Balance(
                    _dec(r.get("available"), f"{r['symbol']} available"),
                    _opt_dec(r.get("inOrder"), f"{r['symbol']} inOrder") or Decimal(0),
                )
                for r in rows
            },
            raw,
        )

    def server_time_ms(self) -> int:
        raw = self._ep.call("time", self._ep.ccxt.publicGetTime, {})
        return _parse("time", lambda r: _int(r["time"], "time"), raw)


NO_LOOKUP_KEY = (
    "needs the trade key: Bitvavo lets only a key with trade rights read orders and trades;"
    " set TINYBOT_TRADE_KEY and TINYBOT_TRADE_SECRET"
)


class OrderLookups:
    """Order and trade lookups, and nothing else: no method here places or cancels.

    ``endpoint`` is None when no key may read orders (then every lookup says
    which key to set).
    """

    def __init__(self, endpoint: _Endpoint | None):
        self._ep = endpoint

    def _call(self, what: str, fn_name: str, params: dict) -> Any:
        if self._ep is None:
            raise ExchangeError(f"{what} {NO_LOOKUP_KEY}")
        return self._ep.call(what, getattr(self._ep.ccxt, fn_name), params, private=True, no_key=NO_LOOKUP_KEY)

    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        market = normalise_market(market)
        what = f"order lookup {client_order_id}"
        try:
            raw = self._call(what, "privateGetOrder", {"market": market, "clientOrderId": client_order_id})
        except ExchangeError as e:
            if getattr(e, "code", None) in NOT_FOUND_CODES:
                return None
            raise
        return _parse(what, lambda r: order_from_raw(r, client_order_id), raw)

    def _paged(self, what: str, fn_name: str, market: str, since_ms: int, ts_key: str, id_key: str) -> list[dict]:
        """Every row at or after since_ms: 23-hour slices (GET /trades spans at most 24 h a request),
        each followed back page by page while a page comes full (Bitvavo sends newest first)."""
        if self._ep is None:
            raise ExchangeError(f"{what} {NO_LOOKUP_KEY}")
        now = clock.now_ms()
        if since_ms < now - MAX_LOOKBACK_MS:
            raise ExchangeError(
                f"Bitvavo {what}: since {clock.to_iso(clock.from_ms(max(since_ms, 0)))} is more than"
                f" {MAX_LOOKBACK_MS // 86_400_000} days back (Bitvavo answers 24 hours per request)"
            )
        rows: dict[str, dict] = {}
        pages = 0
        start = since_ms
        while True:
            last = start + SLICE_MS >= now
            params: dict[str, Any] = {"market": market, "start": start, "limit": PAGE_LIMIT}
            if not last:
                params["end"] = start + SLICE_MS
            while True:
                pages += 1
                if pages > MAX_PAGES:
                    raise ExchangeError(f"Bitvavo {what}: more than {MAX_PAGES} pages since {since_ms}")
                page = self._call(what, fn_name, dict(params))
                if not isinstance(page, list):
                    raise ExchangeError(f"Bitvavo sent an unexpected answer to {what}: {_shape(page)}")
                new = [r for r in page if isinstance(r, dict) and r.get(id_key) not in rows]
                for r in new:
                    rows[r[id_key]] = r
                if len(page) < PAGE_LIMIT:
                    break
                if not new:
                    raise ExchangeError(f"Bitvavo {what}: more than {PAGE_LIMIT} rows in one millisecond")
                params["end"] = min(_int(r.get(ts_key), ts_key) for r in page)  # inclusive: dedupe by id
            if last:
                break
            start += SLICE_MS
        return [r for r in rows.values() if _int(r.get(ts_key), ts_key) >= since_ms]

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        """Newest first, like the paper exchange.

        Paged in the same 23-hour slices as trades: Bitvavo documents the
        24-hour span for GET /trades and says nothing either way for GET
        /orders, so tinybot does not depend on /orders taking more.
        """
        market = normalise_market(market)
        what = f"orders {market}"
        rows = self._paged(what, "privateGetOrders", market, since_ms, "created", "orderId")
        orders = _parse(what, lambda rs: [order_from_raw(r) for r in rs], rows)
        return sorted(orders, key=lambda o: o.created_ms, reverse=True)

    def open_orders(self, market: str) -> list[Order]:
        market = normalise_market(market)  # always with a market: without one the call weighs 25
        raw = self._call(f"open orders {market}", "privateGetOrdersOpen", {"market": market})
        return _parse(f"open orders {market}", lambda rs: [order_from_raw(r) for r in rs], raw)

    def trades_since(self, market: str, since_ms: int) -> list[Fill]:
        """Oldest first, like the paper exchange."""
        market = normalise_market(market)
        what = f"trades {market}"
        rows = self._paged(what, "privateGetTrades", market, since_ms, "timestamp", "id")
        fills = _parse(what, lambda rs: [fill_from_raw(r) for r in rs], rows)
        return sorted(fills, key=lambda f: (f.timestamp_ms, f.trade_id))


# --- the clients -----------------------------------------------------------------


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
        self.url = (cfg.exchange.url or "").rstrip("/") or None
        self._view = _Endpoint(cfg, key, secret, rate_limit=rate_limit, sleep=sleep)
        self._reads = _MarketReads(self._view)
        self.has_key = self._view.has_key
        lookups = None
        if lookup_key and lookup_secret:
            lookups = _Endpoint(cfg, lookup_key, lookup_secret, rate_limit=rate_limit, get_only=True, sleep=sleep)
        self._lookup_ep = lookups
        self._lookups = OrderLookups(lookups)

    def route_requests(self, session, *, milliseconds: Callable[[], int]) -> None:
        """Every ccxt instance of this client (view key and lookups) sends through ``session`` and
        signs its requests on ``milliseconds``, without client-side throttling.

        For `tinybot replay`, which answers in-process from the simulator on a
        simulated clock (docs/REPLAY.md); never for the real exchange.
        """
        for ep in (self._view, self._lookup_ep):
            if ep is not None:
                ep.route(session, milliseconds)

    @property
    def client(self):
        """The view key's ccxt instance (for doctor and tests)."""
        return self._view.ccxt

    @property
    def skipped_markets(self) -> dict[str, str]:
        return self._reads.skipped_markets

    def rate_limited_until_ms(self) -> int | None:
        return self._view.banned_until_ms()

    # --- MarketData: the view key -------------------------------------------------
    def markets(self) -> dict[str, Market]:
        return self._reads.markets()

    def ticker(self, market: str) -> Ticker:
        return self._reads.ticker(market)

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        return self._reads.candles(market, interval, limit)

    def candle_rows(self, what: str, params: dict) -> Any:
        """``GET /{market}/candles`` with the caller's start/end/limit, the rows as Bitvavo sent them.

        For the candle store (tinybot.candles), which pages through history
        itself; rate limits and errors are handled as for every other read.
        """
        return self._view.call(what, self._view.ccxt.publicGetMarketCandles, params)

    def balances(self) -> dict[str, Balance]:
        return self._reads.balances()

    def server_time_ms(self) -> int:
        return self._reads.server_time_ms()

    # --- MarketData: lookups, the trade key behind a GET-only facade --------------
    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        return self._lookups.fetch_order(market, client_order_id)

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        return self._lookups.orders_since(market, since_ms)

    def open_orders(self, market: str) -> list[Order]:
        return self._lookups.open_orders(market)

    def trades_since(self, market: str, since_ms: int) -> list[Fill]:
        return self._lookups.trades_since(market, since_ms)

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
        self.url = (cfg.exchange.url or "").rstrip("/") or None
        self.operator_id: int | None = cfg.exchange.operator_id
        self._ep = _Endpoint(cfg, key, secret, rate_limit=rate_limit, operator_id=self.operator_id, sleep=sleep)
        self._reads = _MarketReads(self._ep)
        self._lookups = OrderLookups(self._ep)
        self.has_key = True

    def route_requests(self, session, *, milliseconds: Callable[[], int]) -> None:
        """As ``BitvavoReadOnly.route_requests``: this client's one ccxt instance, for `tinybot replay`."""
        self._ep.route(session, milliseconds)

    @property
    def client(self):
        """The underlying ccxt instance (for doctor and tests)."""
        return self._ep.ccxt

    def rate_limited_until_ms(self) -> int | None:
        return self._ep.banned_until_ms()

    # --- reads, composed ------------------------------------------------------------
    def markets(self) -> dict[str, Market]:
        return self._reads.markets()

    def _cached_markets(self) -> dict[str, Market]:
        return self._reads.cached_markets()

    def ticker(self, market: str) -> Ticker:
        return self._reads.ticker(market)

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        return self._reads.candles(market, interval, limit)

    def candle_rows(self, what: str, params: dict) -> Any:
        """``GET /{market}/candles`` with the caller's start/end/limit, the rows as Bitvavo sent them.

        For the candle store (tinybot.candles), which pages through history
        itself; rate limits and errors are handled as for every other read.
        """
        return self._ep.call(what, self._ep.ccxt.publicGetMarketCandles, params)

    def balances(self) -> dict[str, Balance]:
        return self._reads.balances()

    def server_time_ms(self) -> int:
        return self._reads.server_time_ms()

    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        return self._lookups.fetch_order(market, client_order_id)

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        return self._lookups.orders_since(market, since_ms)

    def open_orders(self, market: str) -> list[Order]:
        return self._lookups.open_orders(market)

    def trades_since(self, market: str, since_ms: int) -> list[Fill]:
        return self._lookups.trades_since(market, since_ms)

    # --- trading ------------------------------------------------------------------------
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
        symbol, order_amount, params = prepared
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
            # the reads above were slow: a request signed now could land after the
            # moment reconcile is entitled to call this order absent
            return SendOutcome.refused(
                f"not sent: the checks before sending took until {clock.to_iso(clock.now())}, past the send"
                f" deadline {clock.to_iso(clock.from_ms(sign_by_ms))}",
                code="send_deadline",
            )
        self._ep.last_status = None
        self.client.last_response_headers = None
        try:
            with localcontext():  # ccxt's decimal_to_precision changes the thread's rounding: keep it inside
                result = self.client.create_order(symbol, "market", side, order_amount, None, params)
        except Exception as e:  # every exception is an outcome; classify_send sorts them
            self._ep.note_error(e)
            return classify_send(e, self._ep.last_status)
        self._ep.note_answer()
        crash.point("after_send_before_reply")
        return classify_send(result)

    def _already_sent(self, market: str, cid: str, sign_by_ms: int | None, claimed_ms: int | None) -> Order | None:
        """The order with this clientOrderId, if Bitvavo has one: by id, then in the market's orders since the claim.

        Bitvavo may not find a closed order by clientOrderId (it is unique only
        among open orders), so "not found" is checked against the order list.
        """
        existing = self.fetch_order(market, cid)
        if existing is not None:
            return existing
        if claimed_ms is not None:
            since = claimed_ms
        else:
            since = (sign_by_ms if sign_by_ms is not None else clock.now_ms()) - PRE_SEND_SCAN_MS
        for o in self.orders_since(market, since):
            if o.client_order_id == cid:
                return o
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
                t = self.ticker(market)
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


def read_only_client(cfg: Config, *, rate_limit: bool = True) -> BitvavoReadOnly:
    """The client advisors, status, doctor and reconcile get.

    Market data and balances: the view key (``TINYBOT_READ_KEY``), or none.
    Order and trade lookups, in live mode only: the trade key behind the
    GET-only ``OrderLookups`` (a view-only key cannot read orders on
    Bitvavo). Paper mode never reads the trade key.
    """
    secrets = cfg.secrets()
    pair = secrets.pair("TINYBOT_READ_KEY", "TINYBOT_READ_SECRET")
    key, secret = pair if pair else (None, None)
    lookup = secrets.pair("TINYBOT_TRADE_KEY", "TINYBOT_TRADE_SECRET") if cfg.mode == "live" else None
    lookup_key, lookup_secret = lookup if lookup else (None, None)
    return BitvavoReadOnly(cfg, key, secret, lookup_key=lookup_key, lookup_secret=lookup_secret, rate_limit=rate_limit)


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
        ep = _Endpoint(cfg, key, secret, rate_limit=rate_limit, get_only=True)
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
