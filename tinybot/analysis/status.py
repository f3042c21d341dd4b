"""What the bot knows, read from the database only (no exchange, no ccxt)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

from ..base import clock
from ..trade import killswitch
from ..base.config import Config, describe
from ..base.money import cents, plain


def status(conn: sqlite3.Connection, cfg: Config) -> dict:
    from ..trade import committed  # the caps' figures (and the book): `kill` formats a time here without them

    now = clock.now()
    spent = committed.spent_today(conn, now, tz=cfg.tz)
    exposed = committed.exposure(conn)
    balances = (
        {
            r["asset"]: {"available": r["available"], "in_order": r["in_order"]}
            for r in conn.execute("SELECT * FROM paper_balances ORDER BY asset")
        }
        if cfg.mode == "paper"
        else None
    )
    # compared as numbers: a position sold to nothing can be stored as "0E-8", which is not the text '0'
    positions = [dict(r) for r in conn.execute("SELECT * FROM positions ORDER BY market") if Decimal(r["base"]) != 0]
    pending = conn.execute(
        "SELECT COUNT(*) FROM proposals p WHERE status IN ('pending', 'approved') AND expires_at > ?"
        " AND NOT EXISTS (SELECT 1 FROM trade_executions e WHERE e.proposal_id = p.id)",
        (clock.to_iso(now),),
    ).fetchone()[0]
    expired = conn.execute(  # past expiry, not yet marked by a tick: expired all the same
        "SELECT COUNT(*) FROM proposals p WHERE status IN ('pending', 'approved') AND expires_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM trade_executions e WHERE e.proposal_id = p.id)",
        (clock.to_iso(now),),
    ).fetchone()[0]
    unresolved = [
        execution(r)
        for r in conn.execute(
            "SELECT id, proposal_id, market, side, state, reason, submitting_at FROM trade_executions"
            " WHERE state IN ('claimed', 'submitting', 'unknown') ORDER BY id"
        )
    ]
    from . import pnl
    from ..store.liveness import liveness

    live_balances = None
    if cfg.mode == "live":
        rows = conn.execute("SELECT * FROM account_balances ORDER BY asset").fetchall()
        at = max((r["at"] for r in rows), default=None)
        live_balances = {
            "at": at,
            "age_s": int((now - clock.from_iso(at)).total_seconds()) if at else None,
            "assets": {r["asset"]: {"available": r["available"], "in_order": r["in_order"]} for r in rows},
        }
    money = pnl.report(conn, cfg)
    from ..trade.ledger import book_positions

    books = [
        {
            "advisor": r["book"],
            "market": r["market"],
            "base": plain(Decimal(r["base"])),
            "cost_eur": cents(Decimal(r["cost_eur"])),
        }
        for r in book_positions(conn)
        if Decimal(r["base"]) != 0
    ]
    return {
        "now": clock.to_iso(now),
        "mode": cfg.mode,
        "config": str(cfg.path),
        "db": str(cfg.db_path),
        "kill_switch": kill_switch(killswitch.state(conn)),
        "paper_balances": balances,
        "live_balances": live_balances,
        "positions": positions,
        "books": books,
        "pnl": {
            **{
                k: money[k]
                for k in (
                    "realised_eur",
                    "unrealised_eur",
                    "fees_eur",
                    "llm_cost_eur",
                    "net_eur",
                    "hold_eur",
                    "dca_eur",
                    "prices_at",
                )
            },
            "hold_title": (money["benchmarks"]["holding"] or {}).get("title"),
        },
        "stranded": money["stranded"],
        "caps": {
            "max_trade_eur": plain(cfg.risk.max_trade_eur),
            "daily": {
                "used_eur": cents(spent),
                "cap_eur": plain(cfg.risk.max_daily_eur),
                "left_eur": cents(max(cfg.risk.max_daily_eur - spent, Decimal(0))),
            },
            "exposure": {
                "used_eur": cents(exposed),
                "cap_eur": plain(cfg.risk.max_exposure_eur),
                "left_eur": cents(max(cfg.risk.max_exposure_eur - exposed, Decimal(0))),
            },
        },
        "allowlist": list(cfg.risk.allowlist),
        "pending_proposals": pending,
        "expired_unmarked_proposals": expired,
        "unresolved_executions": unresolved,
        "scheduler": _scheduler(liveness(conn, cfg), cfg),
        "risk": describe(cfg)["risk"],
    }


# --- the shapes of docs/JSON.md: what a row says to a user, not how SQLite stores it -----------------

# Columns that mean nothing outside the database: internal row ids and request plumbing.
_INTERNAL = {"approval_hash", "access_window_ms"}
_FLAGS = ("external", "settled", "trading_enabled")  # 0/1 in SQLite, true/false to a user


def _api(row, drop=()) -> dict:
    out = {k: v for k, v in dict(row).items() if k not in _INTERNAL and k not in drop}
    for k in _FLAGS:
        if k in out and out[k] is not None:
            out[k] = bool(out[k])
    return out


def proposal(row) -> dict:
    """A proposal as `propose`, `proposals`, `approve`, `reject` and `why` print it."""
    return _api(row)


def execution(row) -> dict:
    """An execution (its id is what `why` and reconcile name)."""
    return _api(row)


def fill(row) -> dict:
    """A fill: its exchange ids identify it; the row id of trade_history means nothing to a user."""
    return _api(row, drop=("id",))


def kill_switch(ks: dict) -> dict:
    return _api(ks, drop=("id",))


def _scheduler(live: dict, cfg: Config) -> dict:
    """The loop as liveness sees it, plus ``next_write_by``: a running loop writes idle ticks' rows in batches
    with its heartbeat (tinybot.loop.beat), so ``last_tick`` can lag the tick that really ran last; this is
    when the next batch is due at the latest (null when no loop runs)."""
    from ..store.liveness import beat_every

    tick = live.get("last_tick")
    due = None
    if live["alive"] and live.get("beat_at"):
        due = clock.to_iso(clock.from_iso(live["beat_at"]) + beat_every(cfg.scheduler.interval))
    return {**live, "last_tick": _api(tick, drop=("id",)) if tick else None, "next_write_by": due}


def executions(conn: sqlite3.Connection, state: str | None = None, limit: int = 50) -> list[dict]:
    sql, args = "SELECT * FROM trade_executions", []
    if state:
        sql += " WHERE state = ?"
        args.append(state)
    return [execution(r) for r in conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))]


def fills(conn: sqlite3.Connection, market: str | None = None, limit: int = 50) -> list[dict]:
    sql, args = "SELECT * FROM trade_history", []
    if market:
        from ..base.markets import normalise_market

        sql += " WHERE market = ?"
        args.append(normalise_market(market))
    rows = [fill(r) for r in conn.execute(sql + " ORDER BY executed_at DESC, id DESC LIMIT ?", (*args, limit))]
    for r in rows:  # what the fill was worth in EUR, exact (amount × price), and its fee in EUR when paid in EUR
        r["eur_value"] = format(Decimal(r["amount"]) * Decimal(r["price"]), "f")
    return rows


def why(conn: sqlite3.Connection, proposal_id: int) -> dict:
    """A proposal, its execution (if any) and every guard decision about it, in order."""
    from ..trade import proposals

    p = proposal(proposals.get(conn, proposal_id))
    ex = conn.execute("SELECT * FROM trade_executions WHERE proposal_id = ?", (proposal_id,)).fetchone()
    p["status"] = proposals.effective_status(p["status"], p["expires_at"], ex is not None)
    decisions = [
        dict(r)
        for r in conn.execute(
            "SELECT stage, guard, verdict, reason_code, detail, decided_at FROM guard_decisions WHERE proposal_id = ?"
            " ORDER BY id",
            (proposal_id,),
        )
    ]
    return {"proposal": p, "execution": execution(ex) if ex else None, "decisions": decisions}


def last_tick_line(t: dict | None, sch: dict, cfg: Config) -> str:
    """The last tick written, and, while a loop runs, that its idle ticks are written in batches and by when."""
    if t is None:
        return "Last tick: never" + ("" if not sch["alive"] else " written yet (idle ticks are written in batches)")
    line = f"Last tick written: {clock.human_time(t['slot'], cfg.tz, seconds=True)} ({t['status']})"
    if sch["alive"] and sch.get("next_write_by"):
        line += (
            f"; the running loop ticks every {clock.spoken(clock.parse_duration(sch['interval']))} and writes idle"
            f" ticks in batches: the next write is due by {clock.human_time(sch['next_write_by'], cfg.tz, seconds=True)}"
        )
    return line


def local(iso: str | None, cfg: Config) -> str:
    """A stored ISO-8601 UTC time as a person reads it: the configured timezone, to the second ('?' for none)."""
    return clock.human_time(iso, cfg.tz, seconds=True) if iso else "?"


def localised(rows: list[dict], cfg: Config, *keys: str) -> list[dict]:
    """Rows for a person's table: the ``keys`` (ISO-8601 UTC times) in the configured timezone (--json keeps ISO)."""
    return [{**r, **{k: local(r[k], cfg) for k in keys if r.get(k)}} for r in rows]
