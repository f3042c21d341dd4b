"""`kill` says which running bot it reached, and replay never writes into a live config folder (issue 20, item 2).

On main, `tinybot replay --keep DIR` with DIR the live config folder overwrote
bot.toml (mode paper, db replay.db): a running `tinybot run` kept trading while
`kill` stopped the replay's database, and said nothing about it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tinybot.analysis import candles
from tinybot.base import config, runlock
from tinybot.store import db
from tinybot.trade import killswitch

from helpers.configs import run_cli

HOUR = 3_600_000
START = 1_735_689_600_000  # 2025-01-01T00:00Z
CONFIG = """mode = "paper"
advisors = ["rules"]
[risk]
allowlist = ["BTC-EUR"]
[scheduler]
interval = "1h"
[rules]
candle_interval = "1h"
fast = 3
slow = 8
buy_eur = 6
[paper]
prices = { "BTC-EUR" = "60000" }
"""


@pytest.fixture
def home(tmp_path):
    """A live config folder: bot.toml, its database, and six days of stored candles to replay."""
    (tmp_path / "bot.toml").write_text(CONFIG, encoding="utf-8")
    cfg = config.load(tmp_path / "bot.toml")
    conn = db.open_db(cfg.db_path)
    csv = tmp_path / "candles.csv"
    rows = [
        f"BTC-EUR,{START + i * HOUR},{60000 + 10 * i},{60500 + 10 * i},{59500 + 10 * i},{60010 + 10 * i},1"
        for i in range(150)
    ]
    csv.write_text("market,timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n", encoding="utf-8")
    candles.import_csv(conn, csv)
    conn.close()
    csv.unlink()
    return cfg


@pytest.fixture
def running(home):
    """A real `tinybot run` on the home database; yields its process once it holds the run lock."""
    bot = subprocess.Popen(
        [sys.executable, "-m", "tinybot", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not (runlock.lock_is_held(home.lock_path) and runlock.holder_pid(home.lock_path, attempts=1)):
            assert bot.poll() is None, bot.stderr.read()
            assert time.monotonic() < deadline, "tinybot run did not take its lock"
            time.sleep(0.05)
        yield bot
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)


def test_kill_names_the_pid_of_the_running_bot_it_reached(home, running):
    r = run_cli("kill", "--reason", "holiday")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Trading DISABLED: holiday",
        f"Reached the running bot: `tinybot run` PID {running.pid} holds {home.lock_path} and reads this switch.",
    ]
    assert "WARNING" not in r.stderr


def test_kill_warns_when_no_running_bot_uses_this_database(home):
    r = run_cli("kill", "--reason", "holiday")
    assert r.returncode == 0 and r.stdout.strip() == "Trading DISABLED: holiday"
    assert r.stderr.startswith(f"WARNING: no running `tinybot run` uses this database ({home.db_path})")


def test_replay_refuses_to_keep_its_files_in_a_live_config_folder(home, running):
    """The reproduction: a bot runs; replay --keep into its folder is refused and writes nothing there;
    `kill` then still reaches that bot."""
    before = {p.name: p.read_bytes() for p in home.base_dir.iterdir() if p.is_file() and p.suffix == ".toml"}
    r = run_cli("replay", "--no-progress", "--keep", str(home.base_dir))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"Error: --keep {home.base_dir}: it exists and is not an empty folder" in r.stderr
    assert {p.name: p.read_bytes() for p in home.base_dir.iterdir() if p.suffix == ".toml"} == before
    assert not list(home.base_dir.glob("replay.*"))
    k = run_cli("kill", "--reason", "stop")
    assert f"Reached the running bot: `tinybot run` PID {running.pid}" in k.stdout
    assert killswitch.kill_file(home.db_path).exists()


def test_replay_keeps_its_files_under_their_own_names_in_a_new_or_empty_folder(home, tmp_path):
    for kept in (tmp_path / "new" / "replay", tmp_path / "empty"):
        if kept.name == "empty":
            kept.mkdir()
        r = run_cli("replay", "--no-progress", "--keep", str(kept))
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert sorted(p.name for p in kept.iterdir() if not p.name.startswith("replay.db-")) == [
            "replay.db",
            "replay.log",
            "replay.toml",
        ]
        why = run_cli("--config", str(kept / "replay.toml"), "proposals", "--json")
        assert why.returncode == 0, why.stderr
