"""The scheduler: the lock (OS processes), slot claims, the tick, the approval policy, SIGTERM, liveness.

The advisors the tests configure live in tests/helpers/advisors.py (the
`tinybot run` processes the tests start import them too: tests/ is put on
their PYTHONPATH).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from freezegun import freeze_time

from helpers import TESTS
from helpers.advisors import SEEN_CANDLES
from helpers.configs import PAPER_TOML

from tinybot.base import clock, exitcodes, runlock
from tinybot.store import db, liveness
from tinybot.trade import proposals
from tinybot.loop import beat, outage, scheduler, tick
from tinybot.trade.proposals import Draft


def config_text(advisors=(), approval="auto", interval="1m", extra="") -> str:
    adv = ", ".join(f'"{a}"' for a in advisors)
    return (
        f"advisors = [{adv}]\n"
        + PAPER_TOML
        + f'[scheduler]\ninterval = "{interval}"\napproval = "{approval}"\n'
        + extra
    )


def subprocess_env(tmp_path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    env["TB_MARKER"] = str(tmp_path / "marker")
    env["TB_RELEASE"] = str(tmp_path / "release")
    return env


def start_run(tmp_path, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tinybot", "run", *args],
        env=subprocess_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear")
        time.sleep(0.02)


def lock_is_free(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# --- the lock across OS processes -----------------------------------------------


def test_two_run_once_at_the_same_moment_one_ticks_the_other_is_refused(tmp_path, write_config):
    cfg = write_config(config_text(["helpers.advisors:gate_advisor"]))
    a, b = start_run(tmp_path, "--once"), start_run(tmp_path, "--once")
    wait_for(tmp_path / "marker")  # one of them is mid-tick, holding the lock
    holder = int((tmp_path / "marker").read_text())
    loser = b if holder == a.pid else a
    winner = a if loser is b else b
    out, err = loser.communicate(timeout=30)
    (tmp_path / "release").write_text("go")
    wout, werr = winner.communicate(timeout=30)

    assert loser.returncode == exitcodes.LOCKED == 75
    assert err.strip() == (
        f"Error: tinybot run is already running: PID {winner.pid} holds the lock {cfg.lock_path}."
        f" Stop it first (Ctrl-C in its terminal, or kill -TERM {winner.pid});"
        " only one scheduler may run per database."
    )
    assert winner.returncode == 0, werr
    assert " ok " in wout and "proposals: #1 helpers.advisors:gate_advisor buy BTC-EUR €6.00" in wout
    conn = db.open_db(cfg.db_path)
    ticks = conn.execute("SELECT status, pid FROM ticks").fetchall()
    assert [(t["status"], t["pid"]) for t in ticks] == [("ok", winner.pid)]
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 1
    assert lock_is_free(cfg.lock_path)


def test_sigterm_mid_tick_finishes_the_step_leaves_a_consistent_db_and_a_free_lock(tmp_path, write_config):
    cfg = write_config(config_text(["helpers.advisors:gate_advisor"]))
    proc = start_run(tmp_path)  # the loop, not --once
    wait_for(tmp_path / "marker")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # give the handler a chance to run while the advisor is still blocked
    (tmp_path / "release").write_text("go")
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert "Stopped (SIGTERM); lock released." in out
    conn = db.open_db(cfg.db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    tick = conn.execute("SELECT * FROM ticks").fetchone()
    assert tick["status"] == "failed" and "interrupted by SIGTERM before approval" in tick["summary"]
    # The advisor's step finished (its proposal was written); nothing after it ran.
    assert [r["status"] for r in conn.execute("SELECT status FROM proposals")] == ["pending"]
    assert conn.execute("SELECT COUNT(*) FROM trade_executions").fetchone()[0] == 0
    hb = conn.execute("SELECT * FROM scheduler_heartbeat").fetchone()
    assert hb["state"] == "stopped" and hb["next_tick_at"] is None
    assert lock_is_free(cfg.lock_path)
    assert cfg.lock_path.read_text() == ""


def test_a_stale_lock_file_from_a_killed_process_does_not_block(tmp_path, write_config):
    cfg = write_config(config_text())
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(cfg.lock_path)!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "os.write(fd, str(os.getpid()).encode())\n"
                "print('locked', flush=True)\n"
                "time.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout.readline().strip() == "locked"
    with pytest.raises(runlock.AlreadyRunning) as e:
        runlock.RunLock(cfg.lock_path).acquire()
    assert e.value.pid == killed.pid
    killed.kill()
    killed.wait()
    assert cfg.lock_path.read_text() == str(killed.pid)  # the file is still there, naming a dead process
    with runlock.RunLock(cfg.lock_path) as lock:
        assert cfg.lock_path.read_text().strip() == str(os.getpid())
    assert lock.fd is None and lock_is_free(cfg.lock_path)


def test_lock_released_when_a_tick_raises_out_of_run(tmp_path, write_config, monkeypatch):
    cfg = write_config(config_text())
    sched = scheduler.Scheduler(cfg, echo=lambda s: None)
    monkeypatch.setattr(sched, "tick", lambda slot: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        sched.run(once=True)
    assert lock_is_free(cfg.lock_path)


# --- slots and ticks (in-process, freezegun) --------------------------------------


def test_slots_are_aligned():
    t = datetime(2026, 11, 27, 20, 7, 42, 123456, tzinfo=timezone.utc)
    assert liveness.slot_of(t, timedelta(minutes=1)) == t.replace(second=0, microsecond=0)
    assert liveness.slot_of(t, timedelta(minutes=5)) == t.replace(minute=5, second=0, microsecond=0)
    assert liveness.next_slot(t, timedelta(minutes=5)) == t.replace(minute=10, second=0, microsecond=0)
    assert liveness.slot_of(t.replace(minute=5, second=0, microsecond=0), timedelta(minutes=5)) == t.replace(
        minute=5, second=0, microsecond=0
    )


def test_a_claimed_slot_is_skipped_even_by_a_new_scheduler(write_config):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    with freeze_time("2026-11-27 20:00:10"):
        first = scheduler.Scheduler(cfg, echo=lambda s: None).tick()
        again = scheduler.Scheduler(cfg, echo=lambda s: None).tick()
    assert first.status == "ok" and again.status == "skipped"
    assert again.line() == "20:00:00 slot already processed; skipped"
    conn = db.open_db(cfg.db_path)
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 1
    assert [r["slot"] for r in conn.execute("SELECT slot FROM ticks")] == ["2026-11-27T20:00:00.000000Z"]


def test_run_once_via_cli_and_a_second_once_in_the_same_slot_skips(write_config):
    from helpers.configs import run_cli

    # a day-long slot: the two real-time runs cannot straddle a slot boundary (a 1m slot could, under load)
    write_config(config_text(["helpers.advisors:buy_btc"], interval="1d"))
    env = {"PYTHONPATH": str(TESTS)}
    r1, r2 = run_cli("run", "--once", env=env), run_cli("run", "--once", env=env)
    assert r1.returncode == 0, r1.stderr
    assert "orders: #1 buy BTC-EUR filled" in r1.stdout
    assert r2.returncode == 0 and "slot already processed; skipped" in r2.stdout


def test_tick_runs_the_whole_path_auto_approves_within_caps_and_blocks_with_reasons(write_config):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lambda s: None)
        r1 = sched.tick()
        frozen.tick(timedelta(minutes=1))
        r2 = sched.tick()  # cooldown 1h: the executor blocks the second buy
    assert r1.status == "ok" and r1.prices == {"BTC-EUR": Decimal("60000"), "ETH-EUR": Decimal("3000")}
    assert r1.orders and r1.orders[0].startswith("#1 buy BTC-EUR filled")
    assert r2.blocks == ["#2 cooldown_active"]
    assert r2.line().startswith(
        "20:01:00 ok | BTC-EUR 60000.00 ETH-EUR 3000.00 | proposals: #2 helpers.advisors:buy_btc"
    )
    conn = db.open_db(cfg.db_path)
    rows = conn.execute("SELECT id, status, decided_by, source, reason FROM proposals ORDER BY id").fetchall()
    assert [(r["status"], r["decided_by"], r["source"]) for r in rows] == [
        ("approved", "auto", "helpers.advisors:buy_btc")
    ] * 2
    assert conn.execute("SELECT state FROM trade_executions ORDER BY id").fetchall()[1][0] == "blocked"
    assert [r["status"] for r in conn.execute("SELECT status FROM ticks ORDER BY id")] == ["ok", "ok"]


def test_auto_approval_leaves_a_proposal_over_the_caps_pending(write_config):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]).replace("max_trade_eur = 10", "max_trade_eur = 4"))
    with freeze_time("2026-11-27 20:00:05"):
        r = scheduler.Scheduler(cfg, echo=lambda s: None).tick()
    assert r.blocks == ["#1 over_max_trade (not auto-approved)"]
    conn = db.open_db(cfg.db_path)
    assert conn.execute("SELECT status FROM proposals").fetchone()[0] == "pending"
    assert conn.execute("SELECT COUNT(*) FROM trade_executions").fetchone()[0] == 0
    d = conn.execute("SELECT stage, reason_code FROM guard_decisions WHERE verdict = 'block'").fetchall()
    assert [tuple(x) for x in d] == [("approval", "over_max_trade")]


def test_manual_approval_never_auto_executes_until_a_person_approves(write_config):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"], approval="manual"))
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lambda s: None)
        r1 = sched.tick()
        for _ in range(3):
            frozen.tick(timedelta(minutes=1))
            sched.tick()
        assert r1.waiting == [1] and "waiting for approval: #1" in r1.line()
        assert conn.execute("SELECT COUNT(*) FROM trade_executions").fetchone()[0] == 0
        assert {r[0] for r in conn.execute("SELECT status FROM proposals")} == {"pending"}
        proposals.approve(conn, 1, by="cli")  # a person: `tinybot approve 1`
        frozen.tick(timedelta(minutes=1))
        r = sched.tick()
    assert r.orders and r.orders[0].startswith("#1 buy BTC-EUR filled")
    assert conn.execute("SELECT proposal_id FROM trade_executions").fetchall()[0][0] == 1


def test_expired_proposals_are_swept_and_never_executed(write_config):
    cfg = write_config(config_text(approval="manual"))
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        pid = proposals.create(
            conn, Draft("BTC-EUR", "buy", Decimal("5"), None, "x"), source="cli", ttl=timedelta(minutes=2), approve=True
        )
        frozen.tick(timedelta(minutes=2))
        r = scheduler.Scheduler(cfg, echo=lambda s: None).tick()
    assert "expired: #1" in r.line() and not r.orders
    assert proposals.get(conn, pid)["status"] == "expired"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("helpers.advisors:garbage", "returned str, not a list of Draft; output skipped"),
        ("helpers.advisors:raises", "raised RuntimeError: advisor bug"),
        ("helpers.advisors:nope", "advisor 'helpers.advisors:nope': helpers.advisors has no function 'nope'"),
        ("no_such_module_xyz:advise", "advisor 'no_such_module_xyz:advise': cannot import no_such_module_xyz"),
    ],
)
def test_advisor_errors_are_logged_and_skipped_and_the_tick_goes_on(write_config, name, expected):
    cfg = write_config(config_text([name, "helpers.advisors:buy_btc"]))
    with freeze_time("2026-11-27 20:00:05"):
        r = scheduler.Scheduler(cfg, echo=lambda s: None).tick()
    assert r.status == "ok"
    assert any(expected in e for e in r.errors), r.errors
    conn = db.open_db(cfg.db_path)
    assert [x[0] for x in conn.execute("SELECT source FROM proposals")] == ["helpers.advisors:buy_btc"]


def test_invalid_drafts_are_skipped_one_by_one(write_config):
    cfg = write_config(config_text(["helpers.advisors:half_bad", "helpers.advisors:sneaky"]))
    with freeze_time("2026-11-27 20:00:05"):
        r = scheduler.Scheduler(cfg, echo=lambda s: None).tick()
    assert r.status == "ok"
    assert r.errors == [
        "advisor helpers.advisors:half_bad: item 1: side: must be 'buy' or 'sell', not 'hold'; skipped",
        "advisor helpers.advisors:half_bad: item 2 is dict, not a Draft; skipped",
        "advisor helpers.advisors:half_bad: item 3: reason: an advisor must say why; skipped",
    ]
    assert len(r.proposals) == 1


def test_an_exception_in_a_tick_is_recorded_and_the_loop_goes_on(write_config, monkeypatch):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    from tinybot.trade import reconcile

    real = reconcile.reconcile
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("boom")
        return real(*a, **k)

    monkeypatch.setattr(reconcile, "reconcile", flaky)
    lines = []
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lines.append)
        code = sched.run(
            until=clock.now() + timedelta(minutes=2, seconds=30), sleep=lambda s: frozen.tick(timedelta(seconds=s))
        )
    assert code == 0
    conn = db.open_db(cfg.db_path)
    ticks = conn.execute("SELECT slot, status, summary FROM ticks ORDER BY slot").fetchall()
    assert [(t["slot"][11:16], t["status"]) for t in ticks] == [("20:00", "failed"), ("20:01", "ok"), ("20:02", "ok")]
    assert "reconcile: ValueError: boom" in ticks[0]["summary"]
    ev = conn.execute("SELECT kind, severity FROM events WHERE kind = 'tick_failed'").fetchall()
    assert [tuple(e) for e in ev] == [("tick_failed", "error")]
    assert "Traceback" in cfg.log_path.read_text()
    assert lines[0].startswith("20:00:00 failed") and lines[1].startswith("20:01:00 ok")


def sim_paper_text(url: str, advisors=(), extra="") -> str:
    """Paper mode on the simulator's market data (public endpoints): a real exchange that can go down."""
    adv = ", ".join(f'"{a}"' for a in advisors)
    text = PAPER_TOML.replace('prices = { "BTC-EUR" = "60000", "ETH-EUR" = "3000" }\n', "")
    return (
        f"advisors = [{adv}]\n"
        + text
        + f'[exchange]\nurl = "{url}"\ntimeout = "700ms"\n'
        + '[scheduler]\ninterval = "1m"\n'
        + extra
    )


