"""Every exit tells the truth (issue 14, item 6): execute, reconcile and kill --cancel-open keep tinybot.base.exitcodes.

Live mode goes through real ccxt to the simulator on 127.0.0.1, or to a
loopback port where nothing listens (an unreachable exchange).
"""

from __future__ import annotations

import re
import socket
import uuid
from decimal import Decimal

import pytest
from click.testing import CliRunner

from tinybot.store import db
from tinybot.base import exitcodes
from tinybot.cli import cli

from helpers import ROOT

from helpers.configs import RISK_TOML
from helpers.sim import OPERATOR_ID, READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused, at once
    return f"http://127.0.0.1:{port}"


def live_toml(url: str) -> str:
    return (
        'mode = "live"\n'
        + RISK_TOML
        + f"""\
[exchange]
operator_id = {OPERATOR_ID}
url = "{url}"
timeout = "700ms"
access_window = "10s"
reconcile_grace = "5s"
"""
    )


@pytest.fixture
def keys(monkeypatch):
    for name, value in (
        ("TINYBOT_TRADE_KEY", TRADE_KEY),
        ("TINYBOT_TRADE_SECRET", TRADE_SECRET),
        ("TINYBOT_READ_KEY", READ_KEY),
        ("TINYBOT_READ_SECRET", READ_SECRET),
    ):
        monkeypatch.setenv(name, value)


@pytest.fixture
def unreachable(write_config, keys):
    return write_config(live_toml(closed_port_url()))


@pytest.fixture
def live_sim(sim_factory, write_config, keys):
    from helpers.sim import shared_accounts

    sim = sim_factory(accounts=shared_accounts())
    return write_config(live_toml(sim.url)), sim


def test_execute_exits_unreachable_when_preflight_cannot_reach_the_exchange(unreachable):
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
    r = invoke("execute", "1")
    assert r.exit_code == exitcodes.UNREACHABLE, r.output
    assert r.output.startswith("Proposal 1: claimed — preflight_failed: ")
    assert "[nothing sent by this call]" in r.output


def test_execute_and_reconcile_exit_unknown_while_an_ambiguous_send_is_unresolved(live_sim):
    cfg, sim = live_sim
    sim.sim.add_fault("error_101", on="create_order", accept=False)
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
    r = invoke("execute", "1")
    assert r.exit_code == exitcodes.UNKNOWN, r.output
    assert r.output.startswith("Proposal 1: unknown")
    assert "`tinybot reconcile` finds out (nothing is re-sent)" in r.output
    rec = invoke("reconcile")
    assert rec.exit_code == exitcodes.UNKNOWN, rec.output
    assert "still unresolved" in rec.output


def test_execute_exits_0_only_when_the_order_is_on_the_exchange(live_sim):
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
    r = invoke("execute", "1")
    assert r.exit_code == exitcodes.OK and r.output.startswith("Proposal 1: filled"), r.output


def test_reconcile_exits_error_on_a_surprise_order(live_sim, ccxt_client):
    cfg, sim = live_sim
    _resting_buy(sim, str(uuid.uuid4()))  # placed with a clientOrderId tinybot never made
    r = invoke("reconcile")
    assert r.exit_code == exitcodes.ERROR, r.output
    assert "SURPRISE: order " in r.output and "tinybot has no execution with that clientOrderId" in r.output


def test_reconcile_exits_unreachable_when_the_exchange_does_not_answer(unreachable):
    r = invoke("reconcile")
    assert r.exit_code == exitcodes.UNREACHABLE, r.output
    assert "could not list orders" in r.output


def test_kill_cancel_open_says_plainly_when_it_could_not_ask_the_exchange(unreachable):
    r = invoke("kill", "--cancel-open", "--reason", "rollback")
    assert r.exit_code == exitcodes.UNREACHABLE, r.output
    assert "Trading DISABLED: rollback" in r.output
    assert re.search(r"Could not ask the exchange for open orders on BTC-EUR: ", r.output)
    assert "No open tinybot orders" not in r.output
    assert (
        r.output.strip()
        .splitlines()[-1]
        .startswith("Error: could not check every market for open tinybot orders (above); trading is stopped")
    )
    conn = db.connect(unreachable.db_path)
    assert conn.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0] == 0


def test_kill_cancel_open_asks_the_exchange_and_cancels_an_order_of_a_row_restored_as_claimed(live_sim):
    """The order is open on the exchange, the row (from a backup) still says claimed: it is tinybot's, cancel it."""
    cfg, sim = live_sim
    assert invoke("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").exit_code == 0
    conn = db.connect(cfg.db_path)
    cid = str(uuid.uuid4())
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount_quote,"
            " state, claimed_at, updated_at) VALUES (1, ?, 'bitvavo', 'BTC-EUR', 'buy', '6', 'claimed', 'x', 'x')",
            (cid,),
        )
    _resting_buy(sim, cid)
    r = invoke("kill", "--cancel-open")
    assert r.exit_code == exitcodes.OK, r.output
    assert f"canceled  execution 1 BTC-EUR {cid}" in r.output
    assert {o["clientOrderId"]: o["status"] for o in sim.sim.orders() if o.get("clientOrderId")}[cid] == "canceled"


def _resting_buy(sim, cid: str) -> None:
    """A €6 limit buy at half the market price: it stays open until cancelled."""
    from helpers.sim import make_ccxt

    low = (sim.sim.price("BTC-EUR") * Decimal("0.5")).quantize(Decimal("1"))
    amount = float((Decimal(6) / low).quantize(Decimal("0.00000001"), rounding="ROUND_UP"))
    make_ccxt(sim.url).create_order(
        "BTC/EUR", "limit", "buy", amount, float(low), {"clientOrderId": cid, "operatorId": OPERATOR_ID}
    )


def test_kill_cancel_open_in_paper_mode_says_it_asked(write_config):
    write_config()
    r = invoke("kill", "--cancel-open")
    assert r.exit_code == 0
    assert r.output.strip().splitlines()[-1] == "No open tinybot orders on BTC-EUR, ETH-EUR (asked the exchange)."


def test_readme_lists_every_exit_code():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `?(\d+)`? \| `(\w+)` \|", section, re.M))
    assert {int(k): v for k, v in rows.items()} == {
        getattr(exitcodes, name): name
        for name in ("OK", "ERROR", "USAGE", "BLOCKED", "UNKNOWN", "UNREACHABLE", "LOCKED", "REFUSED_START")
    }
    assert "RestartPreventExitStatus=75 78" in text
