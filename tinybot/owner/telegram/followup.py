"""What the phone hears after a request: an approval request edited once its proposal is decided or expired,
and a follow-up after an approval from the phone (filled at what price, or blocked and why).

Both lists live in ``ops_state`` as JSON (``telegram.requests``: the approval messages still showing
buttons; ``telegram.followups``: proposals approved from the phone whose outcome was not told yet), so a
restart of the loop forgets nothing.  ``Followups.check`` runs once per poll cycle.
"""

from __future__ import annotations

import json
import logging
import sqlite3

from ...base import clock
from ...base.config import Config
from ...store import db
from .api import BotApi

log = logging.getLogger("tinybot.telegram")

REQUESTS_KEY = "telegram.requests"
FOLLOWUPS_KEY = "telegram.followups"
KEEP = 200  # entries per list at most: an owner who never answers must not grow ops_state without end
# an execution in these states has an outcome to tell; claimed/submitted/unknown are still under way
DONE_STATES = ("filled", "failed", "blocked", "canceled")


class Followups:
    """Remembers approval messages and approvals from the phone; ``check`` tells what became of them."""

    def __init__(self, cfg: Config, conn: sqlite3.Connection, api: BotApi):
        self.cfg, self.conn, self.api = cfg, conn, api

    # -- what the announcer and the buttons call --
    def requested(self, pid: int, message: dict) -> None:
        """An approval request went out as ``message`` (the Bot API's answer to sendMessage)."""
        entry = {"pid": pid, "chat": message["chat"]["id"], "mid": message["message_id"], "text": message["text"]}
        self._save(REQUESTS_KEY, self._load(REQUESTS_KEY) + [entry])

    def answered(self, pid: int, chat: int) -> None:
        """A tap on the request in ``chat`` already put its outcome under it: no edit for that one."""
        self._save(REQUESTS_KEY, [e for e in self._load(REQUESTS_KEY) if (e["pid"], e["chat"]) != (pid, chat)])

    def approved(self, pid: int, chat: int) -> None:
        """Approved from ``chat``: tell it what happened once the executor has decided."""
        self._save(FOLLOWUPS_KEY, self._load(FOLLOWUPS_KEY) + [{"pid": pid, "chat": chat}])

    # -- once per poll cycle --
    def check(self) -> None:
        """Edit the requests whose proposal is no longer pending; send the follow-ups that have an outcome."""
        self._save(REQUESTS_KEY, [e for e in self._load(REQUESTS_KEY) if not self._closed(e)])
        self._save(FOLLOWUPS_KEY, [e for e in self._load(FOLLOWUPS_KEY) if not self._told(e)])

    def _closed(self, entry: dict) -> bool:
        """The request's proposal is decided or expired: its message says so and loses its buttons."""
        status, row = self._status(entry["pid"])
        if status == "pending":
            return False
        if row is None:
            note = "This proposal is gone (a restore?); nothing done."
        elif status == "expired":
            note = f"Expired at {clock.human_time(row['expires_at'], self.cfg.tz)}; nothing done."
        else:
            note = f"{status.capitalize()}" + (f" by {row['decided_by']}" if row["decided_by"] else "") + "."
        self.api.edit_message(entry["chat"], entry["mid"], f"{entry['text']}\n\n→ {note}")
        return True

    def _told(self, entry: dict) -> bool:
        """Send the outcome of an approval from the phone, once there is one."""
        text = outcome(self.conn, self.cfg, entry["pid"])
        if text is None:
            return False
        return self.api.send(entry["chat"], text) is not None

    def _status(self, pid: int):
        from ...trade import proposals

        row = self.conn.execute("SELECT * FROM proposals WHERE id = ?", (pid,)).fetchone()
        if row is None:
            return "gone", None
        has_execution = self.conn.execute("SELECT 1 FROM trade_executions WHERE proposal_id = ?", (pid,)).fetchone()
        return proposals.effective_status(row["status"], row["expires_at"], has_execution is not None), row

    def _load(self, key: str) -> list[dict]:
        try:
            return json.loads(db.get_state(self.conn, key) or "[]")
        except ValueError:
            log.warning("telegram: %s in ops_state is not JSON; starting it afresh", key)
            return []

    def _save(self, key: str, entries: list[dict]) -> None:
        db.set_state(self.conn, key, json.dumps(entries[-KEEP:]))


def outcome(conn: sqlite3.Connection, cfg: Config, pid: int) -> str | None:
    """'#7 filled: buy BTC-EUR 0.0001 @ 60030.09 = €6.00, fee €0.02' / '#7 blocked: max_daily — ...';
    None while the executor has not decided (or the proposal still waits to be executed)."""
    from ...analysis.status import why
    from ...trade import proposals
    from ..notify import trade_text

    e = conn.execute("SELECT * FROM trade_executions WHERE proposal_id = ? ORDER BY id DESC LIMIT 1", (pid,)).fetchone()
    if e is None:
        row = conn.execute("SELECT status, expires_at FROM proposals WHERE id = ?", (pid,)).fetchone()
        if row is not None and proposals.effective_status(row["status"], row["expires_at"], False) == "expired":
            return f"#{pid} expired before it was executed; nothing was sent."
        return None
    if e["state"] not in DONE_STATES:
        return None
    if e["state"] == "filled":
        return f"#{pid} filled: {trade_text(conn, e['id']).rstrip('; ')}."
    blocks = [d for d in why(conn, pid)["decisions"] if d["verdict"] == "block"]
    because = "; ".join(f"{d['guard']}: {d['detail'] or d['reason_code']}" for d in blocks) or e["reason"] or "?"
    return f"#{pid} {e['state']}: {because}. Nothing was bought or sold."