def test_exchange_outage_backs_off(write_config, sim):
    cfg = write_config(sim_paper_text(sim.url))
    sim.sim.add_fault("html_5xx", on="any", count=None)  # every request: 502 with an HTML body
    lines = []
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lines.append)
        sched.run(until=clock.now() + timedelta(minutes=10), sleep=lambda s: frozen.tick(timedelta(seconds=s)))
    conn = db.open_db(cfg.db_path)
    slots = [r[0][11:16] for r in conn.execute("SELECT slot FROM ticks ORDER BY slot")]
    # backoff 1m, 2m, 4m: 20:00 → 20:01 → 20:03 → 20:07 (not every minute)
    assert slots == ["20:00", "20:01", "20:03", "20:07"]
    assert "backing off 4 min" in "\n".join(lines)


def test_liveness(write_config, tmp_path):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    conn = db.open_db(cfg.db_path)
    assert liveness.liveness(conn, cfg)["state"] == "never_run"
    with freeze_time("2026-11-27 20:00:05"):
        scheduler.Scheduler(cfg, conn, echo=lambda s: None).run(once=True)
        live = liveness.liveness(conn, cfg)
    assert live["alive"] is False and live["state"] == "stopped" and live["last_tick"]["status"] == "ok"
    # while a scheduler holds the lock, it is alive and says when it ticks next
    with freeze_time("2026-11-27 20:00:30"):
        with runlock.RunLock(cfg.lock_path):
            beat.heartbeat(
                conn,
                cfg,
                "running",
                started_at=clock.now_iso(),
                next_tick=datetime(2026, 11, 27, 20, 1, tzinfo=timezone.utc),
            )
            live = liveness.liveness(conn, cfg)
        assert live["alive"] is True and live["pid"] == os.getpid() and live["state"] == "running"
        assert live["next_tick_at"] == "2026-11-27T20:01:00.000000Z" and live["stale"] is False
        # the process "died" without a clean stop: heartbeat still says running, nobody holds the lock
        dead = liveness.liveness(conn, cfg)
    assert dead["alive"] is False and dead["state"] == "died"


