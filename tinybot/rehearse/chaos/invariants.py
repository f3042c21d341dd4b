"""The invariants, checked against the simulator's own record of orders and fills.

Everything here reads: the bot's database (one connection) and what the
simulator says it received (``sim.orders()``, ``sim.trades()``,
``sim.balance()``).  Each check returns human-readable violations; an empty
list means the invariant held.

A restore from backup makes the database forget what happened after the
backup.  The harness keeps what it forgot (``history``: every execution row
the database had just before each restore, by clientOrderId, with the
harness's own number for its proposal, since proposal ids are reused after
a restore), so an exchange order is still traced to the proposal that made
it.  Such an order must have been *booked* by reconcile's surprise scan
(``unaccounted_orders`` and its fills in ``trade_history``); nothing else
may be unaccounted for.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from tinybot.base import clock, sizing
from tinybot.trade import reconcile
from tinybot.base.config import Config

ON_EXCHANGE = ("submitted", "filled", "canceled")
# said of a violation whose earlier order is one a restore made the database forget (no row, or a row put
# back as 'claimed' that lost its submitting_at), found and booked by reconcile afterwards
RESTORED = " (the earlier order was made after the backup a restore went back to; reconcile booked it since)"
RESTORED_CLAIMED = (
    " (the difference is exactly the orders found for rows a restore put back as 'claimed': their"
    " submitting_at stays NULL)"
)


@dataclass
class Findings:
    orders: int = 0
    fills: int = 0
    duplicates: int = 0  # exchange orders beyond the first for one proposal
    lost: int = 0  # exchange orders tinybot has no row for, or a row that says they do not exist
    late: int = 0  # orders that reached the exchange after reconcile could have called them absent
    surprises: int = 0  # orders a restore made the DB forget, found and booked by reconcile's surprise scan
    dca_buys: int = 0  # the DCA advisor's orders on the exchange
    violations: list[str] = field(default_factory=list)


def _ms(iso: str | None) -> int | None:
    return None if iso is None else clock.to_ms(clock.from_iso(iso))


def check(
    conn: sqlite3.Connection,
    cfg: Config,
    orders: list[dict],
    trades: list[dict],
    balances: dict[str, Decimal],
    start: dict[str, Decimal],
    *,
    history: dict[str, dict] | None = None,
    keys: dict[int, int] | None = None,
    dca: tuple[str, timedelta, set[str]] | None = None,
) -> Findings:
    """The invariants.  Call after the final reconcile, once every window has passed.

    ``history``: execution rows (dicts with a ``proposal_key``) the database
    had before a restore, by clientOrderId; ``keys``: the database's proposal
    ids → the same proposal numbers (identity when there was no restore);
    ``dca``: (its market, its period, the clientOrderIds of its executions).
    Invariants 6 (an id never handed out twice) and 7 (LLM spend after a
    restore ≥ before it) are checked by the harness as they happen.
    """
    f = Findings(orders=len(orders), fills=len(trades))
    rows = {r["client_order_id"]: r for r in conn.execute("SELECT * FROM trade_executions")}
    unaccounted = {(r["market"], r["order_id"]): r for r in conn.execute("SELECT * FROM unaccounted_orders")}
    forgotten = {cid: h for cid, h in (history or {}).items() if cid not in rows}
    matched = _orders_vs_rows(f, cfg, orders, rows, forgotten, unaccounted, keys, history or {})
    _surprises(f, conn, orders, forgotten, unaccounted)
    _fills(f, conn, trades)
    _guards(f, cfg, matched)
    _cap_counts(f, conn, cfg, matched)
    _db_health(f, conn, cfg, balances, start, orders, unaccounted)
    if dca is not None:
        _dca(f, cfg, orders, *dca)
    return f


def _dca(f: Findings, cfg: Config, orders: list[dict], market: str, every: timedelta, cids: set[str]) -> None:
    """(8) At most one DCA buy per period: each of the DCA advisor's orders at least ``every`` after the one
    before it, whether the database still has its proposal or a restore made it forget (and reconcile booked
    it).  An order lands at most 2 access windows + grace after it was decided: that much is allowed."""
    buys = sorted(
        (o for o in orders if o.get("clientOrderId") in cids and o["side"] == "buy" and o["market"] == market),
        key=lambda o: o["created"],
    )
    f.dca_buys = len(buys)
    slack = 2 * cfg.exchange.access_window + cfg.exchange.reconcile_grace
    for a, b in zip(buys, buys[1:]):
        gap = timedelta(milliseconds=b["created"] - a["created"])
        if gap < every - slack:
            f.violations.append(
                f"(8) DCA bought {market} twice in one period: orders {a['orderId']} and {b['orderId']}"
                f" {gap} apart; dca.every is {every}"
            )


def _orders_vs_rows(  # noqa: C901  (one invariant, case by case)
    f: Findings,
    cfg: Config,
    orders: list[dict],
    rows: dict,
    forgotten: dict[str, dict],
    unaccounted: dict,
    keys: dict[int, int] | None,
    history: dict[str, dict],
) -> list[tuple[dict, sqlite3.Row | dict]]:
    """(1) one order per proposal and per clientOrderId, (2) every order accounted for and no row left unknown."""
    per_proposal: dict[int, list[str]] = defaultdict(list)
    per_cid: dict[str, list[str]] = defaultdict(list)
    matched = []
    for o in orders:
        cid = o.get("clientOrderId")
        if cid:
            per_cid[cid].append(o["orderId"])
        row = rows.get(cid) if cid else None
        if row is None and cid in forgotten:  # made after the backup a restore went back to
            h = forgotten[cid] | {"_restored": "forgotten"}
            per_proposal[h["proposal_key"]].append(o["orderId"])
            matched.append((o, h))
            if (o["market"], o["orderId"]) in unaccounted:
                f.surprises += 1
            else:
                f.lost += 1
                f.violations.append(
                    f"(2) exchange order {o['orderId']} (execution {h['id']} before the restore,"
                    f" clientOrderId {cid}) is unknown to the restored database and was never"
                    " booked by reconcile's surprise scan"
                )
            _timing(f, cfg, o, h)
            continue
        if row is None:
            f.lost += 1
            f.violations.append(f"(2) exchange order {o['orderId']} (clientOrderId {cid}) has no execution row")
            continue
        per_proposal[
            keys.get(row["proposal_id"], -row["proposal_id"]) if keys is not None else row["proposal_id"]
        ].append(o["orderId"])
        if row["submitting_at"] is None and history.get(cid, {}).get("submitting_at"):
            # restored from a backup that had it 'claimed': the DB no longer knows when it was decided, the
            # harness does (the guards' promises are about that moment)
            row = dict(row) | {"submitting_at": history[cid]["submitting_at"], "_restored": "claimed"}
        matched.append((o, row))
        if row["state"] not in ON_EXCHANGE:
            f.lost += 1
            f.violations.append(
                f"(2) exchange order {o['orderId']} is {o['status']} but execution {row['id']}"
                f" says {row['state']} ({row['reason']})"
            )
        elif row["exchange_order_id"] != o["orderId"]:
            f.violations.append(
                f"(2) execution {row['id']} points at order {row['exchange_order_id']},"
                f" the exchange has {o['orderId']} for its clientOrderId"
            )
        elif o["status"] == "filled" and row["state"] != "filled":
            f.violations.append(f"(2) order {o['orderId']} is filled, execution {row['id']} says {row['state']}")
        _timing(f, cfg, o, row)
    for pid, ids in per_proposal.items():
        if len(ids) > 1:
            f.duplicates += len(ids) - 1
            f.violations.append(f"(1) proposal {pid} has {len(ids)} exchange orders: {', '.join(ids)}")
    for cid, ids in per_cid.items():
        if len(ids) > 1:
            f.violations.append(f"(1) clientOrderId {cid} has {len(ids)} exchange orders: {', '.join(ids)}")
    on_exchange = {o.get("clientOrderId") for o in orders}
    for cid, row in rows.items():
        if row["state"] in ("submitting", "unknown"):
            f.violations.append(f"(2) execution {row['id']} is still {row['state']} after its window ({row['reason']})")
        elif row["state"] in ON_EXCHANGE and cid not in on_exchange:
            f.violations.append(
                f"(2) execution {row['id']} says {row['state']} but the exchange has no order with clientOrderId {cid}"
            )
    return matched


def _timing(f: Findings, cfg: Config, o: dict, row) -> None:
    """Nothing is sent that was not first written; and count orders that landed late."""
    created, sent = o["created"], _ms(row["submitting_at"])
    if sent is None or created < sent - 1:
        f.violations.append(
            f"(2) order {o['orderId']} reached the exchange at {created}, before execution"
            f" {row['id']} committed 'submitting' ({row['submitting_at']})"
        )
    elif created > clock.to_ms(reconcile.absent_after(row, cfg.exchange.reconcile_grace)):
        f.late += 1


def _surprises(
    f: Findings, conn: sqlite3.Connection, orders: list[dict], forgotten: dict[str, dict], unaccounted: dict
) -> None:
    """(2) the only orders reconcile may book as unaccounted are those a restore made the DB forget.

    Anything else it had to book (a second order under one clientOrderId, an
    order for a row recorded as failed or never sent) means the database was
    wrong about the exchange for a while: the caps and positions undercounted.
    """
    for (market, oid), u in unaccounted.items():
        if u["client_order_id"] not in forgotten or u["execution_id"] is not None:
            f.violations.append(f"(2) reconcile had to book order {oid} on {market} as unaccounted: {u['detail']}")
    expected = {oid for (_, oid), u in unaccounted.items() if u["client_order_id"] in forgotten}
    for (detail,) in conn.execute("SELECT detail FROM events WHERE kind = 'surprise_order'"):
        if not any(f"order {oid} " in detail for oid in expected):
            f.violations.append(f"(2) surprise_order event not explained by a restore: {detail}")


def _fills(f: Findings, conn: sqlite3.Connection, trades: list[dict]) -> None:
    """(3) trade_history is exactly the exchange's fills: none missing, none extra, same numbers.

    Fills are keyed by (market, trade id): Bitvavo's ids are unique per market.
    """
    ours = {(r["market"], r["trade_id"]): r for r in conn.execute("SELECT * FROM trade_history")}
    theirs = {(t["market"], t["id"]): t for t in trades}
    if len(theirs) != len(trades):
        f.violations.append("(3) the simulator reports a trade id twice in one market")
    for tid in theirs.keys() - ours.keys():
        f.violations.append(f"(3) fill {tid} (order {theirs[tid]['orderId']}) is missing from trade_history")
    for tid in ours.keys() - theirs.keys():
        f.violations.append(f"(3) trade_history has fill {tid} that the exchange does not")
    for tid in ours.keys() & theirs.keys():
        a, b = ours[tid], theirs[tid]
        same = (
            a["order_id"] == b["orderId"]
            and a["side"] == b["side"]
            and a["market"] == b["market"]
            and Decimal(a["amount"]) == Decimal(b["amount"])
            and Decimal(a["price"]) == Decimal(b["price"])
            and Decimal(a["fee"]) == Decimal(b["fee"])
        )
        if not same:
            f.violations.append(f"(3) fill {tid} differs: ours {dict(a)} vs exchange {b}")


def _spend(o: dict) -> Decimal:
    """EUR an exchange buy order took, the fee included.

    What filled plus the fee (``filledAmountQuote + feePaid``), or the whole
    ``amountQuote`` when that is more: by amountQuote the exchange debits
    exactly that amount and keeps the sub-cent rest, so this is the stricter
    of the two and a cap is checked against what the account really lost.
    """
    paid = Decimal(o["filledAmountQuote"]) + Decimal(o["feePaid"])
    if o.get("amountQuote") is not None:
        return max(Decimal(o["amountQuote"]), paid)
    return paid


def _guards(f: Findings, cfg: Config, matched: list[tuple[dict, sqlite3.Row | dict]]) -> None:
    """(4) what the exchange received never breaks a cap, the cooldown, anti-flip or the €5 rule.

    Orders are taken in the order tinybot decided them (``submitting_at``,
    serialised by BEGIN IMMEDIATE), which is what the guards promise about.
    Caps count the EUR each buy took, fee included (``_spend``).  Positions
    are replayed from the exchange's fills as ``ledger.py`` keeps them: a
    sell never takes more than tinybot's own position and never leaves a
    rest worth less than the exchange minimum at its price; a buy never
    leaves a position worth less than the minimum at its price.
    """
    risk = cfg.risk
    # a row that never committed 'submitting' yet has an order is reported by (2); here it sorts at its order
    decided = sorted(matched, key=lambda m: m[1]["submitting_at"] or clock.to_iso(clock.from_ms(m[0]["created"])))
    daily: dict[str, Decimal] = defaultdict(Decimal)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    base: dict[str, Decimal] = defaultdict(Decimal)
    last: dict[tuple[str, str | None], tuple[int, str, bool]] = {}
    for o, row in decided:
        at = _ms(row["submitting_at"]) if row["submitting_at"] else o["created"]
        market, side = o["market"], o["side"]
        for key, window, name in (
            ((market, None), risk.cooldown, "cooldown"),
            ((market, "buy" if side == "sell" else "sell"), risk.anti_flip, "anti-flip"),
        ):
            prev = last.get(key)
            gap = timedelta(milliseconds=at - prev[0]) if prev else None
            if window > timedelta(0) and gap is not None and gap < window:
                f.violations.append(
                    f"(4) {name}: order {o['orderId']} ({side} {market}) decided {gap} after"
                    f" order {prev[1]}; {name} is {window}" + (RESTORED if prev[2] else "")
                )
        if side == "buy":
            spend = _spend(o)
            if spend > risk.max_trade_eur:
                f.violations.append(f"(4) max_trade: order {o['orderId']} spent €{spend} > €{risk.max_trade_eur}")
            day = clock.to_iso(clock.day_start(clock.from_ms(at), cfg.tz))  # the config's day (UTC unless set)
            daily[day] += spend
            if daily[day] > risk.max_daily_eur:
                f.violations.append(
                    f"(4) daily cap: €{daily[day]} of buys on {day} > €{risk.max_daily_eur} (order {o['orderId']})"
                )
            if sum(cost.values()) + spend > risk.max_exposure_eur:
                f.violations.append(
                    f"(4) exposure: €{sum(cost.values()) + spend} at cost after order"
                    f" {o['orderId']} > €{risk.max_exposure_eur}"
                )
        sold = sum((Decimal(x["amount"]) for x in o["fills"]), Decimal(0)) if side == "sell" else Decimal(0)
        if sold > base[market]:
            f.violations.append(
                f"(4) own position: sell {o['orderId']} on {market} sold {sold}, tinybot held {base[market]}"
            )
        price = Decimal(o["fills"][-1]["price"]) if o["fills"] else None
        for fill in o["fills"]:  # the position at cost, as ledger keeps it
            amount, fill_price, fee = Decimal(fill["amount"]), Decimal(fill["price"]), Decimal(fill["fee"])
            if side == "buy":
                base[market] += amount
                cost[market] += amount * fill_price + fee
            else:
                share = min(amount / base[market], Decimal(1)) if base[market] > 0 else Decimal(0)
                cost[market] -= cost[market] * share
                base[market] -= amount
                if base[market] <= 0:
                    base[market], cost[market] = Decimal(0), Decimal(0)
        if price is not None and 0 < base[market] * price < sizing.EXCHANGE_MINIMUM_EUR:
            what = "leaves dust" if side == "sell" else "strands the position"
            f.violations.append(
                f"(4) €5 rule: {side} {o['orderId']} on {market} {what}: {base[market]} worth"
                f" €{base[market] * price:.2f} at {price}, under the €{sizing.EXCHANGE_MINIMUM_EUR}"
                " minimum"
            )
        restored = isinstance(row, dict) and bool(row.get("_restored"))  # forgotten, or put back as claimed
        last[(market, None)] = last[(market, side)] = (at, o["orderId"], restored)


def _cap_counts(
    f: Findings, conn: sqlite3.Connection, cfg: Config, matched: list[tuple[dict, sqlite3.Row | dict]]
) -> None:
    """(4) the daily cap counts every buy the exchange made today, fee included.

    Once nothing is in flight, ``committed.spent_today`` (what the daily cap
    adds the next buy to) must be exactly what the exchange's buys decided
    today took (``filledAmountQuote + feePaid``), orders booked as
    unaccounted included.  Less means a buy escaped the cap.
    """
    from tinybot.trade import committed

    now = clock.now()
    today = clock.to_ms(clock.day_start(now, cfg.tz))  # the config's day (UTC unless [timezone] is set)
    theirs = restored = Decimal(0)
    for o, row in matched:
        at = _ms(row["submitting_at"]) if row["submitting_at"] else o["created"]
        if o["side"] == "buy" and at >= today:
            took = Decimal(o["filledAmountQuote"]) + Decimal(o["feePaid"])
            theirs += took
            if isinstance(row, dict) and row.get("_restored") == "claimed":
                restored += took
    ours = committed.spent_today(conn, now, tz=cfg.tz)
    if ours != theirs:
        f.violations.append(
            f"(4) the daily cap counts €{ours} of buys today (committed.spent_today); the exchange's"
            f" buys decided today took €{theirs} (fill + fee)"
            + (RESTORED_CLAIMED if restored and ours + restored == theirs else "")
        )


def _db_health(
    f: Findings,
    conn: sqlite3.Connection,
    cfg: Config,
    balances: dict[str, Decimal],
    start: dict[str, Decimal],
    orders: list[dict],
    unaccounted: dict,
) -> None:
    """(5) the file is sound, and the DB's holdings are the exchange's holdings.

    Base assets: ``positions.base`` (moved only by recorded fills) must equal
    the account's balance minus what it started with.  EUR: the start minus
    every recorded buy (the EUR amount asked for, which the exchange debits
    exactly, or fill + fee) plus every recorded sell (fill − fee) must equal
    the account's EUR.  Orders booked as unaccounted count by their fills in
    trade_history (all the DB knows of them); for those bought by
    amountQuote the exchange's sub-cent rest (amountQuote − fill − fee) is
    taken from the exchange's record, the only place it is written.
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
    own = {
        r[0] for r in conn.execute("SELECT exchange_order_id FROM trade_executions WHERE exchange_order_id IS NOT NULL")
    }
    booked = {oid for (_, oid) in unaccounted} - own
    for r in conn.execute("SELECT * FROM trade_history"):
        if r["order_id"] in booked:
            quote, fee = Decimal(r["amount"]) * Decimal(r["price"]), Decimal(r["fee"])
            eur += -(quote + fee) if r["side"] == "buy" else quote - fee
    for o in orders:
        if o["orderId"] in booked and o["side"] == "buy" and o.get("amountQuote") is not None:
            eur -= Decimal(o["amountQuote"]) - Decimal(o["filledAmountQuote"]) - Decimal(o["feePaid"])
    if eur != balances.get("EUR", Decimal(0)):
        f.violations.append(
            f"(5) EUR: the DB's executions leave €{eur}, the exchange account has €{balances.get('EUR', Decimal(0))}"
        )
