"""The outage tracker: is the exchange unreachable, since when, how long to back off, and when it is back.

An unreachable exchange is an *outage*, not an error: trading pauses (no
order is sent), one alert says so, the loop backs off (one interval,
doubling, up to ``MAX_BACKOFF``), and trading resumes by itself at the first
tick where the exchange answers and reconcile is clean (one more alert).  Only
the outage's pause ends there: a kill switch that is on keeps trading off, and
both alerts and the log say so instead of "resumes".
Outage ticks do not count towards the automatic kill switch; other failed
ticks do (``tinybot.trade.safety``).  The outage's start is kept in ``ops_state``,
so `tinybot status` and the next run see it.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from datetime import datetime, timedelta
from typing import Callable

from ..base import clock
from ..trade import killswitch
from ..base.config import Config
from ..store.db import get_state, set_state
from ..exchange.base import ExchangeError, ReadOnlyClientError
from ..owner.notify import Notifier
from . import alerts

log = logging.getLogger("tinybot.scheduler")

OUTAGE_KEY = "scheduler.outage_since"
MAX_BACKOFF = timedelta(minutes=15)


def backoff_wait(interval: timedelta, failures: int) -> timedelta:
    """How long the loop waits after ``failures`` paused ticks in a row: one interval, doubling, at most
    MAX_BACKOFF (an outage here; a full disk in loop.diskfull)."""
    return max(min(interval * (2 ** (failures - 1)), MAX_BACKOFF), interval)


def network_failure(exc: BaseException) -> bool | None:
    """True: the exchange could not be reached (timeout, refused, 5xx, rate limited); False: it answered
    and refused or made no sense; None: cannot tell from the exception alone (ask the exchange)."""
    if isinstance(exc, ReadOnlyClientError) or not isinstance(exc, ExchangeError):
        return False
    if "rate limited until" in str(exc):
        return True  # tinybot's own backoff after a 429: the exchange will answer again later
    ccxt = sys.modules.get("ccxt")  # loaded if the error came from ccxt; never imported here
    seen = set()
    e = exc.__cause__ or exc.__context__
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (OSError, TimeoutError, ConnectionError)):
            return True
        if ccxt is not None and isinstance(e, ccxt.NetworkError):
            return True  # RequestTimeout, ExchangeNotAvailable (5xx, 109), DDoSProtection, rate limits
        if ccxt is not None and isinstance(
            e, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.BadRequest, ccxt.BadSymbol)
        ):
            return False
        e = e.__cause__ or e.__context__
    return None


def unreachable_now(market_data) -> bool:
    """Does the exchange answer at all?  Market data (public) and the balance (private, read key):
    a refusal (a bad key, a permission) is an answer, a timeout or a 5xx is not."""
    try:
        market_data.markets()
        market_data.balances()
    except Exception as e:
        return network_failure(e) is not False
    return False


def classify(exc: BaseException, market_data: Callable[[], object]) -> bool:
    """True when ``exc`` means the exchange could not be reached.  The exchange is asked (through the
    read-only client ``market_data()`` returns) only when the exception alone cannot tell."""
    verdict = network_failure(exc)
    if verdict is None:
        verdict = isinstance(exc, ExchangeError) and unreachable_now(market_data())
    return verdict


def since(conn: sqlite3.Connection) -> str | None:
    """When the outage in progress started (ISO time), or None."""
    return get_state(conn, OUTAGE_KEY) or None


def kept_off(conn: sqlite3.Connection) -> str | None:
    """What keeps trading off whatever the exchange does: 'the kill switch is on (its reason)', or None."""
    ks = killswitch.state(conn)  # the row, or the kill file when there is one
    return None if ks["trading_enabled"] else f"the kill switch is on ({ks['reason'] or 'no reason given'})"


class Outage:
    """One outage at a time: its start and end (each alerted once), and the backoff between outage ticks."""

    def __init__(self, cfg: Config, *, notifier: Notifier, echo: Callable[[str], None]):
        self.cfg = cfg
        self.notifier = notifier
        self.echo = echo
        self.failures = 0  # consecutive outage ticks

    def begin(self, conn: sqlite3.Connection, errors: list[str]) -> None:
        """A tick found the exchange unreachable: the first such tick starts the outage and says so."""
        if since(conn):
            return
        began = clock.now_iso()
        set_state(conn, OUTAGE_KEY, began)
        why = "; ".join(errors[-2:]) or "no answer"
        off = kept_off(conn)
        log.warning("exchange outage started at %s: trading paused: %s", began, why)
        after = (
            "until it answers again and reconcile is clean; tinybot resumes by itself"
            if off is None
            else f"and stays off after it answers again: {off}"
        )
        alerts.send(
            self.notifier,
            "exchange_outage",
            f"exchange unreachable since {clock.human_time(began, self.cfg.tz, seconds=True)}: trading is paused"
            f" (nothing is sent) {after}. Last error: {why}",
            key=f"exchange_outage:{began}",
            severity="warning",
        )

    def end(self, conn: sqlite3.Connection) -> str | None:
        """The exchange answered and reconcile is clean: an outage in progress is over.  Returns the note for
        the tick's line (None: there was no outage)."""
        began = since(conn)
        if not began:
            return None
        set_state(conn, OUTAGE_KEY, "")
        took = clock.spoken(clock.now() - clock.from_iso(began))
        since_text = clock.human_time(began, self.cfg.tz, seconds=True)
        off = kept_off(conn)
        now_trading = "trading resumes" if off is None else f"trading stays off: {off}"
        log.warning("exchange outage since %s is over (%s): reconcile clean, %s", began, took, now_trading)
        text = (
            f"exchange answers again after {took} (outage since {since_text}); reconcile is clean and trading resumes"
        )
        if off is not None:
            text = (
                f"exchange answers again after {took} (outage since {since_text}); reconcile is clean, but {now_trading};"
                " `tinybot resume` turns trading back on"
            )
        alerts.send(self.notifier, "exchange_back", text, key=f"exchange_back:{began}", severity="info")
        return f"exchange back after {took}; {now_trading}"

    def backoff(self, outage: bool) -> datetime | None:
        """After a tick: None when the exchange answered, else the time before which the loop ticks no more
        (one interval, doubling with each outage tick in a row, at most MAX_BACKOFF)."""
        if not outage:
            self.failures = 0
            return None
        self.failures += 1
        wait = backoff_wait(self.cfg.scheduler.interval, self.failures)
        until = clock.now() + wait
        self.echo(f"  exchange unreachable ({self.failures} in a row); backing off {clock.spoken(wait)}")
        log.warning("exchange outage %s in a row; backing off until %s", self.failures, clock.to_iso(until))
        return until

    def detail(self, conn: sqlite3.Connection) -> str:
        """The heartbeat's detail between ticks ('' when there is no outage)."""
        began = since(conn)
        if not began:
            return ""
        return (
            f"exchange unreachable since {clock.human_time(began, self.cfg.tz, seconds=True)}: trading paused;"
            f" {self.failures} outage tick(s) in a row"
        )
