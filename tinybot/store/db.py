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
import os
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..base.errors import TinybotError
from ..base import clock, exitcodes

BUSY_TIMEOUT_MS = 30_000


class DatabaseFault(TinybotError):
    """The database file cannot be used as it is: one line naming the file and the fix.

    ``exit_code`` is what the CLI exits with (LOCKED for a lock held too long,
    ERROR for everything a person must repair).
    """

    def __init__(self, message: str, exit_code: int = exitcodes.ERROR):
        super().__init__(message)
        self.exit_code = exit_code


def restore_hint(path: str | Path) -> str:
    """The exact restore command for the newest backup next to ``path``, or what to do without one."""
    from .backup import newest_in

    newest = newest_in(Path(path).parent / "backups")
    if newest is None:
        return (
            f"there is no backup in {Path(path).parent / 'backups'}: move {Path(path).name} aside and run"
            " `tinybot init` to start a new database"
        )
    return f"restore a backup: `tinybot backup --restore {newest.path.name}` (`tinybot backup --list` shows all)"


def read_only_fs(path: str | Path) -> bool:
    """Is the filesystem holding ``path`` mounted read-only?  (Root ignores file modes, not a ro mount.)"""
    try:
        return bool(os.statvfs(Path(path).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_exists(path: str | Path) -> None:
    """Refuse a missing or empty database: only `tinybot init` creates one (a typo must not start afresh)."""
    p = Path(path)
    if not p.exists():
        hint = restore_hint(p)
        fix = "run `tinybot init` to create it" + ("" if hint.startswith("there is no backup") else f", or {hint}")
        raise DatabaseFault(f"no database at {p}; {fix} (check `db =` in bot.toml if it should exist)")
    if p.is_file() and p.stat().st_size == 0:
        hint = restore_hint(p)
        raise DatabaseFault(
            f"{p} is empty (0 bytes), not a tinybot database; "
            + (
                hint
                if not hint.startswith("there is no backup")
                else "there is no backup: delete it and run `tinybot init` to start a new database"
            )
        )


def fault(e: BaseException, path: str | Path, *, waited_ms: int | None = None) -> DatabaseFault:
    """Translate an SQLite or OS error about ``path`` into the one line a person can act on."""
    if isinstance(e, DatabaseFault):
        return e
    waited = (BUSY_TIMEOUT_MS if waited_ms is None else waited_ms) / 1000
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    low = text.lower()
    if name.startswith("SQLITE_BUSY") or name.startswith("SQLITE_LOCKED") or "database is locked" in low:
        return DatabaseFault(
            f"{path} is locked by another process (waited {waited:g}s); find it with"
            f" `fuser -v {path}` (a `sqlite3` shell left open? another tinybot?), end it and try again",
            exitcodes.LOCKED,
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in low or "not a database" in low:
        return DatabaseFault(f"{path} is damaged ({text}); {restore_hint(path)}")
    if (
        name.startswith("SQLITE_READONLY") or "readonly" in low or "read-only" in low or getattr(e, "errno", None) == 30
    ):  # EROFS
        return DatabaseFault(
            f"{path} cannot be written: its filesystem is read-only (a failing SD card turns read-only);"
            " `tinybot status`, `history`, `why` and `doctor` still work; copy the newest backup to a good card,"
            f" then {restore_hint(path)}"
        )
    if name.startswith(("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN")) or isinstance(e, OSError):
        return DatabaseFault(
            f"{path} cannot be used ({text}): check the disk (full? failing SD card?), then {restore_hint(path)}"
        )
    return DatabaseFault(f"{path}: database error ({text}); {restore_hint(path)}")


def schema_text() -> str:
    """schema.sql, package data (in a checkout tinybot/schema.sql links to the top-level file)."""
    # the package's own folder, not importlib.resources: that import (tempfile, random, …) was a fifth of `kill`'s
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


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


def connect(path: str | Path, *, busy_timeout_ms: int | None = None) -> sqlite3.Connection:
    """Open the database the one way tinybot opens it.

    On a read-only filesystem (an SD card that failed into read-only mode)
    the file is opened read-only, so the commands that only read keep
    working: ``mode=ro`` while a ``-wal`` file holds data (SQLite reads it),
    ``immutable=1`` when there is none (nothing can change the file, and
    SQLite could not create the ``-shm`` it would otherwise need).
    """
    timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    if read_only_fs(path) and Path(path).exists():
        wal = Path(f"{path}-wal")
        mode = "mode=ro" if wal.exists() and wal.stat().st_size > 0 else "mode=ro&immutable=1"
        conn = sqlite3.connect(
            f"file:{Path(path).resolve()}?{mode}", uri=True, isolation_level=None, timeout=timeout_ms / 1000
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=timeout_ms / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
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
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    return [r["name"] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


def pending_migrations(conn: sqlite3.Connection) -> list[Migration]:
    done = set(applied_migrations(conn))
    return [m for m in migrations() if m.name not in done]


# Migrations that also need a step in Python, inside their transaction, from a room above this one: the
# books of 0010_books are the fills walked with exact decimals (tinybot.trade.ledger.after_migration).  The store
# does not import the trade layer, so whoever opens a database with fills passes that step.
NEEDS_AFTER_STEP = ("0010_books",)


def migrate(
    conn: sqlite3.Connection,
    before_migration=None,
    *,
    upto: str | None = None,
    after_migration: Callable[[sqlite3.Connection, str], None] | None = None,
) -> list[str]:
    """Apply pending migrations, each in its own transaction; return their names.

    ``before_migration(pending)`` is called once if anything is pending (the
    CLI passes a backup step).  ``after_migration(conn, name)`` runs inside
    each migration's transaction, after its SQL (the CLI, the loop and a
    restore pass ``ledger.after_migration``); a migration of
    ``NEEDS_AFTER_STEP`` on a database that holds fills is refused without
    it, before anything changes.  Two processes migrating at once are safe:
    the name is re-checked inside the transaction.  ``upto``: stop after that
    migration (a database of an older schema, as an older tinybot left it:
    tests and the chaos harness build their backups this way).
    """
    pending = pending_migrations(conn)
    if upto is not None:
        order = [m.name for m in migrations()]
        if upto not in order:
            raise ValueError(f"no migration {upto!r} in schema.sql")
        pending = [m for m in pending if order.index(m.name) <= order.index(upto)]
    needy = [m.name for m in pending if m.name in NEEDS_AFTER_STEP]
    if needy and after_migration is None and _has_fills(conn):
        raise DatabaseFault(
            f"migration {needy[0]} books this database's fills and was not given the ledger's step;"
            " open it with the tinybot command (e.g. `tinybot status`), which migrates it whole"
        )
    if pending and before_migration is not None:
        before_migration([m.name for m in pending])
    applied = []
    for m in pending:
        if _apply(conn, m, after_migration):
            applied.append(m.name)
    return applied


def _has_fills(conn: sqlite3.Connection) -> bool:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'trade_history'").fetchone():
        return False
    return conn.execute("SELECT 1 FROM trade_history LIMIT 1").fetchone() is not None


# Tables whose ids the owner sees (a proposal on a Telegram button, an execution in an alert).  Migration
# 0009_restore gives them AUTOINCREMENT, so their ids continue past sqlite_sequence, which a restore sets past
# the highest ids of the database it replaces: an id is never handed out twice.
SHOWN_IDS = ("proposals", "trade_executions")
_REBUILT = {"0009_restore": SHOWN_IDS}


def _apply(conn: sqlite3.Connection, m: Migration, after_migration=None) -> bool:
    """One migration in one transaction; False if another process applied it first."""
    rebuilt = _REBUILT.get(m.name, ())
    if rebuilt:  # a table others reference is dropped and renamed: SQLite's documented way, foreign keys off
        conn.execute("PRAGMA foreign_keys = OFF")  # (only outside a transaction has this any effect)
    try:
        with transaction(conn):
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (m.name,)).fetchone():
                return False
            for statement in _statements(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (m.name, clock.now_iso()),
            )
            for table in rebuilt:
                _with_autoincrement(conn, table)
            if rebuilt and conn.execute("PRAGMA foreign_key_check").fetchone():
                raise sqlite3.IntegrityError(f"migration {m.name}: a foreign key no longer holds; nothing was changed")
            if after_migration is not None:
                after_migration(conn, m.name)
            if m.name == "0001_core":
                conn.execute(
                    "INSERT INTO kill_switch (id, trading_enabled, reason, changed_at, changed_by)"
                    " VALUES (1, 1, 'initial', ?, 'init')",
                    (clock.now_iso(),),
                )
    finally:
        if rebuilt:
            conn.execute("PRAGMA foreign_keys = ON")
    return True


def highest_id(conn: sqlite3.Connection, table: str) -> int:
    """The highest id ``table`` has handed out: its largest id, or more if sqlite_sequence remembers more."""
    top = conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0] or 0
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone():
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        top = max(top, seq[0] if seq else 0)
    return top


def continue_ids_after(conn: sqlite3.Connection, table: str, highest: int) -> int:
    """Make the next id ``table`` hands out come after ``highest`` (a table with AUTOINCREMENT, 0009_restore);
    → the highest id now counted as handed out.  The caller owns the transaction."""
    current = highest_id(conn, table)
    if highest > current:
        if not conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (highest, table)).rowcount:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest))
    return max(current, highest)


