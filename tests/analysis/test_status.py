"""`tinybot status` as a person reads it: local time, and the truth about the last tick while idle ticks are
batched (issue 23 items 9 and 10)."""

from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.base import clock
from tinybot.base.runlock import RunLock
from tinybot.cli import cli
from tinybot.store import db

from helpers.configs import paper_config_text


def _loop_wrote(conn, *, beat_at: str, slot: str):
    """What a running loop has written: its heartbeat and its last written tick (tinybot.loop.beat's rows)."""
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO scheduler_heartbeat (id, pid, state, started_at, beat_at, interval_s, next_tick_at)"
            " VALUES (1, 1, 'running', ?, ?, 20, ?)",
            (slot, beat_at, beat_at),
        )
        conn.execute(
            "INSERT INTO ticks (slot, started_at, finished_at, status, pid) VALUES (?, ?, ?, 'ok', 1)",
            (slot, slot, slot),
        )


def test_status_shows_local_time_and_says_idle_ticks_are_batched_and_when_the_next_write_is_due(write_config):
    cfg = write_config('timezone = "Europe/Amsterdam"\n' + paper_config_text() + '[scheduler]\ninterval = "20s"\n')
    conn = db.connect(cfg.db_path)
    _loop_wrote(conn, beat_at="2026-11-27T16:28:00.000000Z", slot="2026-11-27T16:28:00.000000Z")
    held = RunLock(cfg.lock_path).acquire()  # a live process holds the run lock: the loop runs
    try:
        with freeze_time("2026-11-27 16:28:51"):
            human = CliRunner().invoke(cli, ["status"], catch_exceptions=False).output
            data = json.loads(CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False).output)
    finally:
        held.release()
    assert (
        "Last tick written: 17:28:00 CET (ok); the running loop ticks every 20 s and writes idle ticks in batches:"
        " the next write is due by 17:33:00 CET"  # 15 idle ticks of 20 s after the beat (liveness.beat_every)
    ) in human
    assert "UTC" not in human and "T16:" not in human  # no ISO text for a person
    sch = data["scheduler"]  # --json stays ISO-8601 UTC
    assert sch["last_tick"]["slot"] == "2026-11-27T16:28:00.000000Z"
    assert sch["next_write_by"] == "2026-11-27T16:33:00.000000Z"


def test_status_without_a_running_loop_says_only_the_last_tick_written(write_config):
    cfg = write_config(paper_config_text())
    conn = db.connect(cfg.db_path)
    _loop_wrote(conn, beat_at="2026-11-27T16:28:00.000000Z", slot="2026-11-27T16:28:00.000000Z")
    with freeze_time("2026-11-27 16:28:51"):
        human = CliRunner().invoke(cli, ["status"], catch_exceptions=False).output
        data = json.loads(CliRunner().invoke(cli, ["status", "--json"], catch_exceptions=False).output)
    assert "Last tick written: 16:28:00 UTC (ok)\n" in human
    assert data["scheduler"]["next_write_by"] is None


def test_durations_read_as_a_person_says_them():
    assert [clock.spoken(timedelta(seconds=s)) for s in (0, 45, 300.74, 3600, 3900, 90000, 172800)] == [
        "0 s",
        "45 s",
        "5 min",
        "1 h",
        "1 h 5 min",
        "1 day 1 h",
        "2 days",
    ]


def test_lists_and_proposals_show_local_time_to_the_second_and_json_keeps_iso_utc(write_config):
    write_config('timezone = "Europe/Amsterdam"\n' + paper_config_text())
    with freeze_time("2026-11-27 16:28:51.123456"):
        run = CliRunner()
        made = run.invoke(cli, ["propose", "BTC-EUR", "buy", "--eur", "6", "--approve"], catch_exceptions=False)
        run.invoke(cli, ["execute", "1"], catch_exceptions=False)
        listed = run.invoke(cli, ["proposals"], catch_exceptions=False).output
        history = run.invoke(cli, ["history"], catch_exceptions=False).output
        data = json.loads(run.invoke(cli, ["proposals", "--json"], catch_exceptions=False).output)
    assert made.output.rstrip().endswith("expires 17:58:51 CET")
    assert "17:58:51 CET" in listed and "17:28:51 CET" in history
    for text in (made.output, listed, history):
        assert ".123456" not in text and "Z " not in text + " " and "T16:" not in text
    assert data[0]["expires_at"] == "2026-11-27T16:58:51.123456Z"
