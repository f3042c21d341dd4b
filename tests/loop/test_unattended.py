"""Unattended on a Pi (issue 14): kill through a held lock, database faults, init-only databases, exit codes.

Real things throughout: a `sqlite3` process holding the write lock, a
read-only bind mount in a mount namespace (root ignores file modes, not a
read-only mount), corrupt and truncated files, `tinybot` in its own process.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tinybot.store import db
from tinybot.base import exitcodes
from tinybot.trade import killswitch
from tinybot.cli import cli

from helpers.configs import PAPER_TOML, run_cli


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def home(tmp_path):
    """bot.toml + a database made by `tinybot init`, and proposal 1 (approved, not executed)."""
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    assert invoke("init").exit_code == 0
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
    return tmp_path


class HeldLock:
    """A real `sqlite3` shell that has taken the write lock (BEGIN IMMEDIATE) and keeps it until released."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen(
            [shutil.which("sqlite3"), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.proc.stdin.write("BEGIN IMMEDIATE;\nSELECT 'holding';\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "holding"

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("ROLLBACK;\n.quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)


@pytest.fixture
def held_lock():
    locks = []

    def hold(path):
        locks.append(HeldLock(path))
        return locks[-1]

    yield hold
    for lock in locks:
        lock.release()


# --- item 2: kill always works ------------------------------------------------------------


def test_kill_takes_effect_within_a_second_while_another_process_holds_the_write_lock(home, held_lock):
    lock = held_lock(home / "tinybot.db")
    started = time.monotonic()
    r = run_cli("kill", "--reason", "sd card noise")
    took = time.monotonic() - started
    assert r.returncode == exitcodes.OK, r.stderr
    assert r.stdout.strip() == "Trading DISABLED: sd card noise"
    assert r.stderr.startswith(
        f"The kill file {home / 'tinybot.db.kill'} stops the executor; the switch's row in"
        f" the database was not set: {home / 'tinybot.db'} is locked by another process"
        " (waited 1s)"
    )
    assert "Traceback" not in r.stderr
    assert took < 5, f"kill took {took:.1f}s"  # about a second of lock wait + interpreter start; was 30 s + traceback
    assert (home / "tinybot.db.kill").exists()
    # status reads through the lock (WAL readers are not blocked) and shows the file
    st = run_cli("status")
    assert st.returncode == 0 and "Trading: DISABLED (kill switch: sd card noise)" in st.stdout
    assert f"Kill file: {home / 'tinybot.db.kill'}" in st.stdout
    lock.release()
    # the row was never set: the executor stops on the file alone, read in its send transaction
    conn = db.connect(home / "tinybot.db")
    assert conn.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0] == 1
    ex = run_cli("execute", "1")
    assert ex.returncode == exitcodes.BLOCKED
    assert ex.stdout.startswith("Proposal 1: blocked — kill_switch_on")
    why = json.loads(run_cli("why", "1", "--json").stdout)
    assert [d["detail"] for d in why["decisions"] if d["verdict"] == "block"] == [
        f"trading is disabled by the kill file {home / 'tinybot.db.kill'}: sd card noise"
    ]


def test_resume_clears_the_kill_file_and_the_row_then_trading_works(home):
    assert invoke("kill", "--reason", "both").exit_code == 0
    conn = db.connect(home / "tinybot.db")
    assert conn.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0] == 0  # the lock was free: row set too
    assert (home / "tinybot.db.kill").exists()
    r = invoke("resume")
    assert r.output.strip() == "Trading ENABLED."
    assert not (home / "tinybot.db.kill").exists()
    assert conn.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0] == 1
    assert invoke("execute", "1").output.startswith("Proposal 1: filled")


def test_a_kill_file_alone_is_cleared_by_resume(home):
    killswitch.write_kill_file(home / "tinybot.db.kill", "left by a kill during a lock", "cli")
    assert invoke("status", "--json").exit_code == 0
    ks = json.loads(invoke("status", "--json").output)["kill_switch"]
    assert ks["trading_enabled"] == 0 and ks["kill_file"]["reason"] == "left by a kill during a lock"
    assert invoke("resume").output.strip() == "Trading ENABLED."
    assert not (home / "tinybot.db.kill").exists()


# --- item 4: database faults --------------------------------------------------------------

COMMANDS = [
    ["status"],
    ["history"],
    ["why", "1"],
    ["proposals"],
    ["executions"],
    ["kill"],
    ["resume"],
    ["doctor"],
    ["propose", "BTC-EUR", "buy", "--eur", "6"],
    ["approve", "1"],
    ["execute", "1"],
    ["reconcile"],
    ["run", "--once"],
]


