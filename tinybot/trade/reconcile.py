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
* ``filled``/``canceled`` with a fill still unsettled: looked up again until
  Bitvavo reports the fee (the ledger corrects fee and position).
* Surprises: orders carrying a clientOrderId on an allowlisted market that no
  execution accounts for are booked and reported loudly (an ``error`` event).
  The scan looks back one day; after a restore it looks back to the backup's
  time (a restore rolls back the database, never the world: every order
  made since is still on the exchange), and it is repeated by every
  reconcile until it has read every market once without an error.

The decision "absent" is taken with the time read *before* the lookup: an
order that lands while the lookup or the lock wait is under way must not eat
the grace period.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..base import clock, crash
from ..store import db
from . import ledger
from ..base.config import Config, grace_floor
from ..exchange.base import ExchangeError, MarketData, Order

SURPRISE_LOOKBACK = timedelta(days=1)
RESTORE_SCAN = "restore_scan"  # ops_state: the scan a restore asked for, JSON {from, backup, done_at}
IN_DOUBT = ("claimed", "submitting", "unknown")


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
    settled: list[str] = field(default_factory=list)  # fills whose fee the exchange reported only now
    restore_scan: dict | None = None  # the scan after a restore, when this reconcile ran it: {from, backup, done_at}

    def as_dict(self) -> dict:
        return {
            "changes": [c.__dict__ for c in self.changes],
            "still_unknown": self.still_unknown,
            "surprises": self.surprises,
            "errors": self.errors,
            "settled": self.settled,
            "restore_scan": self.restore_scan,
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
    grace = max(grace, grace_floor(window))
    sent = row["submitting_at"] or row["claimed_at"]
    deadline = clock.from_iso(sent) + 2 * window + grace
    if "in_doubt_at" in row.keys() and row["in_doubt_at"]:
        deadline = max(deadline, clock.from_iso(row["in_doubt_at"]) + 2 * window + grace)
    return deadline


def find_order(exchange: MarketData, row: sqlite3.Row, since_ms: int | None = None) -> Order | None:
    """An execution's order: by its clientOrderId, else in the market's orders since the send (or
    ``since_ms``): Bitvavo may find only open orders by clientOrderId."""
    order = exchange.fetch_order(row["market"], row["client_order_id"])
    if order is not None:
        return order
    since = since_ms
    if since is None:
        since = clock.to_ms(clock.from_iso(row["submitting_at"] or row["claimed_at"])) - 60_000
    for o in exchange.orders_since(row["market"], since):
        if o.client_order_id == row["client_order_id"]:
            return o
    return None


def quarantine_after_restore(conn: sqlite3.Connection, reason: str) -> dict:
    """After a restore from backup: nothing the backup shows as in flight may be sent again.

    The backup may predate what happened next: an execution it shows as
    ``claimed`` may have been sent and filled since, and Bitvavo keeps a
    clientOrderId unique only among *open* orders, so sending it again could
    make a second order.  So, in one transaction:

    * every ``claimed``/``submitting``/``unknown`` execution becomes ``unknown``
      (only reconcile leaves it: found on the exchange → booked; provably
      absent from ``in_doubt_at`` + 2 windows + grace → failed; never re-sent);
    * every proposal still pending or approved without an execution is
      rejected (by "restore"): it may have been executed after the backup
      under a clientOrderId this database never saw.  Advisors propose anew.

    The next reconcile's surprise scan books any order the database does not
    account for.  Returns what was moved.
    """
    now = clock.now_iso()
    with db.transaction(conn):
        moved = [
            r["id"]
            for r in conn.execute(
                "SELECT id FROM trade_executions WHERE state IN (%s) ORDER BY id" % ",".join("?" * len(IN_DOUBT)),
                IN_DOUBT,
            )
        ]
        # a claimed row may have been sent after the backup: it counts in flight (caps, cooldown) from its claim
        conn.executemany(
            "UPDATE trade_executions SET state = 'unknown', in_doubt_at = ?, updated_at = ?,"
            " submitting_at = COALESCE(submitting_at, claimed_at),"
            " notional_eur = COALESCE(notional_eur, CASE WHEN side = 'buy' THEN amount_quote END),"
            " reason = ? || COALESCE(' (was ' || state || ': ' || NULLIF(reason, '') || ')', ' (was ' || state || ')')"
            " WHERE id = ?",
            [(now, now, f"in doubt after {reason}", i) for i in moved],
        )
        retired = [
            r["id"]
            for r in conn.execute(
                "SELECT p.id FROM proposals p LEFT JOIN trade_executions e ON e.proposal_id = p.id"
                " WHERE p.status IN ('pending', 'approved') AND e.id IS NULL ORDER BY p.id"
            )
        ]
        conn.executemany(
            "UPDATE proposals SET status = 'rejected', decided_at = ?, decided_by = 'restore' WHERE id = ?",
            [(now, i) for i in retired],
        )
        if moved or retired:
            db.event(
                conn,
                "restore_in_doubt",
                f"{reason}: executions {moved or 'none'} are in doubt until reconcile finds them on the"
                f" exchange or proves them absent; proposals {retired or 'none'} rejected (they may have"
                " been executed after the backup)",
                severity="warning",
            )
    return {"in_doubt": moved, "rejected_proposals": retired}


def scan_after_restore(conn: sqlite3.Connection, since: datetime, backup_name: str) -> datetime:
    """A restore's part, on the database it is about to put back: the next reconcile scans the exchange
    for orders since ``since`` (the backup's time) and keeps doing so until one scan has read every
    market.  A scan still pending in that database from an earlier restore is kept: the earlier start wins.
    Returns where the scan starts.  The caller owns the transaction (or there is none)."""
    pending = restore_scan_from(conn)
    start = min(since, pending) if pending is not None else since
    db.set_state(conn, RESTORE_SCAN, json.dumps({"from": clock.to_iso(start), "backup": backup_name, "done_at": None}))
    return start


def restore_scan(conn: sqlite3.Connection) -> dict | None:
    """The scan a restore asked for, as recorded: {from, backup, done_at (None while pending)}; None if none."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ops_state'").fetchone():
        return None  # a database older than 0004_ops (a backup being read)
    text = db.get_state(conn, RESTORE_SCAN)
    return json.loads(text) if text else None


def restore_scan_from(conn: sqlite3.Connection) -> datetime | None:
    """Where a pending scan after a restore starts; None when no scan is pending."""
    scan = restore_scan(conn)
    return clock.from_iso(scan["from"]) if scan and not scan["done_at"] else None


def _due(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Executions whose fate or fees the exchange still has to tell us."""
    return conn.execute(
        "SELECT * FROM trade_executions WHERE state IN ('submitting', 'unknown', 'submitted')"
        " OR id IN (SELECT execution_id FROM trade_history WHERE settled = 0 AND execution_id IS NOT NULL)"
        " ORDER BY id"
    ).fetchall()


def reconcile(conn: sqlite3.Connection, cfg: Config, exchange: MarketData, *, surprises: bool = True) -> Report:
    report = Report()
    grace = cfg.exchange.reconcile_grace
    for row in _due(conn):
        decided_at = clock.now()  # before the lookup: a slow lookup or lock wait must not eat the grace
        try:
            order = find_order(exchange, row)
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
                unsettled = _unsettled(conn, row["id"])
                moved = ledger.apply_order(conn, current, exchange.name, order, from_states=(row["state"],))
                report.settled += [
                    f"execution {row['id']}: fill {f.trade_id} on {f.market} settled, fee {f.fee} {f.fee_currency}"
                    for f in order.fills
                    if f.trade_id in unsettled and f.settled
                ]
                if moved:
                    after = conn.execute("SELECT state FROM trade_executions WHERE id = ?", (row["id"],)).fetchone()[0]
                    if after != row["state"]:
                        detail = f"found on the exchange as {order.status} (order {order.order_id})"
                        report.changes.append(Change(row["id"], row["state"], after, detail))
                        db.event(
                            conn,
                            "reconciled",
                            f"execution {row['id']}: {row['state']} → {after}: {detail}",
                            execution_id=row["id"],
                        )
                continue
            if row["state"] not in ("submitting", "unknown"):
                report.errors.append(
                    f"execution {row['id']}: {row['state']} order {row['exchange_order_id']} not found"
                )
                continue
            deadline = absent_after(row, grace)
            if decided_at >= deadline:
                detail = (
                    f"never reached the exchange: not found by clientOrderId nor in orders since the send,"
                    f" and the request can no longer land (signed by submitting + window, valid one"
                    f" more window; + grace = {clock.to_iso(deadline)})"
                )
                conn.execute(
                    "UPDATE trade_executions SET state = 'failed', reason = ?, updated_at = ?, resolved_at = ?"
                    " WHERE id = ? AND state = ?",
                    (detail, clock.now_iso(), clock.now_iso(), row["id"], row["state"]),
                )
                report.changes.append(Change(row["id"], row["state"], "failed", detail))
                db.event(
                    conn,
                    "reconciled",
                    f"execution {row['id']}: {row['state']} → failed: {detail}",
                    execution_id=row["id"],
                )
            else:
                report.still_unknown.append(row["id"])
    scan_from = restore_scan_from(conn)
    if surprises or scan_from is not None:  # a scan a restore asked for runs in every reconcile until done
        _surprises(conn, cfg, exchange, report, since=scan_from)
    return report


def _unsettled(conn: sqlite3.Connection, execution_id: int) -> set[str]:
    rows = conn.execute("SELECT trade_id FROM trade_history WHERE execution_id = ? AND settled = 0", (execution_id,))
    return {r[0] for r in rows}


def _surprises(
    conn: sqlite3.Connection, cfg: Config, exchange: MarketData, report: Report, since: datetime | None = None
) -> None:
    """Orders on our markets that tinybot's executions do not account for.

    Every order carrying a clientOrderId on an allowlisted market is checked
    against the execution with that clientOrderId.  It is accounted for when
    that execution is the order's own (same order id, or no order id yet while
    the execution is in doubt: the row loop resolves those).  Anything else is
    booked and reported loudly (an ``error`` event, which the automatic kill
    switch acts on), once per order:

    * no execution has that clientOrderId (say, one claimed after the backup
      a restore went back to): its fills are booked with no execution;
    * the execution is ``failed``/``blocked``/``claimed`` (it never sent, as
      far as the database knows): the row is corrected to the order;
    * the execution already has another order: a second order under one
      clientOrderId; its fills are booked under that execution (positions
      and the daily cap count them).
    """
    start = clock.now() - SURPRISE_LOOKBACK
    if since is not None:
        start = min(start, since)
    complete, booked = True, len(report.surprises)
    for market in cfg.risk.allowlist:
        try:
            orders = exchange.orders_since(market, clock.to_ms(start))  # Bitvavo: read in 24-hour slices
        except ExchangeError as e:
            report.errors.append(f"{market}: could not list orders: {e}")
            complete = False
            continue
        for o in orders:
            if not o.client_order_id:
                continue  # placed by hand, without a clientOrderId: not tinybot's
            with db.transaction(conn):
                _account_for(conn, exchange.name, market, o, report)
    if since is not None:
        if complete:
            _restore_scan_done(conn, start, len(cfg.risk.allowlist), len(report.surprises) - booked)
        report.restore_scan = restore_scan(conn)


def _restore_scan_done(conn: sqlite3.Connection, start: datetime, markets: int, booked: int) -> None:
    """Record that the scan a restore asked for has read every market; until then every reconcile repeats it."""
    with db.transaction(conn):
        scan = restore_scan(conn)
        if scan is None or scan["done_at"]:
            return
        scan["done_at"] = clock.now_iso()
        db.set_state(conn, RESTORE_SCAN, json.dumps(scan))
        db.event(
            conn,
            "restore_scan",
            f"after the restore from {scan['backup']}: orders since {clock.to_iso(start)} read on {markets}"
            f" market(s); {booked} not accounted for, booked",
        )


def _account_for(conn: sqlite3.Connection, exchange_name: str, market: str, o: Order, report: Report) -> None:
    known = conn.execute(
        "SELECT * FROM unaccounted_orders WHERE exchange = ? AND market = ? AND order_id = ?",
        (exchange_name, market, o.order_id),
    ).fetchone()
    row = conn.execute("SELECT * FROM trade_executions WHERE client_order_id = ?", (o.client_order_id,)).fetchone()
    if known is not None:  # booked and reported before: keep its fills in step, say nothing new
        for f in o.fills:
            ledger.record_fill(conn, known["execution_id"], exchange_name, f, o.client_order_id)
        conn.execute("UPDATE unaccounted_orders SET status = ? WHERE id = ?", (o.status, known["id"]))
        return
    if row is not None:
        if row["exchange_order_id"] == o.order_id:
            return  # the execution's own order
        if row["exchange_order_id"] is None and row["state"] in ("submitting", "unknown", "submitted"):
            return  # in doubt: the row loop finds it by clientOrderId or in the order list
    what = f"order {o.order_id} on {market} ({o.side}, {o.status}, clientOrderId {o.client_order_id})"
    if row is None:
        msg = f"{what}: tinybot has no execution with that clientOrderId; booked as found"
        for f in o.fills:
            ledger.record_fill(conn, None, exchange_name, f, o.client_order_id)
    elif row["exchange_order_id"] is None:
        msg = (
            f"{what} belongs to execution {row['id']}, which was recorded as {row['state']} (no order sent);"
            " corrected to what the exchange says"
        )
        if ledger.apply_order(conn, row, exchange_name, o, from_states=(row["state"],)):
            after = conn.execute("SELECT state FROM trade_executions WHERE id = ?", (row["id"],)).fetchone()[0]
            report.changes.append(Change(row["id"], row["state"], after, msg))
    else:
        msg = (
            f"{what} is a second order under execution {row['id']}'s clientOrderId (its order is"
            f" {row['exchange_order_id']}); its fills are booked under that execution"
        )
        for f in o.fills:
            ledger.record_fill(conn, row["id"], exchange_name, f, o.client_order_id)
    report.surprises.append(msg)
    conn.execute(
        "INSERT INTO unaccounted_orders (exchange, market, order_id, client_order_id, execution_id, side, status,"
        " created_at, first_seen_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            exchange_name,
            market,
            o.order_id,
            o.client_order_id,
            row["id"] if row is not None else None,
            o.side,
            o.status,
            clock.to_iso(clock.from_ms(o.created_ms)),
            clock.now_iso(),
            msg,
        ),
    )
    db.event(conn, "surprise_order", msg, severity="error", execution_id=row["id"] if row is not None else None)
