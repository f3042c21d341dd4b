"""Closed candles read incrementally (only those newer than the ones held, and a few held ones again) equal a full
read of the window at every tick, and the incremental reads are small (issue 26: replay runs this same path)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from helpers.configs import live_text
from helpers.sim import shared_accounts, use_keys
from tinybot.advisors import CANDLE_OVERLAP, build_snapshot, candle_limit, closed_candles
from tinybot.base import clock
from tinybot.exchange import read_only
from tinybot.store import db


@pytest.mark.parametrize(
    "path",
    [
        "advancing",  # the price path closes one candle an hour: held candles stay as they were
        "corrected",  # and the exchange corrects one of its newest closed candles after it closed
        "still",  # the path does not advance: every candle moves back an hour (the simulator's timestamp rule)
    ],
)
def test_candles_read_incrementally_equal_a_full_read_at_every_tick(write_config, sim_factory, monkeypatch, path):
    sim = sim_factory(accounts=shared_accounts(), interval="1h")
    use_keys(monkeypatch)
    cfg = write_config("advisors = []\n" + live_text(sim.url) + '[rules]\ncandle_interval = "1h"\n')
    conn = db.open_db(cfg.db_path)
    # no client-side throttle: under a frozen clock ccxt's spacing never passes, and it slept ~0.5 s a tick
    ticking, whole = read_only(cfg, rate_limit=False), read_only(cfg, rate_limit=False)
    limits = []
    real = ticking.candles
    monkeypatch.setattr(ticking, "candles", lambda m, i, n: limits.append((m, n)) or real(m, i, n))
    cache: dict = {}
    limit = candle_limit(cfg)
    with freeze_time("2026-11-27 20:10:05") as frozen:
        for i in range(24):  # 8 hours at a 20-minute tick
            if i and i % 3 == 0 and path != "still":
                sim.sim.advance()
                if path == "corrected":
                    sim.sim.markets["BTC-EUR"].candles[-3][3] -= 1  # a close two candles before the newest
            snap = build_snapshot(conn, cfg, ticking, candle_cache=cache)
            full = closed_candles(whole.candles("BTC-EUR", "1h", limit), "1h", clock.now_ms())
            assert snap.candles["BTC-EUR"] == full, i
            frozen.tick(timedelta(minutes=20))
    per_market = [n for m, n in limits if m == "BTC-EUR"]
    if (
        path == "advancing"
    ):  # one full read, then only the newest: the newest held, the new, the open one, CANDLE_OVERLAP more
        assert len(per_market) == 1 + 7 and per_market[0] == limit, per_market  # at start and at each new hour
        assert max(per_market[1:]) == 3 + CANDLE_OVERLAP, per_market
    else:  # what was held changed: read in full again, never trusted
        assert per_market.count(limit) == 1 + 7, per_market  # at start and at each new hour, after the short read
