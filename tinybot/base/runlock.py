"""The run lock: one ``fcntl.flock`` on the lock file next to the database, and the holder's PID in it.

`tinybot run` holds it for as long as it runs, and `backup --restore` holds it
while it puts a backup back, so the two can never overlap; `status` reads the
PID to tell a running scheduler from a stopped one.  The kernel drops a flock
when its process ends, however it ends, so a lock file left behind by a crash
never blocks a restart: the file is only a place to lock and to read the
holder's PID from.

Never unlink the file: a process could then lock a file that another process
has just replaced, and two schedulers would run.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from .writable import cannot_write

# How a person stops the holder: the README installs tinybot as a system service.
HOW_TO_STOP = "`sudo systemctl stop tinybot`, or Ctrl-C in its terminal"


class AlreadyRunning(Exception):
    """Another process holds the lock."""

    def __init__(self, path: Path, pid: int | None):
        self.path, self.pid = path, pid
        who = f"PID {pid}" if pid else "another process (PID not written yet)"
        super().__init__(
            f"tinybot run is already running: {who} holds the lock {path}."
            " Stop it first (Ctrl-C in its terminal, or kill -TERM"
            f"{' ' + str(pid) if pid else ' <pid>'}); only one scheduler may run per database."
        )


class RunLock:
    """An exclusive, non-blocking flock on ``path``; the holder's PID is written into the file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock or raise ``AlreadyRunning``; a lock file that cannot be made (a read-only card, a
        missing permission) raises ``CannotWrite``, one line with the path and the fix."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise cannot_write("the run lock", self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise AlreadyRunning(self.path, holder_pid(self.path)) from None
            raise cannot_write("the run lock", self.path, e) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fsync(fd)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
                raise cannot_write("the run lock", self.path, e) from None
            # a full disk: the lock is held, only the PID (a hint) is missing; the loop pauses until there is room
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)  # an empty file = nobody holds it (the PID is only a hint anyway)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder_pid(path: Path, attempts: int = 20) -> int | None:
    """The PID written in the lock file; retried briefly, the holder writes it just after locking."""
    for i in range(attempts):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            text = ""
        if text.isdigit():
            return int(text)
        if i + 1 < attempts:
            time.sleep(0.01)
    return None


def live_holder(path: Path) -> int | None:
    """The PID of the process that holds the lock at ``path`` now (the `tinybot run` of that database);
    0 when it is held but its PID is not written yet; None when nobody holds it."""
    if not Path(path).exists() or not lock_is_held(path):
        return None
    pid = holder_pid(path)
    return pid if pid and pid_alive(pid) else 0


def lock_is_held(path: Path) -> bool:
    """True if some process holds the flock.  Probes with a *shared* non-blocking lock.

    Only used when the lock file names a live PID, to tell a running holder
    from a recycled PID.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
