"""The command line: exact error lines, --help and --json everywhere, and fast commands stay fast."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tinybot.base import exitcodes
from tinybot.cli import cli

from helpers.configs import PAPER_TOML, run_cli


@pytest.fixture
def runner(tmp_path):
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    r = CliRunner()
    assert r.invoke(cli, ["init"], catch_exceptions=False).exit_code == 0  # only init creates the database
    return r


def invoke(runner, *args):
    return runner.invoke(cli, list(args), catch_exceptions=False)


def test_every_command_has_help(runner):
    names = [n for n in cli.list_commands(None) if cli.get_command(None, n) is not None]
    assert {
        "init",
        "propose",
        "proposals",
        "approve",
        "reject",
        "execute",
        "executions",
        "history",
        "why",
        "status",
        "kill",
        "resume",
        "reconcile",
    } <= set(names)
    for name in names:
        r = invoke(runner, name, "--help")
        assert r.exit_code == 0 and "Usage:" in r.output, name
        doc = cli.get_command(None, name).help
        assert doc and doc.strip(), f"{name} has no docstring"


def test_the_root_group_holds_only_the_lazy_command_table():
    """cli.py is the root group: every command lives in its family's module and is imported only when run."""
    assert cli.commands == {}
    assert cli.lazy["kill"] == ("tinybot.cli.trade", "kill_command")
    assert cli.lazy["status"] == ("tinybot.cli.trade", "status_command")


def test_listings_have_json(runner):
    invoke(runner, "propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    invoke(runner, "execute", "1")
    for args in (["proposals"], ["executions"], ["history"], ["status"], ["why", "1"], ["reconcile"]):
        r = invoke(runner, *args, "--json")
        assert r.exit_code == 0, args
        json.loads(r.output)


def test_walkthrough_propose_approve_execute_why(runner):
    r = invoke(runner, "propose", "btc/eur", "buy", "--eur", "6", "--reason", "try it")
    assert r.exit_code == 0 and r.output.startswith("Proposal 1: buy BTC-EUR €6 — pending")
    r = invoke(runner, "execute", "1")
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        "Error: proposal 1 is pending, not approved; approve it first with `tinybot approve 1`"
    )
    assert invoke(runner, "approve", "1").output.strip() == "Proposal 1 approved."
    data = json.loads(invoke(runner, "execute", "1", "--json").output)
    assert {"proposal_id", "state", "reason", "client_order_id", "exchange_order_id"} <= set(data)
    assert data["state"] == "filled" and data["sent"] is True
    again = json.loads(invoke(runner, "execute", "1", "--json").output)
    assert again["sent"] is False and again["client_order_id"] == data["client_order_id"]
    why = invoke(runner, "why", "1").output
    assert "Execution 1: filled" in why and "BLOCK approval" not in why.split("Execution")[1]
    hist = json.loads(invoke(runner, "history", "--json").output)
    assert len(hist) == 1 and hist[0]["market"] == "BTC-EUR"


