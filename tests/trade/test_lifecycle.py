"""The proposal lifecycle reads true (issue 14, item 10) and a claimed execution never outlives its proposal (issue 11, item 5)."""

from __future__ import annotations

import json
import socket
from datetime import timedelta

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.base import clock, exitcodes
from tinybot.store import db
from tinybot.trade import proposals
from tinybot.cli import cli

from helpers.configs import RISK_TOML
from helpers.sim import OPERATOR_ID, READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET

T0 = "2026-11-02T10:00:00Z"
LATER = "2026-11-02T10:31:00Z"  # past the 30m proposal_ttl; no scheduler tick ran in between


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def home(write_config):
    return write_config()


def test_expired_shows_as_expired_everywhere_without_a_tick(home):
    with freeze_time(T0):
        assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
        assert invoke("propose", "BTC-EUR", "buy", "--eur", "6").exit_code == 0
    with freeze_time(LATER):
        rows = json.loads(invoke("proposals", "--json").output)
        assert [(r["id"], r["status"]) for r in rows] == [(2, "expired"), (1, "expired")]
        assert "expired" in invoke("proposals").output.splitlines()[1].split()
        assert [r["id"] for r in json.loads(invoke("proposals", "--status", "expired", "--json").output)] == [2, 1]
        assert json.loads(invoke("proposals", "--status", "approved", "--json").output) == []
        why = invoke("why", "1").output.splitlines()
        assert why[0] == "Proposal 1: buy BTC-EUR €6 from cli — expired"
        assert why[1] == "Not executed: expired at 10:30:00 UTC. Propose it again to trade."  # local time (issue 23)
        assert json.loads(invoke("why", "2", "--json").output)["proposal"]["status"] == "expired"
        st = invoke("status").output
        assert "Pending proposals: 0 (2 more expired: `tinybot proposals --status expired`)" in st
        for pid in (1, 2):  # approved-then-expired used to say "approved" here
            r = CliRunner().invoke(cli, ["approve", str(pid)])
            assert r.exit_code == exitcodes.ERROR
            assert r.output.strip() == f"Error: proposal {pid} expired at 2026-11-02T10:30:00.000000Z; propose it again"


def test_a_blocked_execution_says_it_is_final_and_how_to_propose_again(home):
    invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    invoke("execute", "1")
    invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    r = invoke("execute", "2")
    assert r.exit_code == exitcodes.BLOCKED
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("Proposal 2: blocked — cooldown_active")
    assert lines[1] == (
        "This is final: proposal 2 will not be tried again (`tinybot why 2` says why)."
        " To trade anyway, propose again: `tinybot propose MARKET buy|sell --eur X --approve`."
    )
    assert "This is final: proposal 2 will not be tried again" in invoke("why", "2").output


def test_a_filled_proposal_reads_as_filled(home):
    invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    invoke("execute", "1")
    assert invoke("why", "1").output.splitlines()[0] == "Proposal 1: buy BTC-EUR €6 from cli — filled"
    with freeze_time(clock.now() + timedelta(hours=2)):  # executed: its expiry no longer matters
        row = json.loads(invoke("proposals", "--json").output)[0]
        assert (row["status"], row["execution_state"]) == ("approved", "filled")


def test_control_characters_in_a_reason_are_escaped_when_shown(home):
    evil = "fine\x1b[2J\x1b[1;1HTrading: ENABLED\rspoof\x07"
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--reason", evil).exit_code == 0
    shown = r"fine\x1b[2J\x1b[1;1HTrading: ENABLED\rspoof\x07"
    listing = invoke("proposals").output
    assert shown in listing and "\x1b" not in listing and "\r" not in listing
    why = invoke("why", "1").output
    assert f"({shown})" in why and "\x1b" not in why
    assert json.loads(invoke("proposals", "--json").output)[0]["reason"] == evil  # stored as given


def test_a_reason_over_the_limit_is_refused_not_cut(home):
    r = CliRunner().invoke(cli, ["propose", "BTC-EUR", "buy", "--eur", "6", "--reason", "x" * 2001])
    assert r.exit_code == exitcodes.ERROR
    assert r.output.strip() == (
        "Error: --reason: 2001 characters is over the limit of 2000; shorten it (a reason is never cut silently)"
    )
    assert db.connect(home.db_path).execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 0
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--reason", "x" * 2000).exit_code == 0
    k = CliRunner().invoke(cli, ["kill", "--reason", "y" * 2001])
    assert k.exit_code == exitcodes.ERROR and "--reason: 2001 characters is over the limit of 2000" in k.output


def test_propose_warns_at_once_below_the_exchange_minimum_and_when_the_switch_is_off(home):
    r = invoke("propose", "BTC-EUR", "buy", "--eur", "4.99")
    assert r.exit_code == 0
    assert r.stderr.strip() == (
        "Warning: €4.99 is below the exchange's minimum order of €5; the executor will block it."
    )
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6").stderr == ""
    invoke("kill", "--reason", "holiday")
    r = invoke("propose", "BTC-EUR", "buy", "--eur", "6")
    assert r.stderr.strip() == (
        "Warning: trading is DISABLED (kill switch: holiday); nothing will be sent until `tinybot resume`."
    )


