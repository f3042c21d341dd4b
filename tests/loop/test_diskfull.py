"""A full disk under the database (issue 23 item 1): the loop pauses trading, alerts once each way, backs off,
and resumes by itself; read-only commands keep working; the advice says what is really wrong.

The disk is made full two real ways: SQLite's own page limit on the loop's real connection (``PRAGMA
max_page_count`` at the file's size, every free page taken: SQLite itself answers SQLITE_FULL, and raising
the limit is space coming back), and a tiny tmpfs filled to the last byte in a private mount namespace, for
the commands in their own processes (needs root, as CI runs: tests/loop/test_unattended.py does the same).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from helpers.configs import PAPER_TOML, paper_config_text, run_cli
from helpers.receiver import Receiver

from tinybot.base import clock, exitcodes
from tinybot.loop import scheduler
from tinybot.store import db
from tinybot.trade import killswitch


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def fill_to_the_last_page(conn: sqlite3.Connection) -> None:
    """SQLite's own limit at the pages the file has now, and every free byte in them taken."""
    conn.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    for size in (4000, 1000, 200, 20, 1):
        while True:
            try:
                with db.transaction(conn):
                    conn.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError as e:
                assert str(e) == "database or disk is full"
                break


def kinds(receiver) -> list[str]:
    return [m.get("title", "").removeprefix("tinybot: ") for m in receiver.messages]


def test_a_full_disk_pauses_trading_alerts_once_each_way_and_resumes_by_itself(write_config, receiver):
    text = (
        'advisors = ["helpers.advisors:buy_btc"]\n'
        + paper_config_text(cooldown='"1m"')
        + '[scheduler]\ninterval = "1m"\napproval = "auto"\n'
        + f'[alerts]\nurls = ["{receiver.url}"]\n'
    )
    cfg = write_config(text)
    conn = db.open_db(cfg.db_path)
    full_at = datetime(2026, 11, 27, 20, 0, 30, tzinfo=timezone.utc)
    room_at = datetime(2026, 11, 27, 20, 9, 30, tzinfo=timezone.utc)
    lines: list[str] = []
    events = {"full": False, "room": False}

    with freeze_time("2026-11-27 20:00:05") as frozen:

        def sleep(seconds):
            frozen.tick(timedelta(seconds=seconds))
            if not events["full"] and clock.now() >= full_at:
                fill_to_the_last_page(conn)
                events["full"] = True
            if not events["room"] and clock.now() >= room_at:
                conn.execute("PRAGMA max_page_count = 1073741823")  # the owner freed some space
                events["room"] = True

        sched = scheduler.Scheduler(cfg, conn, echo=lines.append)
        code = sched.run(until=datetime(2026, 11, 27, 20, 30, tzinfo=timezone.utc), sleep=sleep)

    out = "\n".join(lines)
    assert code == exitcodes.OK, out  # it did not die
    assert kinds(receiver).count("disk full") == 1, kinds(receiver)
    assert kinds(receiver).count("disk back") == 1, kinds(receiver)
    assert kinds(receiver).index("disk full") < kinds(receiver).index("disk back")
    assert "bot stopped" in kinds(receiver) and not any("DIED" in m["message"] for m in receiver.messages)
    # back-off while full: 1m, 2m, 4m, ... (not a tick a minute)
    assert "disk full (1 in a row); trading paused; retrying in 1 min" in out
    assert "disk full (2 in a row); trading paused; retrying in 2 min" in out
    assert "disk has room again after" in out
    assert killswitch.state(conn)["trading_enabled"] == 1  # a full disk is a pause, not a reason to distrust
    # every order the exchange has was written before it was sent; trading resumed once there was room
    orders = conn.execute("SELECT client_order_id, created_ms FROM paper_orders ORDER BY created_ms").fetchall()
    for o in orders:
        (state,) = conn.execute(
            "SELECT state FROM trade_executions WHERE client_order_id = ?", (o["client_order_id"],)
        ).fetchone()
        assert state not in ("claimed", "blocked"), o["client_order_id"]
    full_ms, room_ms = (int(t.timestamp() * 1000) for t in (full_at, room_at))
    assert orders and orders[0]["created_ms"] < full_ms
    assert not [o for o in orders if full_ms <= o["created_ms"] < room_ms]
    assert [o for o in orders if o["created_ms"] >= room_ms], "trading did not resume"


# --- the commands, each in its own process, on a real full filesystem -------------------------------------


