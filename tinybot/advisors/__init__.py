"""Advisors: plain functions that turn a read-only market snapshot into trade drafts.

The whole interface, for anyone writing one (the built-ins ``rules`` and
``dca`` are short examples)::

    from tinybot.advisors import Snapshot
    from tinybot.trade.proposals import Draft

    def advise(snapshot: Snapshot, cfg) -> list[Draft]:
        t = snapshot.tickers.get("BTC-EUR")
        if t and t.last < 50_000:
            return [Draft("BTC-EUR", "buy", amount_quote=Decimal("5"), reason="BTC under 50k")]
        return []

* **Input.** ``snapshot`` is a frozen ``Snapshot`` (below): markets, tickers,
  closed candles, balances, tinybot's positions, what is left under the caps,
  the advisor's own recent proposals, and ``now``.  It holds data only: no
  exchange client, no database connection, so an advisor cannot place an
  order.  ``cfg`` is the whole ``Config``; a built-in reads its own table
  (``cfg.rules``, ``cfg.dca``, ``cfg.llm``).
* **Output.** A ``list`` (or tuple) of ``tinybot.trade.proposals.Draft``:
  ``Draft(market, side, amount_quote=EUR, amount=base, reason="why")``, exactly
  one of ``amount_quote``/``amount``, and a non-empty ``reason`` (it is shown in
  ``tinybot proposals`` and ``tinybot why``).  Return ``[]`` for "nothing to do".
  At most ``MAX_DRAFTS`` drafts per call.
* **What happens next.** Each valid draft becomes a proposal with
  ``source`` = the advisor's name (``"rules"``, ``"dca"``, ``"llm"`` or the
  ``"module:function"`` string), its reason, and an expiry of
  ``risk.proposal_ttl``.  The approval policy (``scheduler.approval``) and
  the executor's guards decide whether it is ever sent.
* **Failure.** An advisor that raises, returns something that is not a list
  of ``Draft``, or returns a draft with an invalid field, is logged (and the
  error shown on the tick line); its output is skipped as a whole if it is
  not a list, draft by draft otherwise.  Nothing from it is executed, and the
  other advisors still run.  Advisors run one after another in the
  scheduler's process, so a slow one delays the tick: keep your own timeouts.
* **Names.** ``advisors = ["rules", "dca", "llm", "mypkg.mymod:advise"]`` in
  bot.toml.  Built-ins live in ``tinybot/advisors/<name>.py`` as ``advise``.
"""

from __future__ import annotations

import importlib
import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Callable, Mapping

from ..base.errors import TinybotError
from ..base import clock
from ..trade import committed
from ..base.config import Config
from ..exchange.base import Balance, Candle, ExchangeError, Market, Ticker
from ..trade.proposals import Draft, ProposalError, validate

log = logging.getLogger("tinybot.advisors")

MAX_DRAFTS = 10  # more than this in one call is treated as garbage
HISTORY_PER_SOURCE = 50  # recent proposals of each advisor shown to it
CANDLE_LIMIT_MIN = 60  # at least this many candles are fetched per watched market
CANDLE_OVERLAP = 3  # held closed candles read again with the newer ones: Bitvavo may still correct its newest

BUILTIN = {
    "rules": "tinybot.advisors.rules:advise",
    "dca": "tinybot.advisors.dca:advise",
    "llm": "tinybot.advisors.llm:advise",
    "top_up": "tinybot.advisors.topup:advise",
    "exits": "tinybot.advisors.exits:advise",
}

Advisor = Callable[["Snapshot", Config], list]


@dataclass(frozen=True)
class Position:
    """What tinybot's own fills hold in a market: all its books (``positions``) or one (``books``)."""

    market: str
    base: Decimal  # amount of the base asset held
    cost_eur: Decimal  # at cost, fees included
    realised_eur: Decimal
    last_buy_at: datetime | None = None  # the newest buy fill of this position (trailing stops measure from it)
    book: str | None = None  # the book (tinybot.trade.book) it is; None for the market's total


@dataclass(frozen=True)
class Caps:
    """Room left under the risk caps at snapshot time (in-flight orders counted)."""

    max_trade_eur: Decimal
    daily_left_eur: Decimal
    exposure_left_eur: Decimal


