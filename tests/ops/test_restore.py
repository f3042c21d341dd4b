"""A restore rolls back the database, never the world (issue 20, items 1, 4 and 7).

A backup of every schema version tinybot has shipped is put back whole: copied
into a scratch file, migrated, quarantined, carried forward (LLM spend, id
sequences, a scan from the backup's time) and checked before it is swapped in.
Any failure leaves the live database and the kill switch exactly as they were.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.store import backup, db
from tinybot.base import clock, config
from tinybot.trade import killswitch, reconcile
from tinybot.advisors import llm_budget
from tinybot.cli import cli

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
SCHEMAS = [m.name for m in db.migrations()]  # every shipped schema, a new migration included by itself
CONFIG = """mode = "paper"
advisors = []
[risk]
allowlist = ["BTC-EUR"]
cooldown = "0s"
anti_flip = "0s"
[paper]
prices = { "BTC-EUR" = "60000" }
"""


def tinybot(*args):
    gc.collect()  # CliRunner keeps a finished command's frames (and their connections) until collected
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def home(tmp_path):
    (tmp_path / "bot.toml").write_text(CONFIG, encoding="utf-8")
    assert tinybot("init").exit_code == 0
    return config.load(tmp_path / "bot.toml")


def old_backup(cfg, upto: str) -> backup.Backup:
    """A backup as a tinybot of schema ``upto`` left it: proposal 1 approved with a `claimed` execution
    (a crash between claim and send), proposal 2 approved and not executed yet, one settled LLM call."""
    path = cfg.db_path.with_name("older.db")
    conn = db.connect(path)
    db.migrate(conn, upto=upto)
    now, later = clock.now_iso(), clock.to_iso(clock.now() + timedelta(minutes=30))
    with db.transaction(conn):
        for pid in (1, 2):
            conn.execute(
                "INSERT INTO proposals (id, market, side, amount_quote, source, status, created_at, expires_at,"
                " decided_at, decided_by) VALUES (?, 'BTC-EUR', 'buy', '6', 'cli', 'approved', ?, ?, ?, 'cli')",
                (pid, now, later, now),
            )
        conn.execute(
            "INSERT INTO trade_executions (id, proposal_id, client_order_id, exchange, market, side, amount_quote,"
            " state, claimed_at, updated_at) VALUES (1, 1, 'c1', 'paper', 'BTC-EUR', 'buy', '6', 'claimed', ?, ?)",
            (now, now),
        )
        conn.execute(
            "INSERT INTO gpt_usage_log (state, model, reserved_at, settled_at, day, month, prompt_tokens_est,"
            " max_tokens, reserved_eur, cost_eur) VALUES ('settled', 'm', ?, ?, ?, ?, 10, 10, '0.002', '0.001')",
            (now, now, *llm_budget.period_keys(clock.now())),
        )
    conn.close()
    older = dataclasses.replace(cfg, db="older.db")
    taken = backup.make(older, label=f"pre-after-{upto}")
    path.unlink()
    return taken


def llm_call(conn, cfg) -> Decimal:
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    return llm_budget.settle(conn, r.id, cfg.llm, input_tokens=800, output_tokens=100)


def spent_today(conn) -> Decimal:
    return llm_budget.committed_eur(conn, day=llm_budget.period_keys(clock.now())[0])


@pytest.mark.parametrize("upto", SCHEMAS)
def test_a_backup_of_every_shipped_schema_is_restored_whole(home, upto):
    """Item 1 (and 4, 7): on main a backup older than 0005_money_path failed half-way ("no such column:
    in_doubt_at") after the live database was replaced and trading turned off, so the claimed execution
    and the approved proposal were live again; and no backup carried ids or LLM spend forward."""
    cfg = home
    with freeze_time(T0) as frozen:
        taken = old_backup(cfg, upto)
        frozen.tick(timedelta(hours=1))
        # after the backup the bot went on: ids 1-3 shown to the owner, two orders, an LLM call billed
        for _ in range(3):
            assert tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
        assert tinybot("execute", "1").exit_code == 0 and tinybot("execute", "2").exit_code == 0
        conn = db.connect(cfg.db_path)
        billed = llm_call(conn, cfg)
        before = spent_today(conn)
        conn.close()
        frozen.tick(timedelta(hours=1))
        r = tinybot("backup", "--restore", taken.path.name)
        assert r.exit_code == 0, r.output

        conn = db.connect(cfg.db_path)
        assert db.pending_migrations(conn) == []
        ex = conn.execute("SELECT state, in_doubt_at FROM trade_executions WHERE id = 1").fetchone()
        assert ex["state"] == "unknown" and ex["in_doubt_at"]  # only reconcile may decide it
        assert tuple(conn.execute("SELECT status, decided_by FROM proposals WHERE id = 2").fetchone()) == (
            "rejected",
            "restore",
        )
        ks = killswitch.state(conn)
        assert not ks["trading_enabled"] and ks["changed_by"] == "restore"
        assert spent_today(conn) == Decimal("0.001") + billed >= before  # the backup's call and the one since
        conn.close()
        # ids shown before the restore are never handed out again
        made = tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--approve", "--json")
        assert made.exit_code == 0 and '"id": 4' in made.output, made.output
        assert "kill_switch_on" in tinybot("execute", "4").output
        conn = db.connect(cfg.db_path)
        assert conn.execute("SELECT MAX(id) FROM trade_executions").fetchone()[0] == 3
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert reconcile.restore_scan_from(conn) == taken.at  # the next reconcile books what happened since
        assert ("Migrated it to the current schema" in r.output) == (upto != SCHEMAS[-1])


def test_ids_continue_past_the_replaced_database_also_after_a_restore_of_a_restore(home):
    """Item 4: on main the restored database handed ids 3-7 out again, each now naming another proposal."""
    for _ in range(2):
        tinybot("propose", "BTC-EUR", "buy", "--eur", "6")
    taken = backup.make(home, label="two")
    for _ in range(5):
        tinybot("propose", "BTC-EUR", "buy", "--eur", "6")
    assert tinybot("backup", "--restore", taken.path.name).exit_code == 0
    assert '"id": 8' in tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--json").output
    # the same backup again: the database it replaces had only ids 1, 2 and 8, and its sequence remembers 8
    again = tinybot("backup", "--restore", taken.path.name)
    assert "new proposals are numbered after #8" in again.output
    assert '"id": 9' in tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--json").output


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def boom(*args, **kwargs):
    raise sqlite3.OperationalError("disk I/O error (injected)")


FAILURES = {
    "migrate": lambda mp: mp.setattr(db, "migrate", boom),
    "quarantine": lambda mp: mp.setattr(reconcile, "quarantine_after_restore", boom),
    "carry forward": lambda mp: mp.setattr(llm_budget, "carry_forward", boom),
    "check": lambda mp: mp.setattr("tinybot.ops.restore._check_scratch", boom),
    "pre-restore backup": lambda mp: mp.setattr(backup, "make", boom),
    "swap": lambda mp: mp.setattr("tinybot.ops.restore.os.replace", failing_replace(os.replace)),
}


def failing_replace(real):
    def replace(src, dst):
        if Path(dst).name == "tinybot.db":
            boom()
        return real(src, dst)

    return replace


@pytest.mark.parametrize("step", FAILURES)
def test_a_restore_that_fails_at_any_step_leaves_the_database_and_the_kill_switch_as_they_were(home, monkeypatch, step):
    """Item 1: one clear line, a non-zero exit, and nothing changed: the live database's contents and its
    kill switch (here: trading on) are exactly as before, and no scratch file is left."""
    cfg = home
    taken = old_backup(cfg, "0004_ops")
    tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    tinybot("execute", "1")
    before = dump(cfg.db_path)
    FAILURES[step](monkeypatch)
    r = tinybot("backup", "--restore", taken.path.name)
    monkeypatch.undo()
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"Error: restore from {taken.path.name} failed, nothing was changed:"
    )
    assert dump(cfg.db_path) == before
    conn = db.connect(cfg.db_path)
    assert killswitch.state(conn)["trading_enabled"]
    assert not killswitch.kill_file(cfg.db_path).exists()
    assert not list(cfg.db_path.parent.glob("*.restoring*"))
    assert [b.label for b in backup.listing(cfg)] == [taken.label]  # no pre-restore backup of a restore not done


def test_a_restore_refuses_while_another_process_has_the_database_open(home, monkeypatch):
    """The swap replaces the file: a process still holding the old one would go on writing into a file
    nobody reads (a `tinybot telegram` approving proposals).  So a real process with the database open
    makes the restore refuse, changing nothing; once it has ended, the restore goes through."""
    cfg = home
    taken = backup.make(cfg, label="x")
    before = dump(cfg.db_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(cfg.db_path)!r}); c.execute('SELECT * FROM kill_switch').fetchall()\n"
            "print('open', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    monkeypatch.setattr("tinybot.ops.restore.QUIESCE_TIMEOUT_S", 0.2)
    try:
        assert holder.stdout.readline().strip() == "open"
        r = tinybot("backup", "--restore", taken.path.name)
    finally:
        holder.kill()
        holder.wait()
    assert r.exit_code == 1 and f"another process has {cfg.db_path} open; find it with `fuser -v" in r.output
    assert dump(cfg.db_path) == before
    assert tinybot("backup", "--restore", taken.path.name).exit_code == 0


@pytest.mark.parametrize("replaced", ["damaged", "missing"])
def test_when_the_replaced_database_cannot_be_read_the_llm_budgets_count_as_spent(home, replaced):
    """Item 7: the spend since the backup is unknown: no LLM call until the month ends, and `usage`,
    doctor and the restore itself say so.  (On main the restored budget was whole again.)"""
    cfg = home
    with freeze_time(T0) as frozen:
        taken = backup.make(cfg, label="x")
        frozen.tick(timedelta(hours=1))
        if replaced == "damaged":
            cfg.db_path.write_bytes(b"this is not a database" * 100)
        else:
            cfg.db_path.unlink()
        r = tinybot("backup", "--restore", taken.path.name)
        assert r.exit_code == 0, r.output
        assert "WARNING: LLM spend unknown since a restore" in r.output
        assert "budgets count as spent until 2026-12-01 00:00 UTC" in r.output
        conn = db.connect(cfg.db_path)
        with pytest.raises(llm_budget.BudgetRefused, match="LLM spend unknown since a restore"):
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10)
        conn.close()
        assert "No LLM call this month: LLM spend unknown since a restore" in tinybot("usage").output
        doctor = tinybot("doctor").output
        assert "WARN  llm_budget" in doctor and "LLM spend unknown since a restore" in doctor
        frozen.move_to(datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc))  # the period is over
        conn = db.connect(cfg.db_path)
        assert llm_budget.unknown_spend(conn) is None
        llm_call(conn, cfg)


def test_a_backup_of_a_newer_tinybot_or_not_a_database_is_refused_before_anything_changes(home):
    cfg = home
    newer = backup.make(cfg, label="newer")
    c = sqlite3.connect(newer.path)
    c.execute("INSERT INTO schema_migrations (name, applied_at) VALUES ('0099_future', '2026-01-01T00:00:00.000000Z')")
    c.commit()
    c.close()
    before = dump(cfg.db_path)
    r = tinybot("backup", "--restore", newer.path.name)
    assert r.exit_code == 1 and "was made by a newer tinybot (its schema has 0099_future" in r.output
    junk = cfg.db_path.parent / "backups" / "junk.db"
    junk.write_bytes(b"not sqlite at all" * 64)
    r = tinybot("backup", "--restore", str(junk))
    assert r.exit_code == 1 and "cannot be read as a database" in r.output
    assert dump(cfg.db_path) == before


def test_reconcile_says_what_it_did_when_it_only_booked_a_settled_fee(home):
    """Item 9: a fill first reported unsettled gets its fee in a later reconcile; on main that reconcile
    printed "Nothing to reconcile." although it had just booked the fee."""
    cfg = home
    tinybot("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    tinybot("execute", "1")
    conn = db.connect(cfg.db_path)
    with db.transaction(conn):  # as Bitvavo reports a fill before it is settled: no fee yet
        conn.execute("UPDATE trade_history SET settled = 0, fee = '0'")
    conn.close()
    r = tinybot("reconcile")
    assert r.exit_code == 0, r.output
    assert "Fee settled: execution 1: fill" in r.output and "Nothing to reconcile." not in r.output
    assert tinybot("reconcile").output.strip() == "Nothing to reconcile."
