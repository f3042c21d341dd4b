"""What is already committed, as the guards count it: the latest trade on a market, EUR spent today, exposure,
sells not yet filled.  `tinybot status` and the advisors' snapshot read the same figures.

An execution counts from ``submitting`` (its row is committed before its order is sent), so two proposals
racing cannot both see room under a cap or both be first after a cooldown: the guards ask these inside the
send transaction (tinybot.trade.guards).  Orders reconcile booked without an execution of their own count too.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from decimal import Decimal

from ..base import clock
from .book.steps import default_book

# States whose order exists (or may exist) on the exchange: these count
# against cooldown, anti-flip and the caps from the moment of `submitting`.
IN_FLIGHT = ("submitting", "submitted", "unknown")
COUNTED = IN_FLIGHT + ("filled",)


def latest_trade(
    conn: sqlite3.Connection, market: str, side: str | None, since: datetime, exclude_id: int | None
) -> sqlite3.Row | None:
    """Most recent counted execution on ``market`` after `since` (a window ends at since + window exactly), other
    than ``exclude_id``; or an order reconcile booked without one, if that is more recent."""
    sql = (
        "SELECT id, side, submitting_at FROM trade_executions"
        " WHERE market = ? AND submitting_at > ? AND +state IN (%s)" % ",".join("?" * len(COUNTED))
    )
    args: list = [market, clock.to_iso(since), *COUNTED]
    if side:
        sql += " AND side = ?"
        args.append(side)
    if exclude_id is not None:
        sql += " AND id != ?"
        args.append(exclude_id)
    ours = conn.execute(sql + " ORDER BY submitting_at DESC LIMIT 1", args).fetchone()
    # orders reconcile found and booked without an execution of their own (say, made after a backup that a
    # restore went back to) traded all the same: they count too
    sql = (
        "SELECT 'order ' || order_id AS id, side, created_at AS submitting_at FROM unaccounted_orders"
        " WHERE market = ? AND created_at > ?"
    )
    args = [market, clock.to_iso(since)]
    if side:
        sql += " AND side = ?"
        args.append(side)
    found = conn.execute(sql + " ORDER BY created_at DESC LIMIT 1", args).fetchone()
    if ours is None or (found is not None and found["submitting_at"] > ours["submitting_at"]):
        return found
    return ours


def spent_today(conn: sqlite3.Connection, now: datetime, exclude_id: int | None = None, tz=None) -> Decimal:
    """EUR committed to buys today (in ``tz``, the config's timezone): in flight at the most they can spend,
    done at what filled plus the fee."""
    rows = conn.execute(
        "SELECT id, state, notional_eur, filled_quote, fee_paid FROM trade_executions"
        # "+state": never walk the state index (it holds every filled execution ever); today's rows come
        # from trade_executions_time, so this reads one day, however long the history
        " WHERE side = 'buy' AND submitting_at >= ? AND +state IN (%s)" % ",".join("?" * len(COUNTED + ("canceled",))),
        (clock.to_iso(clock.day_start(now, tz)), *COUNTED, "canceled"),
    ).fetchall()
    total = Decimal(0)
    for r in rows:
        if r["id"] == exclude_id:
            continue
        if r["state"] in IN_FLIGHT:
            total += Decimal(r["notional_eur"] or 0)
        else:
            total += Decimal(r["filled_quote"]) + Decimal(r["fee_paid"])
    return total + unaccounted_spent(conn, now, tz)


def unaccounted_spent(conn: sqlite3.Connection, now: datetime, tz=None) -> Decimal:
    """EUR spent today by buy fills that no execution's own order accounts for (reconcile's surprises)."""
    total = Decimal(0)
    for r in conn.execute(
        "SELECT h.amount, h.price, h.fee, h.fee_currency FROM trade_history h"
        " LEFT JOIN trade_executions e ON e.id = h.execution_id"
        " WHERE h.executed_at >= ? AND h.side = 'buy' AND h.external = 0"
        " AND (e.id IS NULL OR e.exchange_order_id IS NULL OR h.order_id != e.exchange_order_id)",
        (clock.to_iso(clock.day_start(now, tz)),),
    ):
        total += Decimal(r["amount"]) * Decimal(r["price"]) + (Decimal(r["fee"]) if r["fee_currency"] == "EUR" else 0)
    return total


def exposure(conn: sqlite3.Connection, exclude_id: int | None = None) -> Decimal:
    """EUR at cost in open positions, plus in-flight buys not yet filled."""
    total = sum((Decimal(r["cost_eur"]) for r in conn.execute("SELECT cost_eur FROM positions")), Decimal(0))
    for r in conn.execute(
        "SELECT id, notional_eur, filled_quote FROM trade_executions WHERE side = 'buy' AND state IN (%s)"
        % ",".join("?" * len(IN_FLIGHT)),
        IN_FLIGHT,
    ):
        if r["id"] != exclude_id:
            total += max(Decimal(r["notional_eur"] or 0) - Decimal(r["filled_quote"]), Decimal(0))
    return total


def selling_in_flight(
    conn: sqlite3.Connection,
    market: str,
    exclude_id: int | None,
    bid: Decimal | None = None,
    book_name: str | None = None,
    *,
    external: bool = False,
) -> Decimal:
    """Base amount of sells on ``market`` in flight and not yet filled: tinybot's own (of one book, or of all), or
    with ``external`` the --external ones.

    A sell by EUR sends a base amount fixed at commit (guards.sell_amount); one from before that (no amount) is counted
    at ``bid``, or, without a price, as everything its book holds.
    """
    from .ledger import position_base

    sql = (
        "SELECT e.id, e.amount, e.amount_quote, e.filled_amount, p.book, p.source, p.external FROM trade_executions e"
        " JOIN proposals p ON p.id = e.proposal_id WHERE e.market = ? AND e.side = 'sell' AND e.external = ?"
        " AND e.state IN (%s)" % ",".join("?" * len(IN_FLIGHT))
    )
    total = Decimal(0)
    for r in conn.execute(sql, (market, int(external), *IN_FLIGHT)):
        name = r["book"] or default_book(r["source"], bool(r["external"]))
        if r["id"] == exclude_id or (book_name is not None and name != book_name):
            continue
        if r["amount"] is not None:
            asked = Decimal(r["amount"])
        elif bid:
            asked = Decimal(r["amount_quote"]) / bid
        else:
            asked = position_base(conn, market, name)
        total += max(asked - Decimal(r["filled_amount"]), Decimal(0))
    return total
