"""The candle store: Bitvavo candles in SQLite, for `tinybot replay`.

Three tables (schema.sql, migration ``0007_candles``):

* ``candles`` — one row per (market, interval, open time), prices as the
  decimal strings Bitvavo sends.  Bitvavo has no candle for an interval
  without trades, and neither does the store: gaps stay gaps.
* ``candle_coverage`` — the time ranges that were downloaded or imported,
  written in the same transaction as their candles.  A missing candle inside
  a covered range is a gap; outside, nobody fetched it.  An interrupted
  ``fetch`` starts again with the ranges not covered yet (resumable).
* ``candle_markets`` — tick size, decimals and minimums as Bitvavo listed
  them, so replay's simulated exchange uses the real precision rules.

Writes are bulk upserts through sqlite-utils inside tinybot's own
``BEGIN IMMEDIATE`` (sqlite-utils ≥ 4 nests in a savepoint).  sqlite-utils and
the exchange client are imported inside the functions that need them: this
module is never on the kill/status/executor path.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Callable, Iterable

from ..base.errors import TinybotError
from ..base import clock
from ..store import db
from ..exchange.base import Candle, ExchangeError, Market

# Bitvavo's candle intervals (the ones tinybot's config accepts), in ms.
INTERVALS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
PER_CALL = 1440  # Bitvavo's maximum candles per request
# A window spans one candle less: its aligned `end` may bring back the candle that starts there too
# (Bitvavo does not say), and newest-first with limit 1440 would then drop the window's oldest.
PER_WINDOW = PER_CALL - 1
CSV_COLUMNS = ("market", "timestamp", "open", "high", "low", "close", "volume")
RATE_LIMIT_RETRIES = 3
BATCH = 2000


class CandleError(TinybotError):
    """Bad input or a failed download; the message names the file, line, market or range and the fix."""


def interval_ms(interval: str) -> int:
    try:
        return INTERVALS[interval]
    except KeyError:
        raise CandleError(f"interval {interval!r} is not one of Bitvavo's: {', '.join(INTERVALS)}") from None


def parse_time(text: str, what: str = "time") -> datetime:
    """'2025-01-01', '2025-01-01T12:00', '2025-01-01T12:00:00Z' → an aware UTC datetime."""
    t = text.strip()
    if t.endswith("Z") or t.endswith("z"):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise CandleError(f"{what} {text!r} is not a date like 2025-01-01 or 2025-01-01T12:00Z (UTC)") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def iso_ms(ms: int) -> str:
    """A candle time for people: 2025-01-01T00:00Z."""
    return clock.from_ms(ms).strftime("%Y-%m-%dT%H:%MZ")


# --- coverage ------------------------------------------------------------------------


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def coverage(conn, market: str, interval: str) -> list[tuple[int, int]]:
    rows = conn.execute(
        "SELECT start_ms, end_ms FROM candle_coverage WHERE market = ? AND interval = ?", (market, interval)
    ).fetchall()
    return merge((r[0], r[1]) for r in rows)


def uncovered(covered: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Parts of [start, end) no covered range holds."""
    out, at = [], start
    for a, b in covered:
        if b <= at or a >= end:
            continue
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if at < end:
        out.append((at, end))
    return out


# --- writing ---------------------------------------------------------------------------


def _row(market: str, interval: str, ts: int, o, h, low, c, v) -> dict:
    return {
        "market": market,
        "interval": interval,
        "ts_ms": ts,
        "open": str(o),
        "high": str(h),
        "low": str(low),
        "close": str(c),
        "volume": str(v),
    }


def _store(conn, rows: list[dict], ranges: list[tuple[str, str, int, int]], source: str) -> None:
    """Upsert candles and record their coverage in one transaction."""
    import sqlite_utils  # lazily: only the data commands and replay need it

    table = sqlite_utils.Database(conn).table("candles")
    with db.transaction(conn):
        for i in range(0, len(rows), BATCH):
            table.upsert_all(rows[i : i + BATCH], pk=("market", "interval", "ts_ms"))
        for market, interval, a, b in ranges:
            conn.execute(
                "INSERT INTO candle_coverage (market, interval, start_ms, end_ms, source, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (market, interval, a, b, source, clock.now_iso()),
            )


