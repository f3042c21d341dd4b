"""The log file of `tinybot run`: full detail, UTC times, rotated by tinybot itself."""

from __future__ import annotations

import logging
import logging.handlers
import time

from ..base.config import Config


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


def attach_log_file(cfg: Config) -> logging.Handler:
    """Full detail to a rotating log file next to the config; the terminal gets one line per tick."""
    cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
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
