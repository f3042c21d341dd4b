"""Consistent copies of the database: make them, list them, find one.

``make`` uses SQLite's online backup API (``sqlite3.Connection.backup``): the
copy is one consistent snapshot even while `tinybot run` keeps writing (WAL
readers see a fixed state), unlike a ``cp`` that can catch the file and its
``-wal`` at different moments.  Backups live in ``backups/`` next to the
database, named after the time (from tinybot's clock) they were taken.

Putting one back is ``tinybot.ops.restore`` (a scratch copy, migrated,
quarantined and carried forward, then swapped in): this module is the store
layer's file handling and imports nothing of tinybot but the clock.

``before_migration(cfg)`` is the callback for ``db.migrate``/``db.open_db``:
migrations take a backup first.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from ..base.errors import TinybotError
from ..base import clock
from ..base.writable import cannot_write

KEEP = 20  # newest backups kept by make(); older ones are deleted
_NAME = re.compile(r"^tinybot-(\d{8}T\d{6}\.\d{6}Z)-([\w.-]+?)(?:-\d+)?\.db$")
STAMP = "%Y%m%dT%H%M%S.%fZ"  # the time in a backup's name (tinybot's clock)


class BackupError(TinybotError):
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
            b = parse(p)
            if b is not None:
                out.append(b)
    return sorted(out, key=lambda b: (b.at, b.path.name), reverse=True)


def parse(p: Path) -> Backup | None:
    """The backup a file is, by its name (when tinybot made it and with which label); None for another name."""
    m = _NAME.match(p.name)
    if not m:
        return None
    at = datetime.strptime(m.group(1), STAMP).replace(tzinfo=clock.now().tzinfo)
    return Backup(p, at, m.group(2), p.stat().st_size)


def latest(cfg) -> Backup | None:
    found = listing(cfg)
    return found[0] if found else None


def make(cfg, label: str = "manual", *, keep: int = KEEP) -> Backup:
    """Copy the database with the online backup API; verify the copy; keep the newest ``keep``."""
    src_path = cfg.db_path
    if not src_path.exists() or src_path.stat().st_size == 0:
        raise BackupError(f"no database at {src_path} yet; nothing to back up (run `tinybot init`)")
    d = backup_dir(cfg)
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise _cannot_write(d, src_path, e) from None
    label = re.sub(r"[^\w.-]+", "-", label).strip("-") or "manual"
    stem = f"tinybot-{clock.now().strftime(STAMP)}-{label}"
    dest, n = d / f"{stem}.db", 1
    while dest.exists():
        n += 1
        dest = d / f"{stem}-{n}.db"
    tmp = dest.with_suffix(".db.partial")
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True, timeout=30)
    try:
        # the copy may hold the read key's nothing, but it holds the whole trade history: owner only
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
        except OSError as e:
            raise _cannot_write(dest, src_path, e) from None
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # a backup is one self-contained file
            check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error:
        tmp.unlink(missing_ok=True)
        raise  # the caller says it in words (db.fault: locked, disk full, read-only …)
    finally:
        src.close()
    if check != "ok":
        tmp.unlink(missing_ok=True)
        raise BackupError(f"backup of {src_path} failed its integrity check: {check}")
    os.replace(tmp, dest)
    for old in listing(cfg)[keep:]:
        old.path.unlink(missing_ok=True)
    return next(b for b in listing(cfg) if b.path == dest)


def _cannot_write(dest: Path, src: Path, e: OSError) -> BackupError:
    """A backup that cannot be written where it goes: the path, why, and the fix (tinybot.base.writable)."""
    return BackupError(
        f"{cannot_write('the backup', dest, e)}; meanwhile a copy can go to another disk:"
        f' `sqlite3 {src} ".backup /other/disk/{src.name}"`'
    )


def before_migration(cfg) -> Callable[[list[str]], None]:
    """The ``before_migration`` callback for ``db.migrate``: back up unless the database is brand new."""

    def take(pending: list[str]) -> None:
        if "0001_core" in pending or not cfg.db_path.exists():
            return  # a new database has nothing to lose
        make(cfg, label="pre-" + pending[0])

    return take


def resolve(cfg, name: str) -> Path:
    """A backup path as given, or a file name inside backup_dir(cfg)."""
    p = Path(name).expanduser()
    if not p.exists() and (backup_dir(cfg) / name).exists():
        p = backup_dir(cfg) / name
    if not p.is_file():
        raise BackupError(f"no backup file {name}; `tinybot backup --list` shows them")
    return p.resolve()
