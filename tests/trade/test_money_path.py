"""Issue 11, the money path: each test fails on the code before its fix (see the closing note)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from freezegun import freeze_time

from helpers import ROOT, TESTS
from tinybot.base import clock, sizing
from tinybot.store import db
from tinybot.trade import executor, killswitch, ledger, proposals, reconcile
from tinybot.base.errors import ConfigError
from tinybot.exchange.base import Fill
from tinybot.trade.proposals import Draft

from helpers.configs import paper_config_text, paper_setup

T0 = "2026-11-27 12:00:00"


def propose(conn, market="BTC-EUR", side="buy", eur="6", amount=None, external=False):
    d = Draft(market, side, Decimal(eur) if eur is not None else None, Decimal(amount) if amount else None)
    return proposals.create(conn, d, source="test", ttl=timedelta(minutes=30), approve=True, external=external)


def blocks(conn, pid):
    return {
        r["guard"]: r["reason_code"]
        for r in conn.execute(
            "SELECT guard, reason_code FROM guard_decisions WHERE proposal_id = ? AND verdict = 'block'", (pid,)
        )
    }


def fill(
    trade_id, market="BTC-EUR", order_id="o1", amount="0.0001", price="60000", fee="0.015", settled=True, side="buy"
):
    return Fill(
        trade_id,
        order_id,
        market,
        side,
        Decimal(amount),
        Decimal(price),
        Decimal(fee) if settled else Decimal(0),
        "EUR",
        1_764_244_800_000,
        settled=settled,
    )


# --- 2. fills are keyed by market ------------------------------------------------------


def test_the_same_trade_id_on_two_markets_is_two_fills(paper):
    cfg, conn, ex, _ = paper
    with db.transaction(conn):
        assert ledger.record_fill(conn, None, "bitvavo", fill("42", "BTC-EUR"), None)
        assert ledger.record_fill(
            conn, None, "bitvavo", fill("42", "ETH-EUR", order_id="o2", price="3000", amount="0.002"), None
        )
    assert conn.execute("SELECT COUNT(*) FROM trade_history").fetchone()[0] == 2
    assert {r[0] for r in conn.execute("SELECT market FROM positions")} == {"BTC-EUR", "ETH-EUR"}


def test_a_fill_that_conflicts_with_a_stored_one_is_an_error_not_silence(paper):
    cfg, conn, ex, _ = paper
    with db.transaction(conn):
        ledger.record_fill(conn, None, "bitvavo", fill("7"), None)
        assert not ledger.record_fill(conn, None, "bitvavo", fill("7"), None)  # the same fill again: nothing
        assert not ledger.record_fill(conn, None, "bitvavo", fill("7", amount="0.0002"), None)
    ev = conn.execute("SELECT severity, detail FROM events WHERE kind = 'fill_conflict'").fetchall()
    assert len(ev) == 1 and ev[0]["severity"] == "error" and "fill 7 on BTC-EUR" in ev[0]["detail"]
    assert Decimal(conn.execute("SELECT base FROM positions").fetchone()[0]) == Decimal("0.0001")


# --- 12.3 in the ledger: an unsettled fee is corrected when the fill settles ------------


def test_an_unsettled_fill_gets_its_fee_and_the_position_follows(paper):
    cfg, conn, ex, _ = paper
    with db.transaction(conn):
        ledger.record_fill(conn, None, "bitvavo", fill("9", settled=False), None)
    assert Decimal(conn.execute("SELECT cost_eur FROM positions").fetchone()[0]) == Decimal("6")
    with db.transaction(conn):
        ledger.record_fill(conn, None, "bitvavo", fill("9", settled=True, fee="0.02"), None)
    row = conn.execute("SELECT fee, settled FROM trade_history").fetchone()
    assert (Decimal(row["fee"]), row["settled"]) == (Decimal("0.02"), 1)
    assert Decimal(conn.execute("SELECT cost_eur FROM positions").fetchone()[0]) == Decimal("6.02")


def test_reconcile_looks_up_a_filled_order_again_until_its_fills_settle(paper):
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    with freeze_time(T0):
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "filled"
    cost = Decimal(conn.execute("SELECT cost_eur FROM positions").fetchone()[0])
    fee = Decimal(conn.execute("SELECT fee FROM trade_history").fetchone()[0])
    with db.transaction(conn):  # as if Bitvavo had reported the fill before settling it
        conn.execute("UPDATE trade_history SET settled = 0, fee = '0'")
        conn.execute("UPDATE positions SET cost_eur = ?", (str(cost - fee),))
    rep = reconcile.reconcile(conn, cfg, ex, surprises=False)
    assert rep.errors == []
    assert conn.execute("SELECT settled FROM trade_history").fetchone()[0] == 1
    assert Decimal(conn.execute("SELECT cost_eur FROM positions").fetchone()[0]) == cost == Decimal("6")


# --- 3. caps count the fee ----------------------------------------------------------------


@freeze_time(T0)
def test_a_buy_by_base_amount_counts_its_fee_against_the_per_trade_cap(write_config):
    cfg, conn, ex = paper_setup(write_config)
    # 0.0001665 BTC at the ask of 60000 is €9.99: under €10, but the 0.25 % fee makes it €10.02
    pid = propose(conn, eur=None, amount="0.0001665")
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and blocks(conn, pid) == {"max_trade": "over_max_trade"}
    assert "fee included" in r.reason


@freeze_time(T0)
def test_no_buy_exceeds_the_daily_cap_after_rounding(write_config):
    cfg, conn, ex = paper_setup(write_config, max_daily_eur="16", max_trade_eur="10")
    first = propose(conn, eur="10")
    assert executor.execute(conn, cfg, ex, first).state == "filled"
    # €6 by base amount at 60000 = 0.0001 BTC; with the fee it is €6.02 > the €6 left
    pid = propose(conn, market="ETH-EUR", eur=None, amount="0.002")
    assert executor.execute(conn, cfg, ex, pid).state == "blocked"
    assert blocks(conn, pid) == {"daily_cap": "over_daily_cap"}
    spent = sum(
        Decimal(r["filled_quote"]) + Decimal(r["fee_paid"])
        for r in conn.execute("SELECT * FROM trade_executions WHERE state = 'filled'")
    )
    assert spent <= cfg.risk.max_daily_eur


def test_max_spend_rounds_up_to_the_cent_and_adds_slippage_live(write_config):
    cfg = write_config()
    assert sizing.max_spend_eur(cfg, amount_quote=Decimal("6"), amount=None, ask=Decimal("1")) == Decimal("6")
    assert sizing.max_spend_eur(cfg, amount_quote=None, amount=Decimal("0.0001"), ask=Decimal("60000.01")) == Decimal(
        "6.01"
    ) + Decimal("0.02")
    live = write_config(
        paper_config_text().replace('mode = "paper"', 'mode = "live"') + "[exchange]\noperator_id = 1\n"
    )
    # live: 2 % slippage room on 6.000001 → 6.13, fee 0.25 % of that rounded up → 0.02
    assert sizing.max_spend_eur(live, amount_quote=None, amount=Decimal("0.0001"), ask=Decimal("60000.01")) == Decimal(
        "6.13"
    ) + Decimal("0.02")


# --- 4. "absent" is decided with the time before the lookup ---------------------------------


def test_a_slow_lookup_does_not_eat_the_grace_period(paper, monkeypatch):
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    with freeze_time(T0) as frozen:
        ex.faults.append("timeout_before_accept")
        r = executor.execute(conn, cfg, ex, pid)
        assert r.state == "unknown"
        row = conn.execute("SELECT * FROM trade_executions").fetchone()
        deadline = reconcile.absent_after(row, cfg.exchange.reconcile_grace)
        frozen.move_to(deadline - timedelta(seconds=1))
        real = ex.fetch_order

        def slow_lookup(*a, **k):
            frozen.tick(timedelta(seconds=5))  # the lookup (or a lock wait) takes longer than what is left
            return real(*a, **k)

        monkeypatch.setattr(ex, "fetch_order", slow_lookup)
        rep = reconcile.reconcile(conn, cfg, ex, surprises=False)
    assert rep.still_unknown == [r.execution_id] and rep.changes == []
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "unknown"


def test_the_grace_period_has_a_floor(write_config):
    with pytest.raises(ConfigError) as e:
        write_config(paper_config_text() + '[exchange]\nreconcile_grace = "1s"\n')
    assert str(e.value).endswith(
        "exchange.reconcile_grace: must be at least 4500ms (a quarter of exchange.access_window for clock skew,"
        " plus 2s for ccxt's throttle): a shorter grace could call an order absent that is still on its way"
    )
    row = {
        "access_window_ms": 10_000,
        "submitting_at": "2026-11-27T12:00:00.000000Z",
        "claimed_at": None,
        "in_doubt_at": None,
    }

    class R(dict):
        def keys(self):
            return super().keys()

    # and whatever reaches absent_after: 2 windows + (a quarter window of allowed clock skew + ccxt's throttle)
    deadline = reconcile.absent_after(R(row), timedelta(0))
    assert deadline == clock.from_iso(row["submitting_at"]) + timedelta(seconds=20 + 2.5 + 2)


# --- 6. sells are bounded by tinybot's own position ---------------------------------------


@freeze_time(T0)
def test_a_sell_larger_than_tinybots_own_position_is_blocked(write_config):
    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"')
    with db.transaction(ex._conn):  # coins on the account that tinybot never bought
        ex._conn.execute(
            "INSERT INTO paper_balances (asset, available) VALUES ('BTC', '1')"
            " ON CONFLICT (asset) DO UPDATE SET available = '1'"
        )
    assert executor.execute(conn, cfg, ex, propose(conn, eur="10")).state == "filled"
    held = ledger.position_base(conn, "BTC-EUR")
    pid = propose(conn, side="sell", eur=None, amount=str(held * 2))
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and blocks(conn, pid) == {"own_position": "over_own_position"}
    assert "--external" in r.reason
    ext = propose(conn, side="sell", eur=None, amount="0.0002", external=True)
    assert executor.execute(conn, cfg, ex, ext).state == "filled"
    # booked apart: the external sale moves neither tinybot's position nor its realised P/L
    assert ledger.position_base(conn, "BTC-EUR") == held
    assert Decimal(conn.execute("SELECT realised_eur FROM positions").fetchone()[0]) == 0
    assert conn.execute("SELECT external FROM trade_history ORDER BY id DESC LIMIT 1").fetchone()[0] == 1


# --- the €5 rule ----------------------------------------------------------------------------


@freeze_time(T0)
def test_a_buy_that_would_strand_its_position_is_blocked(write_config):
    cfg, conn, ex = paper_setup(write_config)
    pid = propose(conn, eur="5")
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and blocks(conn, pid) == {"sellable_after": "would_strand"}
    assert "buy at least €5.52" in r.reason


@freeze_time(T0)
def test_a_sell_that_would_leave_dust_is_blocked(write_config):
    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"')
    assert executor.execute(conn, cfg, ex, propose(conn, eur="10")).state == "filled"
    held = ledger.position_base(conn, "BTC-EUR")
    pid = propose(conn, side="sell", eur=None, amount=str(held - Decimal("0.00005")))  # leaves €3 behind
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and blocks(conn, pid) == {"no_dust": "would_leave_dust"}
    assert executor.execute(conn, cfg, ex, propose(conn, side="sell", eur=None, amount=str(held))).state == "filled"


def test_buy_sizes_that_cannot_stay_sellable_are_rejected_with_the_numbers(write_config):
    with pytest.raises(ConfigError) as e:
        write_config('advisors = ["rules"]\n' + paper_config_text() + "[rules]\nbuy_eur = 5.5\n")
    assert str(e.value).endswith(
        "rules.buy_eur: €5.5 buys a position that could not be sold again: after the 0.25 % fee it must be"
        " worth at least €5.50 (the €5 minimum + risk.sellable_margin 10 %); set it to €5.52 or more"
    )


def test_the_shipped_defaults_keep_positions_sellable(tmp_path):
    from tinybot.base import config
    from tinybot.cli.trade import example_config

    text = (
        example_config()
        .replace("advisors = []", 'advisors = ["rules", "dca"]')
        .replace('# market = "BTC-EUR"', 'market = "BTC-EUR"')
    )
    (tmp_path / "bot.toml").write_text(text)
    cfg = config.load(tmp_path / "bot.toml")
    assert cfg.rules.buy_eur >= sizing.min_sellable_buy_eur(cfg) and cfg.dca.buy_eur >= sizing.min_sellable_buy_eur(cfg)


def test_a_stranded_position_and_the_buy_that_frees_it(write_config):
    from tinybot.exchange.base import Ticker

    cfg = write_config()
    t = Ticker("BTC-EUR", Decimal("60000"), Decimal("60010"), Decimal("60005"), 0)
    [s] = sizing.stranded(cfg, {"BTC-EUR": Decimal("0.00006")}, {"BTC-EUR": t})
    assert s.value_eur == Decimal("3.6") and s.minimum_eur == Decimal("5")
    assert s.top_up_eur == Decimal("5")  # a buy is itself at least the exchange minimum
    # a crumb needs more than the minimum: the smallest buy after which it is worth €5 + 10 % at the bid
    [s] = sizing.stranded(cfg, {"BTC-EUR": Decimal("0.000001")}, {"BTC-EUR": t})
    after = lambda eur: (Decimal("0.000001") + eur * (1 - cfg.paper.taker_fee) / t.ask) * t.bid  # noqa: E731
    assert s.top_up_eur == Decimal("5.46")
    assert after(s.top_up_eur) >= sizing.min_sellable_eur(cfg) > after(s.top_up_eur - Decimal("0.01"))
    assert sizing.stranded(cfg, {"BTC-EUR": Decimal("0.0001")}, {"BTC-EUR": t}) == []


# --- 7. no spurious "unknown" alert -----------------------------------------------------------


def test_no_execution_unknown_event_when_reconcile_resolved_the_row_first(paper, monkeypatch):
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    real_send = ex.send_order

    def slow_send(*a, **k):
        real_send(*a, **k)  # the order is on the exchange ...
        reconcile.reconcile(db.connect(cfg.db_path), cfg, ex, surprises=False)  # ... reconcile finds it ...
        from tinybot.exchange.base import SendOutcome

        return SendOutcome.ambiguous("timeout", code="RequestTimeout")  # ... and the send itself timed out

    monkeypatch.setattr(ex, "send_order", slow_send)
    with freeze_time(T0):
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "filled"
    assert conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'execution_unknown'").fetchone()[0] == 0


# --- 8a. the kill switch is read inside the transaction that commits `submitting` ------------


def test_a_kill_between_preflight_and_the_send_transaction_stops_the_order(paper, monkeypatch):
    """Flip the switch at the last moment before the commit transaction begins.

    The flip happens in SQLite's trace callback for the executor's own
    ``BEGIN IMMEDIATE`` (after every preflight read, before the lock is
    taken): a switch read anywhere before that transaction sees trading on.
    """
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    preflight_done = []
    real_balances = ex.balances
    monkeypatch.setattr(ex, "balances", lambda: preflight_done.append(1) or real_balances())
    other = db.connect(cfg.db_path)

    def on_statement(sql):
        if preflight_done and sql.strip().upper() == "BEGIN IMMEDIATE" and not other.in_transaction:
            preflight_done.clear()
            killswitch.set_enabled(other, False, "flipped at the last moment", by="test")

    conn.set_trace_callback(on_statement)
    with freeze_time(T0):
        r = executor.execute(conn, cfg, ex, pid)
    conn.set_trace_callback(None)
    assert killswitch.state(conn)["trading_enabled"] == 0
    assert r.state == "blocked" and "kill_switch_on" in r.reason
    assert conn.execute("SELECT COUNT(*) FROM paper_orders").fetchone()[0] == 0


# --- 8b. claimed → submitting is a compare-and-set, across processes ---------------------------


def test_two_processes_one_held_in_preflight_send_one_order(write_config, tmp_path):
    cfg, conn, ex = paper_setup(write_config)
    pid = propose(conn)
    ex.close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    worker = [
        sys.executable,
        str(TESTS / "helpers" / "send_worker.py"),
        str(cfg.path),
        str(pid),
        str(tmp_path / "sends.log"),
    ]
    held = subprocess.Popen(
        worker + ["--hold", str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(3000):  # the held process has claimed and is inside preflight
            if (tmp_path / "in_preflight").exists() or held.poll() is not None:
                break
            __import__("time").sleep(0.01)
        assert (tmp_path / "in_preflight").exists(), held.communicate()
        free = subprocess.run(worker, env=env, capture_output=True, text=True, timeout=60)
        assert free.returncode == 0, free.stderr
        assert json.loads(free.stdout)["state"] == "filled"
        (tmp_path / "release").write_text("go")
        out, err = held.communicate(timeout=60)
    finally:
        held.kill()
    assert held.returncode == 0, err
    late = json.loads(out)
    assert (late["state"], late["sent"]) == ("filled", False)
    assert (tmp_path / "sends.log").read_text().splitlines() == [late["client_order_id"]]


def test_propose_external_from_the_cli_and_only_for_sells(tmp_path):
    from helpers.configs import run_cli

    assert run_cli("init").returncode == 0
    bad = run_cli("propose", "BTC-EUR", "buy", "--eur", "6", "--external")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "Error: --external: only a sell can be external (it sells coins tinybot did not buy)"
    )
    ok = run_cli("propose", "BTC-EUR", "sell", "--amount", "0.0001", "--external", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["external"] == 1