def test_amounts_never_print_in_scientific_notation(home):
    r = invoke("propose", "BTC-EUR", "buy", "--amount", "0.0000001", "--json")
    assert json.loads(r.output)["amount"] == "0.0000001"
    assert "0.0000001" in invoke("proposals").output and "E-" not in invoke("proposals").output


@pytest.mark.parametrize(
    "value, error",
    [
        ("99999999999d", "Error: --expires-in: '99999999999d' is too long (at most 3650d)"),
        ("31d", "Error: --expires-in: must be at most 30d"),
        ("0s", "Error: --expires-in: must be at least 1s"),
    ],
)
def test_expires_in_has_a_range(home, value, error):
    r = CliRunner().invoke(cli, ["propose", "BTC-EUR", "buy", "--eur", "6", "--expires-in", value])
    assert r.exit_code == exitcodes.ERROR and r.output.strip() == error


# --- issue 11, item 5: a claimed execution whose proposal expires -----------------------------


@pytest.fixture
def unreachable_live(write_config, monkeypatch):
    for name, value in (
        ("TINYBOT_TRADE_KEY", TRADE_KEY),
        ("TINYBOT_TRADE_SECRET", TRADE_SECRET),
        ("TINYBOT_READ_KEY", READ_KEY),
        ("TINYBOT_READ_SECRET", READ_SECRET),
    ):
        monkeypatch.setenv(name, value)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return write_config(
        'mode = "live"\n' + RISK_TOML + f"[exchange]\noperator_id = {OPERATOR_ID}\n"
        f'url = "http://127.0.0.1:{port}"\ntimeout = "700ms"\n'
    )


def test_expiry_resolves_a_claimed_execution_as_blocked_in_the_same_transaction(unreachable_live):
    cfg = unreachable_live
    with freeze_time(T0):
        invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve", "--expires-in", "10m")
        invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve", "--expires-in", "2h")
        for pid in (1, 2):  # the preflight cannot reach the exchange: both stay claimed, nothing sent
            assert invoke("execute", str(pid)).exit_code == exitcodes.UNREACHABLE
    conn = db.connect(cfg.db_path)
    assert [r[0] for r in conn.execute("SELECT state FROM trade_executions ORDER BY id")] == ["claimed", "claimed"]
    with freeze_time("2026-11-02T10:11:00Z"):
        proposals.expire_stale(conn)
    rows = conn.execute("SELECT proposal_id, state, reason, resolved_at FROM trade_executions ORDER BY id").fetchall()
    assert [tuple(r) for r in rows] == [
        (1, "blocked", "proposal_expired", "2026-11-02T10:11:00.000000Z"),
        (2, "claimed", None, None),
    ]  # not expired: left to the executor
    decision = conn.execute(
        "SELECT stage, guard, verdict, reason_code FROM guard_decisions WHERE proposal_id = 1 AND stage = 'expiry'"
    ).fetchone()
    assert tuple(decision) == ("expiry", "expiry", "block", "proposal_expired")
    with freeze_time("2026-11-02T10:12:00Z"):
        r = invoke("execute", "1")
    assert r.exit_code == exitcodes.BLOCKED
    assert r.output.startswith("Proposal 1: blocked — proposal_expired [nothing sent by this call]")


def test_expiry_of_a_claimed_execution_is_atomic_with_the_proposal_expiry(unreachable_live, monkeypatch):
    """Both updates are one transaction: if the second statement fails, the first is rolled back too."""
    cfg = unreachable_live
    with freeze_time(T0):
        invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve", "--expires-in", "10m")  # 1: will be claimed
        invoke("execute", "1")
        invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--expires-in", "10m")  # 2: pending, no execution
    conn = db.connect(cfg.db_path)

    def refuse(*args, **kwargs):
        raise RuntimeError("crash between the two updates")

    monkeypatch.setattr(proposals.guards, "record", refuse)
    with freeze_time("2026-11-02T10:11:00Z"), pytest.raises(RuntimeError):
        proposals.expire_stale(conn)
    other = db.connect(cfg.db_path)
    assert other.execute("SELECT status FROM proposals WHERE id = 2").fetchone()[0] == "pending"
    assert other.execute("SELECT state FROM trade_executions").fetchone()[0] == "claimed"


def test_stored_amounts_in_exponent_form_print_plain_and_a_zero_position_is_no_position(home):
    """Decimal's str() writes 0.00000008 - 0.00000008 as "0E-8" and 0.0000001 as "1E-7"; neither reaches a screen."""
    invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    invoke("execute", "1")
    conn = db.connect(home.db_path)
    with db.transaction(conn):
        conn.execute("UPDATE positions SET base = '0E-8', cost_eur = '0E-12' WHERE market = 'BTC-EUR'")
        conn.execute(
            "INSERT INTO positions (market, base, cost_eur, realised_eur, updated_at)"
            " VALUES ('ETH-EUR', '1E-7', '0.0003', '0', 'x')"
        )
        conn.execute("UPDATE trade_history SET amount = '1E-7'")
    st = invoke("status").output
    assert "Positions: ETH-EUR 0.0000001 (cost €0.00)" in st and "BTC-EUR 0" not in st
    assert [p["base"] for p in json.loads(invoke("status", "--json").output)["positions"]] == ["0.0000001"]
    assert json.loads(invoke("history", "--json").output)[0]["amount"] == "0.0000001"
    assert "1E-7" not in invoke("history").output and "0.0000001" in invoke("history").output
