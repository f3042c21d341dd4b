"""`tinybot doctor`: every item passes on a well set-up live config (against the simulator), and each
failure names what is wrong and how to fix it, with exit code 1."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from click.testing import CliRunner

from tinybot.store import backup, db
from tinybot.base import config, secrets
from tinybot.ops.doctor import checklist, gate, keys, local, market
from tinybot.cli import cli
from tinybot.exchange.base import ReadOnlyClientError
from tinybot.sim import SimAccount

from helpers.receiver import Receiver


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in secrets.SECRET_NAMES + ("TINYBOT_CONFIG",):
        monkeypatch.delenv(name, raising=False)


def accounts(read_perms=("view",), trade_perms=("view", "trade"), eur="25"):
    """One Bitvavo account, two keys on it (as a user sets it up)."""
    return [
        SimAccount("trade-key", "trade-secret", frozenset(trade_perms), {"EUR": Decimal(eur)}, account="me"),
        SimAccount("read-key", "read-secret", frozenset(read_perms), {}, account="me"),
    ]


@pytest.fixture
def sim(sim_factory):
    return sim_factory(accounts=accounts())


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def write_live(
    tmp_path,
    sim,
    receiver=None,
    *,
    toml_extra="",
    operator=True,
    allow='["BTC-EUR"]',
    read=("read-key", "read-secret"),
    trade=("trade-key", "trade-secret"),
    mode=0o600,
):
    path = tmp_path / "bot.toml"
    path.write_text(
        f'mode = "live"\n[risk]\nallowlist = {allow}\n[exchange]\n'
        + ("operator_id = 1\n" if operator else "")
        + f'url = "{sim.url}"\n'
        + toml_extra,
        encoding="utf-8",
    )
    lines = [
        f"TINYBOT_READ_KEY={read[0]}",
        f"TINYBOT_READ_SECRET={read[1]}",
        f"TINYBOT_TRADE_KEY={trade[0]}",
        f"TINYBOT_TRADE_SECRET={trade[1]}",
    ]
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


def fails(checks):
    return [c.name for c in checks if c.status == "fail"]


def test_live_setup_passes_every_check_and_delivers_a_test_alert(tmp_path, sim, receiver):
    cfg = write_live(tmp_path, sim, receiver)
    backup.make(cfg)
    result = run_doctor(cfg, "--json", "--send-test-alert")
    data = json.loads(result.output)
    failed = [c for c in data["checks"] if c["status"] != "pass"]
    # no heartbeat URL and no Telegram chat in this setup: those two are skipped, saying so
    assert [(c["name"], c["status"]) for c in failed] == [("heartbeat", "skip"), ("telegram", "skip")]
    assert data["ok"] and result.exit_code == 0
    assert {c["name"] for c in data["checks"]} == {
        "database",
        "integrity",
        "kill_switch",
        "secrets_file",
        "keys_separated",
        "no_secret_leaks",
        "alerts",
        "operator_id",
        "exchange",
        "clock_skew",
        "read_key",
        "trade_key",
        "allowlist",
        "caps",
        "backup",
        "heartbeat",
        "telegram",
    }
    checks = by_name(checklist.run_checks(cfg))
    assert "View only" in checks["read_key"].detail and "reads orders" in checks["trade_key"].detail
    assert len(receiver.messages) == 1 and "tinybot doctor test alert" in receiver.messages[0]["message"]
    assert checklist.go_no_go(cfg) == (True, [])
    assert gate.start_gate(cfg) == ([], [])
    human = run_doctor(cfg)
    assert human.exit_code == 0 and human.output.splitlines()[-1] == "GO: every check passed."


def test_each_failure_says_how_to_fix_it(tmp_path, sim_factory):
    skewed = sim_factory(accounts=accounts(), clock=lambda: time.time() + 4)  # window 10s: 2.5s allowed
    cfg = write_live(
        tmp_path,
        skewed,
        operator=False,
        allow='["BTC-EUR", "XRP-EUR"]',
        read=("same-key", "same-secret"),
        trade=("same-key", "same-secret"),
        toml_extra="# old key: same-secret\n",
    )
    cfg.log_path.write_text("2026-03-01 request signed with same-secret\n")
    result = run_doctor(cfg)
    assert result.exit_code == 1
    out = result.output
    assert "FAIL  keys_separated   the read key and the trade key are the same key  [blocks start]" in out
    assert "FAIL  no_secret_leaks" in out and str(cfg.path) in out and str(cfg.log_path) in out
    assert "FAIL  operator_id" in out and "set [exchange] operator_id" in out
    assert "FAIL  clock_skew" in out and "timedatectl" in out
    assert "FAIL  allowlist        not on the exchange: XRP-EUR" in out
    assert "WARN  backup" in out and "run `tinybot backup`" in out
    assert "WARN  alerts           no alert URLs configured" in out
    assert out.splitlines()[-1].startswith("NO-GO: ") and "`tinybot run` refuses to start" in out
    ok, failures = checklist.go_no_go(cfg)
    assert not ok and {c.name for c in failures} >= {"keys_separated", "clock_skew", "operator_id"}
    assert all(c.fix for c in failures)
    blocking, warnings = gate.start_gate(cfg)
    assert {c.name for c in blocking} == {"keys_separated", "clock_skew", "operator_id"}
    assert {c.name for c in warnings} >= {"backup", "alerts", "allowlist"}  # the file scan is doctor's alone


def test_a_secrets_file_readable_by_others_is_one_fail_with_one_fix(tmp_path, sim, receiver):
    cfg = write_live(tmp_path, sim, receiver, mode=0o644)
    backup.make(cfg)
    checks = checklist.run_checks(cfg)
    assert fails(checks) == ["secrets_file"]  # not also "no alert URLs", "adjust [risk]" or "exchange"
    out = run_doctor(cfg).output
    assert "FAIL  secrets_file" in out and f"chmod 600 {cfg.secrets_path}" in out
    assert "adjust [risk]" not in out and "no alert URLs" not in out
    assert by_name(checks)["caps"].status == "skip" and "secrets_file" in by_name(checks)["caps"].detail


def test_unreachable_exchange_is_one_fail(tmp_path, sim):
    cfg = write_live(tmp_path, sim)
    sim.sim.close()
    checks = by_name(checklist.run_checks(cfg))
    assert checks["exchange"].status == "fail" and "not reachable" in checks["exchange"].detail
    assert fails(checks.values()) == ["exchange"]
    for name in ("clock_skew", "read_key", "trade_key", "allowlist", "caps"):
        assert checks[name].status == "skip", name
    blocking, warnings = gate.start_gate(cfg)
    assert blocking == []  # an outage at start is waited out by the scheduler, not a reason to refuse


def test_a_clock_that_bitvavo_refuses_is_a_clock_problem_not_a_caps_problem(tmp_path, sim_factory):
    skewed = sim_factory(accounts=accounts(), clock=lambda: time.time() + 12)  # past the 10s window: 304
    cfg = write_live(tmp_path, skewed)
    checks = by_name(checklist.run_checks(cfg))
    assert fails(checks.values()) == ["clock_skew"]
    assert checks["caps"].status == "skip" and "clock" in checks["caps"].detail
    assert checks["trade_key"].status == "skip" and checks["read_key"].status == "skip"


def test_caps_that_make_no_sense_fail_caps_over_the_account_only_warn(tmp_path, sim):
    cfg = write_live(tmp_path, sim, toml_extra="")
    cfg.path.write_text(cfg.path.read_text().replace("[risk]\n", "[risk]\nmax_trade_eur = 4\n"))
    c = by_name(checklist.run_checks(config.load(cfg.path)))["caps"]
    assert c.status == "fail" and "below Bitvavo's €5 minimum" in c.detail
    cfg.path.write_text(cfg.path.read_text().replace("max_trade_eur = 4\n", "max_exposure_eur = 100\n"))
    c = by_name(checklist.run_checks(config.load(cfg.path)))["caps"]
    assert c.status == "warn" and "risk.max_exposure_eur €100 more than the account (€25.00" in c.detail


def test_caps_are_judged_against_the_account_value_after_a_trade(tmp_path, sim, monkeypatch):
    """€25 caps on a €25 account: after one buy the EUR is €20 minus fees; EUR + BTC at the bid must pass."""
    from tinybot.trade import executor, proposals
    from tinybot.trade.proposals import Draft
    from datetime import timedelta

    cfg = write_live(tmp_path, sim)
    cfg.path.write_text(cfg.path.read_text().replace("[risk]\n", "[risk]\nmax_exposure_eur = 25\nmax_daily_eur = 25\n"))
    cfg = config.load(cfg.path)
    conn = db.open_db(cfg.db_path)
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6"), None, "t"), source="test", ttl=timedelta(minutes=5), approve=True
    )
    assert executor.execute(conn, cfg, executor.trading_exchange(cfg), pid).state == "filled"
    assert sim.sim.balance("trade-key")["EUR"] == Decimal("19")  # the €6 buy paid its fee out of the €6
    value, source = market.account_value(cfg, conn, None)
    assert Decimal("24.9") < value < Decimal("25") and source == "EUR plus positions at the bid"
    c = by_name(checklist.run_checks(cfg))["caps"]
    assert c.status == "pass", c.detail


def test_a_wrong_trade_secret_fails_and_blocks_the_start(tmp_path, sim):
    cfg = write_live(tmp_path, sim, trade=("trade-key", "not-the-secret"))
    checks = by_name(checklist.run_checks(cfg))
    assert fails(checks.values()) == ["trade_key"]
    assert "TINYBOT_TRADE_SECRET is not that key's secret" in checks["trade_key"].detail
    assert "TINYBOT_TRADE_SECRET" in checks["trade_key"].fix
    assert [c.name for c in gate.start_gate(cfg)[0]] == ["trade_key"]


def test_an_unknown_trade_key_fails(tmp_path, sim):
    cfg = write_live(tmp_path, sim, trade=("d" * 64, "trade-secret"))  # whole length: Bitvavo answers 305
    c = by_name(checklist.run_checks(cfg))["trade_key"]
    assert c.status == "fail" and "Bitvavo knows no such key" in c.detail


def test_swapped_keys_are_one_fail_saying_swap_them(tmp_path, sim):
    cfg = write_live(tmp_path, sim, read=("trade-key", "trade-secret"), trade=("read-key", "read-secret"))
    checks = by_name(checklist.run_checks(cfg))
    assert fails(checks.values()) == ["trade_key"]
    assert "look swapped" in checks["trade_key"].detail and "swap the values" in checks["trade_key"].fix
    assert checks["read_key"].status == "skip" and checks["keys_separated"].status == "pass"


def test_a_trade_key_that_cannot_read_orders_fails(tmp_path, sim_factory):
    sim = sim_factory(accounts=accounts(trade_perms=("view",)))
    cfg = write_live(tmp_path, sim)
    checks = by_name(checklist.run_checks(cfg))
    assert fails(checks.values()) == ["trade_key"]
    assert "cannot read orders" in checks["trade_key"].detail and "Trade rights" in checks["trade_key"].fix
    assert checks["trade_key"].blocks_start


def test_a_read_key_that_reads_orders_warns_until_the_live_probe_saw_it(tmp_path, sim_factory):
    """Bitvavo is unclear whether View keys read orders (issue 24 item 1): a warning naming the uncertainty,
    never a FAIL, until `doctor --live-probe` recorded what Bitvavo let this very key do."""
    sim = sim_factory(accounts=accounts(read_perms=("view", "trade")))
    cfg = write_live(tmp_path, sim)
    checks = by_name(checklist.run_checks(cfg))
    assert fails(checks.values()) == [] and checks["read_key"].status == "warn"
    detail, fix = checks["read_key"].detail, checks["read_key"].fix
    assert "can read orders" in detail and "not yet observed by the live probe" in detail and "unclear" in detail
    assert "View rights only" in fix and "--live-probe" in fix
    blocking, warnings = gate.start_gate(cfg)
    assert blocking == [] and "read_key" in {c.name for c in warnings}

    result = run_doctor(cfg, "--live-probe", "--json")
    data = json.loads(result.output)
    read_key = {c["name"]: c for c in data["checks"]}["read_key"]
    assert read_key["status"] == "pass" and "as the live probe saw on" in read_key["detail"]
    recorded = json.loads((cfg.db_path.parent / "live_probe.json").read_text())  # where the probe records
    assert recorded["keys"]["read"]["reads_orders"] is True
    assert recorded["keys"]["read"]["fingerprint"] == keys.fingerprint("read-key")
    assert "read-key" not in json.dumps(recorded) and "read-secret" not in json.dumps(recorded)

    other = write_live(tmp_path, sim, read=("trade-key", "trade-secret"), trade=("read-key", "read-secret"))
    swapped = by_name(checklist.run_checks(other))  # the record speaks of another read key: it does not count
    assert swapped["read_key"].status != "pass"


def test_the_start_decision_logs_and_alerts_an_override_and_alerts_nothing_else(tmp_path, sim, receiver, caplog):
    """doctor.gate decides what `tinybot run`'s start logs and alerts; the CLI only prints the decision."""
    from tinybot.owner import notify

    caplog.set_level("WARNING", logger="tinybot.run")
    cfg = write_live(tmp_path, sim, receiver, trade=("trade-key", "not-the-secret"))
    notifier = notify.Notifier(cfg, None)
    refused = gate.decide_start(cfg, notifier, ignore=False)
    (blocking,) = refused.blocking
    assert refused.refused and not refused.ignored and blocking.name == "trade_key"
    assert refused.reasons() == [f"trade_key: {blocking.detail} (fix: {blocking.fix})"]
    assert "backup" in {c.name for c in refused.warnings}
    assert receiver.messages == []  # a refused start is alerted by the scheduler as it stops, once
    assert "doctor: backup: no backup in" in caplog.text and "DESPITE" not in caplog.text

    ignored = gate.decide_start(cfg, notifier, ignore=True)
    assert ignored.ignored and not ignored.refused and ignored.reasons() == []
    text = f"STARTING LIVE DESPITE FAILING DOCTOR CHECKS (--ignore-doctor): trade_key: {blocking.detail}"
    assert ignored.override == text and text in caplog.text
    assert [m["message"] for m in receiver.messages] == [text]

    backup.make(cfg)
    cfg.secrets_path.write_text(cfg.secrets_path.read_text().replace("not-the-secret", "trade-secret"))
    clean = gate.decide_start(cfg, notifier, ignore=True)  # nothing to override: nothing to say
    assert (clean.blocking, clean.ignored, clean.reasons()) == ([], False, [])
    assert len(receiver.messages) == 1


