"""`--json` is an API (docs/JSON.md): each command's shape, true/false, no floats, no exponents, ISO-8601 UTC
times, no internal row ids, and the error object a failing command prints on stdout."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from helpers.configs import PAPER_TOML
from helpers.fake_telegram import FakeTelegram
from tinybot.cli import cli

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
# Keys that are amounts wherever they appear: exact decimal strings (or null).
AMOUNT_KEYS = {
    "amount",
    "amount_quote",
    "price",
    "fee",
    "filled_amount",
    "filled_quote",
    "fee_paid",
    "base",
    "available",
    "in_order",
    "notional_eur",
    "bid",
}
# Keys that are yes/no wherever they appear: JSON true/false (sellable may be null: no price).
# ("settled" is a fill's flag but `usage`'s count of settled calls: checked on fills by name below.)
BOOL_KEYS = {
    "external",
    "trading_enabled",
    "sent",
    "alive",
    "stale",
    "config_written",
    "changed",
    "allowed",
    "ok",
    "top_up_to_exit",
    "sellable",
}


def _no_float(text):
    raise AssertionError(f"a float in --json output: {text}")


def api(text: str):
    """Parse --json output strictly: any number with a fraction or exponent fails; then check every value."""
    data = json.loads(text, parse_float=_no_float, parse_constant=_no_float)
    _check(data, "$")
    return data


def _check(value, where):
    if isinstance(value, dict):
        for k, v in value.items():
            at = f"{where}.{k}"
            if k in BOOL_KEYS:
                assert isinstance(v, bool) or (k == "sellable" and v is None), f"{at} = {v!r} is not true/false"
            if (k in AMOUNT_KEYS or k.endswith("_eur")) and v is not None:
                assert isinstance(v, str) and DECIMAL.match(v), f"{at} = {v!r} is not an exact decimal string"
            if (k == "at" or k == "now" or k.endswith("_at")) and v is not None:
                assert isinstance(v, str) and ISO_UTC.match(v), f"{at} = {v!r} is not ISO-8601 UTC"
            _check(v, at)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check(v, f"{where}[{i}]")
    elif isinstance(value, str):
        assert not re.fullmatch(r"-?\d+(\.\d+)?[eE][+-]?\d+", value), f"{where} = {value!r} is in exponent notation"
    else:
        assert value is None or isinstance(value, (bool, int)), f"{where} = {value!r}"


@pytest.fixture
def runner(tmp_path):
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    r = CliRunner()
    assert r.invoke(cli, ["init"], catch_exceptions=False).exit_code == 0
    return r


def run(runner, *args, code=0):
    r = runner.invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert r.exit_code == code, (args, r.stdout, r.stderr)
    return api(r.stdout)


def fail(runner, *args):
    """A failing command under --json: (the error object on stdout, stderr, exit code)."""
    r = runner.invoke(cli, list(args), catch_exceptions=False)
    assert r.exit_code != 0, r.output
    return api(r.stdout), r.stderr, r.exit_code


PROPOSAL = {
    "id",
    "market",
    "side",
    "amount_quote",
    "amount",
    "source",
    "reason",
    "status",
    "created_at",
    "expires_at",
    "decided_at",
    "decided_by",
    "external",
    "book",
}
EXECUTION = {
    "id",
    "proposal_id",
    "client_order_id",
    "exchange",
    "market",
    "side",
    "amount_quote",
    "amount",
    "notional_eur",
    "state",
    "reason",
    "exchange_order_id",
    "claimed_at",
    "submitting_at",
    "resolved_at",
    "updated_at",
    "filled_amount",
    "filled_quote",
    "fee_paid",
    "fee_currency",
    "external",
    "in_doubt_at",
}
FILL = {
    "execution_id",
    "exchange",
    "trade_id",
    "order_id",
    "client_order_id",
    "market",
    "side",
    "amount",
    "price",
    "fee",
    "fee_currency",
    "executed_at",
    "recorded_at",
    "settled",
    "external",
    "book",
    "eur_value",
}


@pytest.fixture
def trades(runner):
    """A paper account with a fill (1), a blocked buy (2), a pending (3), a rejected (4) and an external sell (5)."""
    run(runner, "propose", "BTC-EUR", "buy", "--eur", "8", "--approve")
    assert run(runner, "execute", "1")["state"] == "filled"
    run(runner, "propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    run(runner, "execute", "2", code=3)  # the cooldown blocks it: the result is the answer, exit 3
    run(runner, "propose", "ETH-EUR", "buy", "--eur", "6")
    run(runner, "propose", "ETH-EUR", "buy", "--eur", "6")
    run(runner, "reject", "4")
    run(runner, "propose", "BTC-EUR", "sell", "--amount", "0.0000001", "--external")
    return runner


def test_init(tmp_path):
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    d = run(CliRunner(), "init")
    assert d == {
        "config": str(tmp_path / "bot.toml"),
        "config_written": False,
        "database": str(tmp_path / "tinybot.db"),
        "migrations_applied": d["migrations_applied"],
        "mode": "paper",
    }
    assert d["migrations_applied"] and all(isinstance(m, str) for m in d["migrations_applied"])
    again = run(CliRunner(), "init")
    assert again["migrations_applied"] == [] and again["config_written"] is False


def test_proposal_shape_everywhere(trades):
    listed = run(trades, "proposals")
    assert [p["id"] for p in listed] == [5, 4, 3, 2, 1]
    for p in listed:
        assert set(p) == PROPOSAL | {"execution_id", "execution_state"}  # no approval_hash: it means nothing to you
    by_id = {p["id"]: p for p in listed}
    assert by_id[5]["external"] is True and by_id[1]["external"] is False
    assert by_id[5]["amount"] == "0.0000001" and by_id[5]["amount_quote"] is None  # never 1E-7
    assert (by_id[1]["execution_id"], by_id[1]["execution_state"]) == (1, "filled")
    assert (by_id[2]["execution_state"], by_id[3]["execution_id"]) == ("blocked", None)
    assert by_id[4]["status"] == "rejected" and by_id[4]["decided_by"] == "cli"
    new = run(trades, "propose", "ETH-EUR", "buy", "--eur", "6.50")
    assert set(new) == PROPOSAL and new["status"] == "pending" and new["amount_quote"] == "6.50"
    approved = run(trades, "approve", str(new["id"]))
    assert set(approved) == PROPOSAL and approved["status"] == "approved" and approved["decided_by"] == "cli"
    rejected = run(trades, "reject", str(new["id"]))
    assert rejected["status"] == "rejected" and rejected["id"] == new["id"]


def test_execute_executions_history_why(trades):
    again = run(trades, "execute", "1")
    assert set(again) == {
        "proposal_id",
        "execution_id",
        "state",
        "reason",
        "client_order_id",
        "exchange_order_id",
        "sent",
    }
    assert again["sent"] is False and again["state"] == "filled"
    rows = run(trades, "executions")
    assert [set(r) for r in rows] == [EXECUTION, EXECUTION]  # no access_window_ms: request plumbing
    filled, blocked = rows[1], rows[0]
    assert filled["external"] is False and filled["state"] == "filled" and filled["fee_currency"] == "EUR"
    assert blocked["state"] == "blocked" and blocked["reason"].startswith("cooldown_active")
    (f,) = run(trades, "history")
    assert set(f) == FILL  # trade_history's row id is gone: trade_id and order_id identify a fill
    assert f["settled"] is True and f["external"] is False and f["execution_id"] == 1
    why = run(trades, "why", "2")
    assert set(why) == {"proposal", "execution", "decisions"}
    assert set(why["proposal"]) == PROPOSAL and set(why["execution"]) == EXECUTION
    assert {"stage", "guard", "verdict", "reason_code", "detail", "decided_at"} == set(why["decisions"][0])
    assert any(d["guard"] == "cooldown" and d["verdict"] == "block" for d in why["decisions"])
    assert run(trades, "why", "3")["execution"] is None


def test_status_booleans_and_amounts(trades):
    s = run(trades, "status")
    assert set(s) == {
        "now",
        "mode",
        "config",
        "db",
        "kill_switch",
        "paper_balances",
        "live_balances",
        "positions",
        "books",
        "pnl",
        "stranded",
        "caps",
        "allowlist",
        "pending_proposals",
        "expired_unmarked_proposals",
        "unresolved_executions",
        "scheduler",
        "risk",
    }
    assert s["kill_switch"]["trading_enabled"] is True  # was 0/1 before --json became an API
    assert set(s["kill_switch"]) == {"trading_enabled", "reason", "changed_at", "changed_by", "kill_file"}
    assert s["caps"]["daily"] == {"used_eur": "8.00", "cap_eur": "20", "left_eur": "12.00"}
    assert s["pending_proposals"] == 2 and s["live_balances"] is None
    assert s["scheduler"]["alive"] is False and s["scheduler"]["last_tick"] is None
    trades.invoke(cli, ["kill", "--reason", "holiday"], catch_exceptions=False)
    killed = run(trades, "status")["kill_switch"]
    assert killed["trading_enabled"] is False and killed["reason"] == "holiday"
    assert killed["kill_file"]["reason"] == "holiday" and ISO_UTC.match(killed["kill_file"]["at"])
    assert run(trades, "resume") == {"trading_enabled": True, "changed": True}
    assert run(trades, "resume") == {"trading_enabled": True, "changed": False}


def test_reconcile(trades):
    assert run(trades, "reconcile") == {
        "changes": [],
        "still_unknown": [],
        "surprises": [],
        "errors": [],
        "settled": [],
        "restore_scan": None,
    }


def test_pnl_report_export_tax_usage(trades, tmp_path):
    p = run(trades, "pnl", "--daily")
    assert p["net_eur"] == "-0.03" and p["positions"][0]["sellable"] is True
    assert p["periods"][0]["trades"] == 1
    r = run(trades, "report", str(tmp_path / "r.html"))
    assert set(r) == {"path", "bytes", "charts", "fills"} and r["fills"] == 1
    e = run(trades, "export", "--csv", str(tmp_path / "f.csv"))
    assert e == {"path": str(tmp_path / "f.csv"), "layout": "generic", "year": None, "fills": 1}
    t = run(trades, "tax", "2026", "--no-fetch")
    assert {"year", "disclaimer", "peildatum", "next_peildatum", "fills", "counter_evidence"} == set(t)
    u = run(trades, "usage")
    assert u["today"]["spent_eur"] == "0" and u["open_reservations"] == [] and isinstance(u["advisor"], str)


def test_others_commands_keep_the_contract(trades):
    """doctor, backup and data list are owned elsewhere; their --json passes the same checks as they are."""
    doc = trades.invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    d = api(doc.stdout)
    assert set(d) == {"ok", "mode", "checks"} and isinstance(d["ok"], bool)
    b = run(trades, "backup")
    assert set(b) == {"path", "at", "label", "size"}
    assert run(trades, "backup", "--list")[0]["path"] == b["path"]
    assert run(trades, "data", "list") == []


def test_telegram_chats(tmp_path, monkeypatch):
    from tinybot.owner.telegram import api as telegram

    with FakeTelegram() as fake:
        (tmp_path / "bot.toml").write_text(PAPER_TOML + f'[telegram]\nchat_ids = [111]\napi_url = "{fake.url}"\n')
        monkeypatch.setenv(telegram.TOKEN_NAME, fake.token)
        fake.send_text(111, "hi")
        rows = run(CliRunner(), "telegram", "--chats")
        assert rows == [{"chat_id": 111, "type": "private", "name": "Owner", "last_text": "hi", "allowed": True}]
        assert run(CliRunner(), "telegram", "--test")["ok"] is True
        monkeypatch.setenv(telegram.TOKEN_NAME, "999:wrong-token")
        err, stderr, code = fail(CliRunner(), "telegram", "--test", "--json")
        assert code == 1 and err["error"]["message"].startswith("Telegram getMe: 401 Unauthorized")


# --- errors ---------------------------------------------------------------------------------------


def test_a_failing_command_prints_the_error_object_on_stdout_and_the_line_on_stderr(runner):
    err, stderr, code = fail(runner, "why", "42", "--json")
    assert err == {"error": {"message": "no proposal with id 42", "exit_code": 1}} and code == 1
    assert stderr == "Error: no proposal with id 42\n"
    err, _, code = fail(runner, "propose", "BTC-EUR", "buy", "--json")
    assert err == {"error": {"message": "give exactly one of --eur or --amount", "exit_code": 1}}


def test_the_error_object_carries_the_exit_code(runner, tmp_path):
    # a usage error (click's own, exit 2), found before the command runs
    err, stderr, code = fail(runner, "execute", "--json")
    assert code == 2 and err == {"error": {"message": "Missing argument 'PROPOSAL_ID'.", "exit_code": 2}}
    assert stderr.endswith("Error: Missing argument 'PROPOSAL_ID'.\n")
    # a database fault, turned into one line by `friendly`
    (tmp_path / "tinybot.db").write_bytes(b"this is not a database" * 100)
    err, stderr, code = fail(runner, "status", "--json")
    assert code == 1 and err["error"]["exit_code"] == 1 and stderr == f"Error: {err['error']['message']}\n"
    # the exchange unreachable: exit 5 (tinybot.base.exitcodes.UNREACHABLE)
    (tmp_path / "tinybot.db").unlink()
    (tmp_path / "bot.toml").write_text(
        PAPER_TOML.replace('prices = { "BTC-EUR" = "60000", "ETH-EUR" = "3000" }\n', "")
        + '[exchange]\nurl = "http://127.0.0.1:9"\ntimeout = "1s"\n'
    )
    runner.invoke(cli, ["init"], catch_exceptions=False)
    err, stderr, code = fail(runner, "pnl", "--prices", "live", "--json")
    assert code == 5 and err["error"]["exit_code"] == 5 and stderr == f"Error: {err['error']['message']}\n"


def test_without_json_a_failure_prints_nothing_on_stdout(runner):
    r = runner.invoke(cli, ["why", "42"])
    assert r.exit_code == 1 and r.stdout == "" and r.stderr == "Error: no proposal with id 42\n"
    r = runner.invoke(cli, ["execute"])
    assert r.exit_code == 2 and r.stdout == ""


def test_a_command_given_json_as_a_value_is_not_a_json_command(runner):
    """--json is read from the command's own flag once it ran, not guessed from the words typed."""
    r = runner.invoke(cli, ["propose", "BTC-EUR", "buy", "--reason", "--json"])
    assert r.exit_code == 1 and r.stdout == "" and r.stderr == "Error: give exactly one of --eur or --amount\n"


def test_decimals_never_print_in_exponent_notation():
    """Decimal's str() says 1E-7 and 0E-8; every --json document goes through echo_json, which never does."""
    from decimal import Decimal

    import click

    from tinybot.cli.common import echo_json

    @click.command()
    def probe():
        echo_json({"a": Decimal("1E-7"), "b": "0E-8", "c": [Decimal("1.5E+3")], "d": Decimal("-2.50")})

    out = CliRunner().invoke(probe, catch_exceptions=False).stdout
    assert api(out) == {"a": "0.0000001", "b": "0.00000000", "c": ["1500"], "d": "-2.50"}
