"""`tinybot run` in live mode refuses to start while doctor fails, unless loudly overridden."""
from __future__ import annotations

import pytest

from tinybot import db

from conftest import run_cli
from simfixtures import READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, shared_accounts
from test_live import live_text


@pytest.fixture
def live_env(sim_factory, write_config, monkeypatch):
    sim = sim_factory(accounts=shared_accounts())
    for name, value in (("TINYBOT_TRADE_KEY", TRADE_KEY), ("TINYBOT_TRADE_SECRET", TRADE_SECRET),
                        ("TINYBOT_READ_KEY", READ_KEY), ("TINYBOT_READ_SECRET", READ_SECRET)):
        monkeypatch.setenv(name, value)
    return write_config(live_text(sim.url)), sim


def ticks(cfg) -> int:
    return db.open_db(cfg.db_path).execute("SELECT COUNT(*) FROM ticks").fetchone()[0]


def test_live_run_refuses_while_doctor_fails(live_env):
    cfg, sim = live_env  # no backup yet, no alerts configured: doctor says no-go
    r = run_cli("run", "--once")
    assert r.returncode == 1
    assert r.stderr.startswith("Error: doctor fails: ") and "--ignore-doctor" in r.stderr
    assert "backup" in r.stderr
    assert ticks(cfg) == 0 and sim.sim.orders() == []


def test_ignore_doctor_starts_and_says_so_loudly(live_env):
    cfg, _ = live_env
    r = run_cli("run", "--once", "--ignore-doctor")
    assert r.returncode == 0, r.stderr
    assert "Warning: STARTING LIVE DESPITE FAILING DOCTOR CHECKS (--ignore-doctor)" in r.stderr
    assert ticks(cfg) == 1
    assert "STARTING LIVE DESPITE FAILING DOCTOR CHECKS" in cfg.log_path.read_text()
