"""Backups (SQLite online backup API), migrations backing up first, restore, and the documented rollback."""

from __future__ import annotations

import fcntl
import gc
import os
import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import ROOT
from tinybot.store import backup, db
from tinybot.base import config, exitcodes, secrets
from tinybot.trade import killswitch
from tinybot.ops import restore
from tinybot.cli import cli

DOC = ROOT / "docs" / "OPERATIONS.md"
PAPER = """mode = "paper"
[risk]
allowlist = ["BTC-EUR"]
cooldown = "0s"
anti_flip = "0s"
[paper]
prices = { "BTC-EUR" = "60000" }
"""


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in secrets.SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "bot.toml").write_text(PAPER, encoding="utf-8")
    monkeypatch.setenv("TINYBOT_CONFIG", str(tmp_path / "bot.toml"))


def tinybot(*args, ok=True):
    # CliRunner keeps a finished command's frames, and the database connections in them, until the garbage
    # collector runs; a restore needs every other connection closed (a real command is its own process)
    gc.collect()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def rows(conn, table):
    return [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]


def test_backup_is_a_consistent_snapshot_while_a_writer_is_mid_transaction(tmp_path):
    tinybot("init")
    cfg = config.load()
    tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    writer = db.connect(cfg.db_path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO events (at, kind, detail) VALUES ('2026-01-01T00:00:00.000000Z', 'x', 'uncommitted')")
    b = backup.make(cfg)  # does not wait for the writer, and does not see its rows
    writer.execute("ROLLBACK")
    copy = db.connect(b.path)
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 1
    assert copy.execute("SELECT COUNT(*) FROM events WHERE detail = 'uncommitted'").fetchone()[0] == 0
    assert oct(b.path.stat().st_mode & 0o777) == "0o600"
    assert not list(b.path.parent.glob("*.partial"))


def test_backups_are_listed_newest_first_and_pruned(tmp_path):
    tinybot("init")
    cfg = config.load()
    made = [backup.make(cfg, label=f"n{i}", keep=3) for i in range(5)]
    assert [b.path for b in backup.listing(cfg)] == [m.path for m in reversed(made)][:3]
    listed = tinybot("backup", "--list").output
    assert "n4" in listed and "n1" not in listed


def test_migrations_take_a_backup_first_except_on_a_new_database(tmp_path, monkeypatch):
    tinybot("init")
    cfg = config.load()
    assert backup.listing(cfg) == []  # a brand-new database has nothing to lose
    future = db.migrations() + [db.Migration("0099_future", "CREATE TABLE future (id INTEGER PRIMARY KEY);")]
    monkeypatch.setattr(db, "migrations", lambda: future)
    conn = db.connect(cfg.db_path)
    assert db.migrate(conn, before_migration=backup.before_migration(cfg)) == ["0099_future"]
    (b,) = backup.listing(cfg)
    assert b.label == "pre-0099_future"
    assert "0099_future" not in [r[0] for r in db.connect(b.path).execute("SELECT name FROM schema_migrations")]


def test_restore_refuses_while_the_scheduler_holds_the_lock(tmp_path):
    tinybot("init")
    cfg = config.load()
    b = backup.make(cfg)
    with open(cfg.lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = tinybot("backup", "--restore", b.path.name, ok=False)
    assert result.exit_code == exitcodes.LOCKED  # 75: try again once it is stopped (README, Exit codes)
    assert "`tinybot run` holds" in result.output and "stop it first" in result.output
    # the README installs a system service: the hint names it (not a `systemctl --user` unit nobody has)
    assert "`sudo systemctl stop tinybot`" in result.output and "--user" not in result.output


def test_restore_holds_the_same_lock_as_run_and_names_its_pid(tmp_path):
    """backup --restore and `tinybot run` share one lock (tinybot.base.runlock): a real process holding it
    through runlock.RunLock is refused by its PID, and while a restore holds it `run` cannot start."""
    import subprocess
    import sys

    from tinybot.base import runlock

    tinybot("init")
    cfg = config.load()
    b = backup.make(cfg)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from tinybot.base.runlock import RunLock\n"
            f"RunLock({str(cfg.lock_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = tinybot("backup", "--restore", b.path.name, ok=False)
        assert result.exit_code == exitcodes.LOCKED
        assert f"`tinybot run` holds {cfg.lock_path} (PID {holder.pid}); stop it first" in result.output
    finally:
        holder.kill()
        holder.wait()
    with restore.scheduler_lock(cfg):
        with pytest.raises(runlock.AlreadyRunning) as e:
            runlock.RunLock(cfg.lock_path).acquire()
        assert e.value.pid == os.getpid()


def rollback_block(doc: Path = DOC) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    block = re.search(r"<!-- rollback:begin -->\s*```sh\n(.*?)```\s*<!-- rollback:end -->", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_documented_rollback_procedure(tmp_path, monkeypatch):
    # The bot trades on version N.
    tinybot("init")
    cfg = config.load()
    tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    tinybot("execute", "1")
    conn = db.connect(cfg.db_path)
    before = {t: rows(conn, t) for t in ("trade_executions", "trade_history", "positions", "paper_balances")}
    assert before["positions"]

    # Version N+1 ships a migration that damages data; the migration backs up first.
    bad = db.migrations() + [db.Migration("0099_bad", "UPDATE positions SET base = '0', cost_eur = '0';")]
    monkeypatch.setattr(db, "migrations", lambda: bad)
    db.migrate(conn, before_migration=backup.before_migration(cfg))
    assert rows(conn, "positions") != before["positions"]
    conn.close()  # the bot is stopped: nothing holds the database while it is put back
    (pre,) = [b for b in backup.listing(cfg) if b.label == "pre-0099_bad"]

    seen = []
    for line in rollback_block():
        if line.startswith("tinybot "):
            args = [pre.path.name if a == "BACKUP" else a for a in shlex.split(line)[1:]]
            result = tinybot(*args)
            seen.append(args[0])
            if args[:2] == ["backup", "--restore"]:
                ks = killswitch.state(db.connect(cfg.db_path))
                assert not ks["trading_enabled"] and ks["changed_by"] == "restore"
                assert "Trading is DISABLED" in result.output
            if args[0] == "doctor":
                assert result.output.splitlines()[-1] == "GO: every check passed."
        elif "systemctl stop" in line:
            assert backup.latest(cfg) is not None
            with open(cfg.lock_path, "a+") as f:  # the bot is stopped: nobody holds the lock
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
        elif "git checkout" in line:
            monkeypatch.undo()  # version N again: its schema has no 0099_bad
            monkeypatch.setenv("TINYBOT_CONFIG", str(cfg.path))
        else:
            assert "systemctl start" in line, f"the test does not know how to run: {line}"
    assert seen == ["kill", "backup", "backup", "backup", "reconcile", "doctor", "status", "resume"]

    conn = db.connect(cfg.db_path)
    after = {t: rows(conn, t) for t in before}
    assert after == before
    assert "0099_bad" not in [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert killswitch.state(conn)["trading_enabled"] == 1
    # the rollback itself can be rolled back: the damaged database was kept
    (saved,) = [b for b in backup.listing(cfg) if b.label == "pre-restore"]
    assert "0099_bad" in [r[0] for r in db.connect(saved.path).execute("SELECT name FROM schema_migrations")]


def test_readme_shows_the_same_rollback_procedure():
    """The README's copy of the procedure is the one the test above runs."""
    assert rollback_block(ROOT / "README.md") == rollback_block()