def _with_autoincrement(conn: sqlite3.Connection, table: str) -> None:
    """Rebuild ``table`` with ``id INTEGER PRIMARY KEY AUTOINCREMENT``: every column, row and index kept."""
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]
    if re.search(r"\bAUTOINCREMENT\b", sql, re.I):
        return
    shadow = f"{table}_autoincrement"
    create, n = re.subn(
        r"\bid\s+INTEGER\s+PRIMARY\s+KEY\b", "id INTEGER PRIMARY KEY AUTOINCREMENT", sql, count=1, flags=re.I
    )
    create, m = re.subn(rf'^CREATE TABLE\s+"?{table}"?', f"CREATE TABLE {shadow}", create, count=1)
    if n != 1 or m != 1:
        raise ValueError(f"cannot give {table} AUTOINCREMENT: its id column is not `id INTEGER PRIMARY KEY`")
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,)
        )
    ]
    columns = ", ".join(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
    conn.execute(create)
    conn.execute(f"INSERT INTO {shadow} ({columns}) SELECT {columns} FROM {table}")  # sets sqlite_sequence
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {shadow} RENAME TO {table}")
    for index in indexes:
        conn.execute(index)


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
    if rest and not all(line.strip().startswith("--") or not line.strip() for line in buf):
        raise ValueError(f"incomplete SQL statement in schema.sql: {rest[:80]!r}")
    return out


def open_db(path: str | Path, before_migration=None, after_migration=None) -> sqlite3.Connection:
    """connect() + migrate(), creating the file if needed: `tinybot init` (and test set-ups)."""
    conn = connect(path)
    migrate(conn, before_migration=before_migration, after_migration=after_migration)
    return conn


def open_existing(path: str | Path, before_migration=None, after_migration=None) -> sqlite3.Connection:
    """What every command but `tinybot init` calls: the database must exist and be a tinybot database.

    A missing or empty file is refused with the fix (only init creates one);
    on a read-only filesystem the file is opened read-only and not migrated
    (a migration cannot be written there; reads of an older schema still work).
    """
    check_exists(path)
    conn = connect(path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'kill_switch'").fetchone():
            raise DatabaseFault(
                f"{path} is an SQLite file but not a tinybot database (no kill_switch table);"
                f" check `db =` in bot.toml, or {restore_hint(path)}"
            )
        if not read_only_fs(path):
            migrate(conn, before_migration=before_migration, after_migration=after_migration)
    except BaseException:
        conn.close()
        raise
    return conn


# --- the small things every module writes: events and a key/value state ---------------
# Here, not in ledger or notify, so the kill switch, the safety rules and the LLM advisor write
# them without importing the exchange contract (ledger) or the alert machinery (notify).


def event(
    conn: sqlite3.Connection, kind: str, detail: str, *, severity: str = "info", execution_id: int | None = None
) -> None:
    """One row in ``events`` (the audit trail; notify turns some kinds into alerts).  Caller owns the transaction."""
    conn.execute(
        "INSERT INTO events (at, kind, severity, execution_id, detail) VALUES (?, ?, ?, ?, ?)",
        (clock.now_iso(), kind, severity, execution_id, detail),
    )


def get_state(conn: sqlite3.Connection, name: str) -> str | None:
    """A cursor or counter from ``ops_state`` (None when never set)."""
    row = conn.execute("SELECT value FROM ops_state WHERE name = ?", (name,)).fetchone()
    return row["value"] if row else None


def set_state(conn: sqlite3.Connection, name: str, value: str) -> None:
    """Set one ``ops_state`` value, in the caller's transaction or in its own."""

    def write():
        conn.execute(
            "INSERT INTO ops_state (name, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
            " WHERE ops_state.value IS NOT excluded.value",  # an unchanged value writes nothing (SD-card wear)
            (name, value, clock.now_iso()),
        )

    if conn.in_transaction:
        write()
    else:
        with transaction(conn):
            write()
