"""The replay's summary: the book's figures at the simulator's last prices, drawdown, exposure, the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from ...base import clock, money
from ...trade.book import benchmarks, figures
from ...base.config import Config
from .plan import Plan
from .simulator import ReplaySimulator

SERIES_POINTS = 500  # equity/exposure points kept in the JSON
MAX_ERRORS_SHOWN = 5  # tick errors quoted in the summary (the count has them all)


@dataclass
class TickPoint:
    time: datetime
    equity: Decimal
    exposure: Decimal
    errors: tuple[str, ...] = ()  # what the tick reported as errors (an exchange read that failed, …)


def summarize(
    conn,
    cfg: Config,
    plan: Plan,
    points: list[TickPoint],
    sim: ReplaySimulator,
    eur: Decimal,
    slippage: Decimal,
    kept: Path | None,
) -> dict:
    """The replay's figures: P/L, fees, LLM cost, trades and the benchmarks from the book (tinybot.trade.book) at the
    simulator's prices of the last tick; drawdown and exposure from the simulated account, tick by tick."""
    last = plan.slots[-1]
    money_now = figures.summary(conn, cfg, prices=sim.quotes(last), until=last)
    trades = _trades(conn, last)
    by_source = {
        r["source"]: r["n"]
        for r in conn.execute("SELECT source, COUNT(*) AS n FROM proposals GROUP BY source ORDER BY source")
    }
    kill = conn.execute("SELECT trading_enabled, reason, changed_at FROM kill_switch WHERE id = 1").fetchone()
    failed_ticks = conn.execute("SELECT COUNT(*) FROM ticks WHERE status = 'failed'").fetchone()[0]

    total = money_now.total
    final_equity = eur + total.realised_eur + total.unrealised_eur  # the starting money and what trading made
    max_dd_eur, max_dd = _max_drawdown(points)
    exposures = [p.exposure for p in points]
    in_market = sum(1 for x in exposures if x > 0)
    pnl = total.net_eur
    hold = benchmark_hold(sim, plan, eur)
    dca = benchmark_dca(sim, plan, cfg, eur)
    return {
        "from": clock.to_iso(plan.slots[0]),
        "to": clock.to_iso(plan.slots[-1]),
        "ticks": len(plan.slots),
        "tick_interval": clock.format_duration(cfg.scheduler.interval),
        "markets": list(plan.markets),
        "candle_interval": plan.data_interval,
        "advisors": list(cfg.advisors),
        "skipped_advisors": [],
        "approval": "auto"
        + (" (config says manual; replay approves as auto would)" if cfg.scheduler.approval == "manual" else ""),
        "slippage": money.plain(slippage),
        "starting_eur": money.cents(eur),
        "final_equity_eur": money.cents(final_equity),
        "pnl_eur": money.cents(pnl),
        "pnl_pct": str((pnl / eur * 100).quantize(Decimal("0.01"))),
        "realised_eur": money.cents(total.realised_eur),
        "unrealised_eur": money.cents(total.unrealised_eur),
        "fees_eur": money.cents(total.fees_eur),
        "llm_cost_eur": money.cents(total.llm_cost_eur),
        "by_advisor": {b: money.cents(f.net_eur) for b, f in money_now.by_book.items()},
        "max_drawdown_eur": money.cents(max_dd_eur),
        "max_drawdown_pct": str((max_dd * 100).quantize(Decimal("0.01"))),
        "max_exposure_eur": money.cents(max(exposures, default=Decimal(0))),
        "time_in_market_pct": str((Decimal(in_market * 100) / max(len(points), 1)).quantize(Decimal("0.1"))),
        "proposals": sum(by_source.values()),
        "proposals_by_source": by_source,
        "orders": len({t["proposal_id"] for t in trades}),
        "trades": trades,
        "blocks": _blocks(conn),
        "kill_switch": {
            "trading_enabled": bool(kill["trading_enabled"]),
            "reason": kill["reason"],
            "changed_at": kill["changed_at"],
        },
        "failed_ticks": failed_ticks,
        # a tick that reported errors decided on less than a live tick would have seen (a lookup or read
        # refused): a replay is only as good as this is small; the first few say what went wrong
        "ticks_with_errors": sum(1 for p in points if p.errors),
        "tick_errors": [f"{clock.to_iso(p.time)}: {err}" for p in points for err in p.errors][:MAX_ERRORS_SHOWN],
        "benchmarks": {"hold": hold, "dca": dca},
        "series": _series(points),
        "warnings": plan.warnings,
        "scratch_dir": str(kept) if kept else None,
    }


