"""Fills and positions: what the exchange says happened, written once.

``apply_order`` is called by the executor (right after an accepted send) and
by reconcile (later lookups) inside their own transaction.  A fill is keyed
by the exchange, its market and its trade id (Bitvavo's ids are unique per
market) under a UNIQUE constraint; only a fill that was actually inserted
moves the position, so seeing the same order twice changes nothing.  Two
exceptions, both loud rather than silent:

* a fill first seen unsettled (Bitvavo sends ``fee`` only once ``settled``)
  is corrected when it is seen settled: the fee, and the position with it;
* a fill whose key is already taken by a *different* fill (other order,
  side, amount or price) is never ignored quietly: it is an ``error`` event.

A fill of an ``external`` execution (coins tinybot did not buy, sold on
purpose with ``propose ... --external``) is stored, flagged, and moves no
position: it is not tinybot's profit or loss.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from . import clock
from .db import event  # noqa: F401  one home (tinybot.db); ledger.event stays importable
from .exchange.base import FINAL_STATUSES, Fill, Order

# Execution states no process moves again (retention may prune their guard decisions).
FINAL_STATES = ("filled", "canceled", "failed", "blocked")


def state_for(order: Order) -> str:
    if order.status == "filled":
        return "filled"
    if order.status in FINAL_STATUSES:
        # canceled / expired / rejected: final either way; a partly filled
        # canceled order keeps its fills.
        return "canceled"
    return "submitted"


def apply_order(
    conn: sqlite3.Connection, execution: sqlite3.Row, exchange: str, order: Order, *, from_states: tuple[str, ...]
) -> bool:
    """Move the execution to the order's state and record its fills.

    Only moves the row if it is still in one of ``from_states`` (compare-and-
    set: a racing reconcile or executor that got there first wins, and this
    call still records any fills it has not seen).  Returns True if the row
    changed state.
    """
    external = bool(execution["external"]) if "external" in execution.keys() else False
    for f in order.fills:
        record_fill(conn, execution["id"], exchange, f, execution["client_order_id"], external=external)
    new_state = state_for(order)
    now = clock.now_iso()
    created = clock.to_iso(clock.from_ms(order.created_ms))
    cur = conn.execute(
        "UPDATE trade_executions SET state = ?, exchange_order_id = COALESCE(exchange_order_id, ?),"
        " filled_amount = ?, filled_quote = ?, fee_paid = ?, fee_currency = COALESCE(?, fee_currency),"
        " updated_at = ?, resolved_at = CASE WHEN ? IN ('filled', 'canceled') THEN ? ELSE resolved_at END,"
        " reason = CASE WHEN state = 'unknown' THEN reason || ' → found on the exchange' ELSE reason END,"
        # an execution that never reached `submitting` here (found by the surprise scan), or one a restore put
        # in doubt (its submitting_at is only the claim: the order may have been sent later), takes its order's
        # creation time, so the daily cap, cooldown and anti-flip count it from when it really traded
        " submitting_at = CASE WHEN submitting_at IS NULL THEN ?"
        "   WHEN in_doubt_at IS NOT NULL AND submitting_at < ? THEN ? ELSE submitting_at END"
        " WHERE id = ? AND state IN (%s)" % ",".join("?" * len(from_states)),
        (
            new_state,
            order.order_id,
            f"{order.filled_amount:f}",
            f"{order.filled_amount_quote:f}",
            f"{order.fee_paid:f}",
            order.fee_currency,
            now,
            new_state,
            now,
            created,
            created,
            created,
            execution["id"],
            *from_states,
        ),
    )
    return cur.rowcount == 1


def record_fill(
    conn: sqlite3.Connection,
    execution_id: int | None,
    exchange: str,
    f: Fill,
    client_order_id: str | None,
    *,
    external: bool = False,
) -> bool:
    """Store a fill once; True if it was new.  A settlement corrects the stored fee (and the position)."""
    cur = conn.execute(
        "INSERT INTO trade_history (execution_id, exchange, trade_id, order_id, client_order_id, market,"
        " side, amount, price, fee, fee_currency, executed_at, recorded_at, settled, external)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (exchange, market, trade_id) DO NOTHING",
        (
            execution_id,
            exchange,
            f.trade_id,
            f.order_id,
            client_order_id,
            f.market,
            f.side,
            str(f.amount),
            str(f.price),
            str(f.fee),
            f.fee_currency,
            clock.to_iso(clock.from_ms(f.timestamp_ms)),
            clock.now_iso(),
            int(f.settled),
            int(external),
        ),
    )
    if cur.rowcount == 1:
        if not external:
            _move_position(conn, f)
        return True
    stored = conn.execute(
        "SELECT * FROM trade_history WHERE exchange = ? AND market = ? AND trade_id = ?",
        (exchange, f.market, f.trade_id),
    ).fetchone()
    if (stored["order_id"], stored["side"], Decimal(stored["amount"]), Decimal(stored["price"])) != (
        f.order_id,
        f.side,
        f.amount,
        f.price,
    ):
        detail = (
            f"fill {f.trade_id} on {f.market} (order {f.order_id}, {f.side} {f.amount} @ {f.price}) conflicts"
            f" with the stored fill of that id (order {stored['order_id']}, {stored['side']} {stored['amount']}"
            f" @ {stored['price']}); the stored one is kept, check the exchange's trade history"
        )
        if not conn.execute("SELECT 1 FROM events WHERE kind = 'fill_conflict' AND detail = ?", (detail,)).fetchone():
            event(conn, "fill_conflict", detail, severity="error", execution_id=execution_id)
        return False
    if not stored["settled"] and f.settled:
        _settle(conn, stored, f)
    return False


def _settle(conn: sqlite3.Connection, stored: sqlite3.Row, f: Fill) -> None:
    """The fee of a fill first stored unsettled is known now: store it and move the position by the difference."""
    conn.execute(
        "UPDATE trade_history SET fee = ?, fee_currency = ?, settled = 1 WHERE id = ?",
        (str(f.fee), f.fee_currency, stored["id"]),
    )
    delta = f.fee - (Decimal(stored["fee"]) if stored["fee_currency"] == f.fee_currency else Decimal(0))
    if delta and not stored["external"]:
        base, cost, realised = _position(conn, f.market)
        asset = f.market.split("-")[0]
        if f.fee_currency == asset:
            base -= delta
        elif f.fee_currency == "EUR":
            if f.side == "buy":
                cost += delta
            else:
                realised -= delta
        _store_position(conn, f.market, max(base, Decimal(0)), cost if base > 0 else Decimal(0), realised)
    event(
        conn,
        "fill_settled",
        f"fill {f.trade_id} on {f.market} settled: fee {f.fee} {f.fee_currency}",
        execution_id=stored["execution_id"],
    )


def _position(conn: sqlite3.Connection, market: str) -> tuple[Decimal, Decimal, Decimal]:
    row = conn.execute("SELECT base, cost_eur, realised_eur FROM positions WHERE market = ?", (market,)).fetchone()
    if row is None:
        return Decimal(0), Decimal(0), Decimal(0)
    return Decimal(row["base"]), Decimal(row["cost_eur"]), Decimal(row["realised_eur"])


def _store_position(conn: sqlite3.Connection, market: str, base: Decimal, cost: Decimal, realised: Decimal) -> None:
    conn.execute(
        "INSERT INTO positions (market, base, cost_eur, realised_eur, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (market) DO UPDATE SET base = excluded.base, cost_eur = excluded.cost_eur,"
        " realised_eur = excluded.realised_eur, updated_at = excluded.updated_at",
        (market, f"{base:f}", f"{cost:f}", f"{realised:f}", clock.now_iso()),  # never '0E-8'
    )


def _move_position(conn: sqlite3.Connection, f: Fill) -> None:
    base, cost, realised = _position(conn, f.market)
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
    _store_position(conn, f.market, base, cost, realised)


def position_base(conn: sqlite3.Connection, market: str) -> Decimal:
    """What tinybot itself holds of a market's base asset (its own fills only)."""
    return _position(conn, market)[0]
