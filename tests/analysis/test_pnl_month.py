"""Every number must be right (issue 16): a simulated month of live trading against the simulator, with faults —
partial fills, unsettled fees, an ambiguous send resolved by reconcile, several fills at several prices — then
`pnl`'s drift is zero, its equity equals the simulator's account value at the same prices to the cent, and the
Box 3 snapshot equals the balances times the prices at the peildatum."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from freezegun import freeze_time

from tinybot.store import db
from tinybot.trade import executor, ledger, proposals, reconcile
from tinybot.analysis import pnl, tax
from tinybot.exchange import read_only
from tinybot.exchange.base import Balance
from tinybot.trade.proposals import Draft

from helpers.configs import RISK_TOML
from helpers.sim import OPERATOR_ID, TRADE_KEY, shared_accounts, use_keys

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
CENT = Decimal("0.01")


def test_a_month_with_faults_leaves_no_drift_and_equity_equals_the_account(sim_factory, write_config, monkeypatch):
    sim = sim_factory(accounts=shared_accounts())
    use_keys(monkeypatch)
    risk = RISK_TOML.replace('cooldown = "1h"', 'cooldown = "0s"').replace('anti_flip = "6h"', 'anti_flip = "0s"')
    cfg = write_config(
        'mode = "live"\ntimezone = "Europe/Amsterdam"\n' + risk + f"[exchange]\noperator_id = {OPERATOR_ID}\n"
        f'url = "{sim.url}"\ntimeout = "2s"\naccess_window = "10s"\nreconcile_grace = "5s"\n'
    )
    conn = db.open_db(cfg.db_path)
    ex, ro = executor.trading_exchange(cfg), read_only(cfg, rate_limit=False)  # no client-side throttle sleeps
    s = sim.sim

    def snapshot():  # what a tick records: the prices and the account as the exchange reports them
        tickers = {m: ro.ticker(m) for m in ("BTC-EUR", "ETH-EUR")}
        pnl.record_snapshot(conn, tickers, ro.balances())
        return tickers

    def trade(market, side, eur=None, amount=None):
        pid = proposals.create(
            conn,
            Draft(market, side, Decimal(eur) if eur else None, Decimal(amount) if amount else None),
            source="month",
            ttl=timedelta(hours=1),
            approve=True,
        )
        return executor.execute(conn, cfg, ex, pid)

    with freeze_time(START, tick=True) as frozen:
        snapshot()  # the baseline: €25 before any fill
        s.add_outcome("filled", fills=3, step_ticks=2)
        assert trade("BTC-EUR", "buy", eur="8").state == "filled"  # day 1: three fills at three prices
        frozen.tick(timedelta(days=3))
        s.set_mode(unsettled="manual")
        assert trade("ETH-EUR", "buy", eur="7").state == "filled"  # day 4: its fee not settled yet
        frozen.tick(timedelta(days=4))
        s.settle_fills()
        reconcile.reconcile(conn, cfg, ro, surprises=False)  # the fee arrives; ledger and P/L follow
        s.set_mode(unsettled=None)
        s.add_fault("timeout_after_accept", on="create_order", delay=2)
        r = trade("BTC-EUR", "buy", eur="6")  # day 8: the reply times out after Bitvavo accepted
        assert r.state == "unknown"
        frozen.tick(timedelta(minutes=5))
        reconcile.reconcile(conn, cfg, ro, surprises=False)
        assert (
            conn.execute("SELECT state FROM trade_executions WHERE id = ?", (r.execution_id,)).fetchone()[0] == "filled"
        )
        frozen.tick(timedelta(days=10))
        held = ledger.position_base(conn, "BTC-EUR")
        assert trade("BTC-EUR", "sell", amount=str(held)).state == "filled"  # day 18: sell all BTC
        frozen.tick(timedelta(days=9))
        s.add_outcome("partiallyFilled", fraction="0.5")
        r = trade("ETH-EUR", "buy", eur="6")  # day 27: half fills now, the rest later
        assert r.state == "submitted", r
        s.advance(1)
        frozen.tick(timedelta(hours=1))
        reconcile.reconcile(conn, cfg, ro, surprises=False)
        assert (
            conn.execute("SELECT state FROM trade_executions WHERE id = ?", (r.execution_id,)).fetchone()[0] == "filled"
        )
        tickers = snapshot()

    report = pnl.report(conn, cfg, prices={m: pnl.Price(t.bid, t.ask, t.last, None) for m, t in tickers.items()})
    # drift: the ledger says exactly what the exchange holds, to the cent and to the last unit of the coin
    assert set(report["drift"]["assets"].values()) <= {"0", "0.00"}, report["drift"]
    # equity: starting euros + net (before LLM cost) == the account's value at the same bids, to the cent
    account = s.balance(TRADE_KEY)
    value = sum((amount * (tickers[f"{a}-EUR"].bid if a != "EUR" else 1) for a, amount in account.items()), Decimal(0))
    equity = Decimal(25) + Decimal(report["realised_eur"]) + Decimal(report["unrealised_eur"])
    assert abs(equity - value) < CENT, (equity, value)
    # every fill of the exchange is in the ledger, fees settled
    assert {(t["market"], t["id"]) for t in s.trades()} == {
        (r["market"], r["trade_id"]) for r in conn.execute("SELECT market, trade_id FROM trade_history")
    }
    assert conn.execute("SELECT COUNT(*) FROM trade_history WHERE settled = 0").fetchone()[0] == 0


def test_box3_snapshot_is_the_balances_times_the_prices_at_the_peildatum(write_config, tmp_path):
    """The worksheet's values on the peildatum are exactly balance × price (here: a live account's baseline)."""
    from tinybot.analysis import candles
    from tinybot.exchange.base import Ticker

    cfg = write_config(
        write_config().path.read_text().replace('mode = "paper"', 'mode = "live"') + "[exchange]\noperator_id = 1\n"
    )
    conn = db.open_db(cfg.db_path)
    peil = tax.peildatum(2026)
    with freeze_time(peil - timedelta(days=2)):
        pnl.record_snapshot(
            conn,
            {"BTC-EUR": Ticker("BTC-EUR", Decimal(1), Decimal(1), Decimal(1), 0)},
            {"EUR": Balance(Decimal("12.34"), Decimal(0)), "BTC": Balance(Decimal("0.00012345"), Decimal(0))},
        )
    ts = int(peil.timestamp() * 1000)
    (tmp_path / "c.csv").write_text(
        "market,timestamp,open,high,low,close,volume\n"
        f"BTC-EUR,{ts - 60_000},80000,80010,79990,80005,1\nBTC-EUR,{ts},80005,80100,80000,80050,1\n"
    )
    candles.import_csv(conn, tmp_path / "c.csv")
    with freeze_time(peil + timedelta(days=40)):
        w = tax.worksheet(conn, cfg, 2026)
    start = w["peildatum"]
    assert start["savings_eur"] == "12.34"
    assert Decimal(start["other_assets_eur"]) == (Decimal("0.00012345") * Decimal("80005")).quantize(CENT)
    assert start["crypto"][0]["price_eur"] == "80005"