@dataclass(frozen=True)
class PastProposal:
    """One of an advisor's recent proposals and what became of it."""

    id: int
    source: str
    market: str
    side: str
    amount_quote: Decimal | None
    amount: Decimal | None
    status: str  # pending / approved / rejected / expired
    created_at: datetime
    execution_state: str | None  # None if never executed, else trade_executions.state
    reason: str
    book: str | None = None  # the book it traded (tinybot.trade.book)


@dataclass(frozen=True)
class Snapshot:
    """Everything an advisor may look at; data only, frozen.

    ``candles[market]`` are *closed* candles of ``candle_interval``, oldest
    first (the still-open candle is dropped).  ``tickers`` and ``candles``
    cover the watched markets: ``risk.allowlist``, ``rules.markets`` and
    ``dca.market``.  A market whose data could not be read is missing from
    the mapping (and named in ``problems``).
    """

    now: datetime
    mode: str
    markets: Mapping[str, Market]
    tickers: Mapping[str, Ticker]
    candle_interval: str
    candles: Mapping[str, tuple[Candle, ...]]
    balances: Mapping[str, Balance]
    positions: Mapping[str, Position]
    caps: Caps
    allowlist: tuple[str, ...]
    history: Mapping[str, tuple[PastProposal, ...]] = field(default_factory=lambda: MappingProxyType({}))
    problems: tuple[str, ...] = ()
    # book → market → Position: what each advisor's own fills hold (tinybot.trade.book); ``positions`` is their sum
    books: Mapping[str, Mapping[str, Position]] = field(default_factory=lambda: MappingProxyType({}))

    def proposals_by(self, source: str) -> tuple[PastProposal, ...]:
        """This source's recent proposals, newest first."""
        return self.history.get(source, ())

    def position(self, market: str, book: str | None = None) -> Position | None:
        """One book's position in a market (None: the market's total); None when nothing is held."""
        if book is None:
            return self.positions.get(market)
        return self.books.get(book, {}).get(market)


# --- building a snapshot --------------------------------------------------------


def watched_markets(cfg: Config) -> tuple[str, ...]:
    out: list[str] = list(cfg.risk.allowlist)
    for m in cfg.rules.markets or ():
        if m not in out:
            out.append(m)
    if cfg.dca.market:
        m = cfg.dca.market.upper().replace("/", "-")
        if m not in out:
            out.append(m)
    return tuple(out)


def closed_candles(candles: list[Candle], interval: str, now_ms: int) -> tuple[Candle, ...]:
    """Drop candles that have not closed yet (open time + interval is still in the future)."""
    step = int(clock.parse_duration(interval).total_seconds() * 1000)
    return tuple(c for c in sorted(candles, key=lambda c: c.timestamp_ms) if c.timestamp_ms + step <= now_ms)


