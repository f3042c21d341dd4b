"""The log file of `tinybot run`: full detail, UTC times, rotated by tinybot itself."""

from __future__ import annotations

import errno
import logging
import logging.handlers
import sys
import time

from ..base.config import Config


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


class _LogFile(logging.handlers.RotatingFileHandler):
    """A log file that a full or read-only card cannot turn into tracebacks on the terminal: a line with no
    room is lost; the terminal's tick lines and the alerts (loop.diskfull) still say what happens."""

    def handleError(self, record: logging.LogRecord) -> None:
        if not _no_room(sys.exc_info()[1]):
            super().handleError(record)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            if not _no_room(e):
                raise

    def close(self) -> None:
        try:
            super().close()
        except OSError as e:
            if not _no_room(e):
                raise


def _no_room(e: BaseException | None) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def attach_log_file(cfg: Config) -> logging.Handler:
    """Full detail to a rotating log file next to the config; the terminal gets one line per tick."""
    cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(
        cfg.log_path, maxBytes=cfg.scheduler.log_max_bytes, backupCount=cfg.scheduler.log_backups, encoding="utf-8"
    )
    handler.setFormatter(_UTCFormatter("%(asctime)sZ %(levelname)s %(name)s [%(process)d] %(message)s"))
    root = logging.getLogger("tinybot")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    logging.getLogger("tinybot").removeHandler(handler)
    handler.close()
