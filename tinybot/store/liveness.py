"""Is `tinybot run` alive, and when does it tick?  Read from the database and the lock file only.

What `tinybot status` (and Telegram's /status) shows about the scheduler, without importing the loop
(tinybot.loop, which writes what this reads: loop.beat): the aligned tick slots, how often the loop rewrites
its heartbeat after idle ticks, and when a running loop counts as stuck.  It stays outside tinybot/loop/
because its readers sit below the loop.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

from ..base import clock
from ..base.config import Config
from ..base.runlock import holder_pid, lock_is_held, pid_alive

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DIED_PREFIX = "died: "  # heartbeat detail of a run that crashed out of its loop (state stays 'stopped')
# After an idle tick the loop rewrites an unchanged heartbeat only this often (SD-card wear):
HEARTBEAT_EVERY = timedelta(minutes=15)
HEARTBEAT_TICKS = 15


def slot_of(now: datetime, interval: timedelta) -> datetime:
    """Start of the aligned slot containing ``now`` (slots count from the epoch, UTC)."""
    step = int(interval.total_seconds() * 1_000_000)
    us = (now - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=us // step * step)


def next_slot(now: datetime, interval: timedelta) -> datetime:
    return slot_of(now, interval) + interval


def beat_every(interval: timedelta) -> timedelta:
    """How often the loop rewrites an unchanged heartbeat after idle ticks: 15 minutes at the 1-minute tick,
    every tick at a tick of 15 minutes or more (15 s at a 1 s tick, so a bench at 1 s sees the same mix).
    One beat costs ~75 KiB of SD-card writes (its WAL frames, the -shm pages) and one fsync: 7 MiB and 96
    commits a day at 15 minutes (10 minutes was 10.8 MiB: docs/PERFORMANCE.md)."""
    return max(interval, min(HEARTBEAT_EVERY, HEARTBEAT_TICKS * interval))


def stale_after(interval: timedelta) -> timedelta:
    """No sign of life for longer than this while the lock is held: stuck (see liveness).  18 minutes at
    the 1-minute tick (3 before the heartbeat was spared after idle ticks)."""
    return beat_every(interval) + 2 * interval + timedelta(minutes=1)


def liveness(conn: sqlite3.Connection, cfg: Config) -> dict:
    """Is `tinybot run` alive, when did it last tick, when does it tick next?  DB + lock file only.

    ``alive`` is True when the lock is held by a live process; ``stale`` when
    it is alive but its last sign of life is older than ``stale_after(interval)``
    (stuck?): after idle ticks the loop rewrites an unchanged heartbeat only
    every ``beat_every(interval)``, so that is beat_every + two intervals + a
    minute (18 minutes at the 1-minute tick).  ``next_tick_at`` of a heartbeat written
    before some idle ticks is in the past: the next slot is shown instead.
    ``last_tick`` lags as much: idle ticks' rows are written with the beat.
    ``state`` is one of: running, backing_off, stopped,
    died (the last scheduler crashed out of its loop, or never stopped
    cleanly and no process holds the lock), never_run.
    """
    now = clock.now()
    interval = cfg.scheduler.interval
    hb = conn.execute("SELECT * FROM scheduler_heartbeat WHERE id = 1").fetchone()
    last = conn.execute("SELECT * FROM ticks ORDER BY slot DESC LIMIT 1").fetchone()
    lock_pid = holder_pid(cfg.lock_path, attempts=1) if cfg.lock_path.exists() else None
    alive = bool(lock_pid and pid_alive(lock_pid) and lock_is_held(cfg.lock_path))
    if hb is None:
        state = "running" if alive else "never_run"
    elif alive:
        state = hb["state"] if hb["state"] != "stopped" else "running"
    else:
        clean = hb["state"] == "stopped" and not (hb["detail"] or "").startswith(DIED_PREFIX)
        state = "stopped" if clean else "died"
    beat = clock.from_iso(hb["beat_at"]) if hb else None
    stale = bool(alive and beat and now - beat > stale_after(interval))
    next_tick = hb["next_tick_at"] if (hb and alive) else None
    if next_tick and state == "running" and clock.from_iso(next_tick) < now:
        next_tick = clock.to_iso(next_slot(now, interval))  # idle ticks since the beat: not rewritten
    return {
        "alive": alive,
        "state": state,
        "pid": lock_pid if alive else None,
        "stale": stale,
        "interval": clock.format_duration(interval),
        "approval": cfg.scheduler.approval,
        "advisors": list(cfg.advisors),
        "started_at": hb["started_at"] if hb else None,
        "beat_at": hb["beat_at"] if hb else None,
        "next_tick_at": next_tick,
        "detail": hb["detail"] if hb else "",
        "last_tick": dict(last) if last else None,
    }
