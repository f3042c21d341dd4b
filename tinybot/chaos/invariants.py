"""The invariants, checked against the simulator's own record of orders and fills.

Everything here reads: the bot's database (one connection) and what the
simulator says it received (``sim.orders()``, ``sim.trades()``,
``sim.balance()``).  Each check returns human-readable violations; an empty
list means the invariant held.
"""
from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from tinybot import clock, reconcile
from tinybot.config import Config

ON_EXCHANGE = ("submitted", "filled", "canceled")


@dataclass
class Findings:
    orders: int = 0
    fills: int = 0
    duplicates: int = 0  # exchange orders beyond the first for one proposal
    lost: int = 0  # exchange orders tinybot has no row for, or a row that says they do not exist
    late: int = 0  # orders that reached the exchange after reconcile could have called them absent
    violations: list[str] = field(default_factory=list)


def _ms(iso: str | None) -> int | None:
    return None if iso is None else clock.to_ms(clock.from_iso(iso))


def check(conn: sqlite3.Connection, cfg: Config, orders: list[dict], trades: list[dict],
          balances: dict[str, Decimal], start: dict[str, Decimal]) -> Findings:
    """All five invariants.  Call after the final reconcile, once every window has passed."""
    f = Findings(orders=len(orders), fills=len(trades))
    rows = {r["client_order_id"]: r for r in conn.execute("SELECT * FROM trade_executions")}
    matched = _orders_vs_rows(f, cfg, orders, rows)
    _fills(f, conn, trades)
    _guards(f, cfg, matched)
    _db_health(f, conn, cfg, balances, start)
    return f


def _orders_vs_rows(f: Findings, cfg: Config, orders: list[dict], rows: dict) -> list[tuple[dict, sqlite3.Row]]:
    """(1) one order per proposal, (2) a row for every order and no row left unknown."""
    per_proposal: dict[int, list[str]] = defaultdict(list)
    matched = []
    for o in orders:
        cid = o.get("clientOrderId")
        row = rows.get(cid) if cid else None
        if row is None:
            f.lost += 1
            f.violations.append(f"(2) exchange order {o['orderId']} (clientOrderId {cid}) has no execution row")
            continue
        per_proposal[row["proposal_id"]].append(o["orderId"])
        matched.append((o, row))
        if row["state"] not in ON_EXCHANGE:
            f.lost += 1
            f.violations.append(f"(2) exchange order {o['orderId']} is {o['status']} but execution {row['id']}"
                                f" says {row['state']} ({row['reason']})")
        elif row["exchange_order_id"] != o["orderId"]:
            f.violations.append(f"(2) execution {row['id']} points at order {row['exchange_order_id']},"
                                f" the exchange has {o['orderId']} for its clientOrderId")
        elif o["status"] == "filled" and row["state"] != "filled":
            f.violations.append(f"(2) order {o['orderId']} is filled, execution {row['id']} says {row['state']}")
        created, sent = o["created"], _ms(row["submitting_at"])
        if sent is None or created < sent - 1:
            f.violations.append(f"(2) order {o['orderId']} reached the exchange at {created}, before execution"
                                f" {row['id']} committed 'submitting' ({row['submitting_at']})")
        elif created > clock.to_ms(reconcile.absent_after(row, cfg.exchange.reconcile_grace)):
            f.late += 1
    for pid, ids in per_proposal.items():
        if len(ids) > 1:
            f.duplicates += len(ids) - 1
            f.violations.append(f"(1) proposal {pid} has {len(ids)} exchange orders: {', '.join(ids)}")
    on_exchange = {o.get("clientOrderId") for o in orders}
    for cid, row in rows.items():
        if row["state"] in ("submitting", "unknown"):
            f.violations.append(f"(2) execution {row['id']} is still {row['state']} after its window"
                                f" ({row['reason']})")
        elif row["state"] in ON_EXCHANGE and cid not in on_exchange:
            f.violations.append(f"(2) execution {row['id']} says {row['state']} but the exchange has no order"
                                f" with clientOrderId {cid}")
    return matched


def _fills(f: Findings, conn: sqlite3.Connection, trades: list[dict]) -> None:
    """(3) trade_history is exactly the exchange's fills: none missing, none extra, same numbers."""
    ours = {r["trade_id"]: r for r in conn.execute("SELECT * FROM trade_history")}
    theirs = {t["id"]: t for t in trades}
    if len(theirs) != len(trades):
        f.violations.append("(3) the simulator reports a trade id twice")
    for tid in theirs.keys() - ours.keys():
        f.violations.append(f"(3) fill {tid} (order {theirs[tid]['orderId']}) is missing from trade_history")
    for tid in ours.keys() - theirs.keys():
        f.violations.append(f"(3) trade_history has fill {tid} that the exchange does not")
    for tid in ours.keys() & theirs.keys():
        a, b = ours[tid], theirs[tid]
        same = (a["order_id"] == b["orderId"] and a["side"] == b["side"] and a["market"] == b["market"]
                and Decimal(a["amount"]) == Decimal(b["amount"]) and Decimal(a["price"]) == Decimal(b["price"])
                and Decimal(a["fee"]) == Decimal(b["fee"]))
        if not same:
            f.violations.append(f"(3) fill {tid} differs: ours {dict(a)} vs exchange {b}")