def test_doctor_help_and_json_work_from_the_command_line_on_a_fresh_paper_config(tmp_path):
    """`tinybot init` then `tinybot doctor` as real processes: the package's modules are wired into the CLI."""
    from helpers.configs import run_cli

    path = tmp_path / "fresh" / "bot.toml"
    assert run_cli("--config", str(path), "init").returncode == 0
    helped = run_cli("--config", str(path), "doctor", "--help")
    assert helped.returncode == 0 and helped.stderr == ""
    assert helped.stdout.startswith("Usage: tinybot doctor [OPTIONS]")
    assert all(o in helped.stdout for o in ("--json", "--send-test-alert", "--live-probe"))
    r = run_cli("--config", str(path), "doctor", "--json")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    data = json.loads(r.stdout)
    assert (data["ok"], data["mode"], set(data)) == (True, "paper", {"ok", "mode", "checks"})
    assert all(set(c) == {"name", "status", "detail", "fix", "blocks_start"} for c in data["checks"])
    expected = {
        "database": "pass",
        "integrity": "pass",
        "kill_switch": "pass",
        "secrets_file": "pass",
        "keys_separated": "pass",
        "no_secret_leaks": "pass",
        "operator_id": "skip",
        "alerts": "skip",
        "exchange": "skip",  # the example config's fixed [paper] prices: no network
        "clock_skew": "skip",
        "allowlist": "pass",
        "caps": "pass",
        "backup": "warn",
        "heartbeat": "skip",
        "telegram": "skip",
    }
    assert [(c["name"], c["status"]) for c in data["checks"]] == list(expected.items())  # in checklist order


