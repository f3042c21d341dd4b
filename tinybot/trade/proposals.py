"""Proposals: create, approve, reject, expire.  Plain functions over a connection."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from ..base.errors import TinybotError
from ..base import clock
from ..store import db
from ..base.config import EXTERNAL
from .book import steps
from ..base.markets import MARKET_RE
from ..base.sizing import EXCHANGE_MINIMUM_EUR
from ..base.markets import normalise_market
from ..base.text import REASON_MAX, escape_controls
from . import guards
from .guards import approval_hash


class ProposalError(TinybotError):
    """Bad input or a state that does not allow the action; nothing was written."""


@dataclass(frozen=True)
class Draft:
    """What an advisor (or the CLI) asks for, before it becomes a proposal."""

    market: str
    side: str
    amount_quote: Decimal | None = None
    amount: Decimal | None = None
    reason: str = ""
    book: str | None = None  # the book it trades (tinybot.trade.book); None: the proposer's own


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
    if len(reason) > REASON_MAX:
        raise ProposalError(
            f"reason: {len(reason)} characters is over the limit of {REASON_MAX}; shorten it"
            " (a reason is never cut silently)"
        )
    if draft.book is not None and not BOOK_RE.match(draft.book):
        raise ProposalError(f"book: {draft.book!r} is not a book name (an advisor's name, 'manual' or 'external')")
    return Draft(market, draft.side, aq, am, reason, draft.book)


BOOK_RE = re.compile(r"^[\w.:-]{1,100}$")


def effective_status(status: str, expires_at: str, has_execution: bool, now=None) -> str:
    """The status as it is now: a pending/approved proposal past its expiry *is* expired,
    whether or not a scheduler tick has written that down yet."""
    now = now or clock.now()
    if status in ("pending", "approved") and not has_execution and clock.from_iso(expires_at) <= now:
        return "expired"
    return status


def create(
    conn: sqlite3.Connection,
    draft: Draft,
    *,
    source: str,
    ttl: timedelta,
    approve: bool = False,
    approved_by: str = "cli",
    external: bool = False,
) -> int:
    """Write a pending proposal (and approve it at once if asked).

    ``external``: a sell of coins tinybot did not buy (`propose ... sell
    --external`): bounded by what the account holds outside tinybot's books,
    and its fills are booked apart from tinybot's P/L (book ``external``).
    The draft's ``book`` is the book it trades (None: the proposer's own,
    tinybot.trade.book.default_book); whether the proposer may use another is the
    ``book`` guard's call at send time.
    """
    d = validate(draft)
    if ttl <= timedelta(0):
        raise ProposalError("expires-in: must be longer than 0s")
    if external and d.side != "sell":
        raise ProposalError("external: only a sell can be external (it sells coins tinybot did not buy)")
    if external and d.book not in (None, EXTERNAL):
        raise ProposalError(f"book: an external sell sells coins outside every book; it cannot name {d.book!r}")
    chosen = d.book or steps.default_book(source, external)
    now = clock.now()
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO proposals (market, side, amount_quote, amount, source, reason, status, created_at, expires_at,"
            " external, book) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
            (
                d.market,
                d.side,
                _s(d.amount_quote),
                _s(d.amount),
                source,
                d.reason,
                clock.to_iso(now),
                clock.to_iso(now + ttl),
                int(external),
                chosen,
            ),
        )
        pid = cur.lastrowid
        if approve:
            _approve(conn, pid, approved_by)
    return pid


def warnings(conn: sqlite3.Connection, cfg, row) -> list[str]:
    """What will stop a proposal that was just written, said at once instead of at execution time."""
    from . import killswitch

    out = []
    if row["market"] not in cfg.risk.allowlist:
        out.append(f"{row['market']} is not in risk.allowlist in {cfg.path}; the executor will block it.")
    if row["amount_quote"] is not None and Decimal(row["amount_quote"]) < EXCHANGE_MINIMUM_EUR:
        out.append(
            f"€{row['amount_quote']} is below the exchange's minimum order of €{EXCHANGE_MINIMUM_EUR};"
            " the executor will block it."
        )
    ks = killswitch.state(conn)
    if not ks["trading_enabled"]:
        out.append(
            f"trading is DISABLED (kill switch: {escape_controls(ks['reason'] or '')}); nothing will be sent"
            " until `tinybot resume`."
        )
    return out


def get(conn: sqlite3.Connection, pid: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM proposals WHERE id = ?", (pid,)).fetchone()
    if row is None:
        raise ProposalError(f"no proposal with id {pid}")
    return row


def _approve(conn, pid: int, by: str) -> None:
    row = get(conn, pid)
    if row["status"] in ("pending", "approved", "expired") and clock.now() >= clock.from_iso(row["expires_at"]):
        raise ProposalError(f"proposal {pid} expired at {row['expires_at']}; propose it again")
    if row["status"] == "approved":
        return
    if row["status"] != "pending":
        raise ProposalError(f"proposal {pid} is {row['status']}; only a pending proposal can be approved")
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
            raise ProposalError(
                f"proposal {pid} is {row['status']}; only pending or approved proposals can be rejected"
            )
        conn.execute(
            "UPDATE proposals SET status = 'rejected', decided_at = ?, decided_by = ? WHERE id = ?",
            (clock.now_iso(), by, pid),
        )


def expire_stale(conn: sqlite3.Connection) -> list[int]:
    """Mark pending/approved proposals past their expiry (and never executed) as expired.

    In the same transaction, an execution still ``claimed`` whose proposal has
    expired is resolved: nothing was sent (a claimed execution never reached
    ``submitting``), and the expiry guard would block it anyway, so it becomes
    ``blocked`` with reason ``proposal_expired``.  Left claimed it would sit
    unresolved for ever (and the DCA advisor would skip a whole period).  The
    executor's claimed→submitting compare-and-set makes this safe against an
    executor still in its preflight: it finds the row no longer claimed.
    """
    now = clock.now()
    now_iso = clock.to_iso(now)
    with db.transaction(conn):
        ids = [
            r["id"]
            for r in conn.execute(
                # the candidates come from proposals_open (schema.sql, 0011_speed), not from every approved
                # proposal ever (CROSS JOIN: SQLite reads o first); each is still checked here
                "SELECT p.id FROM proposals_open o CROSS JOIN proposals p ON p.id = o.id WHERE o.expires_at <= ?"
                " AND p.status IN ('pending', 'approved') AND p.expires_at <= ?"
                " AND NOT EXISTS (SELECT 1 FROM trade_executions e WHERE e.proposal_id = p.id) ORDER BY p.id",
                (now_iso, now_iso),
            )
        ]
        conn.executemany(
            "UPDATE proposals SET status = 'expired', decided_at = ?, decided_by = 'expiry' WHERE id = ?",
            [(now_iso, i) for i in ids],
        )
        stuck = conn.execute(
            "SELECT e.id, e.proposal_id, p.expires_at FROM trade_executions e JOIN proposals p ON p.id = e.proposal_id"
            " WHERE e.state = 'claimed' AND p.expires_at <= ? ORDER BY e.id",
            (now_iso,),
        ).fetchall()
        for row in stuck:
            conn.execute(
                "UPDATE trade_executions SET state = 'blocked', reason = 'proposal_expired', updated_at = ?,"
                " resolved_at = ? WHERE id = ? AND state = 'claimed'",
                (now_iso, now_iso, row["id"]),
            )
            guards.record(
                conn,
                row["proposal_id"],
                row["id"],
                "expiry",
                [
                    guards.blocked(
                        "expiry", "proposal_expired", f"expired at {row['expires_at']} while claimed; nothing was sent"
                    )
                ],
                now,
            )
    return ids


# The status as of now (see effective_status), in SQL so that --status filters on it.
_EFFECTIVE = (
    "CASE WHEN p.status IN ('pending', 'approved') AND p.expires_at <= :now AND e.id IS NULL"
    " THEN 'expired' ELSE p.status END"
)


def listing(conn: sqlite3.Connection, status: str | None = None, limit: int = 50) -> list[dict]:
    """Proposals newest first; ``status`` is as of now (expired when past expiry, tick or not)."""
    sql = (
        f"SELECT p.*, {_EFFECTIVE} AS status_now, e.id AS execution_id, e.state AS execution_state FROM proposals p"
        " LEFT JOIN trade_executions e ON e.proposal_id = p.id"
    )
    args: dict = {"now": clock.now_iso(), "limit": limit}
    if status:
        sql += f" WHERE {_EFFECTIVE} = :status"
        args["status"] = status
    sql += " ORDER BY p.id DESC LIMIT :limit"
    rows = [dict(r) for r in conn.execute(sql, args)]
    for r in rows:
        r["status"] = r.pop("status_now")
    return rows


def _s(d: Decimal | None) -> str | None:
    return None if d is None else format(d, "f")  # never "1E-7": stored and shown as people write amounts
