"""The scoreboard: each advisor (live books and shadows) against holding and DCA, with an honest error bar.

Every money figure comes from the book (``tinybot.trade.book``): each book is
marked at each local day's end by ``figures.marks`` (the same step and figures
as ``summary``), equity is the starting money plus the book's net, drawdown is
``figures.max_drawdown``.  This module adds only statistics: the mean daily
difference against a benchmark, its 95 % interval from a circular block
bootstrap over days (docs/SCORE.md says why blocks and which length), and a
verdict in words.
"""

from __future__ import annotations

import math
import random
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Callable

from ..base import clock, money
from ..trade import shadow
from ..trade.book import figures
from ..trade.book.benchmarks import Benchmark, benchmarks, start
from ..trade.book.steps import ZERO, fills, llm_costs
from ..trade.book.valuation import PriceHistory, prices_as_of

RESAMPLES = 2000  # bootstrap resamples: the 2.5 % and 97.5 % points are then the 50th and 1951st means
SEED = 25  # fixed: the same database gives the same interval every time (issue 25)
MICRO = Decimal("0.000001")  # the bootstrap adds daily differences as whole micro-euros (exact and fast)
SKIP_BOOKS = ("external",)
BEFORE = timedelta(microseconds=1)
TITLES = {
    "holding": "holding",
    "dca": "DCA",
}  # how a verdict names each benchmark  # coins tinybot did not buy: not an advisor's score


def block_length(days: int) -> int:
    """Days per block: about the cube root of the number of days (Hall, Horowitz & Jing 1995), at least 1."""
    return max(1, round(days ** (1 / 3)))


def bootstrap_ci(diffs: list[Decimal], *, block: int, resamples: int = RESAMPLES, seed: int = SEED):
    """95 % interval of the mean of ``diffs`` from a circular block bootstrap (blocks of ``block`` days, wrapping
    around the end so every day is drawn as often); None with fewer than two days."""
    n = len(diffs)
    if n < 2:
        return None
    units = [int((d / MICRO).to_integral_value()) for d in diffs]
    prefix = [0]
    for u in units + units:
        prefix.append(prefix[-1] + u)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        total, taken = 0, 0
        while taken < n:
            k = min(block, n - taken)
            s = rng.randrange(n)
            total += prefix[s + k] - prefix[s]
            taken += k
        means.append(total)
    means.sort()
    lo, hi = means[math.ceil(0.025 * resamples) - 1], means[math.floor(0.975 * resamples)]
    return (Decimal(lo) * MICRO / n, Decimal(hi) * MICRO / n)


def verdict(name: str, mean: Decimal | None, ci, days: int) -> str:
    """Ahead, behind, or how many days a difference this size would need."""
    unit = "day" if days == 1 else "days"
    if ci is None or mean is None:
        return f"not enough evidence yet ({days} {unit})"
    lo, hi = ci
    if lo > 0:
        return f"ahead of {name} with 95 % confidence"
    if hi < 0:
        return f"behind {name} with 95 % confidence"
    if mean == 0:
        return f"no difference from {name} seen ({days} {unit})"
    half = (hi - lo) / 2
    need = math.ceil(days * float(half / abs(mean)) ** 2)  # the interval narrows as 1/sqrt(days)
    return f"not enough evidence yet ({days} {unit}; a difference this size needs about {need})"


@dataclass
class Player:
    """One row: a live book, a shadow's book or a benchmark, marked at the same moments."""

    name: str
    kind: str  # live | shadow | benchmark
    capital: Decimal
    at: list[datetime]
    net: list[Decimal]  # the book's net P/L at each moment (LLM cost deducted)
    fees: list[Decimal]
    llm: list[Decimal]
    trades: list[int]
    holds: list[bool]
    since: bool = False  # the window starts at --since (else at the row's own start)

    @property
    def opened(self) -> datetime:
        """Where the window starts as shown: ``since``, or the first moment (its first mark is just before)."""
        first = self.at[0]
        return first if self.since else first + BEFORE

    @property
    def equity(self) -> list[Decimal]:
        return [self.capital + n for n in self.net]


def _book_player(name: str, kind: str, capital: Decimal, ms: list[figures.Mark], book: str, since: bool) -> Player:
    fig = [m.by_book.get(book) for m in ms]
    pick = lambda attr: [getattr(f, attr) if f is not None else ZERO for f in fig]  # noqa: E731
    return Player(
        name,
        kind,
        capital,
        [m.at for m in ms],
        pick("net_eur"),
        pick("fees_eur"),
        pick("llm_cost_eur"),
        [m.fills(book) for m in ms],
        [m.holds(book) for m in ms],
        since,
    )


