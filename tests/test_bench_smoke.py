"""bench/run.py in --quick mode, so the benchmark script cannot rot.  Not a timed test: figures are not checked.

The wear section's own parts are tested at the end: it cannot read zero while the bot writes (issue 27): the
commits are seen and counted, and a window without any is refused an OK.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from helpers import ROOT

from tinybot.store import db


@pytest.mark.waits
def test_bench_quick_runs_every_section_and_reports_figures(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "execute,guards,startup,growth,storm,replay",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    names = {row["name"] for row in rows}
    assert {"execute() p50", "tinybot kill: wall", "tinybot status: wall"} <= names
    assert any(n.startswith("evaluate() p50") for n in names)
    # the functional checks inside the bench hold even in quick mode
    imports = [row for row in rows if row["name"].endswith("imports ccxt?")]
    assert imports and all(row["ok"] for row in imports), imports
    assert {"replay ticks per second", "replay tick vs an idle live tick"} <= names
    assert any(n.startswith("sweep of 4") for n in names)  # --jobs: all cores against one
    assert all("docs" in row for row in rows)  # the figures docs/PERFORMANCE.md last wrote down, beside each
    storm = [row for row in rows if row["section"] == "storm"]
    assert storm and all(row["ok"] for row in storm), storm
    assert not list(tmp_path.glob("tinybot-bench-*")), "the bench left its databases behind"


@pytest.mark.waits
def test_bench_quick_run_section_against_the_simulator(tmp_path):
    """`tinybot run` in live mode against the simulator, a few ticks."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "run,growth",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["tinybot run: peak RSS"]["raw_kib"] > 0
    assert "bytes per idle tick (rows + indexes)" in rows


@pytest.mark.waits
def test_bench_quick_wear_section(tmp_path):
    """SD-card wear: a real `tinybot run` against the simulator and the in-process breakdown, side by side, each
    over a window of three beat periods (30 ticks at 1s, --wear-ticks 1 is rounded up to it)."""
    out = tmp_path / "bench.json"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "wear",
            "--wear-interval",
            "1s",
            "--wear-ticks",
            "1",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    for part in ("process", "in-process"):  # a window of three beats at least: it saw the bot's commits
        assert rows[f"{part}: commits seen in the window"]["raw_commits"] >= 3, rows
        assert rows[f"{part}: → fsynced commits a day at the 1-minute tick"]["raw_n"] > 0
        assert rows[f"{part}: → bytes a day at the 1-minute tick"]["raw_b"] > 0
    assert "in-process vs process, bytes a day" in rows


def test_bench_rejects_an_unknown_section(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--only", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "unknown section(s): nope" in r.stderr


# --- the wear section's parts --------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_run", None)


def write(conn, n: int) -> None:
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO ticks (slot, started_at, status, pid) VALUES (?, 'x', 'ok', 1)", (f"2026-12-04T20:{n:02d}",)
        )


def test_the_wal_watch_counts_every_commit_and_no_empty_transaction(bench, tmp_path):
    path = tmp_path / "tinybot.db"
    conn = db.open_db(path)
    watch = bench.WalCommits(path)
    start = watch.poll()[0]
    for n in range(3):
        write(conn, n)
    with db.transaction(conn):  # nothing written: no frame, no fsync
        pass
    assert watch.poll() == (start + 3, 0)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file written, the WAL restarts
    write(conn, 3)
    write(conn, 4)
    commits, checkpoints = watch.poll()
    assert commits == start + 5 and checkpoints == 1


class FakeBot:
    """Ticks on its own thread, committing every ``every`` ticks (0: never), as the loop's beats do."""

    def __init__(self, path, every: int):
        self.path, self.every, self.ticks, self.stop = path, every, 0, False

    def run(self):
        conn = db.open_db(self.path)
        while not self.stop:
            time.sleep(0.02)
            self.ticks += 1
            if self.every and self.ticks % self.every == 0:
                write(conn, self.ticks % 60)
                conn.execute("DELETE FROM ticks")  # keep slots free (autocommit: one more commit)


def window(bench, tmp_path, every: int):
    path = tmp_path / "tinybot.db"
    db.open_db(path).close()
    bot = FakeBot(path, every)
    t = threading.Thread(target=bot.run, daemon=True)
    t.start()
    try:
        w = bench.WearWindow(
            bench.WalCommits(path),
            bench.proc_write_bytes,
            lambda: bot.ticks,
            tmp_path / "tinybot.log",
            ticks=12,
            patience_s=2.0,
            deadline_s=60,
        )
        return bench.WearFigures.between(*w.run())
    finally:
        bot.stop = True
        t.join()


def test_a_window_over_a_bot_that_commits_sees_at_least_three_commits_and_bytes(bench, tmp_path):
    fig = window(bench, tmp_path, every=4)
    assert fig.commits >= 3 and fig.ticks >= 12 and fig.write_bytes > 0
    assert fig.fsyncs_day > 0 and bench.wear_verdict(fig)[1].endswith("commits seen")


def test_a_window_that_sees_no_commit_is_never_ok(bench, tmp_path):
    fig = window(bench, tmp_path, every=0)
    assert fig.commits == 0 and fig.bytes_day == 0  # the headline of issue 27: zero, and it said OK
    ok, why = bench.wear_verdict(fig)
    assert ok is False and "NO commit" in why
    two = bench.WearFigures(ticks=30, write_bytes=0, commits=2, checkpoints=0, log_bytes=0, seconds=1.0)
    assert bench.wear_verdict(two)[0] is False  # fewer than three beats: not measured either
    three = bench.WearFigures(ticks=30, write_bytes=3 * 60_000, commits=3, checkpoints=0, log_bytes=0, seconds=1.0)
    assert bench.wear_verdict(three) == (True, "3 commits seen")
    pruning = bench.dataclasses.replace(three, prunes_a_day=4, prune_bytes=100_000, prune_commits=1)
    assert pruning.fsyncs_day == 3 / 30 * 1440 + 4 and pruning.bytes_day == 3 * 60_000 / 30 * 1440 + 400_000


def test_the_window_holds_whole_beat_periods_at_least_three(bench):
    assert bench.wear_window_ticks(timedelta(minutes=1)) == (45, 15)
    assert bench.wear_window_ticks(timedelta(seconds=2), asked=1) == (45, 15)
    assert bench.wear_window_ticks(timedelta(minutes=1), asked=46) == (60, 15)
    assert bench.wear_window_ticks(timedelta(hours=1)) == (3, 1)