def _spend(o: dict) -> Decimal:
    """EUR an exchange buy order took: amountQuote exactly, or what filled plus the fee."""
    if o.get("amountQuote") is not None:
        return Decimal(o["amountQuote"])
    return Decimal(o["filledAmountQuote"]) + Decimal(o["feePaid"])


def _guards(f: Findings, cfg: Config, matched: list[tuple[dict, sqlite3.Row]]) -> None:
    """(4) what the exchange received never breaks a cap, the cooldown or anti-flip.

    Orders are taken in the order tinybot decided them (``submitting_at``,
    serialised by BEGIN IMMEDIATE), which is what the guards promise about.
    """
    risk = cfg.risk
    decided = sorted(matched, key=lambda m: m[1]["submitting_at"])
    daily: dict[str, Decimal] = defaultdict(Decimal)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    base: dict[str, Decimal] = defaultdict(Decimal)
    last: dict[tuple[str, str | None], tuple[int, str]] = {}
    for o, row in decided:
        at = _ms(row["submitting_at"])
        market, side = o["market"], o["side"]
        for key, window, name in (((market, None), risk.cooldown, "cooldown"),
                                  ((market, "buy" if side == "sell" else "sell"), risk.anti_flip, "anti-flip")):
            prev = last.get(key)
            gap = timedelta(milliseconds=at - prev[0]) if prev else None
            if window > timedelta(0) and gap is not None and gap < window:
                f.violations.append(f"(4) {name}: order {o['orderId']} ({side} {market}) decided {gap} after"
                                    f" order {prev[1]}; {name} is {window}")
        if side == "buy":
            spend = _spend(o)
            if spend > risk.max_trade_eur:
                f.violations.append(f"(4) max_trade: order {o['orderId']} spent €{spend} > €{risk.max_trade_eur}")
            day = row["submitting_at"][:10]
            daily[day] += spend
            if daily[day] > risk.max_daily_eur:
                f.violations.append(f"(4) daily cap: €{daily[day]} of buys on {day} > €{risk.max_daily_eur}"
                                    f" (order {o['orderId']})")
            if sum(cost.values()) + spend > risk.max_exposure_eur:
                f.violations.append(f"(4) exposure: €{sum(cost.values()) + spend} at cost after order"
                                    f" {o['orderId']} > €{risk.max_exposure_eur}")
        for fill in o["fills"]:  # the position at cost, as ledger keeps it
            amount, price, fee = Decimal(fill["amount"]), Decimal(fill["price"]), Decimal(fill["fee"])
            if side == "buy":
                base[market] += amount
                cost[market] += amount * price + fee
            else:
                share = min(amount / base[market], Decimal(1)) if base[market] > 0 else Decimal(0)
                cost[market] -= cost[market] * share
                base[market] -= amount
                if base[market] <= 0:
                    base[market], cost[market] = Decimal(0), Decimal(0)
        last[(market, None)] = last[(market, side)] = (at, o["orderId"])


def _db_health(f: Findings, conn: sqlite3.Connection, cfg: Config, balances: dict[str, Decimal],
               start: dict[str, Decimal]) -> None:
    """(5) the file is sound, and the DB's holdings are the exchange's holdings.

    Base assets: ``positions.base`` (moved only by recorded fills) must equal
    the account's balance minus what it started with.  EUR: the start minus
    every recorded buy (the EUR amount asked for, which the exchange debits
    exactly, or fill + fee) plus every recorded sell (fill − fee) must equal
    the account's EUR.
    """
    ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if ok != "ok":
        f.violations.append(f"(5) PRAGMA integrity_check: {ok}")
    fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    if fk:
        f.violations.append(f"(5) PRAGMA foreign_key_check: {len(fk)} rows")
    held = {r["market"].split("-")[0]: Decimal(r["base"]) for r in conn.execute("SELECT market, base FROM positions")}
    for asset in set(held) | {a for a in balances if a != "EUR"}:
        moved = balances.get(asset, Decimal(0)) - start.get(asset, Decimal(0))
        if held.get(asset, Decimal(0)) != moved:
            f.violations.append(f"(5) {asset}: positions say {held.get(asset, 0)}, the exchange account moved {moved}")
    eur = start.get("EUR", Decimal(0))
    for r in conn.execute("SELECT * FROM trade_executions WHERE state IN ('filled', 'canceled', 'submitted')"):
        filled, quote, fee = Decimal(r["filled_amount"]), Decimal(r["filled_quote"]), Decimal(r["fee_paid"])
        if r["side"] == "buy":
            eur -= Decimal(r["amount_quote"]) if r["amount_quote"] is not None and filled > 0 else quote + fee
        else:
            eur += quote - fee
    if eur != balances.get("EUR", Decimal(0)):
        f.violations.append(f"(5) EUR: the DB's executions leave €{eur}, the exchange account has"
                            f" €{balances.get('EUR', Decimal(0))}")