def _bench_player(b: Benchmark, moments: list[datetime], bids_at, since: bool) -> Player:
    nets, fees_, trades, holds = [], [], [], []
    for at in moments:
        bought = [x for x in b.buys if x.at <= at]
        nets.append(b.pnl_at(at, bids_at(at)) or ZERO)
        fees_.append(sum((x.eur - x.base * x.ask for x in bought), ZERO))
        trades.append(len(bought))
        holds.append(bool(bought))
    return Player(
        f"benchmark:{b.name}",
        "benchmark",
        b.capital_eur,
        moments,
        nets,
        fees_,
        [ZERO] * len(moments),
        trades,
        holds,
        since,
    )


def _dec(d: Decimal | None, places: str = "0.01") -> str | None:
    return None if d is None else str(d.quantize(Decimal(places)))


def row(p: Player) -> dict:
    """The row's figures over its moments (from the first to the last: the window)."""
    eq = p.equity
    days = len(p.at) - 1
    return {
        "advisor": p.name,
        "kind": p.kind,
        "from": clock.to_iso(p.opened),
        "days": days,
        "capital_eur": money.cents(p.capital),
        "net_eur": money.cents(p.net[-1] - p.net[0]),
        "return_pct": _dec((eq[-1] - eq[0]) / eq[0] * 100 if eq[0] else None),
        "max_drawdown_pct": _dec(figures.max_drawdown(eq) * 100),
        "trades": p.trades[-1] - p.trades[0],
        "fees_eur": money.cents(p.fees[-1] - p.fees[0]),
        "llm_cost_eur": money.cents(p.llm[-1] - p.llm[0]),
        "time_in_market_pct": _dec(Decimal(sum(p.holds[1:])) / days * 100 if days else None),
        "equity": [[clock.to_iso(a), money.cents(e)] for a, e in zip(p.at, eq)],
        "look_ahead": False,
    }


def against(p: Player, b: Player, name: str) -> dict:
    """The mean daily difference (this row's daily change in net minus the benchmark's) and its interval."""
    diffs = [(p.net[i] - p.net[i - 1]) - (b.net[i] - b.net[i - 1]) for i in range(1, len(p.net))]
    mean = sum(diffs, ZERO) / len(diffs) if diffs else None
    block = block_length(len(diffs))
    ci = bootstrap_ci(diffs, block=block)
    return {
        "mean_daily_diff_eur": _dec(mean, "0.0001"),
        "ci95": None if ci is None else [_dec(ci[0], "0.0001"), _dec(ci[1], "0.0001")],
        "days": len(diffs),
        "block_days": block,
        "verdict": verdict(name, mean, ci, len(diffs)),
    }


def _origin(opened: datetime, since: datetime | None) -> datetime:
    """Where a row's window starts: ``since``, or just before its first moment (so its first fill counts)."""
    return since if _cut(opened, since) else opened - BEFORE


def _cut(opened: datetime | None, since: datetime | None) -> bool:
    """The window starts at ``since`` (after the row's own start)."""
    return since is not None and opened is not None and since > opened


def players(
    conn, cfg, since, until, prices=None
) -> tuple[list[Player], Player | None, list[tuple[Benchmark, Callable]]]:
    """The rows' players (live books, shadows), the moments and window of the benchmarks' rows (as a Player
    with no figures, or None before the start), and the benchmarks with the bids they are valued at."""
    end = until or clock.now()
    s = start(conn, cfg)
    history = PriceHistory(conn)
    final = {m: p.bid for m, p in (prices if prices is not None else prices_as_of(conn, cfg, until)).items()}

    def bids_at(at: datetime) -> dict:
        return final if at == end else {m: p.bid for m, p in history.as_of(at).items()}

    out: list[Player] = []
    moments = figures.day_ends(_origin(s.at, since), end, cfg.tz) if s.at is not None else []
    if s.at is not None and s.capital_eur:
        ms = figures.marks(fills(conn, until=clock.to_iso(end)), llm_costs(conn), moments, bids_at)
        for book in sorted(ms[-1].by_book):
            if book not in SKIP_BOOKS:
                out.append(_book_player(book, "live", s.capital_eur, ms, book, _cut(s.at, since)))
    for name, (opened, capital) in shadow.started(conn).items():
        own = figures.day_ends(_origin(opened, since), end, cfg.tz)
        costs = llm_costs(conn, book=shadow.SHADOW_LLM) if name == "llm" else []
        ms = figures.marks(shadow.fills(conn, book=name), costs, own, bids_at)
        out.append(_book_player(f"shadow:{name}", "shadow", capital, ms, name, _cut(opened, since)))
    hold, spread = benchmarks(conn, cfg, until=end, history=history)
    base = Player("", "benchmark", ZERO, moments, [], [], [], [], [], _cut(s.at, since)) if moments else None
    return out, base, [(b, bids_at) for b in (hold, spread) if b is not None]


