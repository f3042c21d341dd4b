"""Fills and positions: what the exchange says happened, written once.

``apply_order`` is called by the executor (right after an accepted send) and
by reconcile (later lookups) inside their own transaction.  A fill is
inserted with its exchange trade id under a UNIQUE constraint; only a fill
that was actually inserted moves the position, so seeing the same order
twice changes nothing.
"""
from __future__ import annotations

import sqlite3
from decimal import Decimal

from . import clock
from .exchange.base import FINAL_STATUSES, Fill, Order

FINAL_STATES = ("filled", "canceled", "failed", "blocked")


def state_for(order: Order) -> str:
    if order.status == "filled":
        return "filled"
    if order.status in FINAL_STATUSES:
        # canceled / expired / rejected: final either way; a partly filled
        # canceled order keeps its fills.
        return "canceled"
    return "submitted"


def apply_order(conn: sqlite3.Connection, execution: sqlite3.Row, exchange: str, order: Order,
                *, from_states: tuple[str, ...]) -> bool:
    """Move the execution to the order's state and record its fills.

    Only moves the row if it is still in one of ``from_states`` (compare-and-
    set: a racing reconcile or executor that got there first wins, and this
    call still records any fills it has not seen).  Returns True if the row
    changed state.
    """
    for f in order.fills:
        record_fill(conn, execution["id"], exchange, f, execution["client_order_id"])
    new_state = state_for(order)
    now = clock.now_iso()
    cur = conn.execute(
        "UPDATE trade_executions SET state = ?, exchange_order_id = COALESCE(exchange_order_id, ?),"
        " filled_amount = ?, filled_quote = ?, fee_paid = ?, fee_currency = COALESCE(?, fee_currency),"
        " updated_at = ?, resolved_at = CASE WHEN ? IN ('filled', 'canceled') THEN ? ELSE resolved_at END,"
        " reason = CASE WHEN state = 'unknown' THEN reason || ' → found on the exchange' ELSE reason END"
        " WHERE id = ? AND state IN (%s)" % ",".join("?" * len(from_states)),
        (new_state, order.order_id, str(order.filled_amount), str(order.filled_amount_quote), str(order.fee_paid),
         order.fee_currency, now, new_state, now, execution["id"], *from_states),
    )
    return cur.rowcount == 1


def record_fill(conn: sqlite3.Connection, execution_id: int | None, exchange: str, f: Fill,
                client_order_id: str | None) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO trade_history (execution_id, exchange, trade_id, order_id, client_order_id, market,"
        " side, amount, price, fee, fee_currency, executed_at, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (execution_id, exchange, f.trade_id, f.order_id, client_order_id, f.market, f.side, str(f.amount),
         str(f.price), str(f.fee), f.fee_currency, clock.to_iso(clock.from_ms(f.timestamp_ms)), clock.now_iso()),
    )
    if cur.rowcount != 1:
        return False
    _move_position(conn, f)
    return True


def _move_position(conn: sqlite3.Connection, f: Fill) -> None:
    row = conn.execute("SELECT base, cost_eur, realised_eur FROM positions WHERE market = ?", (f.market,)).fetchone()
    base, cost, realised = (
        (Decimal(row["base"]), Decimal(row["cost_eur"]), Decimal(row["realised_eur"])) if row
        else (Decimal(0), Decimal(0), Decimal(0))
    )
    quote = f.amount * f.price
    asset = f.market.split("-")[0]
    fee_eur = f.fee if f.fee_currency == "EUR" else Decimal(0)
    if f.side == "buy":
        base += f.amount - (f.fee if f.fee_currency == asset else Decimal(0))
        cost += quote + fee_eur
    else:
        share = min(f.amount / base, Decimal(1)) if base > 0 else Decimal(0)
        removed = cost * share
        realised += quote - fee_eur - removed
        cost -= removed
        base -= f.amount
        if base <= 0:
            base, cost = Decimal(0), Decimal(0)
    conn.execute(
        "INSERT INTO positions (market, base, cost_eur, realised_eur, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (market) DO UPDATE SET base = excluded.base, cost_eur = excluded.cost_eur,"
        " realised_eur = excluded.realised_eur, updated_at = excluded.updated_at",
        (f.market, str(base), str(cost), str(realised), clock.now_iso()),
    )


def event(conn: sqlite3.Connection, kind: str, detail: str, *, severity: str = "info",
          execution_id: int | None = None) -> None:
    conn.execute(
        "INSERT INTO events (at, kind, severity, execution_id, detail) VALUES (?, ?, ?, ?, ?)",
        (clock.now_iso(), kind, severity, execution_id, detail),
    )