def test_a_tick_that_overruns_its_slot_runs_the_current_slot_late_instead_of_skipping_it(write_config):
    cfg = write_config(config_text())
    with freeze_time("2026-11-27 20:00:05") as frozen:
        slow = lambda slot: frozen.tick(timedelta(seconds=70)) if slot.minute == 0 else None  # noqa: E731
        sched = scheduler.Scheduler(cfg, echo=lambda s: None, before_tick=slow)
        sched.run(
            until=datetime(2026, 11, 27, 20, 2, 30, tzinfo=timezone.utc),
            sleep=lambda s: frozen.tick(timedelta(seconds=s)),
        )
    conn = db.open_db(cfg.db_path)
    ticks = conn.execute("SELECT slot, started_at FROM ticks ORDER BY slot").fetchall()
    # 20:00 ran until 20:01:15; 20:01 ran at once (late), then 20:02 on time
    assert [(t["slot"][11:19], t["started_at"][11:19]) for t in ticks] == [
        ("20:00:00", "20:00:05"),
        ("20:01:00", "20:01:15"),
        ("20:02:00", "20:02:00"),
    ]


def alerts(conn):
    return [(r["kind"], r["severity"]) for r in conn.execute("SELECT kind, severity FROM alert_log ORDER BY id")]


def test_an_outage_pauses_trading_alerts_once_and_resumes_by_itself(write_config, sim):
    """Outages are no reason to distrust the bot: no kill switch, one alert when it starts, one when it ends."""
    from tinybot.trade import killswitch

    cfg = write_config(
        sim_paper_text(sim.url, ["helpers.advisors:buy_btc"], extra="[safety]\nmax_consecutive_errors = 2\n")
    )
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        assert sched.tick().status == "ok"
        sim.sim.add_fault("html_5xx", on="any", count=None)
        down = []
        for _ in range(6):  # three times max_consecutive_errors
            frozen.tick(timedelta(minutes=1))
            down.append(sched.tick())
        assert all(r.status == "failed" and r.outage and r.exit_code == 5 for r in down)
        assert killswitch.state(conn)["trading_enabled"] == 1
        assert outage.since(conn)
        assert alerts(conn).count(("exchange_outage", "warning")) == 1
        assert not any(k == "tick_failed" for k, _ in alerts(conn))  # not one alert per tick
        sim.sim.clear_faults()
        frozen.tick(timedelta(minutes=1))
        back = sched.tick()
    assert back.status == "ok" and back.exit_code == 0
    assert any(n.startswith("exchange back after") for n in back.notes)
    assert not any("trading paused" in n for n in back.notes)
    assert outage.since(conn) is None and killswitch.state(conn)["trading_enabled"] == 1
    assert alerts(conn).count(("exchange_outage", "warning")) == 1
    assert alerts(conn).count(("exchange_back", "info")) == 1


