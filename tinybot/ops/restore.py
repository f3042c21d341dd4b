"""Putting a backup back: a restore rolls back the database, never the world.

Everything that happened after the backup — orders on the exchange, LLM
spend, ids the owner has seen — still happened.  So a restore never copies a
backup over the live database; it prepares the database to put back in a
scratch file next to it, and only swaps it in once it is whole:

1. **copy** the backup into ``<db>.restoring`` (SQLite's backup API);
2. **migrate** it to the current schema (a backup of any shipped schema);
3. **stop and quarantine**: trading off (kill switch, by "restore"); every
   execution in flight becomes ``unknown`` and every undecided proposal is
   rejected (``reconcile.quarantine_after_restore``): only reconcile, which
   asks the exchange, decides them;
4. **carry forward** from the database it replaces: the LLM spend rows newer
   than the backup, and the id sequences past its highest ids (an id shown on
   the owner's phone never names another proposal); and ask the next
   reconcile to scan the exchange from the backup's time, so every order made
   since is found and booked (a DCA advisor then sees the buys it made).
   When that database cannot be read, its LLM spend is unknown and the
   budgets count as spent until the month ends;
5. **check** the scratch file: integrity, the schema complete, trading off;
6. **swap** it in atomically (``os.replace``), after a ``pre-restore``
   backup of the database it replaces (or setting a damaged one aside) and
   after folding that database's ``-wal`` in (which needs every other
   connection to it closed).

Everything happens under the run lock, so `tinybot run` cannot be ticking.
Any failure before the swap leaves the live database and the kill switch
exactly as they were (``RestoreError``: one line).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

from ..store import backup, db
from ..base import clock, exitcodes
from ..trade import killswitch, ledger, reconcile
from ..advisors import llm_budget
from ..store.backup import Backup, BackupError

SCRATCH_SUFFIX = ".restoring"
SIDE_FILES = ("-wal", "-shm", "-journal")
QUIESCE_TIMEOUT_S = 5  # how long the swap waits for other connections to the live database to close
# Where a backup's time is read from when its name does not say (a file copied by hand): the newest of these
ACTIVITY = (
    ("events", "at"),
    ("proposals", "created_at"),
    ("trade_executions", "updated_at"),
    ("gpt_usage_log", "reserved_at"),
    ("ticks", "started_at"),
    ("schema_migrations", "applied_at"),
)


class RestoreError(BackupError):
    """The restore did not happen; the live database and the kill switch are as they were."""


@dataclass
class Restored:
    """What a restore did (the CLI prints it; ``--json`` gives ``as_dict``)."""

    backup: Path
    taken_at: datetime
    db: Path
    migrated: list[str]
    in_doubt: list[int]
    rejected: list[int]
    scan_from: datetime
    ids_after: dict[str, int]
    llm_rows: int = 0
    previous: Backup | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "restored": str(self.backup),
            "db": str(self.db),
            "previous_db_saved_as": str(self.previous.path) if self.previous else None,
            "backup_taken_at": clock.to_iso(self.taken_at),
            "migrated": self.migrated,
            "in_doubt_executions": self.in_doubt,
            "rejected_proposals": self.rejected,
            "scan_orders_since": clock.to_iso(self.scan_from),
            "ids_continue_after": self.ids_after,
            "llm_rows_carried": self.llm_rows,
            "warnings": self.warnings,
        }


@dataclass
class _Replaced:
    """What the database being replaced knows that the backup does not."""

    highest: dict[str, int]  # table -> highest id it handed out
    llm_rows: list[dict]
    scan_from: datetime | None  # a scan after an earlier restore, still pending there


def restore(cfg, name: str) -> Restored:
    """Put backup ``name`` back as the database (module docstring); raises ``RestoreError``/``BackupError``."""
    path = backup.resolve(cfg, name)
    taken_at = _check_backup(path)
    with scheduler_lock(cfg):
        scratch = scratch_path(cfg.db_path)
        _remove(scratch)  # a restore that died half-way left it: nothing refers to it
        try:
            out = _prepare(cfg, path, taken_at, scratch)
            out.previous = _swap(cfg, scratch)
        except (sqlite3.Error, OSError, ValueError) as e:
            raise RestoreError(
                f"restore from {path.name} failed, nothing was changed: {_why(e, cfg.db_path)}"
            ) from None
        finally:
            _remove(scratch)
    return out


def scratch_path(db_path: Path) -> Path:
    return Path(f"{db_path}{SCRATCH_SUFFIX}")


@contextlib.contextmanager
def scheduler_lock(cfg) -> Iterator[None]:
    """Hold the run lock (tinybot.base.runlock, the one `tinybot run` holds), or say that `tinybot run` is running."""
    from ..base.runlock import HOW_TO_STOP, AlreadyRunning, RunLock

    try:
        lock = RunLock(cfg.lock_path).acquire()
    except AlreadyRunning as e:
        who = f" (PID {e.pid})" if e.pid else ""
        refused = RestoreError(f"`tinybot run` holds {cfg.lock_path}{who}; stop it first ({HOW_TO_STOP})")
        refused.exit_code = exitcodes.LOCKED  # try again once it is stopped (README, Exit codes)
        raise refused from None
    try:
        yield
    finally:
        lock.release()


# --- the backup ---------------------------------------------------------------------------------------


def _check_backup(path: Path) -> datetime:
    """Refuse a backup that is damaged, not tinybot's, or of a schema newer than this tinybot; → its time."""
    try:
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = src.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise RestoreError(f"{path} fails SQLite's integrity check ({check}); pick another backup")
            tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "kill_switch" not in tables:
                raise RestoreError(f"{path} is not a tinybot database (no kill_switch table); pick another backup")
            newer = {r[0] for r in src.execute("SELECT name FROM schema_migrations")} - {
                m.name for m in db.migrations()
            }
            if newer:
                raise RestoreError(
                    f"{path} was made by a newer tinybot (its schema has {', '.join(sorted(newer))}, which this"
                    " version does not know); install that version to restore it, or pick an older backup"
                )
            return taken_at(path, src, tables)
        finally:
            src.close()
    except sqlite3.DatabaseError as e:
        raise RestoreError(f"{path} cannot be read as a database ({e}); pick another backup") from None