def test_the_key_probes_cannot_place_an_order_even_with_the_trade_key(tmp_path, sim):
    cfg = write_live(tmp_path, sim)
    client = keys.key_client(cfg, "TRADE")
    with pytest.raises(ReadOnlyClientError, match="refused POST"):  # refused before a byte leaves
        client.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "operatorId": 1})
    assert sim.sim.orders() == []


def test_missing_constraint_is_found_by_introspection(tmp_path, monkeypatch):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    weakened = db.schema_text().replace("proposal_id       INTEGER NOT NULL UNIQUE", "proposal_id INTEGER NOT NULL")
    assert weakened != db.schema_text()
    monkeypatch.setattr(db, "schema_text", lambda: weakened)
    db.open_db(cfg.db_path).close()
    c = by_name(checklist.run_checks(cfg))["database"]
    assert c.status == "fail" and "UNIQUE(trade_executions.proposal_id)" in c.detail


def test_kill_switch_check_leaves_the_switch_as_it_was(tmp_path):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    conn = db.open_db(cfg.db_path)
    from tinybot.trade import killswitch

    killswitch.set_enabled(conn, False, "by hand", by="cli")
    before = killswitch.state(conn)
    c = by_name(checklist.run_checks(cfg))["kill_switch"]
    assert c.status == "pass" and "DISABLED (by hand" in c.detail
    assert killswitch.state(conn) == before