def _closed(path: Path) -> Path:
    """Close every connection this test process still holds (CliRunner runs commands in-process):
    the last close checkpoints the -wal into the file, as a clean shutdown leaves it."""
    import gc

    gc.collect()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # (a read-only reader, like a backup, leaves an empty one)
    return path


def _truncate(path: Path):
    size = _closed(path).stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _garbage(path: Path):
    _closed(path).write_bytes(b"this is not a database, it is a shopping list\n" * 200)


@pytest.mark.parametrize(
    "damage, sqlite_says", [(_truncate, "database disk image is malformed"), (_garbage, "file is not a database")]
)
def test_a_damaged_database_gives_one_line_with_the_restore_command_from_every_command(home, damage, sqlite_says):
    backup = invoke("backup", "--label", "nightly")
    assert backup.exit_code == 0
    name = Path(backup.output.split()[1]).name
    damage(home / "tinybot.db")
    for command in COMMANDS:
        r = CliRunner().invoke(cli, command)  # an exception that escaped would show here as r.exception
        assert isinstance(r.exception, SystemExit) and r.exit_code == exitcodes.ERROR, (command, r.output)
        last = r.output.strip().splitlines()[-1]
        assert "Traceback" not in r.output
        said = (
            f"{home / 'tinybot.db'} is damaged ({sqlite_says}); restore a backup:"
            f" `tinybot backup --restore {name}` (`tinybot backup --list` shows all)"
        )
        if command == ["doctor"]:  # the checklist says what it is and the fix (issue 23 item 3), then NO-GO
            assert f"FAIL  database         {said}  [blocks start]" in r.output, r.output
            assert "report this as a bug" not in r.output and last.startswith("NO-GO"), r.output
            continue
        assert last.startswith("Error: "), (command, r.output)
        if command != ["kill"]:
            assert last == f"Error: {said}", command


def test_a_damaged_database_in_a_real_process_prints_no_traceback(home):
    _garbage(home / "tinybot.db")
    for command in (["status"], ["doctor"], ["kill"]):
        r = run_cli(*command)
        assert r.returncode == exitcodes.ERROR and "Traceback" not in r.stderr, r.stderr
        said = r.stdout if command == ["doctor"] else r.stderr  # doctor: its database check says it
        assert "is damaged (file is not a database)" in said
        assert "there is no backup" in said and "run `tinybot init` to start a new database" in said


def test_kill_on_a_damaged_database_still_stops_trading_and_says_what_it_could_not_do(home):
    _garbage(home / "tinybot.db")
    r = CliRunner().invoke(cli, ["kill", "--reason", "x"])
    assert r.exit_code == exitcodes.ERROR
    assert (home / "tinybot.db.kill").exists()
    assert r.output.strip().splitlines()[-1] == (
        "Error: the database has a fault (above); trading is stopped by the kill file until `tinybot resume`"
    )


def test_a_lock_held_past_the_timeout_exits_locked_with_the_file_and_the_fix(home, held_lock, monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 300)  # the real timeout is 30 s; the path is the same
    held_lock(home / "tinybot.db")
    for command in (["propose", "BTC-EUR", "buy", "--eur", "6"], ["resume"], ["approve", "1"]):
        r = CliRunner().invoke(cli, command)
        assert r.exit_code == exitcodes.LOCKED, (command, r.output)
        assert r.output.strip().splitlines()[-1] == (
            f"Error: {home / 'tinybot.db'} is locked by another process (waited 0.3s); find it with"
            f" `fuser -v {home / 'tinybot.db'}` (a `sqlite3` shell left open? another tinybot?), end it and try again"
        )
    assert invoke("status").exit_code == 0  # readers are not blocked by a writer in WAL mode


def _in_read_only_mount(home: Path, tmp_path_factory, *commands: list[str]) -> list[tuple[int, str, str]]:
    """Run tinybot commands with home/ bind-mounted read-only at another path, in a private mount namespace.
    An argument starting with HOME/ names a path inside that read-only view."""
    view, base = tmp_path_factory.mktemp("ro-view"), tmp_path_factory.mktemp("ro-out")
    script = [f"mount --bind -o ro {home} {view} || exit 1"]
    for i, c in enumerate(commands):
        args = " ".join(f"'{a}'".replace("HOME/", f"{view}/") for a in c)  # HOME/: a path on the read-only card
        script.append(
            f"TINYBOT_CONFIG={view}/bot.toml {sys.executable} -m tinybot {args}"
            f" >{base}/out{i} 2>{base}/err{i}; echo $? >{base}/rc{i}"
        )
    out = subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr  # needs root (CI runs as root): a read-only mount, not chmod
    return [
        (
            int((base / f"rc{i}").read_text()),
            (base / f"out{i}").read_text().replace(str(view), str(home)),
            (base / f"err{i}").read_text().replace(str(view), str(home)),
        )
        for i in range(len(commands))
    ]


