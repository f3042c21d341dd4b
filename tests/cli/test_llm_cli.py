"""`tinybot usage`: spend per day/month, reservations, calls and tokens."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.store import db
from tinybot.advisors import llm_budget
from tinybot.cli import cli

from helpers.configs import run_cli

TOML = """\
mode = "paper"
advisors = {advisors}
[risk]
allowlist = ["BTC-EUR"]
[llm]
base_url = "{base_url}"
daily_budget_eur = "0.0009"
monthly_budget_eur = "1.00"
"""


@pytest.fixture
def cfg(write_config):
    def make(advisors='["llm"]', base_url="https://api.openai.com/v1"):
        c = write_config(TOML.format(advisors=advisors, base_url=base_url))
        db.open_db(c.db_path).close()
        return c

    return make


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@freeze_time("2026-11-27 12:00:00")
def test_usage_shows_spend_reservations_calls_tokens_and_the_exhausted_notice(cfg):
    c = cfg()
    conn = db.connect(c.db_path)
    a = llm_budget.reserve(conn, c.llm, prompt_tokens_est=1000)
    llm_budget.settle(conn, a.id, c.llm, input_tokens=812, output_tokens=95)
    llm_budget.reserve(conn, c.llm, prompt_tokens_est=1000)  # in flight
    with pytest.raises(llm_budget.BudgetRefused):
        llm_budget.reserve(conn, c.llm, prompt_tokens_est=1000)
    r = invoke("usage")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == (
        "LLM advisor: llm advisor disabled: TINYBOT_LLM_KEY is not set (environment or secrets.env);"
        ' set it, or point llm.base_url at a local Ollama ("http://127.0.0.1:11434/v1"), which needs no key'
    )
    assert lines[1] == (
        "Today 2026-11-27: €0.000179 spent + €0.00039 reserved of €0.0009 (€0.000331 left);"
        " 2 call(s), 812 input / 95 output tokens"
    )
    assert lines[2].startswith("Month 2026-11: €0.000179 spent + €0.00039 reserved of €1 ")
    assert lines[3].startswith("Budget exhausted: LLM daily budget 2026-11-27 used up")
    assert (
        "  #2 gpt-4o-mini reserved €0.00039 at 12:00:00 UTC, expires 13:00:00 UTC"  # local time (issue 23 item 9)
        in lines
    )
    assert any(row.startswith("  2026-11-27     2 call(s)") and "(1 reserved)" in row for row in lines)

    data = json.loads(invoke("usage", "--json").output)
    assert data["today"]["spent_eur"] == "0.0001788" and data["today"]["reserved_eur"] == "0.00039"
    assert data["today"]["calls"] == 2 and data["month"]["input_tokens"] == 812
    assert data["open_reservations"][0]["id"] == 2
    assert data["exhausted"].startswith("LLM daily budget 2026-11-27 used up")


def test_usage_with_no_calls_and_the_advisor_not_enabled(cfg):
    cfg(advisors="[]")
    r = invoke("usage")
    assert r.exit_code == 0
    assert r.output.splitlines()[0] == 'LLM advisor: not enabled (add "llm" to advisors in bot.toml)'
    assert r.output.splitlines()[-1] == "No LLM calls yet."


def test_usage_with_a_local_server_needs_no_key(cfg):
    cfg(base_url="http://127.0.0.1:11434/v1")
    assert invoke("usage").output.splitlines()[0] == "LLM advisor: enabled: gpt-4o-mini at http://127.0.0.1:11434/v1"


def test_usage_runs_as_a_real_command_without_importing_the_exchange(cfg):
    cfg()
    r = run_cli("usage", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["today"]["calls"] == 0
    code = (
        "import sys; from tinybot.cli import cli; cli(['usage'], standalone_mode=False); print('ccxt' in sys.modules)"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.splitlines()[-1] == "False", out.stderr