def test_paper_mode_with_a_trade_key_fails(tmp_path, monkeypatch):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    db.open_db(cfg.db_path).close()
    monkeypatch.setenv("TINYBOT_TRADE_KEY", "trade-key-123")
    c = by_name(checklist.run_checks(cfg))["keys_separated"]
    assert c.status == "fail" and "paper mode" in c.detail


# --- tinybot doctor --live-probe, against `tinybot sim` -------------------------------------


def test_live_probe_against_the_simulator_finds_no_difference(tmp_path, sim, receiver):
    cfg = write_live(tmp_path, sim, receiver)
    before = len(sim.sim.orders())
    result = run_doctor(cfg, "--live-probe", "--json")
    data = json.loads(result.output)
    assert data["differences"] == 0, data["probe"]
    names = {p["name"] for p in data["probe"]}
    assert names == {"key_rights", "market_table", "fee_tier", "time_window", "client_order_id"}
    assert {p["name"]: p["status"] for p in data["probe"]}["client_order_id"] == "skip"  # no trade yet
    assert len(sim.sim.orders()) == before  # read-only: nothing placed


def test_live_probe_reports_where_the_exchange_differs(tmp_path, sim_factory, monkeypatch):
    """A stand-in for Bitvavo that differs from the model: another fee tier, filled orders not found by
    clientOrderId, and a read key that may read orders."""
    from tinybot.trade import executor, proposals
    from tinybot.trade.proposals import Draft
    from datetime import timedelta

    other = sim_factory(
        accounts=accounts(read_perms=("view", "trade")), taker_fee=Decimal("0.0015"), find_closed_by_client_id=True
    )
    cfg = write_live(tmp_path, other)
    conn = db.open_db(cfg.db_path)
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6"), None, "t"), source="test", ttl=timedelta(minutes=5), approve=True
    )
    assert executor.execute(conn, cfg, executor.trading_exchange(cfg), pid).state == "filled"
    result = run_doctor(cfg, "--live-probe")
    out = result.output
    assert "DIFF  fee_tier         taker 0.0015" in out and "simulator taker 0.0025" in out
    assert "DIFF  client_order_id" in out and "found it (filled)" in out
    assert "DIFF  key_rights" in out and "GET /ordersOpen with the read key: Bitvavo allowed" in out
    assert "3 difference(s)" in out