def test_after_an_outage_with_the_kill_switch_on_nothing_says_trading_resumes(write_config, sim, caplog):
    """Issue 20 item 9: the owner killed trading during an outage; when the exchange is back, the tick line,
    the log and the alert say trading stays off and why (they said "trading resumes")."""
    import logging

    from tinybot.trade import killswitch

    cfg = write_config(sim_paper_text(sim.url, ["helpers.advisors:buy_btc"]))
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 20:00:05") as frozen, caplog.at_level(logging.INFO, logger="tinybot"):
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        sim.sim.add_fault("html_5xx", on="any", count=None)
        assert sched.tick().outage
        killswitch.set_enabled(conn, False, "owner: looking at the books", by="cli")
        frozen.tick(timedelta(minutes=1))
        assert sched.tick().outage
        sim.sim.clear_faults()
        frozen.tick(timedelta(minutes=1))
        back = sched.tick()
    said = "trading stays off: the kill switch is on (owner: looking at the books)"
    assert back.notes == [f"exchange back after 2 min; {said}"] and not back.orders
    ((text,),) = conn.execute("SELECT text FROM alert_log WHERE kind = 'exchange_back'").fetchall()
    assert said in text and "resumes" not in text
    over = [r.getMessage() for r in caplog.records if "is over" in r.getMessage()]
    assert len(over) == 1 and said in over[0] and "resumes" not in over[0]
    assert outage.since(conn) is None and killswitch.state(conn)["trading_enabled"] == 0


def test_trading_stays_paused_until_reconcile_is_clean(write_config, sim_factory, monkeypatch):
    """After an outage the market data answers again, but order lookups still fail: nothing is sent yet."""
    from helpers.sim import READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, shared_accounts
    from helpers.configs import live_text

    from tinybot.trade import killswitch

    sim = sim_factory(accounts=shared_accounts())
    for name, value in (
        ("TINYBOT_TRADE_KEY", TRADE_KEY),
        ("TINYBOT_TRADE_SECRET", TRADE_SECRET),
        ("TINYBOT_READ_KEY", READ_KEY),
        ("TINYBOT_READ_SECRET", READ_SECRET),
    ):
        monkeypatch.setenv(name, value)
    cfg = write_config('advisors = ["helpers.advisors:buy_btc"]\n' + live_text(sim.url))
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        sim.sim.add_fault("html_5xx", on="any", count=None)
        assert sched.tick().outage
        sim.sim.clear_faults()
        with db.transaction(conn):  # an execution in doubt, from before the outage
            pid = conn.execute(
                "INSERT INTO proposals (market, side, amount_quote, source, status, created_at,"
                " expires_at) VALUES ('BTC-EUR', 'buy', '5', 'cli', 'approved', ?, ?)",
                (clock.now_iso(), clock.to_iso(clock.now() + timedelta(hours=1))),
            ).lastrowid
            conn.execute(
                "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side,"
                " amount_quote, state, claimed_at, submitting_at, updated_at, access_window_ms)"
                " VALUES (?, 'f00dfeed-0000-4000-8000-0000000000aa', 'bitvavo', 'BTC-EUR', 'buy', '5',"
                " 'unknown', ?, ?, ?, 10000)",
                (pid, clock.now_iso(), clock.now_iso(), clock.now_iso()),
            )
        for on in ("get_order", "orders"):  # its lookups still fail
            sim.sim.add_fault("html_5xx", on=on, count=None)
        frozen.tick(timedelta(minutes=1))
        still = sched.tick()
        sent_meanwhile = [o for o in sim.sim.orders() if o.get("clientOrderId")]
        sim.sim.clear_faults()
        frozen.tick(timedelta(minutes=1))
        clean = sched.tick()
    assert any("trading paused" in n for n in still.notes) and still.proposals and not still.orders
    assert sent_meanwhile == []
    assert killswitch.state(conn)["trading_enabled"] == 1
    assert any(n.startswith("exchange back after") for n in clean.notes)
    assert not any("trading paused" in n for n in clean.notes) and clean.orders  # the waiting buy goes out


