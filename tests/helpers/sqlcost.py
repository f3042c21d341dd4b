"""What SQL a piece of tinybot does, counted, never timed: statements run and SQLite virtual-machine steps (the
work of reading rows: a scan shows as steps that grow with the table, a seek does not), and a history to run it on."""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass
class SqlCost:
    statements: list[str] = field(default_factory=list)
    steps: int = 0


@contextmanager
def counted(conn: sqlite3.Connection):
    """Count every statement ``conn`` runs and every VM step it takes inside the block."""
    cost = SqlCost()

    def step():
        cost.steps += 1
        return 0  # go on

    conn.set_trace_callback(cost.statements.append)
    conn.set_progress_handler(step, 1)
    try:
        yield cost
    finally:
        conn.set_progress_handler(None, 1)
        conn.set_trace_callback(None)


def seed_history(conn: sqlite3.Connection, n: int, until: datetime, per_day: int = 8, source: str = "rules") -> None:
    """``n`` past proposals of ``source``, each executed and filled, ``per_day`` a day back from ``until`` over two
    markets: a long-running bot's history (a denser or longer one only means more days)."""
    step = timedelta(days=1) / per_day
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    with conn:
        for i in range(1, n + 1):
            at = iso(until - step * i)
            market, side = ("BTC-EUR", "ETH-EUR")[i % 2], "buy" if i % 3 else "sell"
            pid = conn.execute(
                "INSERT INTO proposals (market, side, amount_quote, source, status, created_at, expires_at, book)"
                " VALUES (?, ?, '6', ?, 'approved', ?, ?, ?)",
                (market, side, source, at, at, source),
            ).lastrowid
            eid = conn.execute(
                "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount_quote,"
                " notional_eur, state, claimed_at, submitting_at, updated_at, filled_amount, filled_quote, fee_paid,"
                " exchange_order_id) VALUES (?, ?, 'paper', ?, ?, '6', '6', 'filled', ?, ?, ?, '0.0001', '5.985',"
                " '0.015', ?)",
                (pid, f"c{pid}", market, side, at, at, at, f"o{pid}"),
            ).lastrowid
            conn.execute(
                "INSERT INTO trade_history (execution_id, exchange, trade_id, order_id, market, side, amount, price,"
                " fee, fee_currency, executed_at, recorded_at, book) VALUES (?, 'paper', ?, ?, ?, ?, '0.0001',"
                " '59850', '0.015', 'EUR', ?, ?, ?)",
                (eid, f"t{pid}", f"o{pid}", market, side, at, at, source),
            )
