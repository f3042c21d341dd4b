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
import errno
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
    ERROR for everything a person must repair); ``kind`` what is wrong: locked, damaged, read_only, full,
    io (the card failed a read or write), missing, other.
    """

    def __init__(self, message: str, exit_code: int = exitcodes.ERROR, kind: str = "other"):
        super().__init__(message)
        self.exit_code = exit_code
        self.kind = kind


def restore_hint(path: str | Path) -> str:
    """The exact restore command for the newest backup next to ``path``, or what to do without one.

    A new database is suggested only when there is no backup *and* SQLite's ``quick_check`` says the file
    itself is damaged: an intact file, or one that cannot even be checked, is never to be thrown away."""
    hint = backup_hint(path)
    if hint is not None:
        return hint
    health = quick_check(path)
    if health == "ok":
        return (
            f"{Path(path).name} itself passes SQLite's quick_check: keep it (do not move or delete it), fix the"
            " disk, then take a backup (`tinybot backup`)"
        )
    if health is None:
        return (
            f"{Path(path).name} could not be checked: keep it (do not delete it); there is no backup in"
            f" {Path(path).parent / 'backups'} to restore"
        )
    return (
        f"there is no backup in {Path(path).parent / 'backups'}: move {Path(path).name} aside (keep it) and run"
        " `tinybot init` to start a new database"
    )


def quick_check(path: str | Path) -> str | None:
    """SQLite's ``PRAGMA quick_check`` of the file at ``path``, read-only: 'ok', what it found wrong, or None
    when the file could not be read at all (its disk fails, or it is not there)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        conn = read_only(p, 2000)
        try:
            return "; ".join(r[0] for r in conn.execute("PRAGMA quick_check").fetchall()[:3])
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        name = getattr(e, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return str(e)
        return None


# Less free space than this on the database's filesystem is a full disk: SQLite needs room for its -wal and
# a 32 KiB -shm, and ext4 keeps a reserve only root may use.
FULL_BELOW_BYTES = 256 * 1024


def free_bytes(path: str | Path) -> int | None:
    """Bytes a non-root process may still write on the filesystem holding ``path`` (None: cannot tell)."""
    try:
        st = os.statvfs(Path(path).parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_full(e: BaseException, path: str | Path | None = None) -> bool:
    """Is ``e`` a full disk: SQLITE_FULL, ENOSPC/EDQUOT, or an I/O error while the filesystem of ``path``
    has no room left (SQLite reports a -shm it cannot grow as a disk I/O error)."""
    name = getattr(e, "sqlite_errorname", "") or ""
    if name.startswith("SQLITE_FULL") or "database or disk is full" in str(e).lower():
        return True
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if path is not None and (name.startswith("SQLITE_IOERR") or "disk i/o error" in str(e).lower()):
        return _short_of_room(path)
    return False


def _short_of_room(path: str | Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < FULL_BELOW_BYTES


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n // 1024} KiB" if n < 10 * 1024 * 1024 else f"{n // (1024 * 1024)} MiB"


def read_only_fs(path: str | Path) -> bool:
    """Is the filesystem holding ``path`` mounted read-only?  (Root ignores file modes, not a ro mount.)"""
    try:
        return bool(os.statvfs(Path(path).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def backup_hint(path: str | Path) -> str | None:
    """The exact restore command for the newest backup next to ``path``; None when there is no backup."""
    from .backup import newest_in

    newest = newest_in(Path(path).parent / "backups")
    if newest is None:
        return None
    return f"restore a backup: `tinybot backup --restore {newest.path.name}` (`tinybot backup --list` shows all)"


def check_exists(path: str | Path) -> None:
    """Refuse a missing or empty database: only `tinybot init` creates one (a typo must not start afresh)."""
    p = Path(path)
    if not p.exists():
        hint = backup_hint(p)
        fix = "run `tinybot init` to create it" + ("" if hint is None else f", or {hint}")
        raise DatabaseFault(f"no database at {p}; {fix} (check `db =` in bot.toml if it should exist)", kind="missing")
    if p.is_file() and p.stat().st_size == 0:
        raise DatabaseFault(
            f"{p} is empty (0 bytes), not a tinybot database; "
            + (backup_hint(p) or "there is no backup: delete it and run `tinybot init` to start a new database"),
            kind="missing",
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
            "locked",
        )
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in low or "not a database" in low:
        return DatabaseFault(f"{path} is damaged ({text}); {restore_hint(path)}", kind="damaged")
    refused = (
        name.startswith("SQLITE_READONLY") or "readonly" in low or "read-only" in low or getattr(e, "errno", None) == 30
    )  # EROFS; a full disk's read-only fallback (connect) refuses writes the same way
    if disk_full(e, path) or (refused and not read_only_fs(path) and _short_of_room(path)):
        return DatabaseFault(
            f"{path} cannot be written: the disk holding it is full ({_size(free_bytes(path))} free); nothing in it"
            f" is lost: free some space on {Path(path).parent} (old files in backups/, logs, other files), then"
            " try again (a running `tinybot run` pauses trading and resumes by itself)",
            kind="full",
        )
    if refused:
        hint = backup_hint(path)
        move = (
            f"copy {Path(path).parent} to a good card, then {hint}"
            if hint
            else f'copy it to a good card (`sqlite3 {path} ".backup /good/card/{Path(path).name}"`) and run'
            " tinybot from there"
        )
        return DatabaseFault(
            f"{path} cannot be written: its filesystem is read-only (a failing SD card turns read-only);"
            f" `tinybot status`, `history`, `why` and `doctor` still work; {move}",
            kind="read_only",
        )
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or isinstance(e, OSError):
        return DatabaseFault(
            f"{path} cannot be used ({text}): check the card (`dmesg`); {restore_hint(path)}", kind="io"
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

    On a read-only filesystem (an SD card that failed into read-only mode),
    and on a full one (SQLite cannot even make its 32 KiB ``-shm``), the file
    is opened read-only (``read_only``), so the commands that only read keep
    working; a write then fails, and ``fault`` says which of the two it is.
    """
    timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    if read_only_fs(path) and Path(path).exists():
        return read_only(path, timeout_ms)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=timeout_ms / 1000)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.OperationalError as e:
        conn.close()
        if not (Path(path).is_file() and disk_full(e, path)):
            raise
        return read_only(path, timeout_ms)
    return conn


def read_only(path: str | Path, timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """A connection that only reads (``PRAGMA query_only``): ``mode=ro``, which shares the ``-shm`` of a
    running writer; when SQLite cannot set that up (a read-only or full filesystem) and no ``-wal`` holds
    data, ``immutable=1`` (the file alone is the whole database then)."""
    uri = f"file:{Path(path).resolve()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout_ms / 1000)
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.OperationalError:
        conn.close()
        wal = Path(f"{path}-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, timeout=timeout_ms / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {timeout_ms}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA query_only = 1")
    return conn


def is_read_only(conn: sqlite3.Connection) -> bool:
    """Was ``conn`` opened by ``read_only`` (a read-only or full filesystem)?"""
    return bool(conn.execute("PRAGMA query_only").fetchone()[0])


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
        if conn.in_transaction:  # SQLite has already rolled back after SQLITE_FULL (and IOERR, NOMEM): a second
            conn.execute("ROLLBACK")  # ROLLBACK would raise "no transaction is active" and hide the real error
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
        if not is_read_only(conn):  # a migration cannot be written on a read-only or full disk
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
