"""What an idle tick costs, counted (never timed): its SQL statements, a snapshot that reads no more after a long
history than on the first day, and its requests to the exchange (issue 26)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from helpers.configs import PAPER_TOML, live_text
from helpers.sim import make_ccxt, shared_accounts, use_keys
from helpers.sqlcost import counted, seed_history
from tinybot.advisors import build_snapshot
from tinybot.base import clock
from tinybot.exchange import read_only
from tinybot.loop import scheduler, tick
from tinybot.store import db
from tinybot.trade import reconcile

IDLE = 'advisors = ["helpers.advisors:sneaky"]\n' + PAPER_TOML + '[scheduler]\ninterval = "1m"\n'
STATEMENTS_PER_IDLE_TICK = 38  # paper mode, one advisor that proposes nothing, in the loop (lazy claims)


def idle_loop(write_config, folder, history: int):
    folder.mkdir()
    cfg = write_config(IDLE, name=f"{folder.name}/bot.toml")
    conn = db.open_db(cfg.db_path)
    if history:  # another advisor's history: the idle one must not walk it to find its own few proposals
        seed_history(conn, history, until=clock.now() - timedelta(days=2), source="rules")
    sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
    sched.beat.lazy = True  # as in `tinybot run`
    return cfg, conn, sched


@freeze_time("2026-11-27 20:00:05")
def test_an_idle_tick_runs_a_fixed_number_of_statements(write_config, tmp_path):
    cfg, conn, sched = idle_loop(write_config, tmp_path / "bot", 0)
    slot = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    for i in range(3):  # the first ticks read what later ones keep (the surprise scan, cursors, the hour's prices)
        sched.tick(slot + timedelta(minutes=i))
    with counted(conn) as cost:
        report = sched.tick(slot + timedelta(minutes=3))
    assert report.idle and report.status == "ok", report
    assert len(cost.statements) <= STATEMENTS_PER_IDLE_TICK, "\n".join(cost.statements)


@freeze_time("2026-11-27 20:00:05")
def test_an_idle_tick_reads_no_more_after_a_long_history_than_on_the_first_day(write_config, tmp_path):
    """The whole tick, counted: expiring stale proposals (it walked every approved proposal ever, each executed one
    stays 'approved'), the snapshot, the safety rules, the alerts' cursors."""
    slot = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
    costs = []
    for name, history in (("first", 0), ("later", 3000)):
        cfg, conn, sched = idle_loop(write_config, tmp_path / name, history)
        for i in range(3):
            sched.tick(slot + timedelta(minutes=i))
        with counted(conn) as cost:
            assert sched.tick(slot + timedelta(minutes=3)).idle
        costs.append(cost)
    first, later = costs
    assert len(later.statements) == len(first.statements)
    assert later.steps <= 1.2 * first.steps, (first.steps, later.steps)


@freeze_time("2026-11-27 20:00:05")
def test_the_snapshot_reads_no_more_after_a_long_history_than_on_the_first_day(write_config, tmp_path):
    """Every tick's snapshot reads the advisors' recent proposals, positions, books and caps: each a seek."""
    costs = []
    for name, history in (("first", 0), ("later", 3000)):
        cfg, conn, _ = idle_loop(write_config, tmp_path / name, history)
        with counted(conn) as cost:
            build_snapshot(conn, cfg, read_only(cfg), sources=cfg.active_advisors)
        costs.append(cost)
    first, later = costs
    assert len(later.statements) == len(first.statements)
    assert later.steps <= 1.2 * first.steps, (first.steps, later.steps)


# --- requests to the exchange per idle live tick (the real ccxt client against the simulator) ----------------

REQUESTS_PER_IDLE_TICK = 2  # the watched markets' tickers (one request for all) and the balances


def live_loop(write_config, sim_factory, monkeypatch):
    """A live scheduler on a simulated account, one idle advisor, and the kind of every request that reaches the
    exchange, in order."""
    sim = sim_factory(accounts=shared_accounts())
    use_keys(monkeypatch)
    cfg = write_config(
        'advisors = ["helpers.advisors:sneaky"]\n' + live_text(sim.url) + '[scheduler]\ninterval = "1m"\n'
    )
    seen: list[str] = []
    real = sim.sim.take_fault
    monkeypatch.setattr(sim.sim, "take_fault", lambda kind: seen.append(kind) or real(kind))
    return sim, scheduler.Scheduler(cfg, db.open_db(cfg.db_path), echo=lambda s: None), seen