def _trades(conn, until: datetime) -> list[dict]:
    """Every fill up to ``until`` with the proposal, advisor and reason behind it (the book's trades)."""
    return [
        {
            "time": t.fill.at,
            "market": t.fill.market,
            "side": t.fill.side,
            "amount": money.plain(t.fill.amount),
            "price": money.plain(t.fill.price),
            "eur": money.cents(t.fill.quote),
            "fee": money.plain(t.fill.fee),
            "fee_currency": t.fill.fee_currency,
            "fee_eur": money.cents(t.fill.fee_eur),
            "proposal_id": t.proposal_id,
            "source": t.source,
            "advisor": t.book,
            "reason": t.reason,
        }
        for t in figures.trades(conn, until=until)
    ]


def _blocks(conn) -> dict[str, int]:
    """Proposals a guard blocked, by reason code, most frequent first."""
    return {
        r["reason_code"]: r["n"]
        for r in conn.execute(
            "SELECT reason_code, COUNT(*) AS n FROM guard_decisions WHERE verdict = 'block' GROUP BY reason_code"
            " ORDER BY n DESC, reason_code"
        )
    }


def _max_drawdown(points: list[TickPoint]) -> tuple[Decimal, Decimal]:
    """The largest fall of equity from a previous peak: in EUR, and as a fraction of that peak."""
    peak, max_dd, max_dd_eur = Decimal(0), Decimal(0), Decimal(0)
    for p in points:
        peak = max(peak, p.equity)
        if peak > 0 and peak - p.equity > max_dd_eur:
            max_dd_eur = peak - p.equity
            max_dd = (peak - p.equity) / peak
    return max_dd_eur, max_dd


def _series(points: list[TickPoint]) -> list[dict]:
    """Equity and exposure over time, thinned to at most about SERIES_POINTS points."""
    stride = max(1, len(points) // SERIES_POINTS)
    return [
        {"time": clock.to_iso(p.time), "equity": money.cents(p.equity), "exposure": money.cents(p.exposure)}
        for p in points[::stride]
    ]


def _benchmark(sim: ReplaySimulator, plan: Plan, eur: Decimal, b) -> dict:
    """A benchmarks.Benchmark valued at the simulator's bids of the last tick, in the summary's shape."""
    bids = {m: p.bid for m, p in sim.quotes(plan.slots[-1]).items()}
    pnl = b.pnl_at(plan.slots[-1], bids) if b is not None else Decimal(0)
    pnl = pnl if pnl is not None else Decimal(0)
    return {
        "title": b.title if b is not None else "no benchmark: the money buys less than the exchange minimum",
        "final_equity_eur": money.cents(eur + pnl),
        "pnl_eur": money.cents(pnl),
        "spent_eur": money.cents(b.spent_eur if b is not None else Decimal(0)),
        "buys": len(b.buys) if b is not None else 0,
        "eur_per_buy": money.cents(b.buys[0].eur if b is not None and b.buys else Decimal(0)),
        "markets": b.markets if b is not None else [],
    }


def _bench_args(sim: ReplaySimulator, plan: Plan) -> dict:
    return {
        "fee_rate": sim.taker_fee,
        "decimals": {m: sim.markets[m].quantity_decimals for m in plan.markets},
    }


def benchmark_hold(sim: ReplaySimulator, plan: Plan, eur: Decimal) -> dict:
    """Holding (tinybot.trade.book.holding): the starting euros split over the markets, bought at the first tick, held."""
    b = benchmarks.holding(eur, list(plan.markets), plan.slots[0], sim.quote, **_bench_args(sim, plan))
    return _benchmark(sim, plan, eur, b)


def benchmark_dca(sim: ReplaySimulator, plan: Plan, cfg: Config, eur: Decimal) -> dict:
    """DCA (tinybot.trade.book.dca): the same euros in equal buys spread over the period (every dca.every at most, each
    part at least €5), split over the markets."""
    b = benchmarks.dca(
        eur,
        list(plan.markets),
        plan.slots[0],
        plan.slots[-1],
        cfg.dca.every,
        sim.quote,
        **_bench_args(sim, plan),
    )
    return _benchmark(sim, plan, eur, b)
