"""`tinybot pnl`: realised, unrealised, fees, LLM cost, net, the hold benchmark and drift (issue 16)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from tinybot.store import db
from tinybot.trade import executor, proposals
from tinybot.analysis import pnl
from tinybot.exchange.base import Balance, Ticker
from tinybot.trade.proposals import Draft

from helpers.configs import paper_setup


def trade(conn, cfg, ex, side, eur=None, amount=None, market="BTC-EUR"):
    pid = proposals.create(
        conn,
        Draft(market, side, Decimal(eur) if eur else None, Decimal(amount) if amount else None),
        source="test",
        ttl=timedelta(minutes=30),
        approve=True,
    )
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "filled", r.reason
    return r


def test_round_trip_pnl_is_net_of_fees_and_matches_the_paper_account(write_config):
    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"')
    with freeze_time("2026-11-27 12:00:00"):
        trade(conn, cfg, ex, "buy", eur="10")
    held = Decimal(conn.execute("SELECT base FROM positions").fetchone()[0])
    ex.source.prices["BTC-EUR"] = Decimal("66000")  # the price went up 10 %
    with freeze_time("2026-11-28 12:00:00"):
        trade(conn, cfg, ex, "sell", amount=str(held))
    rep = pnl.report(conn, cfg, period="daily")
    # everything went back to EUR: realised P/L is exactly what the account gained
    eur_now = Decimal(conn.execute("SELECT available FROM paper_balances WHERE asset = 'EUR'").fetchone()[0])
    assert Decimal(rep["realised_eur"]) == (eur_now - cfg.paper.starting_eur).quantize(Decimal("0.01"))
    assert rep["unrealised_eur"] == "0.00" and rep["llm_cost_eur"] == "0.00"
    fees = sum(Decimal(r[0]) for r in conn.execute("SELECT fee FROM trade_history"))
    assert Decimal(rep["fees_eur"]) == fees.quantize(Decimal("0.01"))
    assert rep["net_eur"] == rep["realised_eur"]
    assert [p["period"] for p in rep["periods"]] == ["2026-11-27", "2026-11-28"]
    assert rep["periods"][0]["realised_eur"] == "0.00" and rep["periods"][1]["trades"] == 1
    assert set(rep["drift"]["assets"].values()) <= {"0.00", "0"}, rep["drift"]


def test_unrealised_hold_benchmark_llm_cost_and_stranded(write_config):
    cfg, conn, ex = paper_setup(write_config)
    with freeze_time("2026-11-27 12:00:00"):
        trade(conn, cfg, ex, "buy", eur="6")
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO gpt_usage_log (state, model, reserved_at, settled_at, day, month, prompt_tokens_est,"
            " max_tokens, reserved_eur, cost_eur) VALUES ('settled', 'm', '2026-11-27T12:00:00.000000Z',"
            " '2026-11-27T12:00:01.000000Z', '2026-11-27', '2026-11', 10, 10, '0.01', '0.004')"
        )
    half = {"BTC-EUR": pnl.Price(Decimal("30000"), Decimal("30010"), Decimal("30005"), "2026-11-27T13:00:00.000000Z")}
    rep = pnl.report(conn, cfg, prices=half)
    base = Decimal(rep["positions"][0]["base"])
    assert Decimal(rep["unrealised_eur"]) == (base * 30000 - 6).quantize(Decimal("0.01"))
    # holding: the €25 tinybot started with, put into the market it trades at the start: half of it lost at half the price
    holding = rep["benchmarks"]["holding"]
    assert holding["spent_eur"] == "25.00" and holding["markets"] == ["BTC-EUR"]
    assert Decimal("-12.60") < Decimal(rep["hold_eur"]) < Decimal("-12.50")
    assert abs(Decimal(rep["vs_hold_eur"]) - (Decimal(rep["net_eur"]) - Decimal(rep["hold_eur"]))) <= Decimal("0.01")
    assert rep["llm_cost_eur"] == "0.00" and Decimal(rep["net_eur"]) == Decimal(rep["unrealised_eur"])
    assert rep["positions"][0]["sellable"] is False
    assert rep["stranded"][0]["market"] == "BTC-EUR" and Decimal(rep["stranded"][0]["top_up_eur"]) >= 5
    assert rep["prices_at"] == "2026-11-27T13:00:00.000000Z"


def test_live_drift_is_zero_after_the_first_snapshot_and_shows_money_moved_outside(write_config):
    cfg = write_config(
        write_config().path.read_text().replace('mode = "paper"', 'mode = "live"') + "[exchange]\noperator_id = 1\n"
    )
    conn = db.open_db(cfg.db_path)
    t = {"BTC-EUR": Ticker("BTC-EUR", Decimal("60000"), Decimal("60010"), Decimal("60005"), 0)}
    assert pnl.report(conn, cfg)["drift"]["assets"] == {}
    pnl.record_snapshot(conn, t, {"EUR": Balance(Decimal("25"), Decimal("0"))})
    assert pnl.report(conn, cfg)["drift"]["assets"] == {"EUR": "0.00"}
    # a deposit the bot did not make: drift says so, to the cent
    pnl.record_snapshot(conn, t, {"EUR": Balance(Decimal("30.01"), Decimal("0"))})
    assert pnl.report(conn, cfg)["drift"]["assets"] == {"EUR": "5.01"}
    # a zero balance is omitted by Bitvavo's /balance: gone, not "as before"
    pnl.record_snapshot(conn, t, {"BTC": Balance(Decimal("0.00000001"), Decimal("0"))})
    assert pnl.report(conn, cfg)["drift"]["assets"] == {"BTC": "0.00000001", "EUR": "-25.00"}


def test_pnl_command_reads_the_database_only_and_never_imports_ccxt(tmp_path):
    import json
    import subprocess
    import sys

    from helpers.configs import run_cli

    assert run_cli("init").returncode == 0
    assert run_cli("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").returncode == 0
    assert run_cli("execute", "1").returncode == 0
    out = run_cli("pnl", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"realised_eur", "unrealised_eur", "fees_eur", "llm_cost_eur", "net_eur", "drift"} <= set(data)
    assert data["drift"]["assets"] == {"BTC": "0", "EUR": "0.00"}
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from tinybot.cli import cli\n"
            "try: cli(['pnl'], standalone_mode=False)\n"
            "finally: print('CCXT' if 'ccxt' in sys.modules else 'NO-CCXT')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip().endswith("NO-CCXT"), probe.stdout + probe.stderr
    human = run_cli("pnl")
    assert "net " in human.stdout and "drift: none (ledger = exchange)" in human.stdout


def test_status_has_a_pnl_line_and_live_balances_with_their_age_and_history_has_eur_values(write_config):
    from freezegun import freeze_time as ft

    from tinybot.analysis.status import fills, status

    cfg = write_config(
        write_config().path.read_text().replace('mode = "paper"', 'mode = "live"') + "[exchange]\noperator_id = 1\n"
    )
    conn = db.open_db(cfg.db_path)
    t = {"BTC-EUR": Ticker("BTC-EUR", Decimal("60000"), Decimal("60010"), Decimal("60005"), 0)}
    with ft("2026-11-27 12:00:00"):
        pnl.record_snapshot(
            conn, t, {"EUR": Balance(Decimal("19.00"), Decimal("0")), "BTC": Balance(Decimal("0.0001"), Decimal("0"))}
        )
    with ft("2026-11-27 12:01:30"):
        s = status(conn, cfg)
    assert s["live_balances"]["age_s"] == 90 and s["live_balances"]["assets"]["EUR"]["available"] == "19.00"
    assert set(s["pnl"]) >= {"realised_eur", "unrealised_eur", "net_eur", "fees_eur", "llm_cost_eur"}
    assert fills(conn) == []


def test_history_shows_eur_values_and_totals(write_config):
    from helpers.configs import run_cli

    assert run_cli("init").returncode == 0
    assert run_cli("propose", "BTC-EUR", "buy", "--eur", "6", "--approve").returncode == 0
    assert run_cli("execute", "1").returncode == 0
    out = run_cli("history")
    assert "eur_value" in out.stdout.splitlines()[0]
    assert out.stdout.splitlines()[-1].startswith("Total of these 1 fill(s): bought €5.98, sold €0.00, fees €0.02")
    import json

    [row] = json.loads(run_cli("history", "--json").stdout)
    assert Decimal(row["eur_value"]) == Decimal(row["amount"]) * Decimal(row["price"])
