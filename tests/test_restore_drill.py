"""The README's rollback drill in live mode against the simulator (issue 11, item 1).

A backup can be older than a send.  Restoring it must never lead to a second
order for one proposal, whether or not Bitvavo finds a *filled* order by its
clientOrderId (the simulator's ``find_closed_by_client_id`` off is the hard
case: Bitvavo keeps a clientOrderId unique only among open orders, so a
resend would be accepted).  After the drill the ledger equals the exchange.
"""

from __future__ import annotations

import re
import shlex
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tinybot import backup, config, db, executor, proposals
from tinybot.cli import cli
from tinybot.exchange.base import ExchangeError
from tinybot.proposals import Draft

from conftest import RISK_TOML
from simfixtures import OPERATOR_ID, shared_accounts, use_keys

README = Path(__file__).resolve().parent.parent / "README.md"


def drill_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- rollback:begin -->\n```sh\n(.*?)```\n<!-- rollback:end -->", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def tinybot(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


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
    def make(find_closed: bool):
        sim = sim_factory(accounts=shared_accounts(), find_closed_by_client_id=find_closed)
        use_keys(monkeypatch)
        (tmp_path / "bot.toml").write_text(
            'mode = "live"\n' + RISK_TOML + f'[exchange]\noperator_id = {OPERATOR_ID}\nurl = "{sim.url}"\n'
            'timeout = "700ms"\naccess_window = "10s"\nreconcile_grace = "5s"\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("TINYBOT_CONFIG", str(tmp_path / "bot.toml"))
        assert tinybot("init").exit_code == 0
        cfg = config.load()
        return cfg, db.connect(cfg.db_path), sim

    return make


def run_drill(cfg, the_backup: Path) -> list[str]:
    seen = []
    for line in drill_lines():
        if not line.startswith("tinybot "):
            continue  # systemctl, git checkout: nothing runs here that they would stop or change
        args = [the_backup.name if a == "BACKUP" else a for a in shlex.split(line)[1:]]
        result = tinybot(*args)
        if args[0] != "doctor":  # doctor's verdict on a simulator is not what this drill is about
            assert result.exit_code == 0, (args, result.output)
        seen.append(args[0])
    assert seen == ["kill", "backup", "backup", "backup", "doctor", "status", "resume"]
    return seen


def ledger_equals_exchange(conn, sim) -> None:
    ours = {
        (r["market"], r["trade_id"]): (Decimal(r["amount"]), Decimal(r["price"]), Decimal(r["fee"]))
        for r in conn.execute("SELECT * FROM trade_history")
    }
    theirs = {
        (t["market"], t["id"]): (Decimal(t["amount"]), Decimal(t["price"]), Decimal(t["fee"])) for t in sim.sim.trades()
    }
    assert ours == theirs
    held = sum((Decimal(r[0]) for r in conn.execute("SELECT base FROM positions WHERE market = 'BTC-EUR'")), Decimal(0))
    assert held == sum((a for (m, _), (a, _, _) in theirs.items() if m == "BTC-EUR"), Decimal(0))


def orders_of(sim, cid=None):
    return [o for o in sim.sim.orders() if o.get("clientOrderId") and (cid is None or o["clientOrderId"] == cid)]


@pytest.mark.parametrize("find_closed", [True, False], ids=["closed-lookup-on", "closed-lookup-off"])
def test_backup_while_claimed_then_sent_then_restored_makes_one_order(live, find_closed):
    cfg, conn, sim = live(find_closed)
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6")), source="test", ttl=cfg.risk.proposal_ttl, approve=True
    )
    trading = executor.trading_exchange(cfg)
    first = executor.execute(conn, cfg, FailingPreflight(trading), pid)
    assert first.state == "claimed" and first.reason.startswith("preflight_failed")
    taken = backup.make(cfg, label="before-upgrade")  # the row is `claimed` in this backup
    sent = executor.execute(conn, cfg, trading, pid)
    assert sent.state == "filled" and len(orders_of(sim, sent.client_order_id)) == 1
    conn.close()  # the bot is stopped for the drill: nothing holds the database

    run_drill(cfg, taken.path)
    conn = db.connect(cfg.db_path)
    row = conn.execute("SELECT state, in_doubt_at FROM trade_executions").fetchone()
    assert row["state"] == "unknown" and row["in_doubt_at"]  # only reconcile may decide it now

    again = tinybot("execute", str(pid))  # what the scheduler's next tick would try
    assert "nothing sent" in again.output or again.exit_code != 0
    rec = tinybot("reconcile")
    assert rec.exit_code == 0, rec.output
    assert len(orders_of(sim)) == 1  # one proposal, one order
    assert conn.execute("SELECT state FROM trade_executions").fetchone()[0] == "filled"
    ledger_equals_exchange(conn, sim)
    assert tinybot("execute", str(pid)).exit_code == 0 and len(orders_of(sim)) == 1


@pytest.mark.parametrize("find_closed", [True, False], ids=["closed-lookup-on", "closed-lookup-off"])
def test_an_order_made_after_the_backup_is_reported_and_booked_after_the_restore(live, find_closed):
    cfg, conn, sim = live(find_closed)
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6")), source="test", ttl=cfg.risk.proposal_ttl, approve=True
    )
    taken = backup.make(cfg, label="before-upgrade")  # approved, no execution yet
    assert executor.execute(conn, cfg, executor.trading_exchange(cfg), pid).state == "filled"
    conn.close()  # the bot is stopped for the drill: nothing holds the database

    run_drill(cfg, taken.path)
    conn = db.connect(cfg.db_path)
    # the restored database never saw that order's clientOrderId: the proposal must not make another
    assert conn.execute("SELECT status, decided_by FROM proposals").fetchone()[:] == ("rejected", "restore")
    assert tinybot("execute", str(pid)).exit_code != 0
    rec = tinybot("reconcile")
    assert "SURPRISE" in rec.output + (rec.stderr_bytes or b"").decode()
    assert len(orders_of(sim)) == 1
    ledger_equals_exchange(conn, sim)
    ev = conn.execute("SELECT severity FROM events WHERE kind = 'surprise_order'").fetchall()
    assert [e[0] for e in ev] == ["error"]
