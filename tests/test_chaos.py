"""The chaos harness: a bounded run, the retry storm and cap race, and proof that its checks can fail.

The long soak is `python -m tinybot.chaos --runs 2000 ...` (docs/CHAOS.md).
"""
from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from tinybot import chaos, crash, db
from tinybot.chaos.invariants import Findings, _guards
from tinybot.proposals import Draft

from conftest import run_cli
from simfixtures import OPERATOR_ID, READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, make_ccxt


def test_bounded_run_crashes_faults_and_no_duplicate_lost_or_violation(tmp_path):
    report = chaos.run(20, seed=20261127, batch_size=20, workdir=tmp_path)
    assert report.ok, report.text("pytest")
    assert (report.duplicates, report.lost, report.violations, report.child_errors) == (0, 0, [], [])
    # the tour put a process down at every crash point and fired every fault kind
    assert set(report.crashes) == set(crash.POINTS), report.crashes
    assert set(report.faults) == set(chaos.SCENARIOS), report.faults
    assert report.runs == len(chaos.tour()) + 20
    assert report.orders > 10 and report.fills == report.orders  # market orders fill once each
    assert report.states["filled"] > 0 and report.states["blocked"] > 0


def test_the_same_seed_plans_the_same_runs(tmp_path):
    import random

    bench = chaos.Bench(tmp_path, "plans", 1)
    try:
        a = [chaos.plan_run(random.Random(5), bench) for _ in range(3)]
        b = [chaos.plan_run(random.Random(5), bench) for _ in range(3)]
    finally:
        bench.close()
    assert a == b


@pytest.mark.parametrize("n", [10, 50])
def test_retry_storm_one_proposal_one_order(tmp_path, n):
    s = chaos.storm(tmp_path, n)
    assert s["ok"], s
    assert (s["orders"], s["sent"]) == (1, 1)
    assert sum(s["returned"].values()) == n


def test_cap_race_fifty_proposals_never_past_the_daily_cap(tmp_path):
    c = chaos.cap_race(tmp_path, 50, cap="20", eur="5")
    assert c["ok"], c
    assert c["orders"] <= 4 and Decimal(c["spent_eur"]) <= 20
    assert c["returned"].get("blocked", 0) >= 46


# --- the checks themselves fail when they should ----------------------------------

def test_checks_catch_a_duplicate_an_untracked_order_and_missing_fills(tmp_path):
    bench = chaos.Bench(tmp_path, "planted", 1)
    try:
        pid = bench.propose(Draft("BTC-EUR", "buy", Decimal("5"), None))
        (code, result), = bench.spawn([("execute", chaos.env(bench.cfg_path), {"proposal_id": pid})])
        assert code == 0 and result["state"] == "filled"
        assert bench.findings().violations == []
        client = make_ccxt(bench.server.url, chaos.TRADE_KEY, chaos.TRADE_SECRET)
        # what a blind resend would do: the filled order's clientOrderId is free again
        client.create_order("BTC/EUR", "market", "buy", None, None,
                            {"cost": "5", "clientOrderId": result["client_order_id"]})
        client.create_order("ETH/EUR", "market", "buy", None, None,
                            {"cost": "5", "clientOrderId": str(uuid.uuid4())})
        f = bench.findings()
    finally:
        bench.close()
    assert (f.duplicates, f.lost) == (1, 1)
    text = "\n".join(f.violations)
    assert "(1) proposal 1 has 2 exchange orders" in text
    assert "has no execution row" in text
    assert "(3)" in text and "missing from trade_history" in text
    assert "(5) BTC: positions say" in text and "(5) ETH: positions say" in text


def test_guard_check_catches_cooldown_anti_flip_and_cap_breaches(tmp_path):
    bench = chaos.Bench(tmp_path, "guards", 1)  # for its config: cooldown 300ms, anti-flip 600ms, caps 10/80/60
    cfg = bench.cfg
    bench.close()

    def order(oid, side, eur, market="BTC-EUR"):
        return {"orderId": oid, "market": market, "side": side, "amountQuote": eur,
                "fills": [{"amount": "1", "price": eur, "fee": "0"}]}

    def row(at):
        return {"submitting_at": f"2026-11-27T20:00:{at}Z"}

    matched = [(order("a", "buy", "10"), row("00.000000")),
               (order("b", "buy", "10"), row("00.100000")),     # 100 ms later: cooldown
               (order("c", "sell", "5"), row("00.500000")),     # a sell 400 ms after a buy: anti-flip
               (order("d", "buy", "11", "ETH-EUR"), row("05.000000"))]  # over max_trade
    f = Findings()
    _guards(f, cfg, matched)
    text = "\n".join(f.violations)
    assert "cooldown: order b" in text and "anti-flip: order c" in text and "max_trade: order d" in text
    f = Findings()
    _guards(f, cfg, [(order(str(i), "buy", "10", ("BTC-EUR", "ETH-EUR")[i % 2]), row(f"{10 + i}.000000"))
                     for i in range(9)])
    assert any("daily cap" in v for v in f.violations) and any("exposure" in v for v in f.violations)