def _closed_candles_cached(exchange, market: str, interval: str, limit: int, now_ms: int, cache: dict | None):
    """Closed candles cannot change: read them again only once the next one has closed, and then only the newer
    ones (``fresh_candles``).  A cache entry: (the slot it is good for, its closed candles, the window read)."""
    if cache is None:
        return closed_candles(exchange.candles(market, interval, limit), interval, now_ms)
    step = int(clock.parse_duration(interval).total_seconds() * 1000)
    key = (market, interval, limit)
    hit = cache.get(key)
    if hit is not None and hit[0] == now_ms // step:
        return hit[1]
    window = fresh_candles(exchange, market, interval, limit, hit[1] if hit else (), step, now_ms)
    closed = closed_candles(window, interval, now_ms)
    if closed and closed[-1].timestamp_ms == (now_ms // step - 1) * step:  # the newest closed one is there
        cache[key] = (now_ms // step, closed)
    else:
        cache.pop(key, None)
    return closed


def fresh_candles(exchange, market: str, interval: str, limit: int, held, step: int, now_ms: int) -> list[Candle]:
    """The newest ``limit`` candles, as one request for ``limit`` would answer, reading only those newer than the
    closed ones ``held`` plus CANDLE_OVERLAP of them again.  Read in full when nothing is held, when the newer
    ones do not reach back to what is held, or when a candle read again differs from the one held (a correction,
    or a source that moved its history): then what is held cannot be trusted."""
    if not held:
        return exchange.candles(market, interval, limit)
    want = min(limit, now_ms // step - held[-1].timestamp_ms // step + 1 + CANDLE_OVERLAP)
    fresh = exchange.candles(market, interval, want)
    if len(fresh) < want:
        return fresh  # the exchange has no more than these
    kept = {c.timestamp_ms: c for c in held}
    if fresh[0].timestamp_ms > held[-1].timestamp_ms or any(kept.get(c.timestamp_ms, c) != c for c in fresh):
        return exchange.candles(market, interval, limit)
    older = [c for c in held if c.timestamp_ms < fresh[0].timestamp_ms]
    return (older + list(fresh))[-limit:]


def candle_limit(cfg: Config) -> int:
    return max(cfg.rules.slow + 3, CANDLE_LIMIT_MIN)


def build_snapshot(
    conn: sqlite3.Connection,
    cfg: Config,
    exchange,
    *,
    sources: tuple[str, ...] = (),
    candle_cache: dict | None = None,
    markets: Mapping[str, Market] | None = None,
) -> Snapshot:
    """Read markets, tickers, candles and balances through the *read-only* client.

    ``markets``: the market table when the caller keeps one between snapshots (the loop); else it is read here.
    Raises ``ExchangeError`` when the exchange cannot be reached at all (no market list, or no answer to the
    tickers request, one for every watched market): the scheduler treats that as an outage and backs off.  A
    single market failing is recorded in ``problems`` and left out.
    """
    now = clock.now()
    problems: list[str] = []
    kept = markets is not None
    if markets is None:
        markets = exchange.markets()  # an outage raises here
    interval = cfg.rules.candle_interval
    listed = [m for m in watched_markets(cfg) if m in markets]
    problems += [f"{m}: the exchange does not list it" for m in watched_markets(cfg) if m not in markets]
    try:
        tickers = exchange.tickers(listed) if listed else {}  # one request for every watched market
    except ExchangeError:
        if kept:
            exchange.markets()  # the kept table did not ask whether the exchange answers at all: an outage raises here
        tickers = {}  # it answers: each market is asked alone below, its error is its problem
    candles: dict[str, tuple[Candle, ...]] = {}
    for m in listed:
        try:
            if m not in tickers:
                tickers[m] = exchange.ticker(m)  # left out of the answer: asked alone, its error is the problem
            candles[m] = _closed_candles_cached(
                exchange, m, interval, candle_limit(cfg), clock.to_ms(now), candle_cache
            )
        except ExchangeError as e:
            problems.append(f"{m}: {e}")
    try:
        balances = dict(exchange.balances())
    except ExchangeError as e:
        balances = {}
        problems.append(f"balances: {e}")
    return Snapshot(
        now=now,
        mode=cfg.mode,
        markets=MappingProxyType(dict(markets)),
        tickers=MappingProxyType(tickers),
        candle_interval=interval,
        candles=MappingProxyType(candles),
        balances=MappingProxyType(balances),
        positions=MappingProxyType(read_positions(conn)),
        caps=read_caps(conn, cfg, now),
        allowlist=tuple(cfg.risk.allowlist),
        history=MappingProxyType({s: read_history(conn, s) for s in sources}),
        problems=tuple(problems),
        books=MappingProxyType(read_books(conn)),
    )


def read_positions(conn: sqlite3.Connection) -> dict[str, Position]:
    out = {}
    for r in conn.execute("SELECT * FROM positions WHERE base != '0' ORDER BY market"):
        if Decimal(r["base"]) <= 0:
            continue
        last = conn.execute(
            "SELECT MAX(executed_at) FROM trade_history WHERE market = ? AND side = 'buy' AND external = 0",
            (r["market"],),
        ).fetchone()[0]
        out[r["market"]] = Position(
            r["market"],
            Decimal(r["base"]),
            Decimal(r["cost_eur"]),
            Decimal(r["realised_eur"]),
            clock.from_iso(last) if last else None,
        )
    return out


def read_books(conn: sqlite3.Connection) -> dict[str, Mapping[str, Position]]:
    """book → market → Position, for what each book holds (the ledger's book_positions)."""
    out: dict[str, dict[str, Position]] = {}
    for r in conn.execute("SELECT * FROM book_positions ORDER BY book, market"):
        if Decimal(r["base"]) <= 0:
            continue
        last = conn.execute(
            "SELECT MAX(executed_at) FROM trade_history WHERE market = ? AND book = ? AND side = 'buy' AND external = 0",
            (r["market"], r["book"]),
        ).fetchone()[0]
        out.setdefault(r["book"], {})[r["market"]] = Position(
            r["market"],
            Decimal(r["base"]),
            Decimal(r["cost_eur"]),
            Decimal(r["realised_eur"]),
            clock.from_iso(last) if last else None,
            r["book"],
        )
    return {b: MappingProxyType(m) for b, m in out.items()}


def read_caps(conn: sqlite3.Connection, cfg: Config, now: datetime) -> Caps:
    zero = Decimal(0)
    return Caps(
        max_trade_eur=cfg.risk.max_trade_eur,
        daily_left_eur=max(cfg.risk.max_daily_eur - committed.spent_today(conn, now, tz=cfg.tz), zero),
        exposure_left_eur=max(cfg.risk.max_exposure_eur - committed.exposure(conn), zero),
    )


def read_history(conn: sqlite3.Connection, source: str, limit: int = HISTORY_PER_SOURCE) -> tuple[PastProposal, ...]:
    rows = conn.execute(
        "SELECT p.*, e.state AS execution_state FROM proposals p"
        " LEFT JOIN trade_executions e ON e.proposal_id = p.id"
        " WHERE p.source = ? ORDER BY p.id DESC LIMIT ?",
        (source, limit),
    ).fetchall()
    return tuple(
        PastProposal(
            r["id"],
            r["source"],
            r["market"],
            r["side"],
            Decimal(r["amount_quote"]) if r["amount_quote"] is not None else None,
            Decimal(r["amount"]) if r["amount"] is not None else None,
            r["status"],
            clock.from_iso(r["created_at"]),
            r["execution_state"],
            r["reason"],
            r["book"] if "book" in r.keys() else None,
        )
        for r in rows
    )


# --- finding and running advisors ------------------------------------------------


class AdvisorError(TinybotError):
    """An advisor could not be loaded or did not behave; the message names it."""


def resolve(name: str) -> Advisor:
    """'rules' / 'dca' / 'llm' / 'package.module:function' -> the function."""
    target = BUILTIN.get(name, name)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise AdvisorError(f"advisor {name!r}: not a built-in ({', '.join(BUILTIN)}) or 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise AdvisorError(f"advisor {name!r}: cannot import {module_name}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise AdvisorError(f"advisor {name!r}: {module_name} has no function {attr!r}")
    return fn


@dataclass
class Outcome:
    """What one advisor call produced: valid drafts, and every problem with its output."""

    name: str
    drafts: list[Draft] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_advisor(name: str, snapshot: Snapshot, cfg: Config, fn: Advisor | None = None) -> Outcome:
    """Call one advisor and keep only well-formed drafts.  Never raises for the advisor's faults."""
    out = Outcome(name)
    try:
        fn = fn or resolve(name)
    except AdvisorError as e:
        log.error("%s", e)
        out.errors.append(str(e))
        return out
    try:
        result = fn(snapshot, cfg)
    except Exception as e:  # an advisor's bug must not stop the tick
        log.exception("advisor %s raised", name)
        out.errors.append(f"raised {type(e).__name__}: {e}")
        return out
    if not isinstance(result, (list, tuple)):
        out.errors.append(f"returned {type(result).__name__}, not a list of Draft; output skipped")
        log.error("advisor %s returned garbage: %r", name, result if len(repr(result)) < 500 else repr(result)[:500])
        return out
    if len(result) > MAX_DRAFTS:
        out.errors.append(f"returned {len(result)} drafts (more than {MAX_DRAFTS}); output skipped")
        log.error("advisor %s returned %d drafts; skipped", name, len(result))
        return out
    for i, item in enumerate(result):
        if not isinstance(item, Draft):
            out.errors.append(f"item {i} is {type(item).__name__}, not a Draft; skipped")
            continue
        try:
            d = validate(item)
        except ProposalError as e:
            out.errors.append(f"item {i}: {e}; skipped")
            continue
        if not d.reason:
            out.errors.append(f"item {i}: reason: an advisor must say why; skipped")
            continue
        out.drafts.append(d)
    for err in out.errors:
        log.warning("advisor %s: %s", name, err)
    return out
