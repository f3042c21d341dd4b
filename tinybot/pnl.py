"""Did it make money?  Profit and loss from the database alone, net of everything.

Every number here is recomputed from ``trade_history`` (the fills as the
exchange reported them), in order, with the same average-cost rule the
ledger uses for positions: a buy adds its EUR and fee to the cost, a sell
takes a share of the cost away and realises the difference, its fee
included.  So the answer does not depend on any running total being right.

* **realised**: what sells brought in above the cost of what they sold;
* **unrealised**: what is still held, at the bid, minus its cost;
* **fees**: as charged (EUR; a fee in the coin valued at its fill price);
* **LLM cost**: what the advisor's API calls cost (settled calls);
* **net** = realised + unrealised − LLM cost (fees are inside the first two);
* **hold**: the benchmark — the same euros, spent on the same buys and never
  sold: what those coins are worth at the bid now, minus what they cost;
* **drift**, per asset: the exchange's balance minus (what the account held
  before tinybot's first fill + every fill since).  Zero, to the cent and to
  the last unit of the coin, unless money moved outside tinybot.

Fills of ``external`` sells (coins tinybot did not buy) are reported apart
and are not tinybot's P/L; they do count for drift (the coins did leave).

Prices come from the last tick (``market_prices``), or are passed in (``--prices
live``).  This module imports nothing from the exchange package: `tinybot pnl`
starts as fast as `tinybot status`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from . import clock, money, sizing

PERIODS = ("daily", "weekly", "monthly")


@dataclass(frozen=True)
class Price:
    bid: Decimal
    ask: Decimal
    last: Decimal
    at: str | None  # when it was read (ISO), None for configured fixed prices


@dataclass
class _Book:
    """One market, replayed fill by fill."""

    base: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    realised: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    bought_base: Decimal = Decimal(0)  # for the hold benchmark: every coin bought, none sold
    bought_cost: Decimal = Decimal(0)
    trades: int = 0


@dataclass
class _Bucket:
    realised: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    llm: Decimal = Decimal(0)
    trades: int = 0
    external_eur: Decimal = Decimal(0)


@dataclass
class _Replay:
    books: dict[str, _Book] = field(default_factory=dict)
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    external_eur: Decimal = Decimal(0)  # proceeds of external sells, net of their fee
    delta: dict[str, Decimal] = field(default_factory=dict)  # per asset: what every fill moved on the account


def eur(d: Decimal | None) -> str | None:
    """A EUR amount as an exact decimal string, to the cent (JSON): money.cents."""
    return None if d is None else money.cents(d)


plain = money.plain


def period_key(at: datetime, period: str) -> str:
    if period == "daily":
        return at.strftime("%Y-%m-%d")
    if period == "weekly":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return at.strftime("%Y-%m")


def _fee_eur(r: sqlite3.Row, asset: str) -> Decimal:
    fee = Decimal(r["fee"])
    if r["fee_currency"] == "EUR":
        return fee
    if r["fee_currency"] == asset:
        return fee * Decimal(r["price"])
    return Decimal(0)  # a fee in a third currency: not valued (Bitvavo charges EUR or the coin)


def replay(conn: sqlite3.Connection, period: str | None = None, *, until: str | None = None) -> _Replay:
    out = _Replay()
    sql = "SELECT * FROM trade_history" + (" WHERE executed_at <= ?" if until else "") + " ORDER BY executed_at, id"
    for r in conn.execute(sql, (until,) if until else ()):
        market, side = r["market"], r["side"]
        asset = market.split("-")[0]
        amount, price = Decimal(r["amount"]), Decimal(r["price"])
        fee = Decimal(r["fee"])
        quote = amount * price
        fee_base = fee if r["fee_currency"] == asset else Decimal(0)
        fee_eur_paid = fee if r["fee_currency"] == "EUR" else Decimal(0)
        # what the account saw: Bitvavo settles the EUR side as quote ± fee
        sign = 1 if side == "buy" else -1
        out.delta[asset] = out.delta.get(asset, Decimal(0)) + sign * amount - fee_base
        out.delta["EUR"] = out.delta.get("EUR", Decimal(0)) - sign * quote - fee_eur_paid
        bucket = (
            out.buckets.setdefault(period_key(clock.from_iso(r["executed_at"]), period), _Bucket()) if period else None
        )
        if r["external"]:
            proceeds = (quote if side == "sell" else -quote) - fee_eur_paid
            out.external_eur += proceeds
            if bucket:
                bucket.external_eur += proceeds
            continue
        b = out.books.setdefault(market, _Book())
        fee_eur = _fee_eur(r, asset)
        b.fees += fee_eur
        b.trades += 1
        realised = Decimal(0)
        if side == "buy":
            b.base += amount - fee_base
            b.cost += quote + fee_eur_paid
            b.bought_base += amount - fee_base
            b.bought_cost += quote + fee_eur_paid
        else:
            share = min(amount / b.base, Decimal(1)) if b.base > 0 else Decimal(0)
            removed = b.cost * share
            realised = quote - fee_eur_paid - removed
            b.realised += realised
            b.cost -= removed
            b.base -= amount
            if b.base <= 0:
                b.base, b.cost = Decimal(0), Decimal(0)
        if bucket:
            bucket.realised += realised
            bucket.fees += fee_eur
            bucket.trades += 1
    return out


def realised_between(conn: sqlite3.Connection, since: str, until: str) -> Decimal:
    """Realised P/L of fills after ``since`` up to ``until`` (ISO times), average cost over all history."""

    def by(moment: str) -> Decimal:
        return sum((b.realised for b in replay(conn, until=moment).books.values()), Decimal(0))

    return by(until) - by(since)


def last_prices(conn: sqlite3.Connection, cfg=None) -> dict[str, Price]:
    """Prices from the last tick; in paper mode with fixed [paper] prices, those (with the paper spread)."""
    prices = {
        r["market"]: Price(Decimal(r["bid"]), Decimal(r["ask"]), Decimal(r["last"]), r["at"])
        for r in conn.execute("SELECT * FROM market_prices")
    }
    if cfg is not None and cfg.mode == "paper" and cfg.paper.prices:
        from .markets import PAPER_HALF_SPREAD as SPREAD

        for m, mid in cfg.paper.prices.items():
            prices.setdefault(m, Price(mid * (1 - SPREAD), mid * (1 + SPREAD), mid, None))
    return prices


def llm_cost(conn: sqlite3.Connection, period: str | None = None) -> tuple[Decimal, dict[str, Decimal]]:
    total, by = Decimal(0), {}
    for r in conn.execute("SELECT settled_at, reserved_at, cost_eur FROM gpt_usage_log WHERE cost_eur IS NOT NULL"):
        c = Decimal(r["cost_eur"])
        total += c
        if period:
            k = period_key(clock.from_iso(r["settled_at"] or r["reserved_at"]), period)
            by[k] = by.get(k, Decimal(0)) + c
    return total, by


def balances(conn: sqlite3.Connection, cfg) -> tuple[dict[str, Decimal] | None, str | None]:
    """What the exchange reports the account holds: the paper account, or the last tick's snapshot (live)."""
    if cfg.mode == "paper":
        rows = conn.execute("SELECT asset, available, in_order FROM paper_balances").fetchall()
        if not rows:
            return None, None
        return {r["asset"]: Decimal(r["available"]) + Decimal(r["in_order"]) for r in rows}, clock.now_iso()
    rows = conn.execute("SELECT * FROM account_balances").fetchall()
    if not rows:
        return None, None
    return ({r["asset"]: Decimal(r["available"]) + Decimal(r["in_order"]) for r in rows}, max(r["at"] for r in rows))


