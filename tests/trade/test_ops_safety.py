"""The automatic kill switch (tinybot.trade.safety.check) and `tinybot kill --cancel-open`."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.base import clock, config, secrets
from tinybot.store import db
from tinybot.trade import killswitch, ledger, safety
from tinybot.owner import notify
from tinybot.exchange.static import StaticMarketData


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in secrets.SECRET_NAMES + ("TINYBOT_CONFIG",):
        monkeypatch.delenv(name, raising=False)


def make_cfg(tmp_path, toml: str = ""):
    path = tmp_path / "bot.toml"
    path.write_text(
        '[risk]\nallowlist = ["BTC-EUR"]\n[safety]\nmax_daily_loss_eur = 5\n'
        'max_consecutive_errors = 3\nunknown_limit = "15m"\n' + toml,
        encoding="utf-8",
    )
    return config.load(path)


@pytest.fixture
def env(tmp_path):
    with freeze_time("2026-03-01 12:00:00") as frozen:
        cfg = make_cfg(tmp_path)
        conn = db.open_db(cfg.db_path)
        yield cfg, conn, frozen


def execution(conn, state="unknown", market="BTC-EUR", cid=None) -> int:
    now = clock.now_iso()
    with db.transaction(conn):
        pid = conn.execute(
            "INSERT INTO proposals (market, side, amount_quote, source, status, created_at, expires_at)"
            " VALUES (?, 'buy', '5', 'cli', 'approved', ?, ?)",
            (market, now, now),
        ).lastrowid
        return conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount_quote,"
            " state, claimed_at, submitting_at, updated_at, access_window_ms) VALUES (?, ?, 'bitvavo', ?, 'buy', '5',"
            " ?, ?, ?, ?, 10000)",
            (pid, cid or str(uuid.uuid4()), market, state, now, now, now),
        ).lastrowid


def enabled(conn) -> bool:
    return bool(killswitch.state(conn)["trading_enabled"])


def resume(conn):
    killswitch.set_enabled(conn, True, "resumed", by="cli")


def test_consecutive_failed_ticks_turn_trading_off(env):
    cfg, conn, frozen = env
    assert safety.check(conn, cfg, tick_ok=False) == []
    assert safety.check(conn, cfg, tick_ok=False) == []
    assert safety.check(conn, cfg, tick_ok=True) == []  # a good tick resets the run
    assert safety.check(conn, cfg, tick_ok=False) == []
    assert safety.check(conn, cfg, tick_ok=None) == []  # an outage tick (or a mid-tick check): counter untouched
    assert safety.check(conn, cfg, tick_ok=False) == []
    fired = safety.check(conn, cfg, tick_ok=False)
    assert fired == [
        "3 ticks in a row failed, not because the exchange was unreachable"
        " (safety.max_consecutive_errors = 3); `tinybot status` and the log say why"
    ]
    ks = killswitch.state(conn)
    assert not ks["trading_enabled"] and ks["changed_by"] == "auto" and "3 ticks in a row" in ks["reason"]
    resume(conn)
    assert safety.check(conn, cfg, tick_ok=False) == []  # needs a new full run after a resume
    assert enabled(conn)


def test_unknown_past_the_limit_turns_trading_off_once(env):
    cfg, conn, frozen = env
    eid = execution(conn, "unknown")
    frozen.tick(timedelta(minutes=14, seconds=59))
    assert safety.check(conn, cfg) == [] and enabled(conn)
    frozen.tick(timedelta(seconds=1))
    fired = safety.check(conn, cfg)
    assert fired and f"execution(s) {eid} unresolved for longer than safety.unknown_limit (15m)" in fired[0]
    assert not enabled(conn)
    resume(conn)  # the owner looked at it: the same execution does not kill again
    frozen.tick(timedelta(hours=1))
    assert safety.check(conn, cfg) == [] and enabled(conn)


def test_reconcile_surprise_turns_trading_off(env):
    cfg, conn, frozen = env
    with db.transaction(conn):
        ledger.event(conn, "surprise_order", "order O1 carries clientOrderId X", severity="error")
    assert safety.check(conn, cfg)[0].startswith("reconcile found 1 order(s) tinybot has no row for")
    assert not enabled(conn)
    resume(conn)
    assert safety.check(conn, cfg) == [] and enabled(conn)
    with db.transaction(conn):
        ledger.event(conn, "surprise_order", "order O2 carries clientOrderId Y", severity="error")
    assert "O2" in safety.check(conn, cfg)[0]


def test_daily_realised_plus_unrealised_loss(env):
    cfg, conn, frozen = env
    prices = StaticMarketData({"BTC-EUR": "60000"})
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO positions (market, base, cost_eur, realised_eur, updated_at)"
            " VALUES ('BTC-EUR', '0.001', '60', '-1', ?)",
            (clock.now_iso(),),
        )
    assert safety.check(conn, cfg, market_data=None) == []  # no prices: rule skipped
    assert safety.check(conn, cfg, market_data=prices) == []  # baseline taken
    prices.set_price("BTC-EUR", "56000")  # -4 unrealised (bid a bit lower): loss ≈ €4.03
    assert safety.check(conn, cfg, market_data=prices) == []
    with db.transaction(conn):  # a realised loss on top
        conn.execute("UPDATE positions SET realised_eur = '-3'")
    fired = safety.check(conn, cfg, market_data=prices)
    assert fired and fired[0].startswith("today's realised + unrealised loss €6.00 is over")
    assert not enabled(conn)
    resume(conn)  # "today" restarts at the resume
    frozen.tick(timedelta(seconds=1))
    assert safety.check(conn, cfg, market_data=prices) == [] and enabled(conn)
    prices.set_price("BTC-EUR", "50000")  # another €6 down since the resume
    assert safety.check(conn, cfg, market_data=prices)
    resume(conn)
    frozen.tick(timedelta(days=1))  # a new UTC day takes a new baseline
    prices.set_price("BTC-EUR", "49000")
    assert safety.check(conn, cfg, market_data=prices) == []
    assert enabled(conn)


def test_auto_kill_blocks_the_executor_and_is_alerted(env, tmp_path):
    cfg, conn, frozen = env
    sent = []
    n = notify.Notifier(cfg, conn, urls=[])
    n._alert_orig = n.alert
    n.alert = lambda kind, text, **kw: sent.append((kind, text))
    n.drain_events()  # sets the cursor
    with db.transaction(conn):
        ledger.event(conn, "surprise_order", "order O1 carries clientOrderId X", severity="error")
    safety.check(conn, cfg, notifier=n)
    n.drain_events()
    kinds = [k for k, _ in sent]
    assert kinds == ["surprise_order", "kill_switch"]
    assert "trading disabled by auto: auto: reconcile found 1 order(s)" in sent[1][1]

    from tinybot.trade import executor, proposals
    from tinybot.exchange.paper import PaperExchange

    pid = proposals.create(
        conn, proposals.Draft("BTC-EUR", "buy", "5", None, ""), source="cli", ttl=timedelta(minutes=30), approve=True
    )
    ex = PaperExchange(cfg.db_path, StaticMarketData({"BTC-EUR": "60000"}))
    result = executor.execute(conn, cfg, ex, pid)
    assert result.state == "blocked" and not result.sent


def test_overdue_unknown_is_alerted(env):
    cfg, conn, frozen = env
    eid = execution(conn, "unknown")
    sent = []
    n = notify.Notifier(cfg, conn, urls=[])
    n.alert = lambda kind, text, **kw: sent.append((kind, kw["key"]))
    safety.check(conn, cfg, notifier=n)
    frozen.tick(timedelta(seconds=79))  # 2 × window 10s + grace 60s = 80s: not yet
    safety.check(conn, cfg, notifier=n)
    assert sent == []
    frozen.tick(timedelta(seconds=1))
    safety.check(conn, cfg, notifier=n)
    assert sent == [("execution_overdue", f"overdue:{eid}")]


# --- kill --cancel-open against the Bitvavo simulator -----------------------------------


def live_cfg(tmp_path, sim, monkeypatch):
    path = tmp_path / "bot.toml"
    path.write_text(
        f'mode = "live"\n[risk]\nallowlist = ["BTC-EUR"]\n[exchange]\noperator_id = 1\nurl = "{sim.url}"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TINYBOT_TRADE_KEY", sim.TRADE_KEY)
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", sim.TRADE_SECRET)
    monkeypatch.setenv("TINYBOT_READ_KEY", sim.READ_KEY)
    monkeypatch.setenv("TINYBOT_READ_SECRET", sim.READ_SECRET)
    return config.load(path)


def test_kill_cancel_open_cancels_only_tinybots_open_orders(tmp_path, sim, ccxt_client, monkeypatch):
    cfg = live_cfg(tmp_path, sim, monkeypatch)
    conn = db.open_db(cfg.db_path)
    client = ccxt_client()
    price = sim.sim.price("BTC-EUR")
    low = str((price * Decimal("0.5")).quantize(Decimal("1")))
    ours, foreign, done = (str(uuid.uuid4()) for _ in range(3))
    amount = float((Decimal(6) / Decimal(low)).quantize(Decimal("0.00000001"), rounding="ROUND_UP"))
    for cid in (ours, foreign):  # resting limit orders far below the market: open until cancelled
        client.create_order("BTC/EUR", "limit", "buy", amount, float(low), {"clientOrderId": cid, "operatorId": 1})
    eid = execution(conn, "submitted", cid=ours)
    execution(conn, "unknown", cid=done)  # not on the exchange at all

    result = CliRunner().invoke(
        __import__("tinybot.cli", fromlist=["cli"]).cli,
        ["--config", str(cfg.path), "kill", "--cancel-open", "--reason", "rollback"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Trading DISABLED: rollback" in result.output
    assert f"canceled  execution {eid}" in result.output
    by_cid = {o["clientOrderId"]: o["status"] for o in sim.sim.orders(sim.TRADE_KEY) if "clientOrderId" in o}
    assert by_cid[ours] == "canceled"
    assert by_cid[foreign] == "new"  # not ours: left alone
    assert conn.execute("SELECT state FROM trade_executions WHERE id = ?", (eid,)).fetchone()[0] == "canceled"
    assert not enabled(conn)


def test_kill_without_cancel_open_imports_no_exchange_code(tmp_path):
    import subprocess
    import sys

    cfg = make_cfg(tmp_path)
    db.open_db(cfg.db_path).close()
    code = (
        "import sys; from tinybot.cli import cli\n"
        "try:\n  cli(['--config', sys.argv[1], 'kill'])\nexcept SystemExit: pass\n"
        "print('ccxt' in sys.modules, 'apprise' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(cfg.path)], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "False False"