# --- the crash point in the adapters, through the real CLI ------------------------

LIVE = """\
mode = "live"
[risk]
allowlist = ["BTC-EUR"]
[exchange]
operator_id = {op}
url = "{url}"
timeout = "2s"
access_window = "10s"
reconcile_grace = "5s"
"""


def test_cli_killed_after_the_exchange_accepted_then_reconcile_finds_the_order(sim_factory, write_config):
    from simfixtures import shared_accounts

    sim = sim_factory(accounts=shared_accounts())
    cfg = write_config(LIVE.format(op=OPERATOR_ID, url=sim.url))
    keys = {"TINYBOT_TRADE_KEY": TRADE_KEY, "TINYBOT_TRADE_SECRET": TRADE_SECRET,
            "TINYBOT_READ_KEY": READ_KEY, "TINYBOT_READ_SECRET": READ_SECRET}
    assert run_cli("propose", "BTC-EUR", "buy", "--eur", "5", "--approve").returncode == 0
    r = run_cli("execute", "1", "--json", env=keys | {"TINYBOT_CRASH_AT": "after_send_before_reply"})
    assert r.returncode == 137 and r.stdout == ""
    assert len(sim.sim.orders()) == 1  # the exchange has it; tinybot never read the answer
    r = run_cli("execute", "1", "--json", env=keys)  # the restart: never sends again
    assert json.loads(r.stdout)["sent"] is False and len(sim.sim.orders()) == 1
    r = run_cli("reconcile", "--json", env=keys)
    assert r.returncode == 0, r.stderr
    assert [(c["before"], c["after"]) for c in json.loads(r.stdout)["changes"]] == [("submitting", "filled")]
    conn = db.connect(cfg.db_path)
    try:
        fills = [row[0] for row in conn.execute("SELECT trade_id FROM trade_history")]
    finally:
        conn.close()
    assert fills == [t["id"] for t in sim.sim.trades()]


def test_paper_killed_after_the_paper_exchange_filled_then_reconcile_finds_it(write_config):
    cfg = write_config()
    assert run_cli("propose", "BTC-EUR", "buy", "--eur", "5", "--approve").returncode == 0
    r = run_cli("execute", "1", env={"TINYBOT_CRASH_AT": "after_send_before_reply"})
    assert r.returncode == 137
    conn = db.connect(cfg.db_path)
    try:
        assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "submitting"
        assert conn.execute("SELECT COUNT(*) FROM paper_orders").fetchone()[0] == 1
        assert run_cli("reconcile").returncode == 0
        assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "filled"
        assert conn.execute("SELECT COUNT(*) FROM trade_history").fetchone()[0] == 1
    finally:
        conn.close()


@pytest.mark.parametrize("delay", [0.45, 0.9])
def test_slow_reads_after_the_submitting_commit_never_lose_an_order(tmp_path, delay):
    """B1 (docs/CHAOS.md): with a zero grace, reads inside send_order that took 1.8 s made an order land after
    reconcile had called it failed, and its fills were never recorded.  Since 1b58408 the order is signed by
    submitting_at + window or not sent, and reconcile waits 2 windows + grace."""
    bench = chaos.Bench(tmp_path, "late", 1, chaos.Settings(grace="0s"))  # window 1s, timeout 1s
    try:
        pid = bench.propose(Draft("BTC-EUR", "buy", Decimal("5"), None))
        chaos.arm(bench, {"kind": chaos.SLOW_PREPARE, "delay": delay})  # ~2 × delay after the submitting commit
        results = bench.spawn([("execute", chaos.env(bench.cfg_path), {"proposal_id": pid}),
                               ("reconcile", chaos.env(bench.cfg_path), {"seconds": 6})])
        assert [code for code, _ in results] == [0, 0]
        bench.wait_out_windows()
        bench.reconcile_here()
        f = bench.findings()
        (state, reason), = bench.conn.execute("SELECT state, reason FROM trade_executions").fetchall()
        orders = bench.sim.orders(chaos.TRADE_KEY)
    finally:
        bench.close()
    assert (f.lost, f.late, f.violations) == (0, 0, [])
    if delay < 0.5:
        assert state == "filled" and len(orders) == 1
    else:  # the reads ran past the send deadline: nothing was sent
        assert state == "failed" and "send deadline" in reason and orders == []
