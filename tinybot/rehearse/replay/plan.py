"""What a replay covers: the live database read-only, the markets, the candle interval, the ticks and their candles."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ...analysis import candles
from ...base import clock
from ...advisors import candle_limit, watched_markets
from ...base.config import Config
from ...base.errors import TinybotError
from ...store.liveness import slot_of
from ...base.markets import MARKET_RE, normalise_market


class ReplayError(TinybotError):
    """Bad input for a replay (range, markets, candles, --set); the message says what to fix."""


def open_store(db_path: Path) -> sqlite3.Connection:
    """The live database, read-only: replay reads candles from it and writes nothing to it."""
    if not Path(db_path).exists():
        raise ReplayError(
            f"no database at {db_path}: run `tinybot init`, then `tinybot data fetch` or `tinybot data import`"
        )
    conn = sqlite3.connect(f"file:{Path(db_path).resolve()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'candles'").fetchone():
        conn.close()
        raise ReplayError(f"{db_path} has no candle store yet: run `tinybot data fetch` or `tinybot data import`")
    return conn


def replay_markets(cfg: Config, markets: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """--markets (repeated or comma-separated), else the markets the config watches."""
    if markets:
        out = []
        for raw in markets:
            for part in raw.split(","):
                m = normalise_market(part)
                if not MARKET_RE.match(m):
                    raise ReplayError(f"--markets: {part!r} is not a Bitvavo EUR market name (like BTC-EUR)")
                if m not in out:
                    out.append(m)
        return tuple(out)
    found = watched_markets(cfg)
    if not found:
        raise ReplayError(
            f"no markets to replay: risk.allowlist in {cfg.path} is empty; add markets there or pass --markets BTC-EUR"
        )
    return tuple(found)


@dataclass
class Plan:
    markets: tuple[str, ...]
    data_interval: dict[str, str]
    slots: list[datetime]
    start: datetime
    end: datetime
    warnings: list[str] = field(default_factory=list)
    explicit: bool = False  # the markets came from --markets


def choose_interval(store, market: str, want: str) -> str:
    have = candles.intervals_of(store, market)
    if not have:
        raise ReplayError(
            f"{market}: no candles stored; run `tinybot data fetch {market} --interval {want}"
            " --since 2025-01-01` (or `tinybot data import FILE.csv`)"
        )
    if want in have:
        return want
    fits = [
        i
        for i in have
        if candles.INTERVALS[i] < candles.INTERVALS[want] and candles.INTERVALS[want] % candles.INTERVALS[i] == 0
    ]
    if not fits:
        raise ReplayError(
            f"{market}: the advisors read {want} candles (rules.candle_interval) but the store has"
            f" only {', '.join(have)}; run `tinybot data fetch {market} --interval {want} --since …`"
            f" or replay with --set rules.candle_interval={have[0]}"
        )
    return fits[-1]  # the coarsest that builds `want`


def make_plan(store, cfg: Config, markets: tuple[str, ...], start: datetime | None, end: datetime | None) -> Plan:
    want = cfg.rules.candle_interval
    interval = {m: choose_interval(store, m, want) for m in markets}
    firsts, lasts = [], []
    warnings = []
    for m in markets:
        r = store.execute(
            "SELECT MIN(ts_ms), MAX(ts_ms) FROM candles WHERE market = ? AND interval = ?", (m, interval[m])
        ).fetchone()
        firsts.append(r[0])
        lasts.append(r[1])
        cov = candles.coverage(store, m, interval[m])
        for (_, b1), (a2, _) in zip(cov, cov[1:]):
            warnings.append(
                f"{m}: no {interval[m]} data fetched from {candles.iso_ms(b1)} to {candles.iso_ms(a2)}"
                " (not a gap in trading: nobody downloaded it)"
            )
    finest = min(candles.INTERVALS[i] for i in interval.values())
    if cfg.scheduler.interval < timedelta(milliseconds=finest):
        warnings.append(
            f"ticks every {clock.format_duration(cfg.scheduler.interval)} on"
            f" {min(interval.values(), key=candles.INTERVALS.get)} candles:"
            " between two candle opens the price is not known and stays at the open;"
            " --set scheduler.interval="
            + min(interval.values(), key=candles.INTERVALS.get)
            + " ticks once per candle (faster)"
        )
    warm = candle_limit(cfg) * candles.INTERVALS[want]
    data_start = clock.from_ms(max(firsts) + warm)
    data_end = clock.from_ms(min(lasts) + 1)  # the last tick can be at the newest candle's open
    start = max(start, clock.from_ms(max(firsts))) if start else data_start
    end = min(end, data_end) if end else data_end
    step = cfg.scheduler.interval

    first = slot_of(start, step)
    if first < start:
        first += step
    slots = []
    t = first
    while t < end:
        slots.append(t)
        t += step
    if not slots:
        raise ReplayError(
            f"empty range: no {clock.format_duration(step)} tick between {_day(start)} and"
            f" {_day(end)} with candles stored for {', '.join(markets)}"
            f" (stored: {_day(clock.from_ms(max(firsts)))} to {_day(clock.from_ms(min(lasts)))})"
        )
    return Plan(markets, interval, slots, start, end, warnings)


def _day(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%MZ")


def plan_replay(
    store, cfg: Config, markets: tuple[str, ...] | list[str] | None, start: datetime | None, end: datetime | None
) -> Plan:
    """The plan for --markets (or the config's markets) over [start, end)."""
    names = replay_markets(cfg, markets)
    try:
        plan = make_plan(store, cfg, names, start, end)
    except ReplayError as e:
        if markets or "no candles stored" not in str(e):
            raise
        raise ReplayError(f"{e}; or replay only the markets you have with --markets") from None
    plan.explicit = bool(markets)
    return plan


def load_candles(store, cfg: Config, plan: Plan) -> tuple[dict[str, list[candles.Candle]], dict]:
    """Each market's stored candles the first tick may look back at, up to the end; and its limits, if stored."""
    lookback = (candle_limit(cfg) + 2) * candles.INTERVALS[cfg.rules.candle_interval]
    lo, hi = clock.to_ms(plan.slots[0]) - lookback, clock.to_ms(plan.end) + 86_400_000
    series = {m: candles.load(store, m, plan.data_interval[m], lo, hi) for m in plan.markets}
    limits = {m: candles.market_info(store, m) for m in plan.markets}
    return series, limits
