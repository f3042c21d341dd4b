"""The one clock.  Every timestamp tinybot stores or compares comes from here.

Python's clock (``datetime.now(timezone.utc)`` / ``time.time()``) is what
freezegun moves in tests; SQL's ``CURRENT_TIMESTAMP`` is not, so SQL never
makes a timestamp in tinybot.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timedelta, timezone
from typing import Iterator

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now() -> datetime:
    return datetime.now(timezone.utc)


class Simulated:
    """A clock that moves only when told to: replay's candles and the demo's ticks run on one (``simulated``)."""

    def __init__(self, t: datetime):
        self.t = t

    def now(self) -> datetime:
        return self.t

    def seconds(self) -> float:
        return self.t.timestamp()

    def ms(self) -> int:
        return to_ms(self.t)

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@contextlib.contextmanager
def simulated(sim: Simulated) -> Iterator[Simulated]:
    """tinybot's one clock (``now`` and all that reads it) is ``sim`` for the duration."""
    global now
    original = now
    now = sim.now
    try:
        yield sim
    finally:
        now = original


def to_iso(dt: datetime) -> str:
    """Fixed-width UTC text: sorts as time sorts."""
    return dt.astimezone(timezone.utc).strftime(ISO_FORMAT)


def now_iso() -> str:
    return to_iso(now())


def from_iso(text: str) -> datetime:
    """The inverse of ``to_iso``.  Its fixed width is read by ``fromisoformat`` (~20× faster than strptime: a
    replay tick reads ~50 stored times); any other text goes through strptime, which says what is wrong."""
    if len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z":
        try:
            return datetime.fromisoformat(text[:26]).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=timezone.utc)


def now_ms() -> int:
    return int(now().timestamp() * 1000)


def to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def day_start(dt: datetime, tz=None) -> datetime:
    """Start (in UTC) of the day containing dt in ``tz`` (the config's ``timezone``; None = UTC).

    A local day is not always 24 hours: in Europe/Amsterdam the last Sunday
    of March has 23 and the last Sunday of October 25.  Local midnight is
    never inside a DST jump there (they happen at 02:00/03:00), so it maps to
    one UTC moment.
    """
    if tz is None:
        return dt.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    local = dt.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return local.replace(tzinfo=tz).astimezone(timezone.utc)


def local_day(dt: datetime, tz=None) -> str:
    """'YYYY-MM-DD' of dt's day in tz (None = UTC)."""
    return dt.astimezone(tz or timezone.utc).strftime("%Y-%m-%d")


_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)\s*(ms|[smhdw])")


def parse_duration(text: str) -> timedelta:
    """'500ms', '30s', '10m', '2h', '1d', '1w' -> timedelta; compound forms like '1h30m' too."""
    problem = ValueError(f"{text!r} is not a duration (use e.g. '30s', '10m', '2h', '1d')")
    if not isinstance(text, str) or not text.strip():
        raise problem
    compact = re.sub(r"\s+", "", text)
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise problem
    total = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if total > MAX_DURATION_SECONDS:  # timedelta itself overflows past ~2.7 million years
        raise ValueError(f"{text!r} is too long (at most {MAX_DURATION_SECONDS // 86400}d)")
    return timedelta(seconds=total)


MAX_DURATION_SECONDS = 3650 * 86400  # ten years: longer than any setting means anything


def format_duration(td: timedelta) -> str:
    if td.total_seconds() != int(td.total_seconds()):
        return f"{int(td.total_seconds() * 1000)}ms"
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def human_time(moment: datetime | str, tz=None, *, seconds: bool = False) -> str:
    """A moment as a person reads it, in ``tz`` (the config's timezone): '17:14 CET' today, else with its date."""
    dt = from_iso(moment) if isinstance(moment, str) else moment
    local, today = dt.astimezone(tz or timezone.utc), now().astimezone(tz or timezone.utc)
    shown = "%H:%M:%S %Z" if seconds else "%H:%M %Z"
    return local.strftime(shown if local.date() == today.date() else "%Y-%m-%d " + shown)


def spoken(td: timedelta) -> str:
    """A duration as a person says it: '45 s', '5 min', '2 h 5 min', '3 days 4 h' (never '300740ms')."""
    s = max(int(td.total_seconds()), 0)
    if s < 60:
        return f"{s} s"
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days} day{'s' if days > 1 else ''}" + (f" {hours} h" if hours else "")
    return f"{hours} h {minutes} min" if hours and minutes else f"{hours} h" if hours else f"{minutes} min"
