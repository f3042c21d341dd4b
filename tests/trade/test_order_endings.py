"""Market orders that end other ways, booked right by tinybot through ccxt and the simulator (issue 12, items 3, 5).

For each ending the simulator can produce (docs/SIMULATOR.md), a live execute
then reconcile must leave: the execution in the right state with the order's
filled amounts, exactly the exchange's fills in trade_history (fee settled),
the position equal to what was bought, and the daily cap counting what was
spent.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tinybot.base import clock
from tinybot.trade import committed, executor, ledger, proposals, reconcile
from tinybot.store import db
from tinybot.exchange import read_only
from tinybot.trade.proposals import Draft

from helpers.configs import RISK_TOML
from helpers.sim import OPERATOR_ID, shared_accounts, use_keys


@pytest.fixture
def live(sim_factory, write_config, monkeypatch):
    sim = sim_factory(accounts=shared_accounts())
    use_keys(monkeypatch)
    cfg = write_config(
        'mode = "live"\n' + RISK_TOML + f'[exchange]\noperator_id = {OPERATOR_ID}\nurl = "{sim.url}"\n'
        'timeout = "2s"\naccess_window = "10s"\nreconcile_grace = "5s"\n'
    )
    conn = db.open_db(cfg.db_path)
    yield cfg, conn, executor.trading_exchange(cfg), sim
    conn.close()


def buy(cfg, conn, ex, eur="9"):
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal(eur)), source="test", ttl=timedelta(minutes=30), approve=True
    )
    return executor.execute(conn, cfg, ex, pid)


def booked_as_the_exchange_says(conn, sim) -> None:
    [order] = [o for o in sim.sim.orders() if o.get("clientOrderId")]
    fills = {(f["market"], f["trade_id"]): f for f in conn.execute("SELECT * FROM trade_history")}
    theirs = {("BTC-EUR", f["id"]): f for f in order["fills"]}
    assert set(fills) == set(theirs)
    for k, f in theirs.items():
        ours = fills[k]
        assert (Decimal(ours["amount"]), Decimal(ours["price"])) == (Decimal(f["amount"]), Decimal(f["price"]))
        if f.get("settled", True):
            assert Decimal(ours["fee"]) == Decimal(f["fee"]) and ours["settled"] == 1
    e = conn.execute("SELECT * FROM trade_executions").fetchone()
    assert Decimal(e["filled_amount"]) == Decimal(order["filledAmount"])
    assert ledger.position_base(conn, "BTC-EUR") == sum((Decimal(f["amount"]) for f in order["fills"]), Decimal(0))


@pytest.mark.parametrize(
    "kind, kwargs, state",
    [
        ("filled", {"fills": 3, "step_ticks": 2}, "filled"),  # several fills at several prices
        ("filled", {"on_hold": "9.00"}, "filled"),  # onHold still shown when it filled
        ("canceledMarketProtection", {"fraction": "0.4"}, "canceled"),  # stopped part-way, with fills
        ("expired", {}, "canceled"),  # nothing filled
    ],
)
def test_each_ending_is_booked_as_the_exchange_says(live, kind, kwargs, state):
    cfg, conn, ex, sim = live
    sim.sim.add_outcome(kind, **kwargs)
    r = buy(cfg, conn, ex)
    rep = reconcile.reconcile(conn, cfg, read_only(cfg), surprises=False)
    assert rep.errors == []
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == state, r
    booked_as_the_exchange_says(conn, sim)
    e = conn.execute("SELECT * FROM trade_executions").fetchone()
    # what the daily cap counts for a finished buy: what it really took from the account
    assert committed.spent_today(conn, clock.now()) == Decimal(e["filled_quote"]) + Decimal(e["fee_paid"])


def test_a_partly_filled_order_stays_submitted_counts_in_full_then_completes(live):
    cfg, conn, ex, sim = live
    sim.sim.add_outcome("partiallyFilled", fraction="0.5")
    r = buy(cfg, conn, ex)
    assert r.state == "submitted"
    assert committed.spent_today(conn, clock.now()) == Decimal("9")  # in flight: the most it can spend
    sim.sim.advance(1)  # the rest fills
    reconcile.reconcile(conn, cfg, read_only(cfg), surprises=False)
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "filled"
    booked_as_the_exchange_says(conn, sim)


def test_unsettled_fills_get_their_fee_when_they_settle(live):
    cfg, conn, ex, sim = live
    sim.sim.set_mode(unsettled="manual")
    r = buy(cfg, conn, ex)
    assert r.state == "filled"
    f = conn.execute("SELECT * FROM trade_history").fetchone()
    assert (f["settled"], Decimal(f["fee"])) == (0, 0)
    cost_before = Decimal(conn.execute("SELECT cost_eur FROM positions").fetchone()[0])
    assert sim.sim.settle_fills() == 1
    reconcile.reconcile(conn, cfg, read_only(cfg), surprises=False)
    f = conn.execute("SELECT * FROM trade_history").fetchone()
    assert f["settled"] == 1 and Decimal(f["fee"]) > 0
    assert Decimal(conn.execute("SELECT cost_eur FROM positions").fetchone()[0]) == cost_before + Decimal(f["fee"])
    booked_as_the_exchange_says(conn, sim)
    # settled: no more lookups for it
    assert conn.execute("SELECT COUNT(*) FROM trade_history WHERE settled = 0").fetchone()[0] == 0
