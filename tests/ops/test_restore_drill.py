"""The README's rollback drill in live mode against the simulator (issues 11 and 20).

A backup can be older than a send, and a restore rolls back the database,
never the world.  Followed literally — every `tinybot` line a real process,
`systemctl stop/start` a real `tinybot run` stopped and started — the drill
must end with one order per proposal, a ledger equal to the exchange, and a
kill switch that still stops the running bot; whether or not Bitvavo finds a
*filled* order by its clientOrderId (the simulator's
``find_closed_by_client_id`` off is the hard case: Bitvavo keeps a
clientOrderId unique only among open orders, so a resend would be accepted).
"""

from __future__ import annotations

import gc
import re
import shlex
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import ROOT
from tinybot.store import backup, db
from tinybot.base import config
from tinybot.trade import executor, killswitch, proposals
from tinybot.cli import cli
from tinybot.exchange.base import ExchangeError
from tinybot.trade.proposals import Draft

from helpers.configs import run_cli
from helpers.sim import OPERATOR_ID, TRADE_KEY, shared_accounts, use_keys

README = ROOT / "README.md"
DRILL = ["kill", "backup", "backup", "backup", "reconcile", "doctor", "status", "resume"]
CONFIG = """mode = "live"
advisors = []
[risk]
allowlist = ["BTC-EUR", "ETH-EUR"]
max_trade_eur = 10
max_daily_eur = 50
max_exposure_eur = 50
cooldown = "0s"
anti_flip = "0s"
proposal_ttl = "30m"
[scheduler]
interval = "{interval}"
[exchange]
operator_id = {op}
url = "{url}"
timeout = "2s"
access_window = "10s"
reconcile_grace = "5s"
"""


def drill_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- rollback:begin -->\n```sh\n(.*?)```\n<!-- rollback:end -->", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def tinybot(*args):
    gc.collect()  # CliRunner keeps a finished command's frames (and their connections) until collected
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


class Service:
    """`sudo systemctl start/stop tinybot`: a real `tinybot run` process."""

    def __init__(self, cfg):
        self.cfg, self.proc = cfg, None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinybot", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: killswitch_reaches(self.cfg), self, "tinybot run did not take its lock")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
            assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()
        self.proc = None


def killswitch_reaches(cfg) -> bool:
    from tinybot.base import runlock

    return bool(runlock.live_holder(cfg.lock_path))