def taken_at(path: Path, src: sqlite3.Connection, tables: set[str]) -> datetime:
    """When the backup was taken: the time in its name (tinybot's clock just before the copy, so never
    later than it), or for a file named otherwise the newest moment recorded in it (never later either).
    Everything after it is what the restore must not forget."""
    named = backup.parse(path)
    if named is not None:
        return named.at
    seen = [src.execute(f"SELECT MAX({c}) FROM {t}").fetchone()[0] for t, c in ACTIVITY if t in tables]
    seen = [s for s in seen if s]
    return clock.from_iso(max(seen)) if seen else clock.from_ms(int(path.stat().st_mtime * 1000))


# --- the scratch file ---------------------------------------------------------------------------------


def _prepare(cfg, path: Path, taken: datetime, scratch: Path) -> Restored:
    """Steps 1–5 of the module docstring, in ``scratch``; the live database is only read."""
    _copy(path, scratch, like=cfg.db_path)
    conn = db.connect(scratch)
    try:
        migrated = db.migrate(conn, after_migration=ledger.after_migration)
        killswitch.set_enabled(
            conn, False, f"restored from backup {path.name}; check, then `tinybot resume`", "restore"
        )
        # what the backup shows in flight may have been sent since: only reconcile may decide it
        moved = reconcile.quarantine_after_restore(conn, f"restore from backup {path.name}") or {}
        replaced = _read_replaced(cfg.db_path, taken)
        out = Restored(
            path,
            taken,
            cfg.db_path,
            migrated,
            moved.get("in_doubt", []),
            moved.get("rejected_proposals", []),
            taken,
            {},
        )
        with db.transaction(conn):
            _carry_forward(conn, cfg, path, replaced, out)
        _check_scratch(conn)
        conn.execute("PRAGMA journal_mode = DELETE")  # fold its WAL in: one self-contained file to swap in
    finally:
        conn.close()
    _fsync(scratch)
    return out


def _copy(path: Path, scratch: Path, like: Path) -> None:
    """The backup into the scratch file, with the live database's file mode (owner-only when there is none)."""
    mode = like.stat().st_mode & 0o777 if like.exists() else 0o600
    os.close(os.open(scratch, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, mode))
    os.chmod(scratch, mode)
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(scratch)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _read_replaced(db_path: Path, since: datetime) -> _Replaced | str:
    """What the database being replaced knows since ``since``; or why it cannot be read."""
    if not db_path.exists():
        return f"there was no database at {db_path}"
    problem = damaged(db_path)
    if problem:
        return f"{db_path.name} is damaged ({problem})"
    try:
        src = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=db.BUSY_TIMEOUT_MS / 1000)
        src.row_factory = sqlite3.Row
        try:
            return _Replaced(
                highest={t: db.highest_id(src, t) for t in db.SHOWN_IDS},
                llm_rows=llm_budget.rows_since(src, since),
                scan_from=reconcile.restore_scan_from(src),
            )
        finally:
            src.close()
    except sqlite3.DatabaseError as e:
        if "locked" in str(e).lower():
            raise
        return f"{db_path.name} could not be read ({e})"