def test_read_only_filesystem_reads_work_and_writes_say_so(tmp_path_factory):
    home = tmp_path_factory.mktemp("pi")
    (home / "bot.toml").write_text(PAPER_TOML)
    assert run_cli("--config", str(home / "bot.toml"), "init").returncode == 0
    assert run_cli("--config", str(home / "bot.toml"), "propose", "BTC-EUR", "buy", "--eur", "6").returncode == 0
    results = _in_read_only_mount(
        home,
        tmp_path_factory,
        ["status"],
        ["history"],
        ["why", "1"],
        ["proposals"],
        ["doctor", "--json"],
        ["propose", "BTC-EUR", "buy", "--eur", "6"],
        ["kill"],
    )
    for _rc, _out, err in results:
        assert "Traceback" not in err, err
    (st, _, _), (hi, _, _), (why, why_out, _), (pr, _, _) = results[:4]
    assert (st, hi, why, pr) == (0, 0, 0, 0), results[:4]
    assert why_out.startswith("Proposal 1: buy BTC-EUR €6 from cli — pending")
    doc = json.loads(results[4][1])
    assert {c["name"]: c["status"] for c in doc["checks"]}["database"] == "pass"
    rc, _, err = results[5]
    assert rc == exitcodes.ERROR and err.strip().startswith(
        f"Error: {home / 'tinybot.db'} cannot be written: its filesystem is read-only"
    )
    rc, _, err = results[6]
    assert rc == exitcodes.ERROR and err.strip() == (
        f"Error: could NOT write the kill file {home / 'tinybot.db.kill'} (Read-only file system) — the filesystem"
        " is read-only, so the bot cannot commit an order either (each is written before it is sent); stop the bot"
        " itself: `sudo systemctl stop tinybot` (or Ctrl-C in its tmux window)"
    )


def test_on_a_read_only_card_run_backup_export_and_doctor_say_the_path_and_the_fix(tmp_path_factory):
    """Issue 23 items 2 and 3: tracebacks from runlock.py, backup.py, export; doctor called it a bug."""
    home = tmp_path_factory.mktemp("pi")
    (home / "bot.toml").write_text(PAPER_TOML)
    assert run_cli("--config", str(home / "bot.toml"), "init").returncode == 0
    (home / "tinybot.db.lock").unlink(missing_ok=True)  # a card that went read-only before the first run
    results = _in_read_only_mount(
        home,
        tmp_path_factory,
        ["run", "--once"],
        ["run"],
        ["backup"],
        ["export", "--csv", "HOME/fills.csv"],
        ["doctor"],
    )
    read_only = f"the filesystem holding {home} is read-only (a failing SD card turns read-only): check the card"
    for rc, _out, err in results:
        assert rc == exitcodes.ERROR and "Traceback" not in err, err
    for _rc, _out, err in results[:2]:
        assert (
            err.strip()
            .splitlines()[-1]
            .startswith(f"Error: cannot write the run lock {home / 'tinybot.db.lock'}: {read_only}")
        ), err
    assert err_line(results[2]).startswith(f"Error: cannot write the backup {home / 'backups'}: {read_only}")
    assert err_line(results[2]).endswith(f'`sqlite3 {home / "tinybot.db"} ".backup /other/disk/tinybot.db"`')
    assert err_line(results[3]).startswith(f"Error: cannot write the export {home / 'fills.csv'}: {read_only}")
    doctor = results[4][1]
    assert f"FAIL  kill_switch      {home / 'tinybot.db'} cannot be written: its filesystem is read-only" in doctor
    assert "the card is failing (it turned read-only): check it (`dmesg`)" in doctor
    assert "report this as a bug" not in doctor


def err_line(result) -> str:
    return result[2].strip().splitlines()[-1]


def test_export_into_a_missing_folder_names_the_folder_and_the_fix(home):
    r = CliRunner().invoke(cli, ["export", "--csv", str(home / "no" / "such" / "fills.csv")])
    assert r.exit_code == exitcodes.ERROR
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot write the export {home / 'no' / 'such' / 'fills.csv'}: the folder {home / 'no' / 'such'}"
        f" does not exist: create it (`mkdir -p {home / 'no' / 'such'}`) or give another path"
    )


