"""The kill switch: one row, plus a kill file beside the database.  Imports nothing heavy.

The row (``kill_switch``, id 1) is the switch: the executor reads it inside
the ``BEGIN IMMEDIATE`` that commits ``submitting``.  But writing the row
needs the database's write lock, and a `sqlite3` shell left open (or a long
migration) can hold that lock for as long as it likes.  So `tinybot kill`
first writes a *kill file* (``tinybot.db.kill``, written to a temporary name,
fsynced, renamed, directory fsynced): a plain file needs no lock, and the
executor checks it in the same transaction as the row (``guards.kill_switch``).
Then kill sets the row too when it can get the lock within
``KILL_ROW_TIMEOUT_MS``.  Trading is enabled only when the row says so *and*
there is no kill file; `tinybot resume` clears both in one transaction.

What the file does not change: an executor that has already read the switch
inside its send transaction and is about to COMMIT still sends that one order
(as with a kill a moment later).  When kill also sets the row, it has waited
for any such COMMIT, so once it reports the row set, nothing else can pass.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..base import clock, exitcodes
from ..store import db

KILL_SUFFIX = ".kill"
KILL_ROW_TIMEOUT_MS = 1000  # `tinybot kill` waits this long for the row; the file has already done the job


def kill_file(db_path: str | Path) -> Path:
    return Path(f"{db_path}{KILL_SUFFIX}")


def db_file(conn: sqlite3.Connection) -> Path | None:
    """The file behind a connection's main database (None for an in-memory one)."""
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return Path(row[2]) if row[2] else None
    return None


def kill_file_of(conn: sqlite3.Connection) -> Path | None:
    path = db_file(conn)
    return kill_file(path) if path is not None else None


def read_kill_file(path: Path | None) -> dict | None:
    """What a kill file says, or None when there is none.  An unreadable one still means killed."""
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        data = {"reason": "(the kill file could not be read; it still stops trading)"}
    return {
        "path": str(path),
        "reason": str(data.get("reason", "")),
        "at": data.get("at"),
        "by": str(data.get("by", "")),
    }


def write_kill_file(path: Path, reason: str, by: str) -> bool:
    """Write the kill file atomically and durably; False if one was already there (its first reason is kept)."""
    if path.exists():
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body = json.dumps({"reason": reason, "at": clock.now_iso(), "by": by}).encode("utf-8")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return True


def remove_kill_file(path: Path | None) -> bool:
    if path is None or not path.exists():
        return False
    path.unlink()
    _fsync_dir(path.parent)
    return True


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def set_enabled(conn: sqlite3.Connection, enabled: bool, reason: str, by: str) -> bool:
    """Flip the row; returns True if anything changed.  The change is logged as an event.

    Setting it to what it already is changes nothing: the first reason (say,
    an automatic kill's) and its time are kept, not overwritten by a second kill.
    Enabling also removes the kill file, inside the same transaction (a crash
    between the two leaves the row off: still killed, never half-resumed).
    """
    with db.transaction(conn):
        row = conn.execute("SELECT trading_enabled FROM kill_switch WHERE id = 1").fetchone()
        kf = kill_file_of(conn) if enabled else None
        file_present = kf is not None and kf.exists()
        if row is not None and bool(row["trading_enabled"]) == enabled and not file_present:
            return False
        if row is None or bool(row["trading_enabled"]) != enabled:
            conn.execute(
                "INSERT INTO kill_switch (id, trading_enabled, reason, changed_at, changed_by) VALUES (1, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET trading_enabled = excluded.trading_enabled, reason = excluded.reason,"
                " changed_at = excluded.changed_at, changed_by = excluded.changed_by",
                (int(enabled), reason, clock.now_iso(), by),
            )
        db.event(
            conn,
            "kill_switch",
            f"trading {'enabled' if enabled else 'disabled'} by {by}: {reason}",
            severity="info" if enabled else "warning",
        )
        if file_present:
            remove_kill_file(kf)
    return True


def _row(conn: sqlite3.Connection) -> dict:
    row = conn.execute("SELECT * FROM kill_switch WHERE id = 1").fetchone()
    return dict(row) if row else {"trading_enabled": 0, "reason": "missing", "changed_at": None, "changed_by": ""}


def _with_file(out: dict, killed: dict | None) -> dict:
    out["kill_file"] = killed
    if killed is not None and out["trading_enabled"]:
        out.update(trading_enabled=0, reason=killed["reason"], changed_at=killed["at"], changed_by=killed["by"])
    return out


def state(conn: sqlite3.Connection) -> dict:
    """The switch as the executor sees it: the row, overridden by a kill file when there is one."""
    return _with_file(_row(conn), read_kill_file(kill_file_of(conn)))


@dataclass(frozen=True)
class KillOutcome:
    """What `tinybot kill` managed: the file (no lock needed) and the row (when the lock was free)."""

    file: Path
    file_written: bool  # False: a kill file was already there
    row: str  # 'set' | 'already' | 'locked' | 'fault'
    row_detail: str = ""  # the fault line when row == 'fault' or 'locked'
    previous: dict | None = None  # the switch as it was, when it was already off


def kill(db_path: Path, reason: str, by: str) -> KillOutcome:
    """Stop trading within about a second, whatever holds the database.

    Raises OSError if the kill file cannot be written (read-only filesystem);
    the caller then says plainly that trading could not be stopped this way.
    """
    path = kill_file(db_path)
    existing = read_kill_file(path)
    written = write_kill_file(path, reason, by)
    try:
        conn = db.connect(db_path, busy_timeout_ms=KILL_ROW_TIMEOUT_MS)
    except sqlite3.Error as e:
        return KillOutcome(path, written, "fault", str(db.fault(e, db_path, waited_ms=KILL_ROW_TIMEOUT_MS)))
    try:
        before = _with_file(_row(conn), existing)  # the switch as it was before this kill
        changed = set_enabled(conn, False, reason, by)
    except sqlite3.Error as e:
        f = db.fault(e, db_path, waited_ms=KILL_ROW_TIMEOUT_MS)
        return KillOutcome(path, written, "locked" if f.exit_code == exitcodes.LOCKED else "fault", str(f))
    finally:
        conn.close()
    was_off = not before["trading_enabled"]
    return KillOutcome(path, written, "set" if changed else "already", previous=before if was_off else None)