def baseline(conn: sqlite3.Connection, cfg) -> dict[str, Decimal] | None:
    if cfg.mode == "paper":
        return {"EUR": cfg.paper.starting_eur}
    rows = conn.execute("SELECT asset, amount FROM account_baseline").fetchall()
    return {r["asset"]: Decimal(r["amount"]) for r in rows} if rows else None


def record_snapshot(conn: sqlite3.Connection, tickers: dict, account: dict | None) -> None:
    """The scheduler's per-tick write: last prices, last balances, and the baseline the first time.

    ``tickers``: market → Ticker; ``account``: asset → Balance (None when the
    balance read failed: the old snapshot stays, with its age).
    """
    from . import db

    now = clock.now_iso()
    with db.transaction(conn):
        conn.executemany(
            "INSERT INTO market_prices (market, bid, ask, last, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (market)"
            " DO UPDATE SET bid = excluded.bid, ask = excluded.ask, last = excluded.last, at = excluded.at",
            [(m, str(t.bid), str(t.ask), str(t.last), now) for m, t in tickers.items()],
        )
        hour = clock.to_iso(clock.now().replace(minute=0, second=0, microsecond=0))
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
            moved = replay(conn).delta
            held = {a: b.available + b.in_order for a, b in account.items()}
            conn.executemany(
                "INSERT INTO account_baseline (asset, amount, at) VALUES (?, ?, ?)",
                [
                    (a, str(held.get(a, Decimal(0)) - moved.get(a, Decimal(0))), now)
                    for a in sorted(set(held) | set(moved))
                ],
            )


