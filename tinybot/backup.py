"""Consistent copies of the database, and putting one back.

``make`` uses SQLite's online backup API (``sqlite3.Connection.backup``): the
copy is one consistent snapshot even while `tinybot run` keeps writing (WAL
readers see a fixed state), unlike a ``cp`` that can catch the file and its
``-wal`` at different moments.  Backups live in ``backups/`` next to the
database, named after the time (from tinybot's clock) they were taken.

``restore`` copies a backup back *into* the database with the same API while
holding the scheduler's lock, so `tinybot run` cannot be ticking meanwhile;
the database as it was is kept first as a ``pre-restore`` backup, and the
restored database starts with trading turned off (kill switch, by="restore").

``before_migration(cfg)`` is the callback for ``db.migrate``/``db.open_db``:
migrations take a backup first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from . import clock

KEEP = 20  # newest backups kept by make(); older ones are deleted
_NAME = re.compile(r"^tinybot-(\d{8}T\d{6}\.\d{6}Z)-([\w.-]+?)(?:-\d+)?\.db$")
_STAMP = "%Y%m%dT%H%M%S.%fZ"


class BackupError(Exception):
    """A backup or restore could not be made; the message says why and what to do."""


@dataclass(frozen=True)
class Backup:
    path: Path
    at: datetime
    label: str
    size: int

    def as_dict(self) -> dict:
        return {"path": str(self.path), "at": clock.to_iso(self.at), "label": self.label, "size": self.size}


def backup_dir(cfg) -> Path:
    return cfg.db_path.parent / "backups"


def listing(cfg) -> list[Backup]:
    """Backups in backup_dir(cfg), newest first (by the time in their name)."""
    return listing_in(backup_dir(cfg))


def newest_in(d: Path) -> Backup | None:
    """The newest backup in directory ``d`` (for error messages that give the exact restore command)."""
    try:
        found = listing_in(d)
    except OSError:
        return None
    return found[0] if found else None


def listing_in(d: Path) -> list[Backup]:
    out = []
    if d.is_dir():
        for p in d.iterdir():
            m = _NAME.match(p.name)
            if m:
                at = datetime.strptime(m.group(1), _STAMP).replace(tzinfo=clock.now().tzinfo)
                out.append(Backup(p, at, m.group(2), p.stat().st_size))
    return sorted(out, key=lambda b: (b.at, b.path.name), reverse=True)


def latest(cfg) -> Backup | None:
    found = listing(cfg)
    return found[0] if found else None


def make(cfg, label: str = "manual", *, keep: int = KEEP) -> Backup:
    """Copy the database with the online backup API; verify the copy; keep the newest ``keep``."""
    src_path = cfg.db_path
    if not src_path.exists() or src_path.stat().st_size == 0:
        raise BackupError(f"no database at {src_path} yet; nothing to back up (run `tinybot init`)")
    d = backup_dir(cfg)
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    label = re.sub(r"[^\w.-]+", "-", label).strip("-") or "manual"
    stem = f"tinybot-{clock.now().strftime(_STAMP)}-{label}"
    dest, n = d / f"{stem}.db", 1
    while dest.exists():
        n += 1
        dest = d / f"{stem}-{n}.db"
    tmp = dest.with_suffix(".db.partial")
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
    try:
        # the copy may hold the read key's nothing, but it holds the whole trade history: owner only
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        os.close(fd)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # a backup is one self-contained file
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as e:
        tmp.unlink(missing_ok=True)
        from .db import fault

        raise BackupError(f"cannot back up: {fault(e, src_path)}") from None
    finally:
        src.close()
    if check != "ok":
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup of {src_path} failed its integrity check: {check}")
    os.replace(tmp, dest)
    for old in listing(cfg)[keep:]:
        old.path.unlink(missing_ok=True)
    return next(b for b in listing(cfg) if b.path == dest)


def before_migration(cfg) -> Callable[[list[str]], None]:
    """The ``before_migration`` callback for ``db.migrate``: back up unless the database is brand new."""

    def take(pending: list[str]) -> None:
        if "0001_core" in pending or not cfg.db_path.exists():
            return  # a new database has nothing to lose
        make(cfg, label="pre-" + pending[0])

    return take


@contextlib.contextmanager
def scheduler_lock(cfg) -> Iterator[None]:
    """Hold the run lock (tinybot.runlock, the one `tinybot run` holds), or say that `tinybot run` is running."""
    from .runlock import HOW_TO_STOP, AlreadyRunning, RunLock

    try:
        lock = RunLock(cfg.lock_path).acquire()
    except AlreadyRunning as e:
        who = f" (PID {e.pid})" if e.pid else ""
        raise BackupError(f"`tinybot run` holds {cfg.lock_path}{who}; stop it first ({HOW_TO_STOP})") from None
    try:
        yield
    finally:
        lock.release()


def resolve(cfg, name: str) -> Path:
    """A backup path as given, or a file name inside backup_dir(cfg)."""
    p = Path(name).expanduser()
    if not p.exists() and (backup_dir(cfg) / name).exists():
        p = backup_dir(cfg) / name
    if not p.is_file():
        raise BackupError(f"no backup file {name}; `tinybot backup --list` shows them")
    return p.resolve()


def restore(cfg, name: str) -> Backup | None:
    """Put a backup back as the database; returns where the database it replaced now is.

    A healthy database is first copied to a ``pre-restore`` backup.  A damaged
    one (corrupt, truncated, not a database, empty) cannot be backed up, and
    restoring is exactly what it needs: it is set aside instead, renamed with
    its ``-wal``/``-shm`` to ``<db>.damaged-<time>`` (a stale ``-wal`` left
    beside the restored file would be replayed into it).  Then trading is
    turned off, and executions that were in flight are quarantined for
    reconcile (``reconcile.quarantine_after_restore``, where it exists).
    """
    path = resolve(cfg, name)
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        check = src.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"{path} fails SQLite's integrity check ({check}); pick another backup")
        with scheduler_lock(cfg):
            before = None
            if cfg.db_path.exists():
                problem = damaged(cfg.db_path)
                before = set_aside(cfg.db_path) if problem else make(cfg, label="pre-restore")
            dst = sqlite3.connect(cfg.db_path, timeout=30)
            try:
                src.backup(dst)
            finally:
                dst.close()
            _after_restore(cfg, path)
    except sqlite3.Error as e:
        raise BackupError(f"restore from {path} failed: {e}") from None
    finally:
        src.close()
    return before


def _after_restore(cfg, path: Path) -> None:
    """A restored database must not trade on its own: orders placed after the backup are unknown to it.
    Trading goes off (`tinybot resume` after checking), and whatever was in flight is left to reconcile."""
    from . import db, killswitch, reconcile

    reason = f"restored from backup {path.name}; check, then `tinybot resume`"
    conn = db.connect(cfg.db_path)
    try:
        killswitch.set_enabled(conn, False, reason, by="restore")
        # what the backup shows in flight may have been sent since: only reconcile may decide it
        reconcile.quarantine_after_restore(conn, f"restore from backup {path.name}")
    finally:
        conn.close()


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
    target = db_path.with_name(f"{db_path.name}.damaged-{now.strftime(_STAMP)}")
    size = db_path.stat().st_size
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db_path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{target}{suffix}"))
    os.replace(db_path, target)
    return Backup(target, now, "damaged", size)
