"""The in-process transport answers ccxt exactly as the simulator's HTTP server does: same status, body and
rate-limit headers, the same errors raised, request by request."""

from __future__ import annotations

import ccxt
import pytest

from helpers.sim import READ_KEY, READ_SECRET, default_accounts, make_ccxt
from tinybot.sim import Simulator
from tinybot.sim.transport import InProcessSession

NOW_MS = 1_735_689_600_000  # both simulators and both clients on one fixed clock: answers that say the time agree

CALLS = [
    ("time", lambda c: c.publicGetTime()),
    ("markets", lambda c: c.publicGetMarkets()),
    ("one market", lambda c: c.publicGetMarkets({"market": "ETH-EUR"})),
    ("ticker", lambda c: c.publicGetTicker24h({"market": "BTC-EUR"})),
    ("book ticker", lambda c: c.publicGetTickerBook()),
    ("candles", lambda c: c.publicGetMarketCandles({"market": "BTC-EUR", "interval": "1m", "limit": 30})),
    ("coarse candles", lambda c: c.publicGetMarketCandles({"market": "ETH-EUR", "interval": "5m", "limit": 5})),
    (
        "candles in a window",
        lambda c: c.publicGetMarketCandles(
            {"market": "BTC-EUR", "interval": "1m", "start": NOW_MS - 600_000, "end": NOW_MS - 120_000}
        ),
    ),
    ("bad interval", lambda c: c.publicGetMarketCandles({"market": "BTC-EUR", "interval": "7m"})),
    ("balance", lambda c: c.privateGetBalance()),
    ("buy", lambda c: c.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": "a1"})),
    ("orders", lambda c: c.privateGetOrders({"market": "BTC-EUR"})),
    ("trades", lambda c: c.privateGetTrades({"market": "BTC-EUR"})),
    ("too small", lambda c: c.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 1})),
    ("unknown order", lambda c: c.privateGetOrder({"market": "BTC-EUR", "orderId": "nope"})),
]


def client(url: str, session=None, secret: str | None = None):
    c = make_ccxt(url, **({"secret": secret} if secret else {}))
    c.milliseconds = lambda: NOW_MS
    if session is not None:
        c.session = session
    c.load_markets()
    return c


def outcome(c, call):
    """What ccxt made of the answer: its result or the error it raised, the status, body and rate-limit headers."""
    try:
        result = call(c)
    except ccxt.BaseError as e:
        result = f"{type(e).__name__}: {e}"
    headers = {k.lower(): v for k, v in (c.last_response_headers or {}).items() if k.lower().startswith("bitvavo-")}
    return result, c.last_http_response, headers


@pytest.fixture
def two_sims():
    sims = [Simulator(accounts=default_accounts(), seed=7, clock=lambda: NOW_MS / 1000, history=200) for _ in range(2)]
    server = sims[0].serve()
    yield sims, server.url
    for s in sims:
        s.close()


def test_every_answer_in_process_is_the_http_servers(two_sims):
    (over_http, in_process), url = two_sims
    http_client = client(url)
    memory_client = client(url, InProcessSession(in_process))
    for name, call in CALLS:
        assert outcome(memory_client, call) == outcome(http_client, call), name
    assert in_process.orders() == over_http.orders() and in_process.trades() == over_http.trades()


def test_signature_errors_faults_and_the_rate_limit_come_through_alike(two_sims):
    (over_http, in_process), url = two_sims
    for sim in (over_http, in_process):
        sim.add_fault("error_101", on="balance", count=1)
        sim.rate_limit = 40
    http_client, memory_client = client(url, secret="wrong"), client(url, InProcessSession(in_process), secret="wrong")
    seen = []
    for _ in range(9):  # the fault once, then a wrong signature until the key's weight (5 a read) runs out
        got = outcome(memory_client, lambda c: c.privateGetBalance())
        assert got == outcome(http_client, lambda c: c.privateGetBalance())
        seen.append(got[0].split('"errorCode":')[1][:3])
    assert seen == ["101"] + ["309"] * 7 + ["110"]
    views = [client(url, secret=READ_SECRET), client(url, InProcessSession(in_process), secret=READ_SECRET)]
    for view in views:
        view.apiKey = READ_KEY
    orders = [outcome(view, lambda c: c.privateGetOrders({"market": "BTC-EUR"})) for view in views]
    assert orders[0] == orders[1] and '"errorCode":310' in orders[0][0]
