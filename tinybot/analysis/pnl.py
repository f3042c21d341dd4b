"""`tinybot pnl`: did it make money?  The book's figures (tinybot.trade.book) as a JSON-ready answer.

Nothing is computed here: the walk over the fills, the average cost, the
value of a fee paid in the coin, the LLM's cost, the benchmarks and drift
all come from ``tinybot.trade.book``; this module picks and formats them (amounts
as exact decimal strings, EUR to the cent).  It also records what a tick saw
(``record_snapshot``: prices, balances, and the baseline the first time).

This module imports nothing from the exchange package: `tinybot pnl` starts
as fast as `tinybot status`.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from decimal import Decimal

from ..base import clock, money, sizing
from ..trade.book import benchmarks, figures, holdings, steps
from ..trade.book.steps import PERIODS
from ..trade.book.valuation import Price

plain = money.plain
BY = ("market", "advisor")


# --- what a tick records ------------------------------------------------------------------------------------------


def record_snapshot(conn: sqlite3.Connection, tickers: dict, account: dict | None) -> None:
    """The scheduler's per-tick write: last prices, last balances, and the baseline the first time.

    ``tickers``: market → Ticker; ``account``: asset → Balance (None when the
    balance read failed: the old snapshot stays, with its age).  The balances'
    time is now: drift compares them with the ledger as of then.
    """
    from ..store import db

    with db.transaction(conn):
        write_snapshot(conn, tickers, account, clock.now())


def write_snapshot(conn: sqlite3.Connection, tickers: dict, account: dict | None, read_at: datetime) -> None:
    """record_snapshot's rows, inside the caller's transaction, for what was read at ``read_at`` (the loop
    writes its reads with its next heartbeat: tinybot.loop.beat)."""
    now = clock.to_iso(read_at)
    conn.executemany(
        "INSERT INTO market_prices (market, bid, ask, last, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (market)"
        " DO UPDATE SET bid = excluded.bid, ask = excluded.ask, last = excluded.last, at = excluded.at",
        [(m, str(t.bid), str(t.ask), str(t.last), now) for m, t in tickers.items()],
    )
    hour = clock.to_iso(read_at.replace(minute=0, second=0, microsecond=0))
    conn.executemany(
        "INSERT INTO price_log (hour, market, bid, ask, last) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (hour, market) DO NOTHING",
        [(hour, m, str(t.bid), str(t.ask), str(t.last)) for m, t in tickers.items()],
    )
    if account is None:
        return
    # /balance omits zero balances: an asset that is gone is zero, not "as before"
    conn.execute("DELETE FROM account_balances")
    conn.executemany(
        "INSERT INTO account_balances (asset, available, in_order, at) VALUES (?, ?, ?, ?)",
        [(a, str(b.available), str(b.in_order), now) for a, b in account.items()],
    )
    if conn.execute("SELECT 1 FROM account_baseline LIMIT 1").fetchone() is None:
        moved = holdings.account_delta(conn, recorded_by=now)  # the ledger as of these balances
        held = {a: b.available + b.in_order for a, b in account.items()}
        conn.executemany(
            "INSERT INTO account_baseline (asset, amount, at) VALUES (?, ?, ?)",
            [(a, str(held.get(a, Decimal(0)) - moved.get(a, Decimal(0))), now) for a in sorted(set(held) | set(moved))],
        )


# --- `tinybot pnl` -------------------------------------------------------------------------------------------------


def _benchmark(b: benchmarks.Benchmark | None, value: Decimal | None) -> dict | None:
    if b is None:
        return None
    return {
        "name": b.name,
        "title": b.title,
        "capital_eur": money.cents_or_none(b.capital_eur),
        "spent_eur": money.cents_or_none(b.spent_eur),
        "buys": len(b.buys),
        "markets": b.markets,
        "pnl_eur": money.cents_or_none(value),
    }


def _advisors(s: figures.Summary) -> list[dict]:
    out = []
    for name, fig in s.by_book.items():
        lines = [x for x in s.lines if x.book == name]
        out.append(
            {
                "advisor": name,
                "realised_eur": money.cents_or_none(fig.realised_eur),
                "unrealised_eur": money.cents_or_none(fig.unrealised_eur),
                "fees_eur": money.cents_or_none(fig.fees_eur),
                "llm_cost_eur": money.cents_or_none(fig.llm_cost_eur),
                "net_eur": money.cents_or_none(fig.net_eur),
                "markets": [_book_line(x) for x in lines],
            }
        )
    return out


def _book_line(x: figures.Line) -> dict:
    unr = x.unrealised_eur
    return {
        "market": x.market,
        "base": plain(x.position.base),
        "cost_eur": money.cents_or_none(x.position.cost_eur),
        "value_eur": money.cents_or_none(x.value_eur) if x.position.base else "0.00",
        "realised_eur": money.cents_or_none(x.position.realised_eur),
        "unrealised_eur": money.cents_or_none(unr),
        "fees_eur": money.cents_or_none(x.position.fees_eur),
        "llm_cost_eur": None,  # an LLM call is about no one market: its cost is on the advisor's line
        "net_eur": None if unr is None else money.cents_or_none(x.position.realised_eur + unr),
        "fills": x.position.fills,
    }


def stranded(cfg, s: figures.Summary) -> list[dict]:
    """Books whose position is worth less than the exchange minimum: each can only be sold as a whole (€5 rule)."""
    tickers = {m: p for m, p in s.prices.items()}
    out = []
    for name in sorted({x.book for x in s.lines}):
        held = {x.market: x.position.base for x in s.lines if x.book == name and x.position.base > 0}
        out += [{**st.as_dict(), "advisor": name} for st in sizing.stranded(cfg, held, tickers)]
    return out


def report(
    conn: sqlite3.Connection,
    cfg,
    *,
    prices: dict[str, Price] | None = None,
    period: str | None = None,
    until: datetime | None = None,
) -> dict:
    """Everything `tinybot pnl` shows, as a JSON-ready dict (amounts as exact decimal strings)."""
    if period is not None and period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    s = figures.summary(conn, cfg, prices=prices, until=until)
    hold, spread = s.holding_eur, s.dca_eur
    net = s.total.net_eur
    markets = []
    for m, fig in s.by_market.items():
        p = s.walk.market(m)
        markets.append(
            {
                "market": m,
                "realised_eur": money.cents_or_none(fig.realised_eur),
                "unrealised_eur": None if fig.unpriced else money.cents_or_none(fig.unrealised_eur),
                "fees_eur": money.cents_or_none(fig.fees_eur),
                "hold_eur": money.cents_or_none(s.holding.pnl_at(s.at, s.bids, m))
                if s.holding and m in s.holding.markets
                else None,
                "trades": p.fills,
            }
        )
    positions = []
    for m, p in s.positions().items():
        price = s.prices.get(m)
        value = None if price is None else p.value(price.bid)
        positions.append(
            {
                "market": m,
                "base": plain(p.base),
                "cost_eur": money.cents_or_none(p.cost_eur),
                "value_eur": money.cents_or_none(value),
                "bid": None if price is None else plain(price.bid),
                "sellable": None if value is None else value >= sizing.EXCHANGE_MINIMUM_EUR,
            }
        )
    out = {
        "now": clock.to_iso(s.at),
        "mode": cfg.mode,
        "realised_eur": money.cents_or_none(s.total.realised_eur),
        "unrealised_eur": money.cents_or_none(s.total.unrealised_eur),
        "fees_eur": money.cents_or_none(s.total.fees_eur),
        "llm_cost_eur": money.cents_or_none(s.total.llm_cost_eur),
        "net_eur": money.cents_or_none(net),
        "hold_eur": money.cents_or_none(hold),
        "vs_hold_eur": None if hold is None else money.cents_or_none(net - hold),
        "dca_eur": money.cents_or_none(spread),
        "vs_dca_eur": None if spread is None else money.cents_or_none(net - spread),
        "benchmarks": {"holding": _benchmark(s.holding, hold), "dca": _benchmark(s.dca, spread)},
        "started_at": None if s.start.at is None else clock.to_iso(s.start.at),
        "capital_eur": money.cents_or_none(s.start.capital_eur),
        "external_eur": money.cents_or_none(s.walk.external_eur),
        "prices_at": max((p.at for p in s.prices.values() if p.at), default=None),
        "unpriced": list(s.total.unpriced),
        "markets": markets,
        "positions": positions,
        "advisors": _advisors(s),
        "stranded": stranded(cfg, s),
        "drift": holdings.drift(conn, cfg),
    }
    if period:
        costs = steps.llm_costs(conn, until=None if until is None else clock.to_iso(until))
        out["period"] = period
        out["periods"] = [
            {
                "period": k,
                "realised_eur": money.cents_or_none(b.realised_eur),
                "fees_eur": money.cents_or_none(b.fees_eur),
                "llm_cost_eur": money.cents_or_none(b.llm_cost_eur),
                "net_realised_eur": money.cents_or_none(b.realised_eur - b.llm_cost_eur),
                "trades": b.fills,
            }
            for k, b in steps.buckets(s.walk, costs, period).items()
        ]
    return out