def store_market(conn, m: Market) -> None:
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO candle_markets (market, tick_size, quantity_decimals, notional_decimals, min_quote,"
            " min_base, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (market) DO UPDATE SET"
            " tick_size = excluded.tick_size, quantity_decimals = excluded.quantity_decimals,"
            " notional_decimals = excluded.notional_decimals, min_quote = excluded.min_quote,"
            " min_base = excluded.min_base, recorded_at = excluded.recorded_at",
            (
                m.name,
                str(m.tick_size),
                m.quantity_decimals,
                m.notional_decimals,
                str(m.min_quote),
                str(m.min_base),
                clock.now_iso(),
            ),
        )


# --- fetch from Bitvavo -----------------------------------------------------------------


@dataclass
class FetchReport:
    interval: str
    markets: dict[str, dict] = field(default_factory=dict)  # market → {"candles", "requests", "ranges"}

    def as_dict(self) -> dict:
        return {"interval": self.interval, "markets": self.markets}


def plan(conn, markets: list[str], interval: str, start_ms: int, end_ms: int) -> dict[str, list[tuple[int, int]]]:
    """Per market, the windows still to download: ≤ PER_WINDOW candles each, covered parts skipped."""
    step = interval_ms(interval)
    out = {}
    for m in markets:
        windows = []
        for a, b in uncovered(coverage(conn, m, interval), start_ms, end_ms):
            while a < b:
                w_end = min(a + PER_WINDOW * step, b)
                windows.append((a, w_end))
                a = w_end
        out[m] = windows
    return out


