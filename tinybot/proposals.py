"""Proposals: create, approve, reject, expire.  Plain functions over a connection."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from . import clock, db
from .config import MARKET_RE
from .exchange.base import normalise_market
from .guards import approval_hash


class ProposalError(Exception):
    """Bad input or a state that does not allow the action; nothing was written."""


@dataclass(frozen=True)
class Draft:
    """What an advisor (or the CLI) asks for, before it becomes a proposal."""

    market: str
    side: str
    amount_quote: Decimal | None = None
    amount: Decimal | None = None
    reason: str = ""


def parse_amount(value, field: str) -> Decimal:
    if isinstance(value, bool):
        raise ProposalError(f"{field}: must be a number")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ProposalError(f"{field}: {value!r} is not a number") from None
    if not d.is_finite():
        raise ProposalError(f"{field}: must be a finite number")
    if d <= 0:
        raise ProposalError(f"{field}: must be greater than zero")
    return d


def validate(draft: Draft) -> Draft:
    """Normalise and check a draft; raises ProposalError naming the field."""
    market = normalise_market(draft.market or "")
    if not MARKET_RE.match(market):
        raise ProposalError(f"market: {draft.market!r} is not a Bitvavo EUR market name (like BTC-EUR)")
    if draft.side not in ("buy", "sell"):
        raise ProposalError(f"side: must be 'buy' or 'sell', not {draft.side!r}")
    if (draft.amount_quote is None) == (draft.amount is None):
        raise ProposalError("amount: give exactly one of an EUR amount or a base amount")
    aq = parse_amount(draft.amount_quote, "eur") if draft.amount_quote is not None else None
    am = parse_amount(draft.amount, "amount") if draft.amount is not None else None
    if aq is not None and -aq.normalize().as_tuple().exponent > 2:
        raise ProposalError(f"eur: {aq} has more than 2 decimals (Bitvavo takes whole cents)")
    if am is not None and -am.normalize().as_tuple().exponent > 8:
        raise ProposalError(f"amount: {am} has more than 8 decimals")
    reason = (draft.reason or "").strip()
    if len(reason) > 2000:
        reason = reason[:2000]
    return Draft(market, draft.side, aq, am, reason)


def create(conn: sqlite3.Connection, draft: Draft, *, source: str, ttl: timedelta,
           approve: bool = False, approved_by: str = "cli") -> int:
    d = validate(draft)
    if ttl <= timedelta(0):
        raise ProposalError("expires-in: must be longer than 0s")
    now = clock.now()
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO proposals (market, side, amount_quote, amount, source, reason, status, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            (d.market, d.side, _s(d.amount_quote), _s(d.amount), source, d.reason,
             clock.to_iso(now), clock.to_iso(now + ttl)),
        )
        pid = cur.lastrowid
        if approve:
            _approve(conn, pid, approved_by)
    return pid


def get(conn: sqlite3.Connection, pid: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM proposals WHERE id = ?", (pid,)).fetchone()
    if row is None:
        raise ProposalError(f"no proposal with id {pid}")
    return row


def _approve(conn, pid: int, by: str) -> None:
    row = get(conn, pid)
    if row["status"] == "approved":
        return
    if row["status"] != "pending":
        raise ProposalError(f"proposal {pid} is {row['status']}; only a pending proposal can be approved")
    if clock.now() >= clock.from_iso(row["expires_at"]):
        raise ProposalError(f"proposal {pid} expired at {row['expires_at']}; propose it again")
    conn.execute(
        "UPDATE proposals SET status = 'approved', decided_at = ?, decided_by = ?, approval_hash = ? WHERE id = ?",
        (clock.now_iso(), by, approval_hash(row), pid),
    )


def approve(conn: sqlite3.Connection, pid: int, by: str = "cli") -> None:
    with db.transaction(conn):
        _approve(conn, pid, by)


def reject(conn: sqlite3.Connection, pid: int, by: str = "cli") -> None:
    with db.transaction(conn):
        row = get(conn, pid)
        if conn.execute("SELECT 1 FROM trade_executions WHERE proposal_id = ?", (pid,)).fetchone():
            raise ProposalError(f"proposal {pid} already has an execution; it cannot be rejected")
        if row["status"] not in ("pending", "approved"):
            raise ProposalError(f"proposal {pid} is {row['status']}; only pending or approved proposals can be rejected")
        conn.execute("UPDATE proposals SET status = 'rejected', decided_at = ?, decided_by = ? WHERE id = ?",
                     (clock.now_iso(), by, pid))


def expire_stale(conn: sqlite3.Connection) -> list[int]:
    """Mark pending/approved proposals past their expiry (and never executed) as expired."""
    now = clock.now_iso()
    with db.transaction(conn):
        ids = [r["id"] for r in conn.execute(
            "SELECT id FROM proposals p WHERE status IN ('pending', 'approved') AND expires_at <= ?"
            " AND NOT EXISTS (SELECT 1 FROM trade_executions e WHERE e.proposal_id = p.id)", (now,))]
        conn.executemany("UPDATE proposals SET status = 'expired', decided_at = ?, decided_by = 'expiry' WHERE id = ?",
                         [(now, i) for i in ids])
    return ids


def listing(conn: sqlite3.Connection, status: str | None = None, limit: int = 50) -> list[dict]:
    sql = ("SELECT p.*, e.id AS execution_id, e.state AS execution_state FROM proposals p"
           " LEFT JOIN trade_executions e ON e.proposal_id = p.id")
    args: list = []
    if status:
        sql += " WHERE p.status = ?"
        args.append(status)
    sql += " ORDER BY p.id DESC LIMIT ?"
    args.append(limit)
    return [dict(r) for r in conn.execute(sql, args)]


def _s(d: Decimal | None) -> str | None:
    return None if d is None else str(d)
