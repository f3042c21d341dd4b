"""`tinybot doctor`: every item passes on a well set-up live config (against the simulator), and each
failure names what is wrong and how to fix it, with exit code 1."""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tinybot import backup, config, db, doctor
from tinybot.cli import cli

from test_notify import Receiver


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in config.SECRET_NAMES + ("TINYBOT_CONFIG",):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def write_live(tmp_path, sim, receiver=None, *, toml_extra="", operator=True, allow='["BTC-EUR"]',
               read=("read-key", "read-secret"), trade=("trade-key", "trade-secret"), mode=0o600):
    path = tmp_path / "bot.toml"
    path.write_text(f'mode = "live"\n[risk]\nallowlist = {allow}\n[exchange]\n'
                    + ("operator_id = 1\n" if operator else "") + f'url = "{sim.url}"\n' + toml_extra,
                    encoding="utf-8")
    lines = [f"TINYBOT_READ_KEY={read[0]}", f"TINYBOT_READ_SECRET={read[1]}",
             f"TINYBOT_TRADE_KEY={trade[0]}", f"TINYBOT_TRADE_SECRET={trade[1]}"]
    if receiver is not None:
        lines.append(f"TINYBOT_ALERT_URLS={receiver.url}")
    s = tmp_path / "secrets.env"
    s.write_text("\n".join(lines) + "\n", encoding="utf-8")
    s.chmod(mode)
    cfg = config.load(path)
    db.open_db(cfg.db_path).close()
    return cfg


def by_name(checks):
    return {c.name: c for c in checks}


def run_doctor(cfg, *args):
    return CliRunner().invoke(cli, ["--config", str(cfg.path), "doctor", *args], catch_exceptions=False)


def test_live_setup_passes_every_check_and_delivers_a_test_alert(tmp_path, sim, receiver):
    cfg = write_live(tmp_path, sim, receiver)
    backup.make(cfg)
    result = run_doctor(cfg, "--json", "--send-test-alert")
    data = json.loads(result.output)
    failed = [c for c in data["checks"] if c["status"] != "pass"]
    assert failed == [] and data["ok"] and result.exit_code == 0
    assert {c["name"] for c in data["checks"]} == {
        "database", "integrity", "kill_switch", "secrets_file", "keys_separated", "no_secret_leaks", "alerts",
        "operator_id", "exchange", "clock_skew", "allowlist", "caps", "backup"}
    assert len(receiver.messages) == 1 and "tinybot doctor test alert" in receiver.messages[0]["message"]
    assert doctor.go_no_go(cfg) == (True, [])
    human = run_doctor(cfg)
    assert human.exit_code == 0 and human.output.splitlines()[-1] == "GO: every check passed."


def test_each_failure_says_how_to_fix_it(tmp_path, sim_factory):
    skewed = sim_factory(clock=lambda: time.time() + 4)  # access window 10s: 2.5s allowed
    cfg = write_live(tmp_path, skewed, operator=False, allow='["BTC-EUR", "XRP-EUR"]',
                     read=("same-key", "same-secret"), trade=("same-key", "same-secret"),
                     toml_extra='# old key: same-secret\n')
    cfg.log_path.write_text("2026-03-01 request signed with same-secret\n")
    result = run_doctor(cfg)
    assert result.exit_code == 1
    out = result.output
    assert "FAIL  keys_separated   the read key and the trade key are the same key" in out
    assert "FAIL  no_secret_leaks" in out and str(cfg.path) in out and str(cfg.log_path) in out
    assert "FAIL  operator_id" in out and "set [exchange] operator_id" in out
    assert "FAIL  clock_skew" in out and "timedatectl" in out
    assert "FAIL  allowlist        not on the exchange: XRP-EUR" in out
    assert "FAIL  backup" in out and "run `tinybot backup`" in out
    assert "FAIL  alerts           no alert URLs configured" in out
    assert out.splitlines()[-1].startswith("NO-GO: ")
    ok, failures = doctor.go_no_go(cfg)
    assert not ok and {c.name for c in failures} >= {"keys_separated", "clock_skew", "operator_id"}
    assert all(c.fix for c in failures)


def test_secrets_file_readable_by_others(tmp_path, sim):
    cfg = write_live(tmp_path, sim, mode=0o644)
    out = run_doctor(cfg).output
    assert "FAIL  secrets_file" in out and f"chmod 600 {cfg.secrets_path}" in out


def test_unreachable_exchange(tmp_path, sim):
    cfg = write_live(tmp_path, sim)
    sim.sim.close()
    checks = by_name(doctor.run_checks(cfg))
    assert checks["exchange"].status == "fail" and "not reachable" in checks["exchange"].detail
    assert checks["clock_skew"].status == "skip"
    assert checks["allowlist"].status == "fail"


def test_caps_must_fit_the_account(tmp_path, sim):
    cfg = write_live(tmp_path, sim, toml_extra="")
    text = cfg.path.read_text().replace('[risk]\n', '[risk]\nmax_trade_eur = 4\nmax_exposure_eur = 100\n')
    cfg.path.write_text(text)
    cfg = config.load(cfg.path)
    c = by_name(doctor.run_checks(cfg))["caps"]
    assert c.status == "fail"
    assert "below Bitvavo's €5 minimum" in c.detail and "risk.max_exposure_eur €100 is more than the account" in c.detail


def test_missing_constraint_is_found_by_introspection(tmp_path, monkeypatch):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    weakened = db.schema_text().replace("proposal_id       INTEGER NOT NULL UNIQUE", "proposal_id INTEGER NOT NULL")
    assert weakened != db.schema_text()
    monkeypatch.setattr(db, "schema_text", lambda: weakened)
    db.open_db(cfg.db_path).close()
    c = by_name(doctor.run_checks(cfg))["database"]
    assert c.status == "fail" and "UNIQUE(trade_executions.proposal_id)" in c.detail


def test_kill_switch_check_leaves_the_switch_as_it_was(tmp_path):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    conn = db.open_db(cfg.db_path)
    from tinybot import killswitch

    killswitch.set_enabled(conn, False, "by hand", by="cli")
    before = killswitch.state(conn)
    c = by_name(doctor.run_checks(cfg))["kill_switch"]
    assert c.status == "pass" and "DISABLED (by hand" in c.detail
    assert killswitch.state(conn) == before


def test_paper_mode_with_a_trade_key_fails(tmp_path, monkeypatch):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    db.open_db(cfg.db_path).close()
    monkeypatch.setenv("TINYBOT_TRADE_KEY", "trade-key-123")
    c = by_name(doctor.run_checks(cfg))["keys_separated"]
    assert c.status == "fail" and "paper mode" in c.detail