def scoreboard(
    conn: sqlite3.Connection, cfg, *, since: datetime | None = None, until: datetime | None = None, prices=None
) -> dict:
    """Every row and, per advisor, each benchmark's comparison (docs/JSON.md, `tinybot score --json`).  The last
    mark is valued at ``prices`` (default: ``prices_as_of``, as `pnl`)."""
    rowed, base, benches = players(conn, cfg, since, until, prices)
    rows = []
    for p in rowed:
        r = row(p)
        r["versus"] = {b.name: against(p, _bench_player(b, p.at, f, p.since), TITLES[b.name]) for b, f in benches}
        rows.append(r)
    for b, f in benches:
        rows.append(row(_bench_player(b, base.at, f, base.since)) | {"versus": {}})
    return {
        "at": clock.to_iso(until or clock.now()),
        "since": clock.to_iso(since) if since else None,
        "look_ahead": False,  # a replay's board says so (mark_look_ahead)
        "bootstrap": {"resamples": RESAMPLES, "seed": SEED, "method": "circular block bootstrap over days"},
        "rows": rows,
    }


LOOK_AHEAD_BOOKS = ("llm", "shadow:llm")  # the rows a model's memory of the period can flatter


def mark_look_ahead(board: dict, ahead: bool) -> dict:
    """A board over a period the model may have seen in training: the board and the llm's rows say so."""
    board["look_ahead"] = ahead
    for r in board["rows"]:
        r["look_ahead"] = ahead and r["advisor"] in LOOK_AHEAD_BOOKS
    return board


def _name(r: dict) -> str:
    return r["advisor"] + (" (look-ahead)" if r.get("look_ahead") else "")


def render(board: dict) -> str:
    """The scoreboard as a terminal table, then one line per advisor and benchmark with its verdict."""
    head = f"{'advisor':<20} {'net €':>9} {'return':>8} {'max dd':>7} {'trades':>6} {'fees €':>7} {'LLM €':>6} {'in mkt':>7}"
    lines = [("LOOK-AHEAD: the model may have seen this period in training\n" if board["look_ahead"] else "") + head]
    for r in board["rows"]:
        lines.append(
            f"{_name(r):<20} {r['net_eur']:>9} {_pct(r['return_pct']):>8} {_pct(r['max_drawdown_pct']):>7}"
            f" {r['trades']:>6} {r['fees_eur']:>7} {r['llm_cost_eur']:>6} {_pct(r['time_in_market_pct']):>7}"
        )
    for r in board["rows"]:
        for name, v in r["versus"].items():
            ci = "n/a" if v["ci95"] is None else f"[{v['ci95'][0]}, {v['ci95'][1]}]"
            lines.append(f"{_name(r)} vs {name}: {v['mean_daily_diff_eur'] or 'n/a'} €/day, 95 % {ci}: {v['verdict']}")
    if not board["rows"]:
        lines.append("(nothing to score yet: no start money, no fills, no shadow)")
    return "\n".join(lines)


def _pct(v: str | None) -> str:
    return "n/a" if v is None else f"{v}%"


def phone_text(board: dict) -> str:
    """The scoreboard for a phone (Telegram's /score): a few lines per advisor, the benchmarks' nets last."""
    lines = ["LOOK-AHEAD: the model may have seen this period."] if board["look_ahead"] else []
    for r in board["rows"]:
        lines.append(
            f"{_name(r)}: net {money.eur_text(r['net_eur'])} ({_pct(r['return_pct'])}), max drawdown"
            f" {_pct(r['max_drawdown_pct'])}, {r['trades']} fill(s), fees {money.eur_text(r['fees_eur'])},"
            f" LLM {money.eur_text(r['llm_cost_eur'])}"
        )
        for name, v in r["versus"].items():
            ci = "" if v["ci95"] is None else f" [{v['ci95'][0]}, {v['ci95'][1]}]"
            lines.append(f"  vs {TITLES[name]}: {v['mean_daily_diff_eur'] or 'n/a'} €/day{ci}: {v['verdict']}")
    return "\n".join(lines) or "Nothing to score yet: no start money, no fills, no shadow advisor."


def one_line(board: dict) -> str:
    """The scoreboard in one line (the weekly digest): each advisor's net and its verdict against DCA."""
    parts = [
        f"{r['advisor']} {money.eur_text(r['net_eur'])}, "
        + (r["versus"].get("dca") or r["versus"].get("holding") or {"verdict": "no benchmark yet"})["verdict"]
        for r in board["rows"]
        if r["kind"] != "benchmark"
    ]
    return "Scoreboard: " + ("; ".join(parts) if parts else "no advisor to score yet") + " (tinybot score)."
