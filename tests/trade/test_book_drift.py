"""Drift that tells the truth (issue 21 item 3, its proof): `tinybot run` against the simulator, trading on most
ticks, shows no drift at any moment — the ledger is compared with the balances as of their time — while money that
really moves outside tinybot still shows."""

from __future__ import annotations

import pytest

import signal
import subprocess
import sys
import time
from decimal import Decimal

from tinybot.store import db
from tinybot.trade.book import holdings

from helpers.sim import OPERATOR_ID, READ_KEY, TRADE_KEY, use_keys
from tinybot.sim import SimAccount

CONFIG = """\
mode = "live"
advisors = ["dca"]
[risk]
allowlist = ["BTC-EUR"]
max_trade_eur = 10
max_daily_eur = 1000
max_exposure_eur = 1000
cooldown = "0s"
anti_flip = "0s"
proposal_ttl = "30m"
[dca]
market = "BTC-EUR"
buy_eur = 6
every = "1s"
[scheduler]
interval = "1s"
[alerts]
digest_at = ""
[exchange]
operator_id = {op}
url = "{url}"
timeout = "2s"
access_window = "10s"
reconcile_grace = "5s"
"""


def sample(cfg) -> tuple[str | None, dict, int]:
    """(balances' time, drift, fills) read in one read transaction: one consistent moment of the database."""
    conn = db.connect(cfg.db_path)
    try:
        conn.execute("BEGIN")
        d = holdings.drift(conn, cfg)
        fills = conn.execute("SELECT COUNT(*) FROM trade_history").fetchone()[0]
        conn.execute("COMMIT")
        return d["at"], d["assets"], fills
    finally:
        conn.close()


@pytest.mark.waits
def test_tinybot_run_trading_every_tick_shows_no_drift_at_any_moment(sim_factory, write_config, monkeypatch):
    accounts = [
        SimAccount(TRADE_KEY, "trade-secret", frozenset({"view", "trade"}), {"EUR": Decimal("500")}, account="me"),
        SimAccount(READ_KEY, "read-secret", frozenset({"view"}), {}, account="me"),
    ]
    sim = sim_factory(accounts=accounts)
    use_keys(monkeypatch)
    cfg = write_config(CONFIG.format(op=OPERATOR_ID, url=sim.url))
    bot = subprocess.Popen(
        [sys.executable, "-m", "tinybot", "run"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    snapshots: dict[str, tuple[dict, int]] = {}  # balances' time -> (drift, fills booked then)
    drifted = []
    try:
        deadline = time.monotonic() + 120  # a bound for a stuck bot, not a measurement
        while len(snapshots) < 12:
            assert bot.poll() is None, bot.stderr.read()
            assert time.monotonic() < deadline, f"only {len(snapshots)} balance snapshots seen"
            at, assets, fills = sample(cfg)
            if at is None:
                continue
            if set(assets.values()) - {"0", "0.00"}:
                drifted.append((at, fills, assets))
            snapshots.setdefault(at, (assets, fills))
            time.sleep(0.02)
        # money really moved outside tinybot: the owner deposits €10, the next tick's balances show it
        with sim.sim.lock:  # one step: a trade of the bot cannot come in between
            sim.sim.set_balance(TRADE_KEY, "EUR", sim.sim.balance(TRADE_KEY)["EUR"] + 10)
        seen = set(snapshots)
        while True:
            assert bot.poll() is None, bot.stderr.read()
            assert time.monotonic() < deadline, "no tick read the balances after the deposit"
            at, assets, _ = sample(cfg)
            if at not in seen:
                break
            time.sleep(0.02)
    finally:
        bot.send_signal(signal.SIGTERM)
        bot.wait(timeout=30)
    assert drifted == [], drifted[:3]
    # it traded on most ticks: the fills booked grew between most snapshots
    counts = [fills for _, fills in sorted((at, v[1]) for at, v in snapshots.items())]
    grew = sum(1 for a, b in zip(counts, counts[1:]) if b > a)
    assert grew >= (len(counts) - 1) // 2, counts
    assert assets == {"BTC": "0", "EUR": "10.00"}
