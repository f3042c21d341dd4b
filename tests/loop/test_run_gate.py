"""`tinybot run` in live mode, as real OS processes against the simulator: it reconciles in-flight orders
first, then refuses to start only on what makes trading unsafe (exit 78, alerted), and warns about the rest.
A live bot restarts after its first trade and after a kill -9 in the middle of an order."""

from __future__ import annotations


import pytest

from tinybot.store import backup, db
from tinybot.base import exitcodes

from helpers.configs import run_cli
from helpers.sim import READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, shared_accounts
from helpers.configs import live_text
from helpers.receiver import Receiver
from helpers import TESTS


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def live_env(sim_factory, write_config, monkeypatch, receiver):
    """A live config on a simulated €25 account, alerts to a local receiver, advisors from tests/."""
    sim = sim_factory(accounts=shared_accounts())
    for name, value in (
        ("TINYBOT_TRADE_KEY", TRADE_KEY),
        ("TINYBOT_TRADE_SECRET", TRADE_SECRET),
        ("TINYBOT_READ_KEY", READ_KEY),
        ("TINYBOT_READ_SECRET", READ_SECRET),
        ("TINYBOT_ALERT_URLS", receiver.url),
    ):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", str(TESTS))

    def write(advisors=(), interval="1d", **risk):
        text = live_text(sim.url)
        for k, v in risk.items():
            text = text.replace(f"\n{k} = ", f"\n{k} = {v}\n# was: ")
        adv = ", ".join(f'"{a}"' for a in advisors)
        cfg = write_config(f"advisors = [{adv}]\n" + text + f'[scheduler]\ninterval = "{interval}"\n')
        db.open_db(cfg.db_path).close()  # as `tinybot init` leaves it
        return cfg

    return write, sim, receiver


def ticks(cfg) -> int:
    return db.open_db(cfg.db_path).execute("SELECT COUNT(*) FROM ticks").fetchone()[0]


def alert_texts(receiver) -> list[str]:
    return [m.get("title", "") + ": " + m.get("message", "") for m in receiver.messages]


def test_a_blocking_check_refuses_the_start_with_exit_78_and_an_alert(live_env, monkeypatch):
    write, sim, receiver = live_env
    cfg = write()
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", "not-the-secret")
    r = run_cli("run")
    assert r.returncode == exitcodes.REFUSED_START == 78, (r.stdout, r.stderr)
    assert "Error: refusing to start live trading: trade_key: TINYBOT_TRADE_KEY does not authenticate" in r.stderr
    # the bad secret came from the environment (it wins over secrets.env): the fix says so (issue 23 item 13)
    assert "fix trade_key: copy the secret again into the environment variable TINYBOT_TRADE_SECRET" in r.stderr
    assert ticks(cfg) == 0 and sim.sim.orders() == []
    refused = [t for t in alert_texts(receiver) if "start refused" in t]
    assert len(refused) == 1 and "REFUSED TO START (exit 78" in refused[0]
    assert "REFUSED TO START" not in r.stdout and "refused to start" in cfg.log_path.read_text()
    hb = db.open_db(cfg.db_path).execute("SELECT state, detail FROM scheduler_heartbeat").fetchone()
    assert hb["state"] == "stopped" and hb["detail"].startswith("refused to start: trade_key")


def test_what_is_only_a_warning_does_not_stop_the_start(live_env):
    write, sim, receiver = live_env
    cfg = write()  # no backup yet: doctor warns
    r = run_cli("run", "--once")
    assert r.returncode == 0, r.stderr
    assert "Warning: doctor: backup: no backup in" in r.stderr
    assert ticks(cfg) == 1


def test_ignore_doctor_starts_despite_a_blocking_check_and_says_so_loudly(live_env, monkeypatch):
    write, sim, receiver = live_env
    cfg = write()
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", "not-the-secret")
    r = run_cli("run", "--once", "--ignore-doctor")
    assert "Warning: STARTING LIVE DESPITE FAILING DOCTOR CHECKS (--ignore-doctor): trade_key" in r.stderr
    assert ticks(cfg) == 1
    # orders are looked up with the trade key: its tick cannot reconcile, and says so with its exit code
    assert r.returncode == exitcodes.ERROR, (r.stdout, r.stderr)
    assert "errorCode 309" in r.stdout
    assert "STARTING LIVE DESPITE FAILING DOCTOR CHECKS" in cfg.log_path.read_text()
    assert any("doctor ignored" in t for t in alert_texts(receiver))


def test_a_live_bot_restarts_after_its_first_trade(live_env):
    """€25 caps on a €25 account: after one buy (fees paid) the account is worth a little less than €25."""
    write, sim, receiver = live_env
    cfg = write(["helpers.advisors:buy_btc"], interval="1m", max_daily_eur="25")
    backup.make(cfg)
    first = run_cli("run", "--once")
    assert first.returncode == 0, first.stderr
    assert "orders: #1 buy BTC-EUR filled" in first.stdout
    again = run_cli("run", "--once")
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert "refusing to start" not in again.stderr


def test_a_restart_after_kill_9_mid_order_reconciles_that_order_first(live_env):
    write, sim, receiver = live_env
    cfg = write(["helpers.advisors:buy_btc"])
    backup.make(cfg)
    crashed = run_cli("run", env={"TINYBOT_CRASH_AT": "after_reply_before_record"})
    assert crashed.returncode == 137  # the process died like a kill -9: the order is on the exchange, not booked
    conn = db.open_db(cfg.db_path)
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "submitting"
    (order,) = [o for o in sim.sim.orders() if o.get("clientOrderId")]
    assert order["status"] == "filled"

    r = run_cli("run", "--once")  # same day-long slot: the tick is skipped, the start-up still reconciles
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "start-up reconcile: execution 1 submitting→filled" in r.stdout
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "filled"
    assert len([o for o in sim.sim.orders() if o.get("clientOrderId")]) == 1  # never re-sent
    assert any("bot died" in t and "ended without stopping" in t for t in alert_texts(receiver))


@pytest.mark.waits
def test_other_processes_see_a_live_bots_writes_after_its_start_gate(live_env):
    """The start gate runs inside the bot, beside its open database: it must not open() and close() the
    database file (that drops the process's POSIX locks, SQLite's too), or readers such as the status of
    another process see a frozen database.  Read like `bench/run.py` does: a read-only connection."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    write, sim, receiver = live_env
    cfg = write(interval="1s")
    backup.make(cfg)
    bot = subprocess.Popen(
        [sys.executable, "-m", "tinybot", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )

    def done_ticks() -> int:
        c = sqlite3.connect(f"file:{cfg.db_path}?mode=ro", uri=True, timeout=5)
        try:
            return c.execute("SELECT COUNT(*) FROM ticks WHERE status != 'running'").fetchone()[0]
        finally:
            c.close()

    try:
        deadline = time.monotonic() + 45  # idle rows come with the beat: every 15 ticks (~20 s at 1s)
        while done_ticks() < 1:
            assert bot.poll() is None and time.monotonic() < deadline, "the bot did not tick"
            time.sleep(0.1)
        seen = done_ticks()
        assert run_cli("status").returncode == 0  # another process opens and closes the database
        while done_ticks() < seen + 2:
            assert bot.poll() is None, bot.stderr.read()
            assert time.monotonic() < deadline, f"another process still sees {done_ticks()} tick(s)"
            time.sleep(0.1)
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)
    assert bot.returncode == 0
