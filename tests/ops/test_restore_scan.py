"""After a restore the exchange is asked what happened since the backup (issue 20, items 3 and 5).

Live mode against the simulator, time moved by freezegun (the simulator runs in
this process, on the same clock).  A backup two days old: orders made 47 and
23 hours before the restore are both found and booked, and a DCA advisor sees
the buy it made after the backup.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from tinybot.store import backup, db
from tinybot.base import config
from tinybot.trade import executor, proposals, reconcile
from tinybot.ops import restore
from tinybot.advisors import build_snapshot, dca
from tinybot.exchange import read_only
from tinybot.trade.proposals import Draft

from helpers.sim import OPERATOR_ID, TRADE_KEY, shared_accounts, use_keys

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)
CONFIG = """mode = "live"
advisors = ["dca"]
[risk]
allowlist = ["BTC-EUR", "ETH-EUR"]
max_trade_eur = 10
max_daily_eur = 50
max_exposure_eur = 50
cooldown = "0s"
anti_flip = "0s"
proposal_ttl = "30m"
[dca]
market = "BTC-EUR"
buy_eur = 6
every = "7d"
[exchange]
operator_id = {op}
url = "{url}"
timeout = "2s"
access_window = "10s"
reconcile_grace = "5s"
"""


@pytest.fixture
def live(sim_factory, tmp_path, monkeypatch):
    def make(find_closed: bool = True):
        sim = sim_factory(accounts=shared_accounts(), find_closed_by_client_id=find_closed)
        sim.sim.set_balance(TRADE_KEY, "EUR", Decimal("100"))
        use_keys(monkeypatch)
        (tmp_path / "bot.toml").write_text(CONFIG.format(op=OPERATOR_ID, url=sim.url), encoding="utf-8")
        cfg = config.load(tmp_path / "bot.toml")
        db.open_db(cfg.db_path).close()  # as `tinybot init` leaves it
        trading = executor.trading_exchange(cfg)
        trading.client.enableRateLimit = False  # its throttle waits for a clock that freezegun holds still
        return cfg, sim, trading, read_only(cfg, rate_limit=False)

    return make


def buy(cfg, trading, market="BTC-EUR", source="test") -> str:
    conn = db.connect(cfg.db_path)
    try:
        pid = proposals.create(
            conn, Draft(market, "buy", Decimal("6")), source=source, ttl=cfg.risk.proposal_ttl, approve=True
        )
        r = executor.execute(conn, cfg, trading, pid)
        assert r.state == "filled", r
        return r.exchange_order_id
    finally:
        conn.close()


def reconciled(cfg, ro):
    conn = db.connect(cfg.db_path)
    try:
        return reconcile.reconcile(conn, cfg, ro, surprises=False)  # as `tinybot run` reconciles at start
    finally:
        conn.close()


@pytest.mark.parametrize("find_closed", [True, False], ids=["closed-lookup-on", "closed-lookup-off"])
def test_a_backup_two_days_old_misses_no_order_made_since(live, find_closed):
    """Item 3: on main the scan looked back one day: the order 47 hours old was never booked."""
    with freeze_time(T0) as frozen:
        cfg, sim, trading, ro = live(find_closed)
        taken = backup.make(cfg, label="two-days")
        frozen.tick(timedelta(hours=1))
        old = buy(cfg, trading)
        frozen.tick(timedelta(hours=24))
        recent = buy(cfg, trading, market="ETH-EUR")
        frozen.tick(timedelta(hours=23))
        restore.restore(cfg, taken.path.name)
        rep = reconciled(cfg, ro)
        assert len(rep.surprises) == 2, rep.as_dict()
        conn = db.connect(cfg.db_path)
        booked = {r[0] for r in conn.execute("SELECT order_id FROM unaccounted_orders")}
        assert booked == {old, recent}
        ours = {(r["market"], r["trade_id"]) for r in conn.execute("SELECT market, trade_id FROM trade_history")}
        assert ours == {(t["market"], t["id"]) for t in sim.sim.trades()}
        scan = reconcile.restore_scan(conn)
        assert scan["from"] == "2026-11-27T09:00:00.000000Z" and scan["done_at"] == "2026-11-29T09:00:00.000000Z"
        assert (
            "orders since 2026-11-27T09:00:00.000000Z read on 2 market(s); 2 not accounted for, booked"
            in (conn.execute("SELECT detail FROM events WHERE kind = 'restore_scan'").fetchone()[0])
        )


def test_a_restore_followed_by_a_crash_scans_again(live, monkeypatch):
    """Item 3: the scan is recorded as done only once it read every market; a reconcile that dies half-way
    (here: booking the first order it found) leaves it to the next one."""
    with freeze_time(T0) as frozen:
        cfg, sim, trading, ro = live()
        taken = backup.make(cfg, label="x")
        frozen.tick(timedelta(hours=1))
        first = buy(cfg, trading)
        frozen.tick(timedelta(hours=24))
        second = buy(cfg, trading, market="ETH-EUR")
        frozen.tick(timedelta(hours=23))
        restore.restore(cfg, taken.path.name)

        real = reconcile._account_for
        seen = []

        def dies_at_the_second(conn, name, market, o, report):
            seen.append(o.order_id)
            if len(seen) == 2:
                raise SystemExit(137)  # the process dies here
            return real(conn, name, market, o, report)

        monkeypatch.setattr(reconcile, "_account_for", dies_at_the_second)
        with pytest.raises(SystemExit):
            reconciled(cfg, ro)
        monkeypatch.undo()
        conn = db.connect(cfg.db_path)
        assert reconcile.restore_scan(conn)["done_at"] is None
        assert [r[0] for r in conn.execute("SELECT order_id FROM unaccounted_orders")] == [first]
        conn.close()
        frozen.tick(timedelta(hours=2))  # the restarted bot: now the first order is 49 hours old
        reconciled(cfg, ro)
        conn = db.connect(cfg.db_path)
        assert {r[0] for r in conn.execute("SELECT order_id FROM unaccounted_orders")} == {first, second}
        assert reconcile.restore_scan(conn)["done_at"] is not None


def dca_drafts(cfg, ro) -> list:
    conn = db.connect(cfg.db_path)
    try:
        return dca.advise(build_snapshot(conn, cfg, ro, sources=("dca",)), cfg)
    finally:
        conn.close()


def test_dca_does_not_buy_a_period_again_after_a_restore(live):
    """Item 5: the buy DCA made after the backup is not in the restored database's proposals; reconcile
    books it from the exchange, and DCA counts it.  On main DCA proposed the period's buy a second time."""
    with freeze_time(T0) as frozen:
        cfg, sim, trading, ro = live()
        taken = backup.make(cfg, label="before-dca")
        frozen.tick(timedelta(hours=1))
        (draft,) = dca_drafts(cfg, ro)
        conn = db.connect(cfg.db_path)
        pid = proposals.create(conn, draft, source="dca", ttl=cfg.risk.proposal_ttl, approve=True)
        assert executor.execute(conn, cfg, trading, pid).state == "filled"
        conn.close()
        assert dca_drafts(cfg, ro) == []  # bought this week
        frozen.tick(timedelta(hours=1))
        restore.restore(cfg, taken.path.name)
        reconciled(cfg, ro)
        assert dca_drafts(cfg, ro) == []  # the exchange shows this week's buy
        frozen.tick(timedelta(days=7) - timedelta(hours=1))
        (again,) = dca_drafts(cfg, ro)  # a week after that buy, the next one is due
        assert again.market == "BTC-EUR" and again.amount_quote == Decimal("6")
    assert len([o for o in sim.sim.orders() if o.get("clientOrderId")]) == 1
