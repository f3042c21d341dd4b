"""SQLite storage: one connection factory, one transaction context, migrations.

Every connection is opened the same way (WAL, synchronous=FULL, foreign keys,
a busy timeout, ``isolation_level=None``) and every write goes through
``transaction(conn)``, which issues ``BEGIN IMMEDIATE`` itself.  Python's
sqlite3 module never opens or commits a transaction behind our back, and a
writer that takes the lock at BEGIN cannot be overtaken between its read and
its write (the check-then-act race the guards depend on).
"""
from __future__ import annotations

import contextlib
import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterator

from . import clock

BUSY_TIMEOUT_MS = 30_000


def schema_text() -> str:
    """schema.sql, package data (in a checkout tinybot/schema.sql links to the top-level file)."""
    return resources.files("tinybot").joinpath("schema.sql").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Split schema.sql at its ``-- migration: NAME`` markers, in file order."""
    found: list[Migration] = []
    name = None
    lines: list[str] = []
    for line in schema_text().splitlines():
        m = re.match(r"--\s*migration:\s*(\S+)\s*$", line)
        if m:
            if name:
                found.append(Migration(name, "\n".join(lines)))
            name, lines = m.group(1), []
        elif name:
            lines.append(line)
    if name:
        found.append(Migration(name, "\n".join(lines)))
    return found


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database the one way tinybot opens it."""
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any exception.

    Refuses to nest: a nested BEGIN would fail anyway, and silently joining an
    outer transaction would hide who owns the commit.
    """
    if conn.in_transaction:
        raise RuntimeError("transaction() called inside an open transaction")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def applied_migrations(conn: sqlite3.Connection) -> list[str]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    return [r["name"] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


def pending_migrations(conn: sqlite3.Connection) -> list[Migration]:
    done = set(applied_migrations(conn))
    return [m for m in migrations() if m.name not in done]


def migrate(conn: sqlite3.Connection, before_migration=None) -> list[str]:
    """Apply pending migrations, each in its own transaction; return their names.

    ``before_migration(pending)`` is called once if anything is pending (the
    CLI passes a backup step).  Two processes migrating at once are safe: the
    name is re-checked inside the transaction.
    """
    pending = pending_migrations(conn)
    if pending and before_migration is not None:
        before_migration([m.name for m in pending])
    applied = []
    for m in pending:
        with transaction(conn):
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (m.name,)).fetchone():
                continue
            for statement in _statements(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (m.name, clock.now_iso()),
            )
            if m.name == "0001_core":
                conn.execute(
                    "INSERT INTO kill_switch (id, trading_enabled, reason, changed_at, changed_by)"
                    " VALUES (1, 1, 'initial', ?, 'init')",
                    (clock.now_iso(),),
                )
        applied.append(m.name)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration into complete statements (executescript would COMMIT for us)."""
    out, buf = [], []
    for line in sql.splitlines():
        buf.append(line)
        chunk = "\n".join(buf)
        if sqlite3.complete_statement(chunk):
            if chunk.strip():
                out.append(chunk)
            buf = []
    rest = "\n".join(buf).strip()
    if rest and not all(l.strip().startswith("--") or not l.strip() for l in buf):
        raise ValueError(f"incomplete SQL statement in schema.sql: {rest[:80]!r}")
    return out


def open_db(path: str | Path, before_migration=None) -> sqlite3.Connection:
    """connect() + migrate(): what every command that touches state calls."""
    conn = connect(path)
    migrate(conn, before_migration=before_migration)
    return conn