def _on_a_full_tmpfs(home: Path, tmp_path_factory, *commands: list[str], then_free: list[str]) -> list[tuple]:
    """Copy home/ onto a 2 MiB tmpfs in a private mount namespace, fill it to the last byte, run ``commands``,
    then delete the filler and run ``then_free``.  Output goes outside the full disk."""
    view, base = tmp_path_factory.mktemp("full-view"), tmp_path_factory.mktemp("full-out")
    script = [
        f"mount -t tmpfs -o size=2m tmpfs {view} || exit 1",
        f"cp {home}/bot.toml {home}/tinybot.db {view}/ || exit 1",
        f"dd if=/dev/zero of={view}/filler bs=4k 2>/dev/null; test $(stat -f -c %a {view}) -eq 0 || exit 1",
    ]
    runs = list(commands) + [["--rm-filler"], then_free]
    for i, c in enumerate(runs):
        if c == ["--rm-filler"]:
            script.append(f"rm {view}/filler; echo 0 >{base}/rc{i}; : >{base}/out{i}; : >{base}/err{i}")
            continue
        args = " ".join(f"'{a}'" for a in c)
        script.append(
            f"TINYBOT_CONFIG={view}/bot.toml {sys.executable} -m tinybot {args}"
            f" >{base}/out{i} 2>{base}/err{i}; echo $? >{base}/rc{i}"
        )
    out = subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(script)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr  # needs root (CI runs as root): a real filesystem, really full
    results = [
        (
            int((base / f"rc{i}").read_text()),
            (base / f"out{i}").read_text().replace(str(view), str(home)),
            (base / f"err{i}").read_text().replace(str(view), str(home)),
        )
        for i in range(len(runs))
    ]
    return results[: len(commands)] + results[-1:]


def test_on_a_full_disk_reads_work_and_writes_say_the_disk_is_full_not_start_afresh(tmp_path_factory):
    home = tmp_path_factory.mktemp("pi")
    (home / "bot.toml").write_text(PAPER_TOML)
    for c in (["init"], ["propose", "BTC-EUR", "buy", "--eur", "6", "--approve"], ["execute", "1"]):
        assert run_cli("--config", str(home / "bot.toml"), *c).returncode == 0
    results = _on_a_full_tmpfs(
        home,
        tmp_path_factory,
        ["status"],
        ["pnl"],
        ["why", "1"],
        ["history"],
        ["propose", "BTC-EUR", "buy", "--eur", "6"],
        ["backup"],
        ["run", "--once"],
        then_free=["propose", "BTC-EUR", "buy", "--eur", "6"],
    )
    for rc, _out, err in results[:4]:
        assert rc == 0 and "Traceback" not in err, err
    assert results[2][1].startswith("Proposal 1: buy BTC-EUR €6 from cli — filled")
    assert "BTC-EUR" in results[3][1]
    for rc, _out, err in results[4:6]:
        assert rc == exitcodes.ERROR and "Traceback" not in err, err
        assert err.strip().startswith(
            f"Error: {home / 'tinybot.db'} cannot be written: the disk holding it is full ("
        ), err
        assert "free some space" in err and "aside" not in err and "tinybot init" not in err
    rc, out, err = results[6]  # the lock is taken (its PID is only a hint); the start's first write finds no room
    assert rc == exitcodes.ERROR and "Traceback" not in err + out, err + out
    assert f"{home / 'tinybot.db'} cannot be written: the disk holding it is full (" in out, out
    rc, out, err = results[-1]
    assert rc == 0 and out.startswith("Proposal 2: buy BTC-EUR €6"), err  # room again: it just works


# --- the advice for a database fault depends on what is wrong ---------------------------------------------


def test_advice_never_suggests_a_new_database_for_an_intact_file(tmp_path, write_config):
    cfg = write_config()
    io_error = sqlite3.OperationalError("disk I/O error")  # what SQLite says when the card fails a read
    line = str(db.fault(io_error, cfg.db_path))
    assert "passes SQLite's quick_check: keep it" in line
    assert "aside" not in line and "tinybot init" not in line


def test_advice_suggests_a_new_database_only_for_a_damaged_file_without_a_backup(tmp_path, write_config):
    cfg = write_config()
    size = cfg.db_path.stat().st_size
    with open(cfg.db_path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\xff" * 4096 * 4)  # pages of the tables overwritten: SQLite's quick_check finds them wrong
    line = str(db.fault(sqlite3.OperationalError("disk I/O error"), cfg.db_path))
    assert f"there is no backup in {cfg.db_path.parent / 'backups'}: move tinybot.db aside (keep it)" in line