def test_a_key_cut_short_is_named_as_such(tmp_path, sim):
    """Bitvavo answers 301 ("API Key must be of length 64") to a key of another length: say it was cut short."""
    cfg = write_live(tmp_path, sim, read=("read-ke", "read-secret"))
    checks = by_name(checklist.run_checks(cfg))
    assert checks["read_key"].status == "fail" and "64 characters" in checks["read_key"].detail
    assert "all of it" in checks["read_key"].fix


def test_live_probe_save_writes_what_it_observed_with_keys_and_ids_redacted(tmp_path, sim_factory):
    from tinybot.trade import executor, proposals
    from tinybot.trade.proposals import Draft
    from datetime import timedelta

    sim = sim_factory(accounts=accounts())
    cfg = write_live(tmp_path, sim)
    conn = db.open_db(cfg.db_path)
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6"), None, "t"), source="test", ttl=timedelta(minutes=5), approve=True
    )
    assert executor.execute(conn, cfg, executor.trading_exchange(cfg), pid).state == "filled"
    cid = conn.execute("SELECT client_order_id FROM trade_executions").fetchone()[0]
    conn.close()
    saved = tmp_path / "first-day.json"
    result = run_doctor(cfg, "--live-probe", "--save", str(saved))
    assert result.exit_code == 0, result.output
    text = saved.read_text()
    data = json.loads(text)
    assert {p["name"] for p in data["probes"]} == {
        "key_rights",
        "market_table",
        "fee_tier",
        "time_window",
        "client_order_id",
    }
    assert data["keys"]["read"]["rights"]["/ordersOpen"].startswith("refused (errorCode 310")
    assert data["keys"]["trade"]["rights"]["/ordersOpen"] == "allowed" and 310 in data["error_codes"]
    lookup = next(p for p in data["probes"] if p["name"] == "client_order_id")
    assert "did not find it" in lookup["detail"] and "<id>" in lookup["detail"]  # the hard reading, as modelled
    for never in ("read-key", "read-secret", "trade-key", "trade-secret", cid, "fingerprint"):
        assert never not in text, never
    assert run_doctor(cfg, "--save", str(saved)).exit_code == 1  # --save alone says what it needs
    r = run_doctor(cfg, "--live-probe", "--save", str(tmp_path / "no" / "such" / "x.json"))
    assert r.exit_code == 1 and "cannot write" in r.output and "Traceback" not in r.output


