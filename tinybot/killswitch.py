"""The kill switch: one row, one write.  Imports nothing heavy, so `tinybot kill` is instant."""
from __future__ import annotations

import sqlite3

from . import clock, db, ledger


def set_enabled(conn: sqlite3.Connection, enabled: bool, reason: str, by: str) -> bool:
    """Flip the switch; returns True if it changed.  The change is logged as an event.

    Setting it to what it already is changes nothing: the first reason (say,
    an automatic kill's) and its time are kept, not overwritten by a second kill.
    """
    with db.transaction(conn):
        row = conn.execute("SELECT trading_enabled FROM kill_switch WHERE id = 1").fetchone()
        if row is not None and bool(row["trading_enabled"]) == enabled:
            return False
        conn.execute(
            "INSERT INTO kill_switch (id, trading_enabled, reason, changed_at, changed_by) VALUES (1, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET trading_enabled = excluded.trading_enabled, reason = excluded.reason,"
            " changed_at = excluded.changed_at, changed_by = excluded.changed_by",
            (int(enabled), reason, clock.now_iso(), by),
        )
        ledger.event(conn, "kill_switch", f"trading {'enabled' if enabled else 'disabled'} by {by}: {reason}",
                     severity="info" if enabled else "warning")
    return True


def state(conn: sqlite3.Connection) -> dict:
    row = conn.execute("SELECT * FROM kill_switch WHERE id = 1").fetchone()
    return dict(row) if row else {"trading_enabled": 0, "reason": "missing", "changed_at": None, "changed_by": ""}