def wait_for(ok, service, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds  # a bound for a stuck bot, not a measurement
    while not ok():
        if service is not None and service.proc is not None:
            assert service.proc.poll() is None, service.proc.stderr.read()
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def run_drill(the_backup: Path, *, real: bool = False, service: Service | None = None) -> dict[str, str]:
    """Every line of the README's block: `tinybot` lines as real processes (``real``) or in-process, the
    service lines on ``service`` (None: no bot runs).  → each command's output, by its first word."""
    seen, out = [], {}
    for line in drill_lines():
        if line.startswith("sudo systemctl stop"):
            if service is not None:
                service.stop()
            continue
        if line.startswith("sudo systemctl start"):
            if service is not None:
                service.start()
            continue
        if not line.startswith("tinybot "):
            assert "git checkout" in line, f"the test does not know how to run: {line}"
            continue  # the same version here: nothing to put back
        args = [the_backup.name if a == "BACKUP" else a for a in shlex.split(line)[1:]]
        if real:
            r = run_cli(*args, timeout=120)
            code, text = r.returncode, r.stdout + r.stderr
        else:
            r = tinybot(*args)
            code, text = r.exit_code, r.output
        # doctor's verdict on a simulator, and reconcile's exit 1 for the orders it had to book, are what
        # a person reads at this point; every other line must succeed
        if args[0] not in ("doctor", "reconcile"):
            assert code == 0, (args, text)
        seen.append(args[0])
        out[args[0]] = out.get(args[0], "") + text
    assert seen == DRILL
    return out


def ledger_equals_exchange(conn, sim) -> None:
    ours = {
        (r["market"], r["trade_id"]): (Decimal(r["amount"]), Decimal(r["price"]), Decimal(r["fee"]))
        for r in conn.execute("SELECT * FROM trade_history")
    }
    theirs = {
        (t["market"], t["id"]): (Decimal(t["amount"]), Decimal(t["price"]), Decimal(t["fee"])) for t in sim.sim.trades()
    }
    assert ours == theirs
    for market in ("BTC-EUR", "ETH-EUR"):
        held = conn.execute("SELECT base FROM positions WHERE market = ?", (market,)).fetchone()
        assert Decimal(held[0] if held else 0) == sum((a for (m, _), (a, _, _) in theirs.items() if m == market), 0)


def orders_of(sim, cid=None):
    return [o for o in sim.sim.orders() if o.get("clientOrderId") and (cid is None or o["clientOrderId"] == cid)]


class FailingPreflight:
    """The trading client with a market-table read that fails once: the execution stays claimed."""

    def __init__(self, inner):
        self._inner = inner

    def markets(self):
        raise ExchangeError("connection reset (injected)")

    def __getattr__(self, name):
        return getattr(self._inner, name)


@pytest.fixture
def live(sim_factory, tmp_path, monkeypatch):
    def make(find_closed: bool, interval: str = "1h"):
        sim = sim_factory(accounts=shared_accounts(), find_closed_by_client_id=find_closed)
        sim.sim.set_balance(TRADE_KEY, "EUR", Decimal("100"))
        use_keys(monkeypatch)
        (tmp_path / "bot.toml").write_text(
            CONFIG.format(op=OPERATOR_ID, url=sim.url, interval=interval), encoding="utf-8"
        )
        monkeypatch.setenv("TINYBOT_CONFIG", str(tmp_path / "bot.toml"))
        assert tinybot("init").exit_code == 0
        return config.load(), sim

    return make


def propose(cfg, market="BTC-EUR") -> int:
    conn = db.connect(cfg.db_path)
    try:
        return proposals.create(
            conn, Draft(market, "buy", Decimal("6")), source="test", ttl=cfg.risk.proposal_ttl, approve=True
        )
    finally:
        conn.close()


@pytest.mark.parametrize("find_closed", [True, False], ids=["closed-lookup-on", "closed-lookup-off"])
def test_backup_while_claimed_then_sent_then_restored_makes_one_order(live, find_closed):
    cfg, sim = live(find_closed)
    pid = propose(cfg)
    conn = db.connect(cfg.db_path)
    trading = executor.trading_exchange(cfg)
    first = executor.execute(conn, cfg, FailingPreflight(trading), pid)
    assert first.state == "claimed" and first.reason.startswith("preflight_failed")
    taken = backup.make(cfg, label="before-upgrade")  # the row is `claimed` in this backup
    sent = executor.execute(conn, cfg, trading, pid)
    assert sent.state == "filled" and len(orders_of(sim, sent.client_order_id)) == 1
    conn.close()  # the bot is stopped for the drill: nothing holds the database

    out = run_drill(taken.path)
    assert "Execution 1: unknown → filled" in out["reconcile"]  # found on the exchange, never re-sent
    again = tinybot("execute", str(pid))  # what the scheduler's next tick would try
    assert "nothing sent" in again.output or again.exit_code != 0
    assert len(orders_of(sim)) == 1  # one proposal, one order
    conn = db.connect(cfg.db_path)
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "filled"
    ledger_equals_exchange(conn, sim)
    assert tinybot("execute", str(pid)).exit_code == 0 and len(orders_of(sim)) == 1


@pytest.mark.parametrize("find_closed", [True, False], ids=["closed-lookup-on", "closed-lookup-off"])
def test_an_order_made_after_the_backup_is_reported_and_booked_after_the_restore(live, find_closed):
    cfg, sim = live(find_closed)
    pid = propose(cfg)
    taken = backup.make(cfg, label="before-upgrade")  # approved, no execution yet
    conn = db.connect(cfg.db_path)
    assert executor.execute(conn, cfg, executor.trading_exchange(cfg), pid).state == "filled"
    conn.close()  # the bot is stopped for the drill: nothing holds the database

    out = run_drill(taken.path)
    assert "SURPRISE" in out["reconcile"]  # booked by the reconcile the drill runs before `resume`
    conn = db.connect(cfg.db_path)
    # the restored database never saw that order's clientOrderId: the proposal must not make another
    assert conn.execute("SELECT status, decided_by FROM proposals").fetchone()[:] == ("rejected", "restore")
    assert tinybot("execute", str(pid)).exit_code != 0
    assert len(orders_of(sim)) == 1
    ledger_equals_exchange(conn, sim)
    ev = conn.execute("SELECT severity FROM events WHERE kind = 'surprise_order'").fetchall()
    assert [e[0] for e in ev] == ["error"]


def one_order_per_proposal(conn, sim, forgotten: dict[str, str]) -> None:
    """Each exchange order traced to its proposal (through the database, or through what the test kept of
    rows the restore made it forget): no proposal has two."""
    by_cid = {r["client_order_id"]: f"now #{r['proposal_id']}" for r in conn.execute("SELECT * FROM trade_executions")}
    owners = [by_cid.get(o["clientOrderId"]) or forgotten[o["clientOrderId"]] for o in orders_of(sim)]
    assert len(owners) == len(set(owners)), owners


@pytest.mark.waits
@pytest.mark.parametrize("find_closed", [True, False], ids=["closed-lookup-on", "closed-lookup-off"])
def test_the_drill_with_the_bot_running_ends_with_a_kill_that_stops_it(live, find_closed):
    """Issue 20's proof: the bot runs and trades, a backup is taken, it trades again (an order the backup
    does not have), then the drill, line by line, as real processes.  After `systemctl start` the bot
    trades again, and a `tinybot kill` names its PID and stops it: a proposal approved afterwards is
    never sent."""
    cfg, sim = live(find_closed, interval="1s")
    service = Service(cfg)
    try:
        service.start()
        before = propose(cfg)
        wait_for(lambda: len(orders_of(sim)) == 1, service, "the running bot did not trade")
        taken = backup.make(cfg, label="before-upgrade")  # an online backup, the bot running
        after = propose(cfg, "ETH-EUR")
        wait_for(lambda: len(orders_of(sim)) == 2, service, "the running bot did not trade again")
        conn = db.connect(cfg.db_path)
        forgotten = {
            r["client_order_id"]: f"before the restore #{r['proposal_id']}"
            for r in conn.execute("SELECT * FROM trade_executions WHERE proposal_id = ?", (after,))
        }
        conn.close()

        out = run_drill(taken.path, real=True, service=service)
        assert "Reached the running bot: `tinybot run` PID" in out["kill"]
        assert "SURPRISE" in out["reconcile"] and "Trading: DISABLED" in out["status"]

        resumed = propose(cfg)  # the bot trades again after `resume` and `systemctl start`
        wait_for(lambda: len(orders_of(sim)) == 3, service, "the restarted bot did not trade")
        k = run_cli("kill", "--reason", "stop it")
        assert k.returncode == 0, k.stderr
        assert f"Reached the running bot: `tinybot run` PID {service.proc.pid} holds" in k.stdout
        stopped = propose(cfg, "ETH-EUR")
        conn = db.connect(cfg.db_path)
        wait_for(
            lambda: conn.execute(
                "SELECT 1 FROM trade_executions WHERE proposal_id = ? AND state != 'claimed'", (stopped,)
            ).fetchone(),
            service,
            "the running bot did not try the proposal approved after the kill",
        )
        row = conn.execute("SELECT state, reason FROM trade_executions WHERE proposal_id = ?", (stopped,)).fetchone()
        assert row["state"] == "blocked" and row["reason"].startswith("kill_switch_on"), dict(row)
        assert not killswitch.state(conn)["trading_enabled"]
    finally:
        service.stop()
    assert len(orders_of(sim)) == 3  # before, after (booked by reconcile), resumed: nothing after the kill
    conn = db.connect(cfg.db_path)
    one_order_per_proposal(conn, sim, forgotten)
    ledger_equals_exchange(conn, sim)
    assert before != resumed
