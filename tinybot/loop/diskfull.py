"""The full-disk tracker: the card has no room for the database, so trading pauses until it has again.

A full disk is a pause, not a death: nothing can be written, so nothing can
be sent (every order's intent is written before it is sent, and that write
fails first), and the loop must not die over it either.  One alert says so,
the loop backs off as for an outage (one interval, doubling, up to 15
minutes) and at each retry first asks the disk for room: a committed write
of ``PROBE_BYTES`` (the size of a busy tick's writes), cleared at once.
When that write goes through, one more alert says the disk has room again
and the tick runs.  All of it lives in memory: the database cannot hold it.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from typing import Callable

from ..base import clock
from ..base.config import Config
from ..owner.notify import Notifier
from ..store import db
from . import alerts
from .outage import backoff_wait

log = logging.getLogger("tinybot.scheduler")

PROBE_KEY = "disk.probe"
PROBE_BYTES = 64 * 1024  # room for a busy tick: proposals, an execution, its guard decisions, fills, events


def is_disk_full(exc: BaseException, cfg: Config) -> bool:
    """Did ``exc`` come from a full disk under the database (tinybot.store.db.disk_full)?"""
    return db.disk_full(exc, cfg.db_path)


def room_for_a_tick(conn: sqlite3.Connection) -> bool:
    """Is there room again?  A committed write of PROBE_BYTES, then cleared (two commits: the first must
    really reach the disk).  False when the disk is still full; any other error is not ours to hide."""
    try:
        db.set_state(conn, PROBE_KEY, "x" * PROBE_BYTES)
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if db.disk_full(e):
            return False
        raise
    db.set_state(conn, PROBE_KEY, "")
    return True


class DiskFull:
    """One full-disk pause at a time: its start and end (each alerted once) and the backoff between retries."""

    def __init__(self, cfg: Config, *, notifier: Notifier, echo: Callable[[str], None]):
        self.cfg = cfg
        self.notifier = notifier
        self.echo = echo
        self.since: datetime | None = None  # when the pause began (in memory: the database cannot hold it)
        self.failures = 0  # retries in a row that found no room

    @property
    def paused(self) -> bool:
        return self.since is not None

    def begin(self, error: BaseException | str) -> None:
        """A write failed for want of room: the first such failure starts the pause and says so."""
        if self.since is not None:
            return
        self.since = clock.now()
        began = clock.to_iso(self.since)
        log.error("disk full at %s: trading paused (nothing can be written, so nothing is sent): %s", began, error)
        alerts.send(
            self.notifier,
            "disk_full",
            f"the disk holding {self.cfg.db_path} is full ({error}): trading is paused since"
            f" {clock.human_time(began, self.cfg.tz, seconds=True)}; nothing is"
            " sent (each order is written before it is sent). The database is intact. Free some space on"
            f" {self.cfg.db_path.parent} (old backups, logs); tinybot retries with back-off and resumes by itself.",
            key=f"disk_full:{began}",
            severity="error",
        )

    def retry(self, conn: sqlite3.Connection) -> str | None:
        """Before a tick while paused: is there room again?  The note for the tick's line when the pause is
        over (alerted once), else None (still full: no tick)."""
        if not room_for_a_tick(conn):
            return None
        took = clock.spoken(clock.now() - self.since)
        began = clock.to_iso(self.since)
        since_text = clock.human_time(began, self.cfg.tz, seconds=True)
        self.since, self.failures = None, 0
        log.warning("disk has room again after %s (full since %s): trading resumes", took, began)
        alerts.send(
            self.notifier,
            "disk_back",
            f"the disk holding {self.cfg.db_path} has room again after {took} (full since {since_text}); trading resumes",
            key=f"disk_back:{began}",
            severity="info",
        )
        return f"disk has room again after {took}; trading resumes"

    def backoff(self) -> datetime:
        """While paused: the time before which the loop retries no more (as an outage backs off)."""
        self.failures += 1
        wait = backoff_wait(self.cfg.scheduler.interval, self.failures)
        until = clock.now() + wait
        self.echo(f"  disk full ({self.failures} in a row); trading paused; retrying in {clock.spoken(wait)}")
        log.warning("disk still full (%s in a row); retrying at %s", self.failures, clock.to_iso(until))
        return until