def test_an_idle_live_tick_asks_the_exchange_twice(write_config, sim_factory, monkeypatch):
    """Tickers for every watched market in one request and the balances; the market table, the closed candles and
    the surprise scan are read again only when they can have changed (loop.tick)."""
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sim, sched, seen = live_loop(write_config, sim_factory, monkeypatch)
        for _ in range(3):  # start: the market table, the candles, the surprise scan (twice: see surprise_scan_due)
            assert sched.tick().idle
            frozen.tick(timedelta(minutes=1))
        seen.clear()
        ticks = 10
        for _ in range(ticks):
            assert sched.tick().idle
            frozen.tick(timedelta(minutes=1))
    assert len(seen) <= REQUESTS_PER_IDLE_TICK * ticks, seen
    assert set(seen) == {"ticker", "balance"}, seen


def test_a_surprise_order_that_moves_the_balances_is_found_within_two_ticks(write_config, sim_factory, monkeypatch):
    """An order on the account with a clientOrderId no execution has (another tinybot, a restored backup): it
    fills, the balances move, and the tick after the one that read them scans the orders."""
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sim, sched, seen = live_loop(write_config, sim_factory, monkeypatch)
        for _ in range(4):
            assert sched.tick().idle
            frozen.tick(timedelta(minutes=1))
        client = make_ccxt(sim.url)
        client.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": str(uuid.uuid4())})
        seen.clear()
        reports = []
        for _ in range(2):
            reports.append(sched.tick())
            frozen.tick(timedelta(minutes=1))
    assert not any("SURPRISE" in e for e in reports[0].errors), reports[0]  # this tick read the moved balances
    assert any("SURPRISE" in e for e in reports[1].errors), (reports[1], seen)
    assert "orders" in seen


def test_a_surprise_order_that_leaves_the_balances_alone_is_found_within_the_scan_cadence(write_config, monkeypatch):
    """An order that neither filled nor holds funds moves no balance: the scan every SURPRISE_EVERY ticks (or
    SURPRISE_MAX_AGE) finds it.  Paper, with an order row the paper exchange has and tinybot does not."""
    monkeypatch.setattr(tick, "SURPRISE_EVERY", 5)
    cfg = write_config(IDLE)
    scans = []
    real = reconcile._surprises
    monkeypatch.setattr(reconcile, "_surprises", lambda *a, **k: scans.append(1) or real(*a, **k))
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lambda s: None)
        conn = db.open_db(cfg.db_path)
        reports = []
        for i in range(2 + 5):
            if i == 3:
                with db.transaction(conn):
                    conn.execute(
                        "INSERT INTO paper_orders (order_id, client_order_id, market, side, order_type, status,"
                        " amount_quote, filled_amount, filled_amount_quote, fee_paid, created_ms)"
                        " VALUES ('o1', 'f00dfeed-0000-4000-8000-000000000001', 'BTC-EUR', 'buy', 'market',"
                        " 'canceled', '5', '0', '0', '0', ?)",
                        (clock.now_ms(),),
                    )
            reports.append(sched.tick())
            frozen.tick(timedelta(minutes=1))
        # at start, after the first balances read, then SURPRISE_EVERY ticks after that: tick 7
        assert len(scans) == 3, scans
        assert [i for i, r in enumerate(reports) if any("SURPRISE" in e for e in r.errors)] == [6]
        for _ in range(3):  # SURPRISE_MAX_AGE bounds it too, at long intervals
            frozen.tick(tick.SURPRISE_MAX_AGE)
            sched.tick()
        assert len(scans) == 6, scans


def test_with_the_market_table_kept_an_unreachable_exchange_is_still_an_outage(write_config, sim_factory, monkeypatch):
    """The market table is no longer read every tick: the tickers request (the first of an idle tick) is the one
    that finds the exchange unreachable, and trading pauses as before."""
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sim, sched, seen = live_loop(write_config, sim_factory, monkeypatch)
        assert sched.tick().idle
        frozen.tick(timedelta(minutes=1))
        sim.sim.add_fault("html_5xx", on="any", count=None)
        down = sched.tick()
        sim.sim.clear_faults()
        frozen.tick(timedelta(minutes=2))
        back = sched.tick()
    assert down.outage and down.status == "failed", down
    assert any(n.startswith("exchange back after") for n in back.notes), back


def test_a_refused_tickers_request_leaves_each_market_a_problem_not_an_outage(write_config, sim_factory, monkeypatch):
    """The exchange answers (the market list comes) but refuses tickers: as when each ticker was asked alone,
    each market is a problem of the tick and the tick is no outage."""
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sim, sched, seen = live_loop(write_config, sim_factory, monkeypatch)
        assert sched.tick().idle
        frozen.tick(timedelta(minutes=1))
        sim.sim.add_fault("error_101", on="ticker", count=None)
        report = sched.tick()
        sim.sim.clear_faults()
    assert not report.outage and report.status == "ok", report
    assert {e.split(":")[0] for e in report.errors} == {"BTC-EUR", "ETH-EUR"}, report.errors
