"""What an idle tick costs in SQL, counted (never timed): a fixed number of statements, and a snapshot that reads no
more after a long history than on the first day (issue 26)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from helpers.configs import PAPER_TOML
from helpers.sqlcost import counted, seed_history
from tinybot.advisors import build_snapshot
from tinybot.base import clock
from tinybot.exchange import read_only
from tinybot.loop import scheduler
from tinybot.store import db

IDLE = 'advisors = ["helpers.advisors:sneaky"]\n' + PAPER_TOML + '[scheduler]\ninterval = "1m"\n'
STATEMENTS_PER_IDLE_TICK = 39  # paper mode, one advisor that proposes nothing, in the loop (lazy claims)


def idle_loop(write_config, folder, history: int):
    folder.mkdir()
    cfg = write_config(IDLE, name=f"{folder.name}/bot.toml")
    conn = db.open_db(cfg.db_path)
    if history:  # another advisor's history: the idle one must not walk it to find its own few proposals
        seed_history(conn, history, until=clock.now() - timedelta(days=2), source="rules")
    sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
    sched.beat.lazy = True  # as in `tinybot run`
    return cfg, conn, sched


@freeze_time("2026-11-27 20:00:05")
def test_an_idle_tick_runs_a_fixed_number_of_statements(write_config, tmp_path):
    cfg, conn, sched = idle_loop(write_config, tmp_path / "bot", 0)
    slot = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    for i in range(3):  # the first ticks read what later ones keep (the surprise scan, cursors, the hour's prices)
        sched.tick(slot + timedelta(minutes=i))
    with counted(conn) as cost:
        report = sched.tick(slot + timedelta(minutes=3))
    assert report.idle and report.status == "ok", report
    assert len(cost.statements) <= STATEMENTS_PER_IDLE_TICK, "\n".join(cost.statements)


@freeze_time("2026-11-27 20:00:05")
def test_an_idle_tick_reads_no_more_after_a_long_history_than_on_the_first_day(write_config, tmp_path):
    """The whole tick, counted: expiring stale proposals (it walked every approved proposal ever, each executed one
    stays 'approved'), the snapshot, the safety rules, the alerts' cursors."""
    slot = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    costs = []
    for name, history in (("first", 0), ("later", 3000)):
        cfg, conn, sched = idle_loop(write_config, tmp_path / name, history)
        for i in range(3):
            sched.tick(slot + timedelta(minutes=i))
        with counted(conn) as cost:
            assert sched.tick(slot + timedelta(minutes=3)).idle
        costs.append(cost)
    first, later = costs
    assert len(later.statements) == len(first.statements)
    assert later.steps <= 1.2 * first.steps, (first.steps, later.steps)


@freeze_time("2026-11-27 20:00:05")
def test_the_snapshot_reads_no_more_after_a_long_history_than_on_the_first_day(write_config, tmp_path):
    """Every tick's snapshot reads the advisors' recent proposals, positions, books and caps: each a seek."""
    costs = []
    for name, history in (("first", 0), ("later", 3000)):
        cfg, conn, _ = idle_loop(write_config, tmp_path / name, history)
        with counted(conn) as cost:
            build_snapshot(conn, cfg, read_only(cfg), sources=cfg.active_advisors)
        costs.append(cost)
    first, later = costs
    assert len(later.statements) == len(first.statements)
    assert later.steps <= 1.2 * first.steps, (first.steps, later.steps)
