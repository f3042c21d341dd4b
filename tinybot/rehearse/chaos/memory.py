"""What the harness remembers that a restore makes the database forget, and the violations it saw as they happened.

A restore makes the database forget rows and proposals, and proposal ids
are reused after it: the harness numbers proposals itself, keeps every
execution row as it was before each restore, and remembers every id it was
ever handed (invariant 6).
"""

from __future__ import annotations

import sqlite3


class Memory:
    """The harness's own numbering of proposals, the rows a restore erased, and the problems seen so far."""

    def __init__(self):
        self.keys: dict[int, int] = {}  # DB proposal id -> the harness's proposal number
        self.history: dict[str, dict] = {}  # clientOrderId -> execution row (+ proposal_key) before a restore
        self._proposals = 0
        self.shown: dict[int, int] = {}  # every proposal id ever handed out -> the harness's number (never pruned)
        self.problems: list[str] = []  # invariant violations seen during the batch (after a restore)

    def number(self, pid: int) -> None:
        """Give the proposal the database just called ``pid`` the harness's next number."""
        self._proposals += 1
        self.keys[pid] = self._proposals
        if pid in self.shown:  # invariant 6: an id the owner saw (a Telegram button) now names another proposal
            self.problems.append(
                f"(6) proposal id {pid} was handed out again: it named the harness's proposal"
                f" #{self.shown[pid]} and now names #{self._proposals}"
            )
        self.shown[pid] = self._proposals

    def keep_rows(self, conn: sqlite3.Connection) -> None:
        """Before a restore: every execution row the database has, with its proposal's number and source."""
        for r in conn.execute(
            "SELECT e.*, p.source AS source FROM trade_executions e JOIN proposals p ON p.id = e.proposal_id"
        ):
            row = dict(r) | {"proposal_key": self.keys[r["proposal_id"]]}
            # what an earlier restore erased (a submitting_at the backup never had) stays known
            for k, v in self.history.get(r["client_order_id"], {}).items():
                if row.get(k) is None:
                    row[k] = v
            self.history[r["client_order_id"]] = row

    def keep_proposals(self, kept: set[int]) -> None:
        """After a restore: only the proposals the backup had are still the database's."""
        self.keys = {p: k for p, k in self.keys.items() if p in kept}  # proposed after the backup: gone

    def dca_orders(self, conn: sqlite3.Connection) -> set[str]:
        """The clientOrderIds of the DCA advisor's executions, those a restore made the database forget too."""
        now = {
            r[0]
            for r in conn.execute(
                "SELECT e.client_order_id FROM trade_executions e JOIN proposals p ON p.id = e.proposal_id"
                " WHERE p.source = 'dca'"
            )
        }
        return now | {cid for cid, h in self.history.items() if h.get("source") == "dca"}