def test_live_probe_needs_live_mode(tmp_path):
    path = tmp_path / "bot.toml"
    path.write_text("", encoding="utf-8")
    cfg = config.load(path)
    db.open_db(cfg.db_path).close()
    r = run_doctor(cfg, "--live-probe")
    assert r.exit_code == 1 and "--live-probe asks the real exchange" in r.output


def test_the_leak_scan_finds_an_alert_url_token_that_the_log_redaction_hides(tmp_path):
    """One list of secret values (tinybot.base.secrets): a bot token inside TINYBOT_ALERT_URLS, written alone to
    the log (apprise logs URL pieces), is hidden by the redaction and found by doctor's leak scan."""
    from tinybot.owner import notify

    (tmp_path / "bot.toml").write_text('mode = "paper"\n', encoding="utf-8")
    token = "AAHdqTcv1vGWJx0K5PALDsaw"  # the shape of a Telegram bot token's secret part
    s = tmp_path / "secrets.env"
    s.write_text(f"TINYBOT_ALERT_URLS=tgram://123456789:{token}/987654321\n", encoding="utf-8")
    s.chmod(0o600)
    cfg = config.load(tmp_path / "bot.toml")
    line = f"2026-03-01 apprise: sending with token {token} failed\n"
    assert token not in notify.redact(line, notify.secret_values(cfg))  # the redaction hides it
    assert local.no_secret_leaks(cfg).status == "pass"
    cfg.log_path.write_text(line, encoding="utf-8")  # what was written before the redaction was in place
    check = local.no_secret_leaks(cfg)
    assert (check.status, check.detail) == ("fail", f"TINYBOT_ALERT_URLS in {cfg.log_path}")