def test_doctor_on_a_corrupt_database_says_it_is_damaged_and_the_restore_command(home):
    backup = invoke("backup", "--label", "nightly")
    name = Path(backup.output.split()[1]).name
    path = _closed(home / "tinybot.db")
    with open(path, "r+b") as f:  # pages in the middle overwritten: the header reads, the tables do not
        f.seek(path.stat().st_size // 2)
        f.write(b"\xff" * 16384)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == exitcodes.ERROR and "Traceback" not in r.output
    assert "report this as a bug" not in r.output, r.output
    assert (
        f"{home / 'tinybot.db'} is damaged (database disk image is malformed); restore a backup:"
        f" `tinybot backup --restore {name}`"
    ) in r.output
    assert "fix:             stop the bot (`sudo systemctl stop tinybot`) and do what the line above says" in r.output


def test_doctor_on_a_file_whose_ops_state_page_is_damaged_still_runs_its_checks(home):
    """The damage lands where doctor reads before its checks (ops_state: a restore's unknown LLM spend): the
    checks still run and the database's says what is wrong, no traceback (the middle-of-the-file test above
    hits this page or not, depending on the schema's size)."""
    path = _closed(home / "tinybot.db")
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    roots = [r for (r,) in conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'ops_state'")]
    conn.close()
    assert len(roots) >= 2  # the table and its primary key's index: a lookup by name reads the index first
    with open(path, "r+b") as f:
        for root in roots:
            f.seek((root - 1) * page_size)
            f.write(b"\xff" * page_size)
    r = CliRunner().invoke(cli, ["doctor"])
    assert r.exit_code == exitcodes.ERROR and "Traceback" not in r.output, r.output
    assert "FAIL  integrity" in r.output and "is damaged (database disk image is malformed)" in r.output, r.output


def test_read_only_filesystem_still_reads_what_only_the_wal_holds(tmp_path_factory):
    """A Pi whose card went read-only mid-run leaves committed rows in -wal: reading must not lose them."""
    home = tmp_path_factory.mktemp("pi")
    (home / "bot.toml").write_text(PAPER_TOML)
    assert run_cli("--config", str(home / "bot.toml"), "init").returncode == 0
    crash = (
        "import os, sys; from datetime import timedelta; from decimal import Decimal\n"
        "from tinybot.store import db; from tinybot.trade import proposals\n"
        "conn = db.connect(sys.argv[1]); conn.execute('PRAGMA wal_autocheckpoint = 0')\n"
        "proposals.create(conn, proposals.Draft('BTC-EUR', 'buy', Decimal('6')), source='t',"
        " ttl=timedelta(minutes=30))\n"
        "os._exit(0)  # no close, no checkpoint: the proposal is only in -wal\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(home / "tinybot.db")], check=True, timeout=60)
    assert (home / "tinybot.db-wal").stat().st_size > 0
    ((rc, out, err),) = _in_read_only_mount(home, tmp_path_factory, ["proposals", "--json"])
    assert rc == 0, err
    assert [p["amount_quote"] for p in json.loads(out)] == ["6"]


def test_restore_works_when_the_current_database_is_corrupt(home):
    b = invoke("backup", "--label", "good")
    name = Path(b.output.split()[1]).name
    _garbage(home / "tinybot.db")
    r = invoke("backup", "--restore", name)
    assert r.exit_code == 0, r.output
    aside = [p for p in home.iterdir() if p.name.startswith("tinybot.db.damaged-") and p.name.count("-") == 1]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert f"The database it replaced is saved as {aside[0]}." in r.output
    st = json.loads(invoke("status", "--json").output)
    assert st["kill_switch"]["trading_enabled"] == 0 and st["kill_switch"]["changed_by"] == "restore"
    assert json.loads(invoke("proposals", "--json").output)[0]["id"] == 1


def test_restore_quarantines_in_flight_executions_when_reconcile_can(home, monkeypatch):
    from tinybot.store import backup
    from tinybot.base import config
    from tinybot.trade import reconcile
    from tinybot.ops import restore

    cfg = config.load(home / "bot.toml")
    b = backup.make(cfg, label="x")
    calls = []

    def quarantine(conn, reason):
        calls.append((conn.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0], reason))

    monkeypatch.setattr(reconcile, "quarantine_after_restore", quarantine)
    restore.restore(cfg, b.path.name)
    assert calls == [(0, f"restore from backup {b.path.name}")]


# --- item 5: only init creates a database -------------------------------------------------


@pytest.mark.parametrize("db_setting", ["typo/tinybot.db", "tinybot.db"])
@pytest.mark.parametrize("command", [c for c in COMMANDS if c != ["doctor"]] + [["backup"]])
def test_no_command_but_init_creates_a_database(tmp_path, command, db_setting):
    (tmp_path / "bot.toml").write_text(PAPER_TOML.replace('mode = "paper"', f'mode = "paper"\ndb = "{db_setting}"'))
    path = tmp_path / db_setting
    r = CliRunner().invoke(cli, command)
    assert r.exit_code == exitcodes.ERROR, r.output
    assert r.output.strip().splitlines()[-1] in (
        f"Error: no database at {path}; run `tinybot init` to create it (check `db =` in bot.toml if it should exist)",
        f"Error: no database at {path} yet; nothing to back up (run `tinybot init`)",
    )
    assert not path.exists() and not (tmp_path / "typo").exists()


def test_doctor_does_not_create_a_database_either(tmp_path):
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    invoke("doctor")
    assert not (tmp_path / "tinybot.db").exists()


def test_an_empty_database_file_is_refused_with_the_restore_command(home):
    name = Path(invoke("backup").output.split()[1]).name
    (home / "tinybot.db").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        Path(f"{home / 'tinybot.db'}{suffix}").unlink(missing_ok=True)
    r = CliRunner().invoke(cli, ["status"])
    assert r.exit_code == exitcodes.ERROR
    assert r.output.strip() == (
        f"Error: {home / 'tinybot.db'} is empty (0 bytes), not a tinybot database; restore"
        f" a backup: `tinybot backup --restore {name}` (`tinybot backup --list` shows all)"
    )
    assert (home / "tinybot.db").stat().st_size == 0  # nothing was created in its place


def test_a_missing_database_with_backups_names_init_and_the_restore_command(home):
    name = Path(invoke("backup").output.split()[1]).name
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home / 'tinybot.db'}{suffix}").unlink(missing_ok=True)
    r = CliRunner().invoke(cli, ["proposals"])
    assert r.output.strip() == (
        f"Error: no database at {home / 'tinybot.db'}; run `tinybot init` to create it, or restore a backup:"
        f" `tinybot backup --restore {name}` (`tinybot backup --list` shows all)"
        " (check `db =` in bot.toml if it should exist)"
    )
    assert not (home / "tinybot.db").exists()


# --- issue 23 items 4 and 5: stopping and exit codes ------------------------------------------------------


def _start_run(home: Path, receiver_url: str) -> subprocess.Popen:
    """A real `tinybot run` (paper, ticking every minute) whose output goes into a pipe this test reads;
    returns once it printed its banner and its first tick."""
    env = dict(os.environ, TINYBOT_CONFIG=str(home / "bot.toml"), TINYBOT_ALERT_URLS=receiver_url)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinybot", "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().startswith("tinybot run: mode paper")
    assert " ok | " in proc.stdout.readline()
    return proc


@pytest.fixture
def receiver():
    from helpers.receiver import Receiver

    r = Receiver()
    yield r
    r.close()


def test_ctrl_c_after_the_reader_of_the_output_went_away_is_a_clean_stop(home, receiver):
    """`tinybot run | tee -a run.log` and Ctrl-C: tee ends first, then tinybot's next line met a closed pipe
    (BrokenPipeError, exit 1, a traceback, a "DIED" alert, and systemd restarting it)."""
    proc = _start_run(home, receiver.url)
    proc.stdout.close()  # the reader is gone
    proc.send_signal(signal.SIGINT)
    rc, err = proc.wait(timeout=60), proc.stderr.read()
    assert rc == exitcodes.OK, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    conn = db.connect(home / "tinybot.db")
    hb = conn.execute("SELECT state, detail FROM scheduler_heartbeat").fetchone()
    assert (hb["state"], hb["detail"]) == ("stopped", "SIGINT")
    stopped = [m["message"] for m in receiver.messages if m.get("title") == "tinybot: bot stopped"]
    assert len(stopped) == 1 and "stopped (SIGINT)" in stopped[0] and "DIED" not in stopped[0]


def test_restore_while_run_holds_the_lock_exits_75_as_the_readme_says(home, receiver):
    backup = invoke("backup", "--label", "nightly")
    name = Path(backup.output.split()[1]).name
    proc = _start_run(home, receiver.url)
    try:
        r = run_cli("backup", "--restore", name, env={"TINYBOT_CONFIG": str(home / "bot.toml")})
        assert r.returncode == exitcodes.LOCKED == 75, r.stderr
        assert r.stderr.strip() == (
            f"Error: `tinybot run` holds {home / 'tinybot.db.lock'} (PID {proc.pid}); stop it first"
            " (`sudo systemctl stop tinybot`, or Ctrl-C in its terminal)"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == exitcodes.OK
        proc.stdout.close()
        proc.stderr.close()
