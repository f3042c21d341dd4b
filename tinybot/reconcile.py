"""Reconcile: resolve executions whose fate the bot does not know, and sync fills.

Runs at start-up, at every tick before anything else, and on demand
(``tinybot reconcile``).  It only *reads* the exchange; it never sends.

* ``submitting`` / ``unknown``: look the order up by clientOrderId, then (as a
  fallback, because Bitvavo may not find closed orders by clientOrderId) in
  the market's orders since the send.  Found -> submitted / filled / canceled
  with fills.  Not found -> stays as it is until the request can no longer
  land (it was signed at the latest one access window after `submitting`,
  and Bitvavo refuses it with 304 one window after its signature) plus a
  grace period, then failed: "never reached the exchange".
* ``submitted``: open orders are synced to their final state and fills.
* Surprises: orders carrying a clientOrderId on an allowlisted market that we
  have no row for are reported loudly (an ``error`` event).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from datetime import timedelta

from . import clock, crash, db, ledger
from .config import Config
from .exchange.base import ExchangeError, MarketData, Order

SURPRISE_LOOKBACK = timedelta(days=1)


@dataclass
class Change:
    execution_id: int | None
    before: str
    after: str
    detail: str


@dataclass
class Report:
    changes: list[Change] = field(default_factory=list)
    still_unknown: list[int] = field(default_factory=list)
    surprises: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "changes": [c.__dict__ for c in self.changes],
            "still_unknown": self.still_unknown,
            "surprises": self.surprises,
            "errors": self.errors,
        }


def absent_after(row: sqlite3.Row, grace: timedelta):
    """From when an order not found is provably absent.

    The executor lets the backend sign the request no later than
    submitting_at + window (``executor.sign_by_ms``), and Bitvavo refuses a
    request older than its window (304): nothing can land after
    submitting_at + 2 × window.  The grace covers clock skew and ccxt's
    throttle between the deadline check and the signature.
    """
    window = timedelta(milliseconds=row["access_window_ms"] or 10_000)
    return clock.from_iso(row["submitting_at"]) + 2 * window + grace


def _find(exchange: MarketData, row: sqlite3.Row) -> Order | None:
    order = exchange.fetch_order(row["market"], row["client_order_id"])
    if order is not None:
        return order
    since = clock.to_ms(clock.from_iso(row["submitting_at"] or row["claimed_at"])) - 60_000
    for o in exchange.orders_since(row["market"], since):
        if o.client_order_id == row["client_order_id"]:
            return o
    return None


def reconcile(conn: sqlite3.Connection, cfg: Config, exchange: MarketData, *, surprises: bool = True) -> Report:
    report = Report()
    grace = cfg.exchange.reconcile_grace
    rows = conn.execute(
        "SELECT * FROM trade_executions WHERE state IN ('submitting', 'unknown', 'submitted') ORDER BY id"
    ).fetchall()
    for row in rows:
        try:
            order = _find(exchange, row)
        except ExchangeError as e:
            report.errors.append(f"execution {row['id']}: lookup failed: {e}")
            if row["state"] != "submitted":
                report.still_unknown.append(row["id"])
            continue
        crash.point("mid_reconcile")
        with db.transaction(conn):
            current = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (row["id"],)).fetchone()
            if current["state"] != row["state"]:
                continue  # someone else moved it meanwhile
            if order is not None:
                crash.point("mid_fill_sync")
                if ledger.apply_order(conn, current, exchange.name, order, from_states=(row["state"],)):
                    after = conn.execute("SELECT state FROM trade_executions WHERE id = ?", (row["id"],)).fetchone()[0]
                    if after != row["state"]:
                        detail = f"found on the exchange as {order.status} (order {order.order_id})"
                        report.changes.append(Change(row["id"], row["state"], after, detail))
                        ledger.event(conn, "reconciled", f"execution {row['id']}: {row['state']} → {after}: {detail}",
                                     execution_id=row["id"])
                continue
            if row["state"] == "submitted":
                report.errors.append(f"execution {row['id']}: submitted order {row['exchange_order_id']} not found")
                continue
            deadline = absent_after(row, grace)
            if clock.now() >= deadline:
                detail = (f"never reached the exchange: not found by clientOrderId nor in orders since the send,"
                          f" and the request can no longer land (signed by submitting + window, valid one"
                          f" more window; + grace = {clock.to_iso(deadline)})")
                conn.execute(
                    "UPDATE trade_executions SET state = 'failed', reason = ?, updated_at = ?, resolved_at = ?"
                    " WHERE id = ? AND state = ?",
                    (detail, clock.now_iso(), clock.now_iso(), row["id"], row["state"]),
                )
                report.changes.append(Change(row["id"], row["state"], "failed", detail))
                ledger.event(conn, "reconciled", f"execution {row['id']}: {row['state']} → failed: {detail}",
                             execution_id=row["id"])
            else:
                report.still_unknown.append(row["id"])
    if surprises:
        _surprises(conn, cfg, exchange, report)
    return report


def _surprises(conn: sqlite3.Connection, cfg: Config, exchange: MarketData, report: Report) -> None:
    """Orders on our markets that tinybot cannot account for.

    * a clientOrderId we have no execution for: reported loudly (an error
      event; the automatic kill switch acts on it);
    * an order for an execution recorded as ``failed`` (or ``blocked``): the
      exchange has it after all, so the row is corrected to the order's
      state with its fills, and that is reported as loudly.  With the send
      deadline (executor.sign_by_ms) this should never happen; if it does,
      the record follows the exchange.
    """
    since = clock.to_ms(clock.now() - SURPRISE_LOOKBACK)
    for market in cfg.risk.allowlist:
        try:
            orders = exchange.orders_since(market, since)
        except ExchangeError as e:
            report.errors.append(f"{market}: could not list orders: {e}")
            continue
        for o in orders:
            if not o.client_order_id:
                continue  # placed by hand, without a clientOrderId: not tinybot's
            row = conn.execute("SELECT * FROM trade_executions WHERE client_order_id = ?",
                               (o.client_order_id,)).fetchone()
            if row is not None and row["state"] not in ("failed", "blocked"):
                continue
            if row is None:
                msg = (f"order {o.order_id} on {market} ({o.side}, {o.status}) carries clientOrderId"
                       f" {o.client_order_id}, which tinybot has no execution for")
            else:
                msg = (f"order {o.order_id} on {market} ({o.side}, {o.status}) belongs to execution {row['id']},"
                       f" which was recorded as {row['state']}; corrected to what the exchange says")
            report.surprises.append(msg)
            with db.transaction(conn):
                if row is not None and ledger.apply_order(conn, row, exchange.name, o, from_states=(row["state"],)):
                    after = conn.execute("SELECT state FROM trade_executions WHERE id = ?", (row["id"],)).fetchone()[0]
                    report.changes.append(Change(row["id"], row["state"], after, msg))
                if not conn.execute("SELECT 1 FROM events WHERE kind = 'surprise_order' AND detail = ?",
                                    (msg,)).fetchone():
                    ledger.event(conn, "surprise_order", msg, severity="error",
                                 execution_id=row["id"] if row is not None else None)
