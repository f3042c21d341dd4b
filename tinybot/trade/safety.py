"""The automatic kill switch, and cancelling tinybot's open orders.

``check`` runs once per scheduler tick, after reconcile.  It turns trading
off (``killswitch.set_enabled(conn, False, reason, by="auto")``) when:

* today's realised + unrealised loss passes ``[safety] max_daily_loss_eur``
  ("today" starts at the first check of the UTC day, or at the last
  ``tinybot resume`` if that was later; 0 switches the rule off);
* ``[safety] max_consecutive_errors`` ticks in a row failed for a reason
  other than an unreachable exchange (a bug, a key Bitvavo refuses, an answer
  that makes no sense, a database that stays locked).  An unreachable exchange
  is not such a reason: the scheduler pauses trading during an outage and
  resumes by itself once the exchange answers and reconcile is clean;
* an execution has stayed ``unknown`` (or ``submitting``) longer than
  ``[safety] unknown_limit``;
* reconcile found an order carrying a clientOrderId we have no row for.

Only ``tinybot resume`` turns trading back on.  Every rule counts only what
happened since the switch was last turned on, so a resume is not undone on
the next tick by the very thing the owner just looked at.

This module imports nothing heavy: `tinybot kill` imports it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal

from ..base import clock
from ..store import db
from . import killswitch
from ..store.db import get_state, set_state

log = logging.getLogger("tinybot.safety")

ERRORS_KEY = "safety.exchange_errors"
BASELINE_KEY = "safety.pnl_baseline"


def check(conn: sqlite3.Connection, cfg, *, tick_ok: bool | None = None, market_data=None, notifier=None) -> list[str]:
    """Apply every rule; return the reasons for which trading was turned off *by this call*.

    ``tick_ok``: False if this tick failed for a reason other than an
    unreachable exchange, True if it went well, None to leave the count alone
    (an outage tick, or a check in the middle of a tick).  ``market_data``: a
    read-only client to price open positions for the loss rule (without it
    the rule is skipped).  ``notifier``: alerts for executions still
    unresolved after their access window.  Call outside any transaction.
    """
    fired: list[str] = []
    enabled_since = _enabled_since(conn)
    for rule in (
        lambda: consecutive_errors(conn, cfg, tick_ok),
        lambda: unknown_too_long(conn, cfg, enabled_since),
        lambda: surprise_orders(conn, enabled_since),
        lambda: daily_loss(conn, cfg, market_data, enabled_since),
    ):
        try:
            reason = rule()
        except Exception as e:  # a broken rule must not break the tick; it is loud instead
            log.exception("safety rule failed: %s", e)
            reason = None
        if reason:
            fired.append(reason)
    if notifier is not None:
        for row in overdue(conn, cfg):
            notifier.alert(
                "execution_overdue",
                f"execution {row['id']} ({row['market']} {row['side']}) is still {row['state']} after the"
                f" moment it could still land; reconcile cannot find it (exchange down?)",
                key=f"overdue:{row['id']}",
                severity="error",
            )
    turned_off = []
    if fired and killswitch.state(conn)["trading_enabled"]:
        reason = "auto: " + "; ".join(fired)
        if killswitch.set_enabled(conn, False, reason, by="auto"):
            log.error("kill switch turned OFF automatically: %s", reason)
            turned_off = fired
    return turned_off


# --- the rules: each returns a reason or None ----------------------------------


@dataclass(frozen=True)
class _Since:
    at: str  # ISO time trading was last enabled
    event_id: int  # events.id of that change (0: enabled at init)


def _enabled_since(conn: sqlite3.Connection) -> _Since:
    ks = killswitch.state(conn)
    ev = conn.execute(
        "SELECT MAX(id) FROM events WHERE kind = 'kill_switch' AND detail LIKE 'trading enabled%'"
    ).fetchone()[0]
    return _Since(ks.get("changed_at") or clock.to_iso(clock.from_ms(0)), ev or 0)


def consecutive_errors(conn: sqlite3.Connection, cfg, tick_ok: bool | None) -> str | None:
    """Failed ticks in a row, outages not counted (they pause trading instead: tinybot.loop.outage)."""
    if tick_ok is None:
        return None
    count = 0 if tick_ok else int(get_state(conn, ERRORS_KEY) or 0) + 1
    limit = cfg.safety.max_consecutive_errors
    if count >= limit:
        set_state(conn, ERRORS_KEY, "0")  # after a resume, it takes another full run of errors
        return (
            f"{count} ticks in a row failed, not because the exchange was unreachable"
            f" (safety.max_consecutive_errors = {limit}); `tinybot status` and the log say why"
        )
    set_state(conn, ERRORS_KEY, str(count))
    return None


def unknown_too_long(conn: sqlite3.Connection, cfg, since: _Since) -> str | None:
    limit: timedelta = cfg.safety.unknown_limit
    cutoff = clock.now() - limit
    # the limit must have been crossed after trading was last enabled
    floor = clock.from_iso(since.at) - limit
    rows = conn.execute(
        "SELECT id, state, submitting_at FROM trade_executions WHERE state IN ('unknown', 'submitting')"
        " AND submitting_at <= ? AND submitting_at > ? ORDER BY id",
        (clock.to_iso(cutoff), clock.to_iso(floor)),
    ).fetchall()
    if not rows:
        return None
    ids = ", ".join(str(r["id"]) for r in rows)
    return (
        f"execution(s) {ids} unresolved for longer than safety.unknown_limit"
        f" ({clock.format_duration(limit)}); check them with `tinybot reconcile`"
    )


def surprise_orders(conn: sqlite3.Connection, since: _Since) -> str | None:
    rows = conn.execute(
        "SELECT id, detail FROM events WHERE kind = 'surprise_order' AND id > ? ORDER BY id", (since.event_id,)
    ).fetchall()
    if not rows:
        return None
    return f"reconcile found {len(rows)} order(s) tinybot has no row for: {rows[0]['detail']}"


def equity_eur(conn: sqlite3.Connection, market_data) -> Decimal | None:
    """Realised P&L plus positions marked to the bid minus their cost; None if a position cannot be priced."""
    total = Decimal(0)
    for p in conn.execute("SELECT market, base, cost_eur, realised_eur FROM positions"):
        total += Decimal(p["realised_eur"])
        base = Decimal(p["base"])
        if base > 0:
            try:
                bid = market_data.ticker(p["market"]).bid
            except Exception as e:
                log.warning("loss rule skipped: no price for %s: %s", p["market"], e)
                return None
            total += base * bid - Decimal(p["cost_eur"])
    return total


def daily_loss(conn: sqlite3.Connection, cfg, market_data, since: _Since) -> str | None:
    limit = cfg.safety.max_daily_loss_eur
    if market_data is None or limit <= 0:
        return None
    equity = equity_eur(conn, market_data)
    if equity is None:
        return None
    now = clock.now()
    today = clock.day_start(now).date().isoformat()
    raw = get_state(conn, BASELINE_KEY)
    base = json.loads(raw) if raw else None
    if base is None or base["day"] != today or since.event_id != base.get("enabled_event"):
        set_state(
            conn,
            BASELINE_KEY,
            json.dumps({"day": today, "at": clock.to_iso(now), "equity": str(equity), "enabled_event": since.event_id}),
        )
        return None
    loss = Decimal(base["equity"]) - equity
    if loss > limit:
        return (
            f"today's realised + unrealised loss €{loss:.2f} is over safety.max_daily_loss_eur"
            f" (€{limit}) since {base['at']}"
        )
    return None


def overdue(conn: sqlite3.Connection, cfg) -> list[sqlite3.Row]:
    """Executions still unresolved after the moment reconcile may call them absent (reconcile.absent_after)."""
    from .reconcile import absent_after

    return [
        r
        for r in conn.execute(
            "SELECT * FROM trade_executions WHERE state IN ('unknown', 'submitting')"
            " AND submitting_at IS NOT NULL ORDER BY id"
        )
        if absent_after(r, cfg.exchange.reconcile_grace) <= clock.now()
    ]


# --- tinybot kill --cancel-open -----------------------------------------------------


@dataclass(frozen=True)
class Cancel:
    execution_id: int
    market: str
    client_order_id: str
    outcome: str  # 'canceled' | 'not_open' | 'error'
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CancelReport:
    """What `kill --cancel-open` did, and which markets it could not ask about (so it never claims "none")."""

    markets: list[str]
    results: list[Cancel]
    unreachable: dict[str, str]  # market -> why the exchange could not be asked


def cancel_open(conn: sqlite3.Connection, cfg, exchange) -> CancelReport:
    """Ask the exchange for its open orders and cancel each one that carries a tinybot clientOrderId.

    ``exchange`` is the trading client from ``executor.trading_exchange(cfg)``
    (only it may cancel).  The markets asked are the allowlist plus any market
    with an execution still in flight.  An order counts as tinybot's when an
    execution row (in any state: a restored database may still say
    ``claimed``) holds its clientOrderId; other orders are left alone.  A
    cancelled ``submitted`` execution is recorded at once (``unknown`` and the
    others are left to reconcile, the only code that resolves them).
    """
    markets = list(
        dict.fromkeys(
            [
                *cfg.risk.allowlist,
                *(
                    r["market"]
                    for r in conn.execute(
                        "SELECT DISTINCT market FROM trade_executions WHERE state IN ('submitted', 'submitting', 'unknown', 'claimed')"
                        " ORDER BY market"
                    )
                ),
            ]
        )
    )
    out: list[Cancel] = []
    unreachable: dict[str, str] = {}
    for market in markets:
        try:
            open_orders = exchange.open_orders(market)
        except Exception as e:  # say so: "no open orders" must mean the exchange said so
            unreachable[market] = f"{type(e).__name__}: {e}"
            continue
        for order in open_orders:
            cid = order.client_order_id
            row = (
                conn.execute("SELECT * FROM trade_executions WHERE client_order_id = ?", (cid,)).fetchone()
                if cid
                else None
            )
            if row is None:
                continue  # not tinybot's
            out.append(_cancel_one(conn, exchange, row, market, cid, order.created_ms))
    return CancelReport(markets, out, unreachable)


def _cancel_one(conn: sqlite3.Connection, exchange, row: sqlite3.Row, market: str, cid: str, created_ms: int) -> Cancel:
    from .reconcile import find_order  # here: it imports the ledger, which `tinybot kill` never loads

    try:
        confirmed = exchange.cancel_order(market, cid)
        # canceled: Bitvavo may no longer find it by clientOrderId; the list since its creation has it
        after = find_order(exchange, row, since_ms=created_ms - 60_000)
    except Exception as e:  # keep going: the other orders still need cancelling
        return Cancel(row["id"], market, cid, "error", f"{type(e).__name__}: {e}")
    if after is not None and row["state"] == "submitted":
        from . import ledger  # here: ledger imports the exchange contract, which `tinybot kill` never loads

        with db.transaction(conn):
            ledger.apply_order(conn, row, exchange.name, after, from_states=("submitted",))
    status = after.status if after is not None else "?"
    with db.transaction(conn):
        db.event(
            conn,
            "order_canceled",
            f"execution {row['id']}: cancel of {market} order {cid}"
            f" {'confirmed' if confirmed else 'not confirmed'}; now {status}",
            severity="warning",
            execution_id=row["id"],
        )
    return Cancel(
        row["id"],
        market,
        cid,
        "canceled" if confirmed else "error",
        f"now {status}" if confirmed else f"cancel not confirmed; order is {status}",
    )
