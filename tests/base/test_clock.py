"""The one clock's text form: to_iso and from_iso are each other's inverse, and from_iso stays as strict as strptime."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from tinybot.base import clock


def test_from_iso_reads_back_what_to_iso_wrote_to_the_microsecond():
    rng = random.Random(26)
    start = datetime(2000, 1, 1, tzinfo=timezone.utc)
    for _ in range(2000):
        t = start + timedelta(microseconds=rng.randrange(40 * 365 * 86400 * 10**6))
        text = clock.to_iso(t)
        back = clock.from_iso(text)
        assert back == t and back.tzinfo == timezone.utc and clock.to_iso(back) == text
        assert back == datetime.strptime(text, clock.ISO_FORMAT).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-05T01:00:00Z",  # no fraction
        "2026-12-05 01:00:00.000000Z",  # a space for the T
        "2026-12-05T01:00:00.000000+00:00",  # an offset instead of Z
        "2026-12-05T01:00:00,000000Z",  # a comma
        "2026-12-05T25:00:00.000000Z",  # no such hour
        "2026-13-05T01:00:00.000000Z",  # no such month
        "2026-12-05T01:00:00.00000aZ",  # not a number, at the fixed width
        "2026-12-05",
        "",
    ],
)
def test_from_iso_refuses_what_strptime_refuses(text):
    with pytest.raises(ValueError):
        datetime.strptime(text, clock.ISO_FORMAT)
    with pytest.raises(ValueError):
        clock.from_iso(text)