def test_failed_ticks_other_than_outages_trip_the_kill_switch_and_are_alerted(write_config, monkeypatch):
    cfg = write_config(config_text(extra="[safety]\nmax_consecutive_errors = 2\n"))
    from tinybot.trade import killswitch, reconcile

    monkeypatch.setattr(reconcile, "reconcile", lambda *a, **k: (_ for _ in ()).throw(ValueError("bug")))
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lambda s: None)
        r1 = sched.tick()
        frozen.tick(timedelta(minutes=1))
        r2 = sched.tick()
    conn = db.open_db(cfg.db_path)
    assert r1.status == "failed" and not r1.outage and r1.exit_code == 1
    assert killswitch.state(conn)["trading_enabled"] == 0
    assert killswitch.state(conn)["changed_by"] == "auto"
    assert "not because the exchange was unreachable" in killswitch.state(conn)["reason"]
    assert any("KILL SWITCH turned trading OFF" in e for e in r2.errors)
    kinds = [k for k, _ in alerts(conn)]
    assert kinds[0] == "tick_failed" and "kill_switch" in kinds


def test_each_tick_prunes_audit_rows_older_than_keep_days(tmp_path, write_config):
    """The retention rule runs once a tick: old ticks go, the money record stays."""
    from freezegun import freeze_time

    from tinybot.store import db as tdb
    from tinybot.loop.scheduler import Scheduler

    cfg = write_config(PAPER_TOML.replace("[risk]", "[scheduler]\nkeep_days = 1\n[risk]"))
    conn = tdb.open_db(cfg.db_path)
    with freeze_time("2026-11-01 12:00:00") as frozen:
        Scheduler(cfg, conn, echo=lambda s: None).tick()
        frozen.move_to("2026-11-01 12:01:00")
        Scheduler(cfg, conn, echo=lambda s: None).tick()
        assert conn.execute("SELECT COUNT(*) FROM ticks").fetchone()[0] == 2
        frozen.move_to("2026-11-05 12:00:00")
        Scheduler(cfg, conn, echo=lambda s: None).tick()
    slots = [r[0] for r in conn.execute("SELECT slot FROM ticks ORDER BY slot")]
    assert slots == ["2026-11-05T12:00:00.000000Z"]  # the two old ones pruned (the newest is always kept)


def test_surprise_orders_are_looked_for_at_start(write_config, monkeypatch):
    from tinybot.trade import reconcile

    cfg = write_config(config_text())
    scans = []
    real = reconcile._surprises
    monkeypatch.setattr(reconcile, "_surprises", lambda *a, **k: scans.append(1) or real(*a, **k))
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lambda s: None)
        conn = db.open_db(cfg.db_path)
        with db.transaction(conn):  # an order on the exchange that tinybot has no execution for
            conn.execute(
                "INSERT INTO paper_orders (order_id, client_order_id, market, side, order_type, status,"
                " amount_quote, filled_amount, filled_amount_quote, fee_paid, created_ms)"
                " VALUES ('o1', 'f00dfeed-0000-4000-8000-000000000001', 'BTC-EUR', 'buy', 'market',"
                " 'filled', '5', '0', '0', '0', ?)",
                (clock.now_ms(),),
            )
        reports = []
        for _ in range(6):
            reports.append(sched.tick())
            frozen.tick(timedelta(minutes=1))
    assert len(scans) == 2  # tick 1, and tick 2 after the first balances read (tests/loop/test_tick_cost.py: the rest)
    assert any("SURPRISE" in e for e in reports[0].errors)
    assert conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'surprise_order'").fetchone()[0] == 1


# --- the loop survives, and never dies silently --------------------------------------


