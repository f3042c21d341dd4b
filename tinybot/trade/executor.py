"""The executor: the only place that sends orders.

    CLAIM      BEGIN IMMEDIATE; INSERT trade_executions (UNIQUE proposal_id,
               client_order_id fixed here) -> claimed
    PREFLIGHT  network reads with no lock held: markets, ticker, balance
    COMMIT     BEGIN IMMEDIATE; every guard against DB state *including
               in-flight executions*; -> submitting (durable) or blocked
    SEND       send_order(client_order_id = that execution's id)
    RECORD     accepted -> submitted/filled (+ fills); refused -> failed;
               ambiguous -> unknown (only reconcile leaves unknown)

``execute`` on a proposal that already has an execution returns it and never
sends again.  An execution left ``claimed`` (a crash or a failed preflight:
nothing was sent) is resumed; the compare-and-set from ``claimed`` to
``submitting`` lets exactly one process through.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal

from ..base.errors import TinybotError
from ..base import clock, crash
from ..store import db
from . import guards, ledger
from ..base.config import Config
from ..base.errors import ConfigError
from ..exchange.base import ExchangeError, SendOutcome, Trading


class NotExecutable(TinybotError):
    """The proposal cannot be executed as it stands (not approved, unknown id); nothing was written but the audit."""


@dataclass(frozen=True)
class Result:
    proposal_id: int
    execution_id: int | None
    state: str
    reason: str
    client_order_id: str | None
    exchange_order_id: str | None
    sent: bool  # did *this call* send an order

    def as_dict(self) -> dict:
        return asdict(self)


def trading_exchange(cfg: Config, market_data=None) -> Trading:
    """The one factory that builds an exchange able to place orders.

    Paper mode never reads the trade key.  Live mode reads it here and
    nowhere else, and refuses to start without an operatorId.
    """
    if cfg.mode == "paper":
        from ..exchange.paper import PaperExchange

        if market_data is None:
            from ..exchange import market_data as md

            market_data = md(cfg)
        return PaperExchange(
            cfg.db_path, market_data, starting_eur=cfg.paper.starting_eur, taker_fee=cfg.paper.taker_fee
        )
    if cfg.exchange.operator_id is None:
        raise ConfigError(f"live mode needs an operatorId: set [exchange] operator_id in {cfg.path}")
    creds = cfg.secrets().pair("TINYBOT_TRADE_KEY", "TINYBOT_TRADE_SECRET")
    if creds is None:
        raise ConfigError(
            "live mode needs the trading key: set TINYBOT_TRADE_KEY and TINYBOT_TRADE_SECRET"
            f" in the environment or in {cfg.secrets_path} (chmod 600)"
        )
    from ..exchange.bitvavo.clients import BitvavoTrading

    return BitvavoTrading(cfg, *creds)


def _result(row: sqlite3.Row, sent: bool) -> Result:
    return Result(
        row["proposal_id"],
        row["id"],
        row["state"],
        row["reason"] or "",
        row["client_order_id"],
        row["exchange_order_id"],
        sent,
    )


def execute(conn: sqlite3.Connection, cfg: Config, exchange: Trading, proposal_id: int) -> Result:
    # ---- CLAIM -------------------------------------------------------------
    refusal = None
    with db.transaction(conn):
        existing = conn.execute("SELECT * FROM trade_executions WHERE proposal_id = ?", (proposal_id,)).fetchone()
        if existing is None:
            proposal = conn.execute("SELECT * FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
            if proposal is None:
                raise NotExecutable(f"no proposal with id {proposal_id}")
            if proposal["status"] != "approved":
                hint = (
                    f"; approve it first with `tinybot approve {proposal_id}`"
                    if proposal["status"] == "pending"
                    else ""
                )
                guards.record(
                    conn,
                    proposal_id,
                    None,
                    "claim",
                    [guards.blocked("approval", "not_approved", f"proposal is {proposal['status']}")],
                    clock.now(),
                )
                # commit the audit row, then refuse
                refusal = NotExecutable(f"proposal {proposal_id} is {proposal['status']}, not approved{hint}")
            else:
                now = clock.now_iso()
                conn.execute(
                    "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount_quote,"
                    " amount, external, state, claimed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'claimed', ?, ?)",
                    (
                        proposal_id,
                        str(uuid.uuid4()),
                        exchange.name,
                        proposal["market"],
                        proposal["side"],
                        proposal["amount_quote"],
                        proposal["amount"],
                        proposal["external"],
                        now,
                        now,
                    ),
                )
    if refusal is not None:
        raise refusal
    execution = conn.execute("SELECT * FROM trade_executions WHERE proposal_id = ?", (proposal_id,)).fetchone()
    if execution["state"] != "claimed":
        return _result(execution, sent=False)  # already decided: never send again
    crash.point("after_claim")

    # ---- PREFLIGHT (no lock held) --------------------------------------------
    market = execution["market"]
    try:
        markets = exchange.markets()
        ticker = exchange.ticker(market) if market in markets else None
        balances = exchange.balances()
    except ExchangeError as e:
        # Nothing was sent; the execution stays claimed and a retry resumes it.
        return Result(
            proposal_id, execution["id"], "claimed", f"preflight_failed: {e}", execution["client_order_id"], None, False
        )

    # ---- COMMIT TO SEND ------------------------------------------------------
    with db.transaction(conn):
        execution = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (execution["id"],)).fetchone()
        if execution["state"] != "claimed":
            return _result(execution, sent=False)  # another process got here first
        proposal = conn.execute("SELECT * FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        now = clock.now()
        ctx = guards.Context(conn, cfg, now, proposal, execution["id"], markets.get(market), ticker, balances)
        verdicts = guards.evaluate(ctx)
        guards.record(conn, proposal_id, execution["id"], "commit", verdicts, now)
        blocks = [v for v in verdicts if not v.ok]
        if blocks:
            # said once: several guards can block for one cause (an unlisted market fails three of them)
            reason = "; ".join(dict.fromkeys(f"{v.code}: {v.detail}" for v in blocks))
            conn.execute(
                "UPDATE trade_executions SET state = 'blocked', reason = ?, updated_at = ?, resolved_at = ?"
                " WHERE id = ?",
                (reason, clock.to_iso(now), clock.to_iso(now), execution["id"]),
            )
        else:
            notional = ctx.spend_eur()  # what the caps count while in flight: fee and slippage included
            # a sell sized in EUR is sent as the base amount the guards counted (guards.sell_amount): by EUR,
            # a price falling before the fill would sell more coins than its book holds
            sells = ctx.selling() if ctx.side == "sell" and execution["amount"] is None else None
            conn.execute(
                "UPDATE trade_executions SET state = 'submitting', submitting_at = ?, updated_at = ?,"
                " notional_eur = ?, access_window_ms = ?, amount = COALESCE(?, amount) WHERE id = ? AND state = 'claimed'",
                (
                    clock.to_iso(now),
                    clock.to_iso(now),
                    str(notional),
                    int(cfg.exchange.access_window.total_seconds() * 1000),
                    None if sells is None else format(sells, "f"),
                    execution["id"],
                ),
            )
    execution = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (execution["id"],)).fetchone()
    if blocks:
        return _result(execution, sent=False)
    crash.point("after_submitting_commit")

    # ---- SEND ----------------------------------------------------------------
    outcome = _send(exchange, execution)
    crash.point("after_reply_before_record")

    # ---- RECORD --------------------------------------------------------------
    with db.transaction(conn):
        record_outcome(conn, execution, exchange.name, outcome)
    execution = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (execution["id"],)).fetchone()
    return _result(execution, sent=True)


def sign_by_ms(execution: sqlite3.Row) -> int:
    """The latest moment the order request may be signed: one access window after `submitting`.

    The backend's own reads before the request (market table, the
    clientOrderId lookup) may be slow; past this moment it sends nothing.  So
    a request carries a timestamp <= submitting_at + window and Bitvavo
    refuses it after + another window: reconcile may call an order absent
    from submitting_at + 2 × window + grace on (reconcile.absent_after).
    """
    return clock.to_ms(clock.from_iso(execution["submitting_at"])) + execution["access_window_ms"]


def _send(exchange: Trading, execution: sqlite3.Row) -> SendOutcome:
    by_base = execution["amount"] is not None  # a sell sized in EUR has its base amount fixed at commit
    try:
        return exchange.send_order(
            execution["market"],
            execution["side"],
            client_order_id=execution["client_order_id"],
            amount_quote=None if by_base else Decimal(execution["amount_quote"]),
            amount=Decimal(execution["amount"]) if by_base else None,
            sign_by_ms=sign_by_ms(execution),
            # the pre-send lookup scans the market's orders from the claim on: Bitvavo may not find a closed
            # order by its clientOrderId
            claimed_ms=clock.to_ms(clock.from_iso(execution["claimed_at"])),
        )
    except Exception as e:  # a bug or an unclassified failure: the order may exist
        return SendOutcome.ambiguous(f"send raised {type(e).__name__}: {e}", code=type(e).__name__)


def record_outcome(conn: sqlite3.Connection, execution: sqlite3.Row, exchange_name: str, outcome: SendOutcome) -> None:
    """Write what the send said.  Only moves a row still in `submitting` (reconcile may have been faster)."""
    now = clock.now_iso()
    if outcome.kind == "accepted" and outcome.order is not None:
        if not ledger.apply_order(conn, execution, exchange_name, outcome.order, from_states=("submitting",)):
            current = conn.execute("SELECT state FROM trade_executions WHERE id = ?", (execution["id"],)).fetchone()[0]
            if current in ("failed", "blocked"):
                # reconcile called it absent, yet the exchange accepted it: the exchange is right
                ledger.apply_order(conn, execution, exchange_name, outcome.order, from_states=(current,))
                db.event(
                    conn,
                    "surprise_order",
                    f"order {outcome.order.order_id} was accepted for execution {execution['id']}, which"
                    f" was recorded as {current}; corrected to what the exchange says",
                    severity="error",
                    execution_id=execution["id"],
                )
        return
    if outcome.kind == "refused":
        state, reason = "failed", f"refused: {outcome.reason}" + (f" (code {outcome.code})" if outcome.code else "")
    else:
        state, reason = "unknown", f"ambiguous: {outcome.reason}" + (f" (code {outcome.code})" if outcome.code else "")
    moved = (
        conn.execute(
            "UPDATE trade_executions SET state = ?, reason = ?, updated_at = ?,"
            " resolved_at = CASE WHEN ? = 'failed' THEN ? ELSE resolved_at END"
            " WHERE id = ? AND state = 'submitting'",
            (state, reason, now, state, now, execution["id"]),
        ).rowcount
        == 1
    )
    if state == "unknown" and moved:  # reconcile may have resolved it while the send was slow: then nothing is unknown
        db.event(
            conn,
            "execution_unknown",
            f"execution {execution['id']}: {reason}",
            severity="warning",
            execution_id=execution["id"],
        )