def fetch(
    conn,
    client,
    markets: list[str],
    interval: str,
    since: datetime,
    until: datetime | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    on_plan: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchReport:
    """Download closed candles of ``markets`` in [since, until) into the store.

    ``client`` is the read-only Bitvavo client (``exchange.bitvavo.clients.read_only_client``; public
    endpoints, no key needed).  Windows of at most 1440 candles; each window is committed with
    its coverage, so a fetch that stops (Ctrl-C, network, rate limit) keeps what it has and the
    same command later downloads only the rest.  ``on_plan(total requests)`` then
    ``progress(1)`` per request feed a progress bar.
    """
    step = interval_ms(interval)
    names = _normalise_markets(markets)
    try:
        listed = client.markets()
    except ExchangeError as e:
        raise CandleError(f"cannot list Bitvavo's markets: {e}") from None
    for m in names:
        if m not in listed:
            raise CandleError(f"{m}: Bitvavo does not list this market; check the name (like BTC-EUR)")
    try:
        now_ms = client.server_time_ms()
    except ExchangeError as e:
        raise CandleError(f"cannot read Bitvavo's time: {e}") from None
    start = clock.to_ms(since) // step * step
    # Bitvavo wants both bounds on the interval's grid: `until` goes up to the end of the candle it falls in
    until_ms = -(-clock.to_ms(until) // step) * step if until else now_ms
    end = min(until_ms, now_ms // step * step)  # only closed candles
    if end <= start:
        raise CandleError(f"empty range: from {iso_ms(start)} to {iso_ms(end)} holds no closed {interval} candle")
    for m in names:
        store_market(conn, listed[m])
    todo = plan(conn, names, interval, start, end)
    if on_plan:
        on_plan(sum(len(w) for w in todo.values()))
    report = FetchReport(interval)
    for m in names:
        got = {"candles": 0, "requests": 0, "ranges": [[iso_ms(a), iso_ms(b)] for a, b in todo[m]]}
        report.markets[m] = got
        for a, b in todo[m]:
            rows = _fetch_window(client, m, interval, a, b, sleep)
            _store(conn, [_row(m, interval, *r) for r in rows], [(m, interval, a, b)], "bitvavo")
            got["candles"] += len(rows)
            got["requests"] += 1
            if progress:
                progress(1)
    return report


def _fetch_window(client, market: str, interval: str, a: int, b: int, sleep) -> list[tuple]:
    """Every candle with open time in [a, b): one request (the window holds ≤ PER_WINDOW).

    docs rest-api/get-candlestick-data: start and end "must align exactly" with the interval, so both go
    as they are (a and b are on its grid); whether the candle opening at b comes back is not said, so it
    is dropped here either way.
    """
    params = {"market": market, "interval": interval, "start": a, "end": b, "limit": PER_CALL}
    what = f"candles {market} {interval} from {iso_ms(a)}"
    for attempt in range(RATE_LIMIT_RETRIES + 1):
        try:
            raw = client.candle_rows(what, params)
            break
        except ExchangeError as e:
            until = client.rate_limited_until_ms()
            if until is None or attempt == RATE_LIMIT_RETRIES:
                raise CandleError(
                    f"{e}. What was downloaded so far is kept; run the same command again to fetch the rest."
                ) from None
            sleep(max(0.0, (until - clock.now_ms()) / 1000) + 1)  # Bitvavo says when the ban ends
    if not isinstance(raw, list):
        raise CandleError(f"Bitvavo sent an unexpected answer to {what}: {str(raw)[:120]}")
    rows = []
    for r in raw:
        try:
            ts = int(r[0])
            values = [Decimal(str(x)) for x in r[1:6]]
        except (TypeError, ValueError, IndexError, InvalidOperation):
            raise CandleError(f"Bitvavo sent a candle that does not parse for {what}: {str(r)[:120]}") from None
        if a <= ts < b:
            rows.append((ts, *values))
    return sorted(rows)


def _normalise_markets(markets: Iterable[str]) -> list[str]:
    from ..base.markets import MARKET_RE
    from ..base.markets import normalise_market

    out = []
    for raw in markets:
        m = normalise_market(raw)
        if not MARKET_RE.match(m):
            raise CandleError(f"{raw!r} is not a Bitvavo EUR market name (like BTC-EUR)")
        if m not in out:
            out.append(m)
    if not out:
        raise CandleError("name at least one market, like BTC-EUR")
    return out


# --- import from CSV ---------------------------------------------------------------------


@dataclass
class ImportReport:
    path: str
    markets: dict[str, dict] = field(default_factory=dict)  # market → {"interval", "candles", "first", "last"}

    def as_dict(self) -> dict:
        return {"path": self.path, "markets": self.markets}


def import_csv(conn, path: str | Path, interval: str | None = None) -> ImportReport:
    """Load ``market,timestamp,open,high,low,close,volume`` rows (timestamp = open time, ms, UTC).

    The whole file is checked before anything is written, then stored in one transaction: a bad
    row names the file and line and nothing is imported.  The interval is inferred per market
    (the smallest step between its candles) unless given.
    """
    p = Path(path)
    if interval is not None:
        interval_ms(interval)
    try:
        f = open(p, newline="", encoding="utf-8")
    except OSError as e:
        raise CandleError(f"{p}: cannot read: {e.strerror}") from None
    by_market: dict[str, dict[int, tuple]] = {}
    line_of: dict[tuple[str, int], int] = {}
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise CandleError(f"{p}: line 1: the header must be {','.join(CSV_COLUMNS)} (missing {', '.join(missing)})")
        names_ok: dict[str, str] = {}
        try:
            for row in reader:
                n = reader.line_num
                raw_market = (row.get("market") or "").strip()
                if raw_market not in names_ok:
                    try:
                        names_ok[raw_market] = _normalise_markets([raw_market])[0]
                    except CandleError as e:
                        raise CandleError(f"{p}: line {n}: {e}") from None
                market = names_ok[raw_market]
                ts, values = _parse_csv_row(p, n, row)
                key = (market, ts)
                if key in line_of:
                    raise CandleError(f"{p}: line {n}: {market} at {ts} is already on line {line_of[key]}")
                line_of[key] = n
                by_market.setdefault(market, {})[ts] = values
        except (UnicodeDecodeError, csv.Error) as e:
            raise CandleError(f"{p}: line {reader.line_num}: not a CSV text line ({e})") from None
    if not by_market:
        raise CandleError(f"{p}: no candles in the file (only a header?)")
    rows, ranges, report = [], [], ImportReport(str(p))
    for market, candles in by_market.items():
        stamps = sorted(candles)
        ivl = interval or _infer_interval(p, market, stamps)
        step = INTERVALS[ivl]
        for ts in stamps:
            if ts % step:
                raise CandleError(
                    f"{p}: line {line_of[(market, ts)]}: {market} timestamp {ts} is not the start of a"
                    f" {ivl} candle (a multiple of {step} ms)"
                )
        rows.extend(_row(market, ivl, ts, *candles[ts]) for ts in stamps)
        ranges.append((market, ivl, stamps[0], stamps[-1] + step))
        report.markets[market] = {
            "interval": ivl,
            "candles": len(stamps),
            "first": iso_ms(stamps[0]),
            "last": iso_ms(stamps[-1]),
            "gaps": (stamps[-1] - stamps[0]) // step + 1 - len(stamps),
        }
    _store(conn, rows, ranges, f"csv:{p.name}")
    return report


def _parse_csv_row(p: Path, n: int, row: dict) -> tuple[int, tuple]:
    text = (row.get("timestamp") or "").strip()
    if not text.isdigit():
        raise CandleError(f"{p}: line {n}: timestamp {text!r} is not milliseconds since the epoch (like 1735689600000)")
    ts = int(text)
    values = []
    for col in ("open", "high", "low", "close", "volume"):
        cell = (row.get(col) or "").strip()
        try:
            d = Decimal(cell)
        except InvalidOperation:
            d = None
        if d is None or not d.is_finite() or d < 0 or (col != "volume" and d == 0):
            raise CandleError(f"{p}: line {n}: {col} {cell!r} is not a positive number")
        values.append(d)
    o, h, low, c, _v = values
    if not (low <= o <= h and low <= c <= h):
        raise CandleError(
            f"{p}: line {n}: high/low do not hold open and close (open {o}, high {h}, low {low}, close {c})"
        )
    return ts, tuple(values)


def _infer_interval(p: Path, market: str, stamps: list[int]) -> str:
    if len(stamps) < 2:
        raise CandleError(f"{p}: {market} has a single candle; give its interval with --interval")
    step = min(b - a for a, b in zip(stamps, stamps[1:]))
    for name, ms in INTERVALS.items():
        if ms == step:
            return name
    raise CandleError(
        f"{p}: {market}: candles {step} ms apart are not one of Bitvavo's intervals"
        f" ({', '.join(INTERVALS)}); give --interval"
    )


# --- reading --------------------------------------------------------------------------------


def listing(conn) -> list[dict]:
    """What is stored, per market and interval: span, count, gaps (no trades) and holes (not fetched)."""
    out = []
    for r in conn.execute(
        "SELECT market, interval, COUNT(*) AS n, MIN(ts_ms) AS first, MAX(ts_ms) AS last"
        " FROM candles GROUP BY market, interval ORDER BY market, interval"
    ).fetchall():
        step = INTERVALS.get(r["interval"])
        cov = coverage(conn, r["market"], r["interval"])
        expected = sum((b - a) // step for a, b in cov) if step else 0
        holes = [[iso_ms(b1), iso_ms(a2)] for (_, b1), (a2, _) in zip(cov, cov[1:])]
        out.append(
            {
                "market": r["market"],
                "interval": r["interval"],
                "candles": r["n"],
                "first": iso_ms(r["first"]),
                "last": iso_ms(r["last"]),
                "covered_from": iso_ms(cov[0][0]) if cov else None,
                "covered_to": iso_ms(cov[-1][1]) if cov else None,
                "gaps": max(expected - r["n"], 0),
                "not_fetched": holes,
            }
        )
    return out


def intervals_of(conn, market: str) -> list[str]:
    rows = conn.execute("SELECT DISTINCT interval FROM candles WHERE market = ?", (market,)).fetchall()
    return sorted((r[0] for r in rows), key=lambda i: INTERVALS.get(i, 0))


def load(conn, market: str, interval: str, start_ms: int | None = None, end_ms: int | None = None) -> list[Candle]:
    """Stored candles, oldest first, with open time in [start_ms, end_ms)."""
    sql = "SELECT ts_ms, open, high, low, close, volume FROM candles WHERE market = ? AND interval = ?"
    args: list = [market, interval]
    if start_ms is not None:
        sql += " AND ts_ms >= ?"
        args.append(start_ms)
    if end_ms is not None:
        sql += " AND ts_ms < ?"
        args.append(end_ms)
    return [
        Candle(r[0], Decimal(r[1]), Decimal(r[2]), Decimal(r[3]), Decimal(r[4]), Decimal(r[5]))
        for r in conn.execute(sql + " ORDER BY ts_ms", args)
    ]


def market_info(conn, market: str) -> Market | None:
    r = conn.execute("SELECT * FROM candle_markets WHERE market = ?", (market,)).fetchone()
    if r is None:
        return None
    base, _, quote = market.partition("-")
    return Market(
        market,
        base,
        quote,
        "trading",
        Decimal(r["tick_size"]),
        r["quantity_decimals"],
        r["notional_decimals"],
        Decimal(r["min_quote"]),
        Decimal(r["min_base"]),
    )
