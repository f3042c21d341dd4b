"""One API key on one Bitvavo URL: its ccxt instance, rate-limit pacing and backoff, readable errors.

An ``Endpoint`` is the only thing in tinybot that builds a ccxt instance for
Bitvavo. It keeps each answer's HTTP status (errorCode 110 means a rate limit
only with HTTP 429), waits out a nearly spent minute, refuses to call Bitvavo
during a ban, and turns every failure into one readable ``ExchangeError``.
``get_only=True`` makes the instance refuse every HTTP method but GET before
a byte leaves (the read-only client's order lookups with the trade key, and
doctor's key probes).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from decimal import localcontext
from typing import Any, Callable

import ccxt

from ...base import clock
from ...base.config import Config
from ..base import ExchangeError, ReadOnlyClientError
from .errors import describe_error, error_code, is_rate_limit

MAX_BACKOFF_MS = 15 * 60_000  # an IP ban lasts 15 minutes; never trust a header or a text past that
PACE_RESERVE = 10  # weight kept in hand: below it, wait for the minute to end (balance/orders/trades weigh 5)
PACE_MAX_MS = 61_000  # the weight counter resets every wall-clock minute

_BAN_AT_RE = re.compile(r"\b(\d{13})\b")


@dataclass
class _Pause:
    until_ms: int
    ban: bool  # True: Bitvavo refused us (429): nothing may be sent before until_ms.
    #            False: the minute's weight is nearly spent: reads wait, then go on.


# Rate-limit pauses per (API URL, key): shared by every client in the process,
# because Bitvavo counts per key (and per IP without one).
_backoff_until: dict[tuple[str, str | None], _Pause] = {}


def _end_of_next_minute(now_ms: int) -> int:
    """Bitvavo blocks a key that went over until the end of the *next* minute (12:00:15 → 12:02:00)."""
    return (now_ms // 60_000 + 2) * 60_000


def _refusal(method) -> ReadOnlyClientError:
    return ReadOnlyClientError(
        f"refused {method}: this Bitvavo client only looks orders up; only the executor places or cancels"
    )


class Endpoint:
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
        real_fetch = inst.fetch

        def fetch(url, method="GET", headers=None, body=None):
            if str(method).upper() != "GET":
                raise _refusal(method)
            return real_fetch(url, method, headers, body)

        inst.fetch = fetch
        inst.session = _GetOnlySession(inst.session)

    @property
    def ccxt(self):
        return self._ccxt

    def throttle_would_wait(self, weight: int) -> bool:
        """Would ccxt's own throttle sleep before a request of this weight?  It spaces a request rateLimit ×
        weight (60 ms a unit) after the previous one: one weighing 25 within 1.5 s of the last would wait."""
        c = self._ccxt
        if not getattr(c, "enableRateLimit", False):
            return False
        return c.milliseconds() - c.lastRestRequestTimestamp < c.rateLimit * weight

    def route(self, session, milliseconds: Callable[[], int]) -> None:
        """Send through ``session`` (requests.Session's ``request``), sign on ``milliseconds``, no throttle.

        For `tinybot replay` (see ``Reader.route_requests``). A GET-only
        endpoint stays GET-only: its ``fetch`` already refuses, and the new
        session is wrapped the same way.
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
        """Before a request: refuse during a ban; sleep out a nearly spent minute (never past PACE_MAX_MS)."""
        until = self.banned_until_ms()
        if until:
            raise ExchangeError(self.backoff_message(until))
        until = self.paced_until_ms()
        if until:
            self.sleep(min(until - clock.now_ms(), PACE_MAX_MS) / 1000)
            _backoff_until.pop(self.backoff_key(), None)

    def _headers(self) -> dict:
        return getattr(self._ccxt, "last_response_headers", None) or {}

    def weight_left(self) -> tuple[int, int] | None:
        """The last answer's (weight left this minute, when the minute resets in ms), or None if it did not say.
        Unsigned (public) requests count against the IP, signed ones against the key."""
        headers = self._headers()
        try:
            return int(headers.get("bitvavo-ratelimit-remaining")), int(headers.get("bitvavo-ratelimit-resetat"))
        except (TypeError, ValueError):
            return None

    def note_answer(self) -> None:
        """After an answer: if the minute's weight is nearly spent, pause reads until it resets."""
        left = self.weight_left()
        if left is None:
            return
        remaining, reset_at = left
        now = clock.now_ms()
        if remaining < PACE_RESERVE and now < reset_at <= now + PACE_MAX_MS:
            key = self.backoff_key()
            current = _backoff_until.get(key)
            if not (current and current.ban and current.until_ms >= reset_at):
                _backoff_until[key] = _Pause(reset_at, ban=False)

    def note_error(self, exc: BaseException) -> None:
        """After a 429 (errorCode 105 or 110): nothing reaches Bitvavo with this key until the ban ends."""
        if not is_rate_limit(exc, self.last_status):
            return
        now = clock.now_ms()
        until = _end_of_next_minute(now)
        candidates = []
        stated = _BAN_AT_RE.search(error_code(exc)[1] or "")
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
    def attempt(self, fn: Callable, *args) -> tuple[Any, BaseException | None]:
        """One ccxt call, no budget check: (its answer, None), or (None, what it raised).

        Either way the answer's rate-limit headers and status have been noted,
        so ``last_status`` is the status of this request's answer, if one came.
        """
        self.last_status = None
        self._ccxt.last_response_headers = None
        try:
            with localcontext():  # ccxt sets ROUND_HALF_UP on the thread's context: keep that inside ccxt
                result = fn(*args)
        except Exception as e:  # ccxt's errors, and anything else ccxt lets through
            self.note_error(e)
            return None, e
        self.note_answer()
        return result, None

    def call(
        self,
        what: str,
        fn: Callable,
        *args,
        private: bool = False,
        no_key: str = "needs a read key: set TINYBOT_READ_KEY/SECRET",
    ) -> Any:
        """One read: budget check, ccxt call, readable ExchangeError on failure."""
        if private and not self.has_key:
            raise ExchangeError(f"{what} {no_key}")
        self.wait_for_budget()
        result, failure = self.attempt(fn, *args)
        if failure is None:
            return result
        if isinstance(failure, ReadOnlyClientError):
            raise failure
        err = ExchangeError(f"Bitvavo {what} failed: {describe_error(failure)}")
        err.code = error_code(failure)[0]  # 240/233 tell fetch_order "not found"
        raise err from None


class _GetOnlySession:
    """A requests session that refuses every HTTP method but GET (a GET-only endpoint's)."""

    def __init__(self, session):
        self._session = session

    def request(self, method, url, *a, **k):
        if str(method).upper() != "GET":
            raise _refusal(method)
        return self._session.request(method, url, *a, **k)

    def __getattr__(self, name):
        return getattr(self._session, name)
