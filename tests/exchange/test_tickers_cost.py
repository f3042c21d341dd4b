"""Several markets' tickers in one request (GET /ticker/24h without a market), counted at the simulator, and one
request per market once the minute's public weight runs short (issue 26)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from freezegun import freeze_time

from helpers.sim import OPERATOR_ID, READ_KEY, READ_SECRET
from tinybot.base.config import Config, ExchangeConfig
from tinybot.exchange.bitvavo import endpoint, reads
from tinybot.exchange.bitvavo.clients import BitvavoReadOnly

BOTH = ["BTC-EUR", "ETH-EUR"]


@pytest.fixture(autouse=True)
def no_backoff_left_over():
    endpoint._backoff_until.clear()  # process-wide, keyed by URL: a later simulator may reuse a port
    yield
    endpoint._backoff_until.clear()


def client_and_requests(sim, tmp_path, monkeypatch, rate_limit=False):
    """A read-only client on the simulator, and (kind, market or None) for every request that reached it."""
    cfg = Config(
        path=tmp_path / "bot.toml",
        exchange=ExchangeConfig(operator_id=OPERATOR_ID, url=sim.url, timeout=timedelta(seconds=2)),
    )
    seen: list[str] = []
    real = sim.sim.take_fault
    monkeypatch.setattr(sim.sim, "take_fault", lambda kind: seen.append(kind) or real(kind))
    return BitvavoReadOnly(cfg, READ_KEY, READ_SECRET, rate_limit=rate_limit), seen


def test_tickers_of_several_markets_are_one_request_and_the_same_as_each_asked_alone(sim, tmp_path, monkeypatch):
    with freeze_time("2026-11-27 20:00:05"):
        ro, seen = client_and_requests(sim, tmp_path, monkeypatch)
        both = ro.tickers(BOTH)
        assert seen == ["ticker"]
        alone = {m: ro.ticker(m) for m in BOTH}
    assert both == alone


def test_a_market_missing_from_the_answer_is_left_out(sim, tmp_path, monkeypatch):
    with freeze_time("2026-11-27 20:00:05"):
        ro, seen = client_and_requests(sim, tmp_path, monkeypatch)
        got = ro.tickers(["BTC-EUR", "XRP-EUR"])
    assert list(got) == ["BTC-EUR"] and seen == ["ticker"]


def test_one_market_is_asked_alone(sim, tmp_path, monkeypatch):
    with freeze_time("2026-11-27 20:00:05"):
        ro, _ = client_and_requests(sim, tmp_path, monkeypatch)
        ro.tickers(["BTC-EUR"])
    assert ro.reader._public_weight[0] == sim.sim.rate_limit - 1  # weight 1: with the market


def test_tickers_are_asked_one_by_one_while_the_minutes_public_weight_is_short(sim_factory, tmp_path, monkeypatch):
    """The request for every market weighs 25: with less than that plus a reserve left this minute, tinybot asks
    each market alone (weight 1 each) and never runs into a 429; the next minute it asks for all at once again."""
    budget = reads.ALL_TICKERS_WEIGHT * 2 + reads.ALL_TICKERS_RESERVE
    sim = sim_factory(rate_limit=budget)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        ro, seen = client_and_requests(sim, tmp_path, monkeypatch)
        weights = []
        for _ in range(4):
            ro.tickers(BOTH)
            weights.append(ro.reader._public_weight[0])
        frozen.tick(timedelta(minutes=1))
        ro.tickers(BOTH)
    assert seen == ["ticker"] * (1 + 1 + 2 + 2 + 1), seen  # all, all, then one each (twice), then all again
    assert weights == [budget - 25, budget - 50, budget - 52, budget - 54]


def test_within_ccxts_spacing_tickers_are_asked_one_by_one_so_that_no_tick_waits(sim, tmp_path, monkeypatch):
    """ccxt's own throttle sends a request its weight × 60 ms after the previous one: the request for every
    market (25) within 1.5 s of the last slept up to 1.5 s, every tick at a 1 s tick (the bench's ticks took
    1.8 s).  There, each market is asked alone (weight 1); once 1.5 s have passed, all at once again."""
    import time

    slept: list[float] = []
    with freeze_time("2026-11-27 20:00:05") as frozen:
        ro, seen = client_and_requests(sim, tmp_path, monkeypatch, rate_limit=True)
        monkeypatch.setattr(time, "sleep", slept.append)
        ro.tickers(BOTH)
        frozen.tick(timedelta(seconds=1))
        ro.tickers(BOTH)
        frozen.tick(timedelta(seconds=1.5))
        ro.tickers(BOTH)
    assert seen == ["ticker"] * (1 + 2 + 1), seen
    assert max(slept, default=0) <= 0.06, slept  # one market's spacing at most, never the 25-weight one