def _carry_forward(conn: sqlite3.Connection, cfg, path: Path, replaced: _Replaced | str, out: Restored) -> None:
    """Step 4, in the caller's transaction: what the world still remembers goes into the restored database."""
    if isinstance(replaced, str):
        out.warnings.append(llm_budget.mark_spend_unknown(conn, replaced, tz=cfg.tz))
        out.warnings.append(
            f"the ids the replaced database handed out are unknown ({replaced}): an id may be shown again"
        )
        out.ids_after = {t: db.highest_id(conn, t) for t in db.SHOWN_IDS}
    else:
        out.ids_after = {t: db.continue_ids_after(conn, t, replaced.highest[t]) for t in db.SHOWN_IDS}
        out.llm_rows = llm_budget.carry_forward(conn, replaced.llm_rows)
        if replaced.scan_from is not None:  # its scan never finished: the earlier start still counts
            reconcile.scan_after_restore(conn, replaced.scan_from, path.name)
    out.scan_from = reconcile.scan_after_restore(conn, out.taken_at, path.name)


def _check_scratch(conn: sqlite3.Connection) -> None:
    """Step 5: only a whole database with trading off is swapped in."""
    check = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if check != "ok":
        raise ValueError(f"the prepared copy fails SQLite's integrity check ({check})")
    if conn.execute("PRAGMA foreign_key_check").fetchone():
        raise ValueError("the prepared copy fails SQLite's foreign key check")
    pending = [m.name for m in db.pending_migrations(conn)]
    if pending:
        raise ValueError(f"the prepared copy still lacks migrations {', '.join(pending)}")
    if killswitch.state(conn)["trading_enabled"]:
        raise ValueError("the prepared copy would trade: its kill switch is not off")


# --- the swap -----------------------------------------------------------------------------------------


def _swap(cfg, scratch: Path) -> Backup | None:
    """Step 6: the scratch file becomes the database; → where the replaced one is kept (None: there was none)."""
    live = cfg.db_path
    if not live.exists():
        _replace(scratch, live)
        return None
    problem = damaged(live)
    if problem:
        aside = set_aside(live)  # a damaged database cannot be backed up: it is kept as it is
        try:
            _replace(scratch, live)
        except OSError:
            _put_back(aside.path, live)
            raise
        return aside
    previous = backup.make(cfg, label="pre-restore")
    try:
        _quiesce(live)
        _replace(scratch, live)
    except BaseException:
        previous.path.unlink(missing_ok=True)  # a backup of a restore that did not happen would only mislead
        raise
    return previous


def _quiesce(live: Path) -> None:
    """Fold the live database's WAL into it and leave no -wal/-shm behind (they would be read as the new
    file's).  SQLite changes the journal mode only when no other connection has the file open."""
    conn = sqlite3.connect(live, timeout=QUIESCE_TIMEOUT_S)
    try:
        conn.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.OperationalError as e:
        if "locked" not in str(e).lower():
            raise
        raise RestoreError(
            f"another process has {live} open; find it with `fuser -v {live}` (a `sqlite3` shell, `tinybot"
            " telegram`, another command?), end it and restore again; nothing was changed"
        ) from None
    finally:
        conn.close()


def _replace(scratch: Path, live: Path) -> None:
    for suffix in SIDE_FILES:  # the old file's; after _quiesce (or set_aside) they hold nothing of its
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    os.replace(scratch, live)
    _fsync(live.parent)


def _put_back(aside: Path, live: Path) -> None:
    for suffix in ("-wal", "-shm"):
        side = Path(f"{aside}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{live}{suffix}"))
    os.replace(aside, live)


def _fsync(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(scratch: Path) -> None:
    scratch.unlink(missing_ok=True)
    for suffix in SIDE_FILES:
        Path(f"{scratch}{suffix}").unlink(missing_ok=True)


def _why(e: BaseException, db_path: Path) -> str:
    if isinstance(e, sqlite3.Error):
        return str(db.fault(e, db_path))
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename or db_path})"
    return str(e)


# --- a damaged database -------------------------------------------------------------------------------


def damaged(db_path: Path) -> str | None:
    """Why the database at ``db_path`` cannot be backed up (empty, not a database, corrupt), or None."""
    if db_path.stat().st_size == 0:
        return "empty (0 bytes)"
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        if "locked" in str(e).lower():
            raise
        return str(e)
    return None if result == "ok" else result


def set_aside(db_path: Path) -> Backup:
    """Rename a damaged database (and its -wal/-shm) out of the way; returned as the 'backup' of what was there."""
    now = clock.now()
    target = db_path.with_name(f"{db_path.name}.damaged-{now.strftime(backup.STAMP)}")
    size = db_path.stat().st_size
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db_path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{target}{suffix}"))
    os.replace(db_path, target)
    return Backup(target, now, "damaged", size)
