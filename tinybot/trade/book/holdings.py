"""The account against the book: balances, the baseline, and drift measured at the balances' moment."""

from __future__ import annotations
import sqlite3
from datetime import datetime
from decimal import Decimal

from ...base import clock, money
from .steps import Fill, ZERO


def balances(conn: sqlite3.Connection, cfg) -> tuple[dict[str, Decimal] | None, str | None]:
    """What the exchange reports the account holds, and when: the paper account now, or the last tick's snapshot."""
    if cfg.mode == "paper":
        rows = conn.execute("SELECT asset, available, in_order FROM paper_balances").fetchall()
        if not rows:
            return None, None
        return {r["asset"]: Decimal(r["available"]) + Decimal(r["in_order"]) for r in rows}, clock.now_iso()
    rows = conn.execute("SELECT * FROM account_balances").fetchall()
    if not rows:
        return None, None
    return {r["asset"]: Decimal(r["available"]) + Decimal(r["in_order"]) for r in rows}, max(r["at"] for r in rows)


def baseline(conn: sqlite3.Connection, cfg) -> dict[str, Decimal] | None:
    """What the account held before tinybot's first fill (paper: the starting balance)."""
    if cfg.mode == "paper":
        return {"EUR": cfg.paper.starting_eur}
    rows = conn.execute("SELECT asset, amount FROM account_baseline").fetchall()
    return {r["asset"]: Decimal(r["amount"]) for r in rows} if rows else None


def account_delta(
    conn: sqlite3.Connection, *, until: str | None = None, recorded_by: str | None = None
) -> dict[str, Decimal]:
    """What every fill up to ``until`` (executed then) or ``recorded_by`` (in the ledger by then) moved on the
    account, per asset (external ones included)."""
    sql, args = "SELECT * FROM trade_history WHERE 1 = 1", []
    if until is not None:
        sql += " AND executed_at <= ?"
        args.append(until)
    if recorded_by is not None:
        sql += " AND recorded_at <= ?"
        args.append(recorded_by)
    out: dict[str, Decimal] = {}
    for r in conn.execute(sql, args):
        for asset, d in Fill.from_row(r).moves.items():
            out[asset] = out.get(asset, ZERO) + d
    return out


def holdings_at(conn: sqlite3.Connection, cfg, when: datetime) -> tuple[dict[str, Decimal] | None, dict[str, Decimal]]:
    """(the baseline or None, what the ledger says the account held at ``when``: baseline + every fill to then)."""
    base = baseline(conn, cfg)
    moved = account_delta(conn, until=clock.to_iso(when))
    known = base or {}
    return base, {a: known.get(a, ZERO) + moved.get(a, ZERO) for a in sorted(set(known) | set(moved))}


def drift(conn: sqlite3.Connection, cfg) -> dict:
    """Per asset: the exchange's balance minus what the ledger held *at the balances' time*.

    The ledger as of then is the fills it had recorded by then (tinybot's own clock on both sides, so the
    exchange's clock and its millisecond timestamps do not matter): a tick reads the balances before it trades,
    and its own fills, recorded after, are not drift; money moved outside tinybot is.
    ``{"at", "assets", "note"}`` (amounts as decimal strings).
    """

    held, at = balances(conn, cfg)
    base = baseline(conn, cfg)
    if held is None or base is None:
        return {"at": None, "assets": {}, "note": "no balance snapshot yet: run a tick (`tinybot run --once`)"}
    moved = account_delta(conn, recorded_by=at)
    assets = {}
    for a in sorted(set(held) | set(base) | set(moved)):
        d = held.get(a, ZERO) - (base.get(a, ZERO) + moved.get(a, ZERO))
        assets[a] = money.cents(d) if a == "EUR" else money.plain(d)
    return {"at": at, "assets": assets, "note": ""}
