"""A file tinybot could not write (a lock, a backup, an export): one line naming the path, the reason and the fix."""

from __future__ import annotations

import errno
from pathlib import Path

from .errors import TinybotError


class CannotWrite(TinybotError):
    """An OSError while writing a file, said as the one line a person can act on (``cannot_write``)."""


def cannot_write(what: str, path: str | Path, e: OSError) -> CannotWrite:
    """``what`` ('the run lock', 'the backup', ...) at ``path`` could not be written because of ``e``."""
    path = Path(path)
    folder = path.parent
    if e.errno == errno.ENOENT:
        why = f"the folder {folder} does not exist: create it (`mkdir -p {folder}`) or give another path"
    elif e.errno == errno.EROFS:
        why = (
            f"the filesystem holding {folder} is read-only (a failing SD card turns read-only): check the card"
            " (`dmesg`); `tinybot status`, `history`, `why` and `doctor` still work"
        )
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = f"the disk holding {folder} is full: free some space there (old backups, logs), then try again"
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = f"permission denied: {folder} must be writable by the user tinybot runs as (`ls -ld {folder}`)"
    elif e.errno == errno.ENOTDIR:
        why = f"a part of {folder} is a file, not a folder: give another path"
    elif e.errno == errno.EISDIR:
        why = f"{path} is a folder: give a file name"
    else:
        why = f"{e.strerror or e}"
    return CannotWrite(f"cannot write {what} {path}: {why}")