def test_blocked_execute_exits_3_and_why_names_the_guard(runner):
    invoke(runner, "propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    invoke(runner, "execute", "1")
    invoke(runner, "propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    r = invoke(runner, "execute", "2")
    assert r.exit_code == 3 and r.output.startswith("Proposal 2: blocked — cooldown_active")
    assert any(
        line.split()[:3] == ["BLOCK", "commit", "cooldown"] for line in invoke(runner, "why", "2").output.splitlines()
    )


@pytest.mark.parametrize(
    "args, error",
    [
        (
            ["propose", "BTC-USD", "buy", "--eur", "6"],
            "Error: MARKET: 'BTC-USD' is not a Bitvavo EUR market name (like BTC-EUR)",
        ),
        (["propose", "BTC-EUR", "buy"], "Error: give exactly one of --eur or --amount"),
        (["propose", "BTC-EUR", "buy", "--eur", "6", "--amount", "1"], "Error: give exactly one of --eur or --amount"),
        (["propose", "BTC-EUR", "buy", "--eur", "-5"], "Error: --eur: must be greater than zero"),
        (["propose", "BTC-EUR", "buy", "--eur", "abc"], "Error: --eur: 'abc' is not a number"),
        (["propose", "BTC-EUR", "buy", "--eur", "nan"], "Error: --eur: must be a finite number"),
        (
            ["propose", "BTC-EUR", "buy", "--eur", "5.001"],
            "Error: --eur: 5.001 has more than 2 decimals (Bitvavo takes whole cents)",
        ),
        (
            ["propose", "BTC-EUR", "buy", "--eur", "6", "--expires-in", "soon"],
            "Error: --expires-in: 'soon' is not a duration (use e.g. '30s', '10m', '2h', '1d')",
        ),
        (["approve", "42"], "Error: no proposal with id 42"),
        (["execute", "42"], "Error: no proposal with id 42"),
        (["why", "42"], "Error: no proposal with id 42"),
    ],
)
def test_bad_input_gets_an_exact_error_and_writes_nothing(runner, tmp_path, args, error):
    r = runner.invoke(cli, args)
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines()[-1] == error
    from tinybot.store import db

    conn = db.connect(tmp_path / "tinybot.db")
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 0


def test_bad_side_is_a_usage_error(runner):
    r = runner.invoke(cli, ["propose", "BTC-EUR", "hodl", "--eur", "6"])
    assert r.exit_code == 2 and "Invalid value for '{buy|sell}'" in r.output


def test_reject_and_cannot_approve_rejected(runner):
    invoke(runner, "propose", "BTC-EUR", "buy", "--eur", "6")
    assert invoke(runner, "reject", "1").output.strip() == "Proposal 1 rejected."
    r = runner.invoke(cli, ["approve", "1"])
    assert r.output.strip() == "Error: proposal 1 is rejected; only a pending proposal can be approved"


def test_kill_and_resume(runner):
    assert invoke(runner, "kill", "--reason", "going on holiday").stdout.strip() == "Trading DISABLED: going on holiday"
    status = json.loads(invoke(runner, "status", "--json").output)
    assert status["kill_switch"]["trading_enabled"] is False and status["kill_switch"]["reason"] == "going on holiday"
    invoke(runner, "propose", "BTC-EUR", "buy", "--eur", "6", "--approve")
    assert invoke(runner, "execute", "1").output.startswith("Proposal 1: blocked — kill_switch_on")
    again = invoke(runner, "kill", "--reason", "second thoughts").stdout.strip()
    assert again.startswith("Trading was already DISABLED since ") and again.endswith("(cli: going on holiday)")
    assert invoke(runner, "resume").output.strip() == "Trading ENABLED."
    assert invoke(runner, "resume").output.strip() == "Trading was already enabled."


def test_init_writes_config_and_db(tmp_path):
    cfg = tmp_path / "new" / "bot.toml"
    r = run_cli("--config", str(cfg), "init")
    assert r.returncode == 0, r.stderr
    assert cfg.exists() and (tmp_path / "new" / "tinybot.db").exists()
    assert "migrations applied: 0001_core" in r.stdout
    r2 = run_cli("--config", str(cfg), "init")
    assert "kept as it is" in r2.stdout and "up to date" in r2.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["kill"],
        ["resume"],
        ["status"],
        ["proposals"],
        ["why", "1"],
        ["approve", "1"],
        ["reject", "1"],
        ["executions"],
        ["history"],
        ["--help"],
    ],
)
def test_fast_commands_never_import_ccxt(tmp_path, command):
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    assert run_cli("init").returncode == 0
    assert run_cli("propose", "BTC-EUR", "buy", "--eur", "6").returncode == 0
    probe = (
        "import sys; from tinybot.cli import cli\n"
        "try:\n    cli.main(sys.argv[1:], prog_name='tinybot')\nexcept SystemExit:\n    pass\n"
        "print('CCXT_LOADED' if 'ccxt' in sys.modules else 'CCXT_ABSENT', file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "CCXT_ABSENT", r.stderr


@pytest.mark.parametrize("command", [["kill"], ["resume"]])
def test_the_kill_switch_never_loads_the_exchange_contract(tmp_path, command):
    """kill/resume write the switch, its event and nothing else: the exchange contract (and ledger, reconcile,
    notify, which import it or apprise) stay unloaded, so a broken exchange module cannot stop a kill.  Nor the
    proposals and guards (a reason's checks and printing live in tinybot.base.text), nor importlib.resources: each
    was a slice of kill's start-up (issue 26)."""
    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    assert run_cli("init").returncode == 0
    probe = (
        "import sys; from tinybot.cli import cli\n"
        "try:\n    cli.main(sys.argv[1:], prog_name='tinybot')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tinybot.exchange', 'tinybot.trade.ledger',"
        " 'tinybot.trade.reconcile', 'tinybot.owner.notify', 'tinybot.trade.proposals', 'tinybot.trade.guards',"
        " 'importlib.resources'))), file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr
    assert "Trading" in r.stdout


def test_every_expected_error_is_one_line_with_its_own_exit_code_and_a_bug_still_raises(monkeypatch):
    """One root exception (tinybot.base.errors.TinybotError) replaces a list of (module, class) names: any error a
    person can act on becomes `Error: …` with the exit code it carries; anything else is a bug and shows."""
    import click

    from tinybot.cli.common import Fail, friendly
    from tinybot.exchange.base import ExchangeError, ReadOnlyClientError
    from tinybot.analysis.charts import ChartError
    from tinybot.analysis.report import ReportError

    monkeypatch.delenv("TINYBOT_RAISE_ERRORS", raising=False)

    def failing(exc):
        @friendly
        def command():
            raise exc

        return command

    for exc, code in (
        (ReportError("--from 2026-02-01 00:00 must be before --to 2026-01-01 00:00 (UTC)"), exitcodes.ERROR),
        (ChartError("no matplotlib: pip install 'tinybot[report]'"), exitcodes.ERROR),
        (ExchangeError("bitvavo unreachable"), exitcodes.UNREACHABLE),
        (ReadOnlyClientError("the read-only client cannot trade"), exitcodes.ERROR),
    ):
        with click.Context(click.Command("x")):
            with pytest.raises(Fail) as e:
                failing(exc)()
        assert (e.value.message, e.value.exit_code) == (str(exc), code)
    with click.Context(click.Command("x")):
        with pytest.raises(KeyError):
            failing(KeyError("a bug"))()