def hold_write_lock(db_path: Path, seconds: float) -> subprocess.Popen:
    """A second OS process that takes the write lock (BEGIN IMMEDIATE) and holds it, like an open sqlite3 shell."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time\n"
                f"c = sqlite3.connect({str(db_path)!r}, isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE')\n"
                "print('locked', flush=True)\n"
                f"time.sleep({seconds})\n"
                "c.execute('COMMIT')\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_the_loop_survives_a_write_lock_held_past_the_busy_timeout(write_config):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"], interval="1d"))
    conn = db.open_db(cfg.db_path)
    conn.execute("PRAGMA busy_timeout = 100")  # as if 30 s had passed: the holder outlasts our busy timeout
    holder = hold_write_lock(cfg.db_path, 1.5)
    lines = []
    try:
        code = scheduler.Scheduler(cfg, conn, echo=lines.append).run(once=True)
    finally:
        holder.wait(timeout=10)
    assert code == 0
    assert any("is locked by another process" in line and "retrying with backoff" in line for line in lines)
    assert conn.execute("SELECT status FROM ticks").fetchone()[0] == "ok"
    assert (
        "database still locked" in cfg.log_path.read_text()
        or "is locked by another process" in cfg.log_path.read_text()
    )


def test_a_crash_out_of_the_loop_is_logged_recorded_as_died_and_alerted(write_config, monkeypatch):
    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
    monkeypatch.setattr(scheduler, "next_slot", lambda *a: (_ for _ in ()).throw(RuntimeError("loop bug")))
    with freeze_time("2026-11-27 20:00:05"):
        code = sched.run()
        live = liveness.liveness(conn, cfg)
    assert code == 1
    log_text = cfg.log_path.read_text()
    assert "scheduler DIED: RuntimeError: loop bug" in log_text and "Traceback" in log_text
    assert "scheduler stopped (done)" not in log_text
    assert live["state"] == "died" and "loop bug" in live["detail"]
    assert ("bot_stopped", "error") in alerts(conn)
    assert lock_is_free(cfg.lock_path)


def test_every_stop_is_alerted_and_a_run_killed_without_a_word_is_alerted_by_the_next(tmp_path, write_config):
    cfg = write_config(config_text(["helpers.advisors:gate_advisor"], interval="1d"))
    proc = start_run(tmp_path)
    wait_for(tmp_path / "marker")
    proc.kill()  # SIGKILL: no finally, no alert from it
    proc.wait(timeout=10)
    conn = db.open_db(cfg.db_path)
    assert liveness.liveness(conn, cfg)["state"] == "died"
    (tmp_path / "marker").unlink()
    (tmp_path / "release").write_text("go")
    proc = start_run(tmp_path)  # the loop again; the next slot is a day away
    wait_for(cfg.lock_path)
    deadline = time.monotonic() + 20
    while (
        "running" != (conn.execute("SELECT state FROM scheduler_heartbeat").fetchone()[0])
        or conn.execute("SELECT detail FROM scheduler_heartbeat").fetchone()[0] == "starting"
    ):
        assert time.monotonic() < deadline, "the second run did not start its loop"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert alerts(conn).count(("bot_died", "error")) == 1
    assert ("bot_stopped", "warning") in alerts(conn)
    text = conn.execute("SELECT text FROM alert_log WHERE kind = 'bot_stopped'").fetchone()[0]
    assert "stopped (SIGTERM)" in text


def test_run_once_exits_unreachable_when_the_exchange_is_down(write_config, sim):
    from helpers.configs import run_cli

    write_config(sim_paper_text(sim.url))
    sim.sim.add_fault("html_5xx", on="any", count=None)
    r = run_cli("run", "--once")
    assert r.returncode == 5, (r.stdout, r.stderr)  # exitcodes.UNREACHABLE
    assert " failed " in r.stdout and "exchange unreachable" in r.stdout
    sim.sim.clear_faults()
    r = run_cli("run", "--once")  # the exchange is back: 0 (the slot ran, or was already done)
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_a_cached_closed_candle_that_the_exchange_corrects_is_not_trusted_forever(write_config, sim_factory):
    """Closed candles are cached, but at most tick.CANDLE_CACHE_MAX_AGE: a correction gets through."""
    sim = sim_factory(interval="1h")
    cfg = write_config(
        sim_paper_text(sim.url, ["helpers.advisors:record_candles"], extra='[rules]\ncandle_interval = "1h"\n')
    )
    SEEN_CANDLES.clear()
    with freeze_time("2026-11-27 20:10:05") as frozen:
        sched = scheduler.Scheduler(cfg, echo=lambda s: None)
        sched.tick()
        newest_closed = max(SEEN_CANDLES[-1])
        # Bitvavo corrects the newest closed candle after we read it
        corrected = sim.sim.markets["BTC-EUR"].candles[-2]
        assert sim.sim.candles("BTC-EUR")[-2][0] == newest_closed
        corrected[3] = Decimal("12345")
        frozen.tick(timedelta(minutes=1))
        sched.tick()
        assert SEEN_CANDLES[-1][newest_closed] != Decimal("12345")  # still the cached candle
        frozen.move_to(datetime(2026, 11, 27, 20, 10, 5, tzinfo=timezone.utc) + tick.CANDLE_CACHE_MAX_AGE)
        sched.tick()
    assert SEEN_CANDLES[-1][newest_closed] == Decimal("12345")


# --- SD-card wear (docs/PERFORMANCE.md): what an idle loop writes ----------------------------

UTC = timezone.utc


def test_an_idle_loop_writes_only_at_its_fifteen_minute_beats_and_loses_no_tick_row(write_config):
    """Between beats an idle tick changes nothing (no tick row, no heartbeat, no unchanged cursor or balance
    rewritten, no prune): the WAL does not grow.  Every slot still gets its row, written with the beat."""
    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    wal = Path(f"{cfg.db_path}-wal")
    samples = []  # (now, total_changes, WAL bytes) each time the loop sleeps

    with freeze_time("2026-11-27 20:00:05") as frozen:

        def sleep(s):
            samples.append((clock.now(), conn.total_changes, wal.stat().st_size))
            frozen.tick(timedelta(seconds=s))

        scheduler.Scheduler(cfg, conn, echo=lambda s: None).run(
            until=datetime(2026, 11, 27, 20, 37, 30, tzinfo=UTC), sleep=sleep
        )
    changed = sorted({f"{b[0]:%H:%M}" for a, b in zip(samples, samples[1:], strict=False) if b[1] != a[1]})
    grew = sorted({f"{b[0]:%H:%M}" for a, b in zip(samples, samples[1:], strict=False) if b[2] != a[2]})
    assert changed == ["20:15", "20:30"], changed
    assert grew == ["20:15", "20:30"], grew
    rows = conn.execute("SELECT slot, status FROM ticks ORDER BY slot").fetchall()
    assert [r["slot"][11:16] for r in rows] == [f"20:{m:02d}" for m in range(38)]  # the last ones at the stop
    assert {r["status"] for r in rows} == {"ok"}
    assert conn.execute("SELECT state FROM scheduler_heartbeat").fetchone()["state"] == "stopped"


def test_a_loop_tick_claims_its_slot_before_its_first_proposal_and_a_restart_skips_the_slot(write_config, monkeypatch):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    conn = db.open_db(cfg.db_path)
    claimed_at_create = []
    real_create = proposals.create

    def create(c, *a, **kw):
        row = c.execute("SELECT status FROM ticks WHERE slot = '2026-11-27T20:00:00.000000Z'").fetchone()
        claimed_at_create.append(row["status"] if row else None)
        return real_create(c, *a, **kw)

    monkeypatch.setattr(proposals, "create", create)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        scheduler.Scheduler(cfg, conn, echo=lambda s: None).run(
            until=datetime(2026, 11, 27, 20, 0, 20, tzinfo=UTC), sleep=lambda s: frozen.tick(timedelta(seconds=s))
        )
        assert claimed_at_create == ["running"]  # durable before the proposal exists
        lines = []
        scheduler.Scheduler(cfg, conn, echo=lines.append).run(
            until=datetime(2026, 11, 27, 20, 0, 40, tzinfo=UTC), sleep=lambda s: frozen.tick(timedelta(seconds=s))
        )
    assert any("slot already processed; skipped" in x for x in lines), lines
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 1


def test_a_busy_loop_tick_is_recorded_with_the_heartbeat_in_one_commit(write_config, monkeypatch):
    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    conn = db.open_db(cfg.db_path)
    commits = []
    real = db.transaction

    def counting(c):
        commits.append(sys._getframe(1).f_code.co_name)
        return real(c)

    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)

        def sleep(s):
            monkeypatch.setattr(db, "transaction", real)
            frozen.tick(timedelta(seconds=s))

        def before_tick(slot):
            monkeypatch.setattr(db, "transaction", counting)

        sched.before_tick = before_tick
        sched.run(until=datetime(2026, 11, 27, 20, 0, 20, tzinfo=UTC), sleep=sleep)
    assert "finish_tick" not in commits and commits.count("heartbeat") == 1, commits
    row = conn.execute("SELECT status, summary FROM ticks").fetchone()
    assert row["status"] == "ok" and "orders: #1 buy BTC-EUR filled" in row["summary"]


def test_retention_runs_at_most_every_six_hours(write_config):
    cfg = write_config(PAPER_TOML.replace("[risk]", "[scheduler]\nkeep_days = 1\n[risk]"))
    conn = db.open_db(cfg.db_path)

    def old_row(slot):
        with db.transaction(conn):
            conn.execute(
                "INSERT INTO ticks (slot, started_at, finished_at, status, pid, summary) VALUES (?, ?, ?, 'ok', 1, '')",
                (slot, slot, slot),
            )

    old_row("2026-10-01T00:00:00.000000Z")
    with freeze_time("2026-11-01 12:00:00") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        sched.tick()
        old_row("2026-10-02T00:00:00.000000Z")
        frozen.move_to("2026-11-01 17:59:00")
        sched.tick()
        slots = [r[0][:10] for r in conn.execute("SELECT slot FROM ticks ORDER BY slot")]
        assert slots[0] == "2026-10-02"  # not pruned yet: the last prune was 5 h 59 min ago
        frozen.move_to("2026-11-01 18:00:00")
        sched.tick()
    slots = [r[0][:10] for r in conn.execute("SELECT slot FROM ticks ORDER BY slot")]
    assert slots == ["2026-11-01"] * 3


def test_set_state_of_an_unchanged_value_writes_nothing(write_config):
    from tinybot.owner.notify import get_state, set_state

    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    set_state(conn, "some.cursor", "41")
    wal = Path(f"{cfg.db_path}-wal")
    before, size = conn.total_changes, wal.stat().st_size
    set_state(conn, "some.cursor", "41")
    assert (conn.total_changes, wal.stat().st_size) == (before, size)
    set_state(conn, "some.cursor", "42")
    assert conn.total_changes == before + 1 and get_state(conn, "some.cursor") == "42"


def test_status_is_stale_only_after_the_heartbeats_own_cadence(write_config):
    """After idle ticks the heartbeat is rewritten every 15 minutes: 4 minutes of quiet is not stale (it was
    under the old 3-minute rule), 18 minutes is; the next tick shown is never in the past."""
    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    assert liveness.beat_every(timedelta(minutes=1)) == timedelta(minutes=15)
    assert liveness.beat_every(timedelta(seconds=1)) == timedelta(seconds=15)
    assert liveness.beat_every(timedelta(hours=1)) == timedelta(hours=1)
    assert liveness.stale_after(timedelta(minutes=1)) == timedelta(minutes=18)
    with runlock.RunLock(cfg.lock_path):
        with freeze_time("2026-11-27 20:00:30") as frozen:
            beat.heartbeat(
                conn, cfg, "running", started_at=clock.now_iso(), next_tick=datetime(2026, 11, 27, 20, 1, tzinfo=UTC)
            )
            frozen.move_to("2026-11-27 20:04:40")
            live = liveness.liveness(conn, cfg)
            assert live["stale"] is False and live["next_tick_at"] == "2026-11-27T20:05:00.000000Z"
            frozen.move_to("2026-11-27 20:18:20")
            assert liveness.liveness(conn, cfg)["stale"] is False
            frozen.move_to("2026-11-27 20:18:40")
            assert liveness.liveness(conn, cfg)["stale"] is True


def test_idle_ticks_log_at_debug_with_one_info_line_an_hour(write_config, caplog):
    import logging

    cfg = write_config(config_text())
    with freeze_time("2026-11-27 20:00:05") as frozen, caplog.at_level(logging.INFO, logger="tinybot"):
        scheduler.Scheduler(cfg, echo=lambda s: None).run(
            until=datetime(2026, 11, 27, 21, 1, 30, tzinfo=UTC), sleep=lambda s: frozen.tick(timedelta(seconds=s))
        )
    per_tick = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick ")]
    hourly = [r.getMessage() for r in caplog.records if "idle ticks since" in r.getMessage()]
    assert per_tick == []
    assert hourly == ["62 idle ticks since 2026-11-27T20:00:05.000000Z (nothing to do; each at DEBUG)"]


# --- the loop's collaborators, each alone (no Scheduler) ----------------------------------


def test_the_outage_tracker_alone_backs_off_doubling_up_to_fifteen_minutes_and_alerts_once_each_way(write_config):
    from tinybot.owner.notify import Notifier

    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    lines = []
    tracker = outage.Outage(cfg, notifier=Notifier(cfg, conn), echo=lines.append)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        waits = [tracker.backoff(True) - clock.now() for _ in range(6)]
        assert [w // timedelta(minutes=1) for w in waits] == [1, 2, 4, 8, 15, 15]
        assert tracker.backoff(False) is None and tracker.failures == 0
        assert tracker.detail(conn) == "" and tracker.end(conn) is None  # no outage: nothing to end
        tracker.begin(conn, ["ticker: timeout"])
        tracker.begin(conn, ["ticker: timeout"])  # the next outage tick: no second alert
        tracker.backoff(True)
        assert outage.since(conn) == "2026-11-27T20:00:05.000000Z"
        assert tracker.detail(conn) == (
            "exchange unreachable since 20:00:05 UTC: trading paused; 1 outage tick(s) in a row"
        )
        frozen.tick(timedelta(minutes=3))
        note = tracker.end(conn)
    assert note.startswith("exchange back after 3 min") and outage.since(conn) is None
    assert alerts(conn) == [("exchange_outage", "warning"), ("exchange_back", "info")]
    assert "backing off 15 min" in lines[4]


def test_an_outage_that_starts_with_the_kill_switch_on_does_not_promise_to_resume(write_config):
    from tinybot.trade import killswitch
    from tinybot.owner.notify import Notifier

    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    killswitch.set_enabled(conn, False, "auto: 5 ticks in a row failed", by="auto")
    tracker = outage.Outage(cfg, notifier=Notifier(cfg, conn), echo=lambda s: None)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        tracker.begin(conn, ["markets: timeout"])
        frozen.tick(timedelta(minutes=5))
        note = tracker.end(conn)
    texts = dict(conn.execute("SELECT kind, text FROM alert_log WHERE kind LIKE 'exchange_%'").fetchall())
    said = "the kill switch is on (auto: 5 ticks in a row failed)"
    assert texts["exchange_outage"] == (
        "exchange unreachable since 20:00:05 UTC: trading is paused (nothing is sent) and stays off"
        f" after it answers again: {said}. Last error: markets: timeout"
    )
    assert "resume" not in texts["exchange_outage"] and f"trading stays off: {said}" in texts["exchange_back"]
    assert note == f"exchange back after 5 min; trading stays off: {said}"


def test_the_beat_alone_keeps_idle_rows_for_its_next_beat_and_writes_a_busy_tick_with_the_heartbeat(write_config):
    from tinybot.loop.stop import Stop

    cfg = write_config(config_text())
    conn = db.open_db(cfg.db_path)
    b = beat.Beat(cfg, stop=Stop(), echo=lambda s: None, started_at="2026-11-27T20:00:00.000000Z")
    b.lazy = True  # as in the loop
    with freeze_time("2026-11-27 20:00:05") as frozen:
        b.beat(conn, "running", None, "")  # the first beat of a run is always written
        for minute in range(1, 4):  # three idle ticks
            frozen.tick(timedelta(minutes=1))
            before = conn.total_changes
            rec = b.open(conn, liveness.slot_of(clock.now(), timedelta(minutes=1)))
            b.close(conn, rec, "ok", f"20:0{minute}:00 ok | proposals: none", idle=True)
            b.beat(conn, "running", None, "")
            assert conn.total_changes == before  # nothing written: the rows wait for the next beat
        frozen.tick(timedelta(minutes=1))
        rec = b.open(conn, liveness.slot_of(clock.now(), timedelta(minutes=1)))
        b.claim(conn, rec)  # before its first proposal
        assert conn.execute("SELECT status FROM ticks WHERE id = ?", (rec.tick_id,)).fetchone()[0] == "running"
        b.close(conn, rec, "ok", "20:04:00 ok | proposals: #1 ...", idle=False)
        b.beat(conn, "running", None, "")  # a busy tick: written at once, the idle rows with it
    rows = conn.execute("SELECT slot, status, summary FROM ticks ORDER BY slot").fetchall()
    assert [(r["slot"][11:16], r["status"]) for r in rows] == [(f"20:0{m}", "ok") for m in range(1, 5)]
    assert rows[-1]["summary"] == "20:04:00 ok | proposals: #1 ..."
    assert conn.execute("SELECT beat_at FROM scheduler_heartbeat").fetchone()[0] == "2026-11-27T20:04:05.000000Z"


def test_a_tick_alone_runs_its_steps_and_stops_at_a_checkpoint(write_config):
    from tinybot.loop.stop import Stop
    from tinybot.owner.notify import Notifier

    cfg = write_config(config_text(["helpers.advisors:buy_btc"]))
    conn = db.open_db(cfg.db_path)
    stop, notifier = Stop(), Notifier(cfg, conn)
    b = beat.Beat(cfg, stop=stop, echo=lambda s: None, started_at="2026-11-27T20:00:00.000000Z")
    t = tick.Tick(
        cfg, stop=stop, beat=b, outage=outage.Outage(cfg, notifier=notifier, echo=lambda s: None), notifier=notifier
    )
    with freeze_time("2026-11-27 20:00:05"):
        rec = b.open(conn, liveness.slot_of(clock.now(), timedelta(minutes=1)))  # claimed: not lazy
        report = t.run(conn, rec)
        assert report.status == "ok" and report.orders[0].startswith("#1 buy BTC-EUR filled")
        stop.request("SIGTERM")
        rec = b.open(conn, liveness.slot_of(clock.now(), timedelta(minutes=1)) + timedelta(minutes=1))
        stopped = t.run(conn, rec)
    assert stopped.status == "interrupted" and stopped.notes == ["interrupted by SIGTERM before reconcile"]
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 1


def test_the_loops_collaborators_never_import_the_loop_and_the_package_imports_nothing():
    """The scheduler owns its collaborators; none of them imports it back (they get what they need passed
    in), and `import tinybot.loop.heartbeat` (doctor) loads no other part of the loop."""
    import ast

    loop_dir = Path(scheduler.__file__).parent
    for path in sorted(loop_dir.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tinybot.loop"):
                imported.add(node.module.rsplit(".", 1)[-1])
        if path.name == "__init__.py":
            assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], path.name
        elif path.name != "scheduler.py":
            assert "scheduler" not in imported, f"{path.name} imports the scheduler back"
