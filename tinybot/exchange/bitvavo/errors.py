"""Bitvavo's error codes, and the one place a send's outcome is sorted into accepted / refused / ambiguous.

``classify_send`` decides every send (see ``ERROR_CODES`` and docs/LIVE.md);
``error_code`` and ``describe_error`` turn a ccxt exception into Bitvavo's
code and one readable line, for the endpoint, the clients and doctor.
"""

from __future__ import annotations

import json
import re
from typing import Any

import ccxt

from ..base import ExchangeError, Kind, SendOutcome
from .parse import order_from_raw

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
    # 205 is also what the real exchange answers an amount with too many decimals (ccxt issue 19346)
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
    # 301: the key is not 64 characters; 304: outside the access window (docs errors, HTTP 403)
    **{c: ("refused", "authentication failed") for c in range(300, 307)},
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
    429: ("refused", "too many decimals"),  # BITVAVO.md's reading; live answered 205 (above)
    # 431 (a halted market refusing a cancel, by one reading) is undocumented: ambiguous, like any unknown code.
    # 240 is "not found", yet GET /order may answer it for a moment right after the order was created
    # (a third-party SDK reports it): a lookup's "not found" is never proof; reconcile scans the order list.
}
RATE_LIMIT_CODES = frozenset({103, 104, 105, 110})
NOT_FOUND_CODES = frozenset({233, 240})


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


def is_rate_limit(exc: BaseException, http_status: int | None) -> bool:
    """Did Bitvavo stop this key for going over its limit (HTTP 429 with errorCode 105 or 110, or no code)?"""
    code, _ = error_code(exc)
    if code == 110 and http_status not in (None, 429):
        return False  # 110 with HTTP 404: an invalid endpoint, not a rate limit
    if code is None:
        return isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection))
    return code in RATE_LIMIT_CODES


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