def report(conn: sqlite3.Connection, cfg, *, prices: dict[str, Price] | None = None, period: str | None = None) -> dict:
    """Everything `tinybot pnl` shows, as a JSON-ready dict (amounts as exact decimal strings)."""
    if period is not None and period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}")
    prices = prices if prices is not None else last_prices(conn, cfg)
    rp = replay(conn, period)
    llm_total, llm_by = llm_cost(conn, period)
    markets, positions, unpriced = [], [], []
    realised = unrealised = fees = hold = Decimal(0)
    held_for_stranded: dict[str, Decimal] = {}
    for market, b in sorted(rp.books.items()):
        p = prices.get(market)
        value = b.base * p.bid if p else None
        unr = value - b.cost if value is not None else None
        hold_m = b.bought_base * p.bid - b.bought_cost if p else None
        realised += b.realised
        fees += b.fees
        if b.base > 0 and p is None:
            unpriced.append(market)
        unrealised += unr or Decimal(0)
        hold += hold_m or Decimal(0)
        markets.append(
            {
                "market": market,
                "realised_eur": eur(b.realised),
                "unrealised_eur": eur(unr),
                "fees_eur": eur(b.fees),
                "hold_eur": eur(hold_m),
                "trades": b.trades,
            }
        )
        if b.base > 0:
            held_for_stranded[market] = b.base
            positions.append(
                {
                    "market": market,
                    "base": plain(b.base),
                    "cost_eur": eur(b.cost),
                    "value_eur": eur(value),
                    "bid": None if p is None else plain(p.bid),
                    "sellable": None if value is None else value >= sizing.EXCHANGE_MINIMUM_EUR,
                }
            )
    stranded = sizing.stranded(cfg, held_for_stranded, prices)
    net = realised + unrealised - llm_total
    out = {
        "now": clock.now_iso(),
        "mode": cfg.mode,
        "realised_eur": eur(realised),
        "unrealised_eur": eur(unrealised),
        "fees_eur": eur(fees),
        "llm_cost_eur": eur(llm_total),
        "net_eur": eur(net),
        "hold_eur": eur(hold),
        "vs_hold_eur": eur(net - hold),
        "external_eur": eur(rp.external_eur),
        "prices_at": max((p.at for p in prices.values() if p.at), default=None),
        "unpriced": unpriced,
        "markets": markets,
        "positions": positions,
        "stranded": [s.as_dict() for s in stranded],
        "drift": drift(conn, cfg, rp),
    }
    if period:
        keys = sorted(set(rp.buckets) | set(llm_by))
        out["period"] = period
        out["periods"] = [
            {
                "period": k,
                "realised_eur": eur(rp.buckets.get(k, _Bucket()).realised),
                "fees_eur": eur(rp.buckets.get(k, _Bucket()).fees),
                "llm_cost_eur": eur(llm_by.get(k, Decimal(0))),
                "net_realised_eur": eur(rp.buckets.get(k, _Bucket()).realised - llm_by.get(k, Decimal(0))),
                "trades": rp.buckets.get(k, _Bucket()).trades,
            }
            for k in keys
        ]
    return out


def drift(conn: sqlite3.Connection, cfg, rp: _Replay | None = None) -> dict:
    """Per asset: the exchange's balance minus what tinybot's ledger says the account should hold."""
    rp = rp or replay(conn)
    held, at = balances(conn, cfg)
    base = baseline(conn, cfg)
    if held is None or base is None:
        return {"at": None, "assets": {}, "note": "no balance snapshot yet: run a tick (`tinybot run --once`)"}
    assets = {}
    for a in sorted(set(held) | set(base) | set(rp.delta)):
        d = held.get(a, Decimal(0)) - (base.get(a, Decimal(0)) + rp.delta.get(a, Decimal(0)))
        assets[a] = eur(d) if a == "EUR" else plain(d)
    return {"at": at, "assets": assets, "note": ""}
