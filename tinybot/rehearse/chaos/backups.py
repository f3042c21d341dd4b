"""Backups of a bench's database — taken now, or of a database as each shipped schema made it — and restores.

A restore is checked as it happens: the LLM spend must not go down
(invariant 7), nothing the backup had in flight may still be sendable, and
the restored database must not trade on its own (invariant 1).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path

from tinybot.store import backup, db
from tinybot.base.config import Config

from .bot import Bot
from .memory import Memory

IN_DOUBT = ("claimed", "submitting", "unknown")


def schema_backup(cfg: Config, schema: str) -> backup.Backup:
    """A backup of a database as a tinybot of ``schema`` made it, when it was new (tinybot.store.db.migrate upto)."""
    older = replace(cfg, db=f"schema-{schema}.db")
    conn = db.connect(older.db_path)
    try:
        db.migrate(conn, upto=schema)
    finally:
        conn.close()
    try:
        return backup.make(older, label=f"chaos-schema-{schema}", keep=1000)
    finally:
        for side in ("", "-wal", "-shm"):
            Path(f"{older.db_path}{side}").unlink(missing_ok=True)


def _in_backup(path: Path) -> tuple[Counter, set[int]]:
    """→ (the backup's executions in flight, by state; the ids of the proposals it has)."""
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        in_doubt = Counter(
            r[0]
            for r in src.execute(
                "SELECT state FROM trade_executions WHERE state IN (%s)" % ",".join("?" * len(IN_DOUBT)), IN_DOUBT
            )
        )
        kept = {r[0] for r in src.execute("SELECT id FROM proposals")}
    finally:
        src.close()
    return in_doubt, kept


class Backups:
    """The bot's backups, made with tinybot.store.backup and put back with tinybot.ops.restore, as a person would."""

    def __init__(self, bot: Bot, memory: Memory):
        self.bot, self.memory = bot, memory

    def take(self, label: str) -> backup.Backup:
        return backup.make(self.bot.cfg, label=label, keep=1000)

    def restore(self, saved: backup.Backup) -> Counter:
        """`tinybot backup --restore`: → the states of the rows the backup had in flight."""
        self.memory.keep_rows(self.bot.conn)
        in_doubt, kept = _in_backup(saved.path)
        spent = self.bot.llm_spend()
        self.bot.restore(str(saved.path))
        after = self.bot.llm_spend()
        if after[0] < spent[0] or after[1] < spent[1]:  # invariant 7: the provider billed those calls
            self.memory.problems.append(
                f"(7) LLM spend went down across a restore: €{after[0]} today and €{after[1]} this month after"
                f" restoring {saved.path.name}, €{spent[0]} and €{spent[1]} before it"
            )
        self.memory.keep_proposals(kept)
        self._check_quarantine()
        return in_doubt

    def _check_quarantine(self) -> None:
        """Invariant 1 after a restore: no row left sendable, and trading off until a person resumes it."""
        left = self.bot.conn.execute(
            "SELECT id, state FROM trade_executions WHERE state IN ('claimed', 'submitting')"
        ).fetchall()
        if left:
            self.memory.problems.append(
                "(1) after the restore, executions "
                + ", ".join(f"{r['id']} ({r['state']})" for r in left)
                + " may still be sent: not quarantined"
            )
        if self.bot.trading_enabled():
            self.memory.problems.append("(1) the restored database trades on its own: the kill switch is not on")
