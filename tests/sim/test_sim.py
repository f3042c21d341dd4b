"""The Bitvavo simulator, driven by the real ccxt client over loopback HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from decimal import ROUND_DOWN, Decimal

import ccxt
import pytest

from helpers.sim import OPERATOR_ID, READ_KEY, READ_SECRET, TRADE_KEY
from tinybot.sim import Simulator, parse_fault_spec

D = Decimal


def cid() -> str:
    return str(uuid.uuid4())


def error_code(exc: Exception) -> int:
    """ccxt's message is "bitvavo <response body>"; pull the sim's errorCode out of it."""
    return json.loads(str(exc).split(" ", 1)[1])["errorCode"]


def admin(url: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# --- public data and balances ----------------------------------------------------


def test_public_data_parses_in_ccxt(sim, ccxt_client):
    ex = ccxt_client()
    ex.load_markets()
    btc = ex.market("BTC/EUR")
    assert btc["precision"] == {"amount": 1e-08, "price": 1.0, "cost": 0.01}
    assert btc["limits"]["cost"]["min"] == 5.0 and btc["active"]
    assert ex.currencies["EUR"]["precision"] == 0.01  # from networks ["SEPA"]

    ticker = ex.fetch_ticker("BTC/EUR")
    bid, ask = sim.sim.markets["BTC-EUR"].bid_ask()
    assert (ticker["bid"], ticker["ask"], ticker["last"]) == (float(bid), float(ask), float(sim.sim.price("BTC-EUR")))
    assert ticker["bid"] < ticker["last"] < ticker["ask"]

    book = ex.fetch_order_book("BTC/EUR", 5)
    assert len(book["bids"]) == 5 and book["bids"][0][0] == float(bid) and book["asks"][0][0] == float(ask)

    assert abs(ex.fetch_time() - time.time() * 1000) < 5000
    assert ex.fetch_balance()["EUR"] == {"free": 25.0, "used": 0.0, "total": 25.0}


def test_candles_have_history_and_follow_the_timestamp_rule(sim_factory, ccxt_client):
    now = [1_700_000_030.0]
    s = sim_factory(clock=lambda: now[0])
    ex = ccxt.bitvavo({"urls": {"api": {"public": s.url, "private": s.url}}, "enableRateLimit": False})
    rows = ex.fetch_ohlcv("BTC/EUR", "1m", limit=1440)
    assert len(rows) == 1440
    newest = 1_700_000_030_000 // 60_000 * 60_000
    assert rows[-1][0] == newest  # the newest candle contains the clock's now
    assert all(b[0] - a[0] == 60_000 for a, b in zip(rows, rows[1:]))
    assert rows[-1][4] == float(s.sim.price("BTC-EUR"))

    old_close = rows[-1][4]
    s.sim.advance(5)  # far faster than the wall clock: the series shifts back in time
    rows2 = ex.fetch_ohlcv("BTC/EUR", "1m", limit=10)
    assert rows2[-1][0] == newest and rows2[-6][4] == old_close
    assert all(b[0] - a[0] == 60_000 for a, b in zip(rows2, rows2[1:]))

    hourly = ex.fetch_ohlcv("BTC/EUR", "1h", limit=5)
    assert all(r[0] % 3_600_000 == 0 for r in hourly) and hourly[-1][4] == float(s.sim.price("BTC-EUR"))

    since = rows[100][0]
    # ccxt asks start=since, end=since + 3 min, limit=3: when `end` brings back its own candle (the default
    # reading; Bitvavo does not say) the newest 3 of those 4 come back, so the first is a minute late
    assert ex.fetch_ohlcv("BTC/EUR", "1m", since=since, limit=3)[0][0] == since + 60_000
    s.sim.set_mode(candle_end="exclusive")
    assert ex.fetch_ohlcv("BTC/EUR", "1m", since=since, limit=3)[0][0] == since


def test_same_seed_same_path():
    a = Simulator(seed=3, history=50)
    b = Simulator(seed=3, history=50)
    c = Simulator(seed=4, history=50)
    assert a.markets["BTC-EUR"].candles == b.markets["BTC-EUR"].candles
    assert a.markets["BTC-EUR"].candles != c.markets["BTC-EUR"].candles
    a.advance(3), b.advance(3)
    assert a.price("ETH-EUR") == b.price("ETH-EUR")


def test_candles_csv_is_replayed_then_the_walk_continues(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(
        "market,timestamp,open,high,low,close,volume\n"
        + "".join(f"BTC-EUR,{1000 + i * 60000},{50000 + i},{50010 + i},{49990 + i},{50001 + i},1.5\n" for i in range(5))
    )
    s = Simulator(candles_csv=str(path), history=3, clock=lambda: 1_700_000_000.0)
    assert s.price("BTC-EUR") == D("50003")
    s.advance(2)
    assert s.price("BTC-EUR") == D("50005")
    s.advance(1)  # CSV exhausted: seeded walk from the last close
    assert abs(s.price("BTC-EUR") - D("50005")) < 1000
    bad = tmp_path / "bad.csv"
    bad.write_text("market,ts\nBTC-EUR,1\n")
    with pytest.raises(ValueError, match="CSV header"):
        Simulator(candles_csv=str(bad))


# --- orders and fills --------------------------------------------------------------


def test_market_buy_by_cost_fills_with_fee_and_exact_balances(sim, ccxt_client):
    ex = ccxt_client()
    ask = sim.sim.markets["BTC-EUR"].bid_ask()[1]
    client_id = cid()
    order = ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 10, "clientOrderId": client_id})

    # Costs exactly amountQuote: base truncated to 8 decimals, the remainder goes into the fee.
    qty = (D(10) / D("1.0025") / ask).quantize(D("1e-8"), rounding=ROUND_DOWN)
    fee = D(10) - qty * ask
    assert order["status"] == "closed" and order["info"]["status"] == "filled"
    assert order["info"]["clientOrderId"] == client_id
    assert D(order["info"]["filledAmount"]) == qty and D(order["info"]["feePaid"]) == fee
    assert D(order["info"]["filledAmountQuote"]) + D(order["info"]["feePaid"]) == D(10)
    assert D("0.0025") <= fee / (qty * ask) < D("0.0027")
    # as seen live (issue 24 item 5): a filled amountQuote buy shows its fee as amountQuoteRemaining
    assert D(order["info"]["amountQuoteRemaining"]) == fee and "amount" not in order["info"]
    assert sim.sim.balance(TRADE_KEY) == {"EUR": D(15), "BTC": qty}

    [record] = sim.sim.orders()
    assert record["operatorId"] == OPERATOR_ID and record["apiKey"] == TRADE_KEY
    [trade] = sim.sim.trades()
    assert trade["orderId"] == order["id"] and trade["taker"] is True and D(trade["price"]) == ask
    assert order["trades"][0]["id"] == trade["id"]


def test_market_sell_by_amount(sim, ccxt_client):
    sim.sim.set_balance(TRADE_KEY, "BTC", "0.001")
    ex = ccxt_client()
    bid = sim.sim.markets["BTC-EUR"].bid_ask()[0]
    order = ex.create_order("BTC/EUR", "market", "sell", 0.0004, None, {"clientOrderId": cid()})
    gross = D("0.0004") * bid
    net = (gross * D("0.9975")).quantize(D("0.01"), rounding="ROUND_FLOOR")  # whole cents, rounded down
    assert order["status"] == "closed" and D(order["info"]["feePaid"]) == gross - net
    assert sim.sim.balance(TRADE_KEY) == {"EUR": D(25) + net, "BTC": D("0.0006")}


def test_fetch_order_by_client_id_only_and_history(sim_factory):
    from helpers.sim import make_ccxt

    # This test is about the lookup itself: the option that lets closed orders be found is on.
    ex = make_ccxt(sim_factory(find_closed_by_client_id=True).url)
    first, second = cid(), cid()
    t0 = ex.milliseconds()
    a = ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": first})
    b = ex.create_order("ETH/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": second})

    found = ex.fetch_order(None, "BTC/EUR", {"clientOrderId": first})
    assert found["id"] == a["id"] and found["status"] == "closed"
    assert ex.fetch_order(b["id"], "ETH/EUR")["info"]["clientOrderId"] == second
    with pytest.raises(ccxt.OrderNotFound) as e:
        ex.fetch_order(None, "ETH/EUR", {"clientOrderId": first})  # other market
    assert error_code(e.value) == 240
    # docs rest-api/get-order: market is required, also with a clientOrderId.
    with pytest.raises(ccxt.BadSymbol) as e:
        ex.privateGetOrder({"clientOrderId": second})
    assert error_code(e.value) == 203
    assert ex.privateGetOrder({"market": "ETH-EUR", "clientOrderId": second})["orderId"] == b["id"]

    assert [o["id"] for o in ex.fetch_orders("BTC/EUR", since=t0)] == [a["id"]]
    assert ex.fetch_orders("BTC/EUR", since=ex.milliseconds() + 60_000) == []
    trades = ex.fetch_my_trades("ETH/EUR", since=t0)
    assert [t["order"] for t in trades] == [b["id"]] and trades[0]["fee"]["currency"] == "EUR"
    assert ex.fetch_open_orders("BTC/EUR") == []


def test_closed_orders_are_not_found_by_client_id_unless_the_option_says_so(sim_factory):
    """docs websocket-api/get-order and FIX OrderStatusRequest: a clientOrderId finds open orders only;
    the REST page says either id works. The hard reading is the default; the option turns lookups on."""
    from helpers.sim import make_ccxt

    ex = make_ccxt(sim_factory().url)
    ex.load_markets()
    client_id = cid()
    order = ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": client_id})
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, "BTC/EUR", {"clientOrderId": client_id})
    assert ex.fetch_order(order["id"], "BTC/EUR")["status"] == "closed"  # by orderId it is still there
    assert [o["id"] for o in ex.fetch_orders("BTC/EUR")] == [order["id"]]
    resting_id = cid()
    ex.create_order("BTC/EUR", "limit", "buy", 0.0002, 30000, {"clientOrderId": resting_id})
    assert ex.fetch_order(None, "BTC/EUR", {"clientOrderId": resting_id})["status"] == "open"  # open: found

    relaxed = make_ccxt(sim_factory(find_closed_by_client_id=True).url)
    other = cid()
    relaxed.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": other})
    assert relaxed.fetch_order(None, "BTC/EUR", {"clientOrderId": other})["status"] == "closed"


def test_limit_order_rests_fills_on_cross_and_cancel_releases_funds(sim, ccxt_client):
    ex = ccxt_client()
    s = sim.sim
    s.set_price("BTC-EUR", D("60000"))
    buy = ex.create_order("BTC/EUR", "limit", "buy", 0.0002, 59000, {"clientOrderId": cid()})
    held = D("11.83")  # 11.80 × 1.0025 = 11.8295, rounded up to whole cents (as Bitvavo's recorded onHold)
    assert buy["status"] == "open" and D(buy["info"]["onHold"]) == held
    assert s.balance(TRADE_KEY)["EUR"] == D(25) - held and s.balance(TRADE_KEY, in_order=True)["EUR"] == held
    assert [o["id"] for o in ex.fetch_open_orders("BTC/EUR")] == [buy["id"]]
    assert ex.fetch_balance()["EUR"]["used"] == float(held)

    s.advance(1)
    s.set_price("BTC-EUR", D("58990"))  # crosses the bid
    filled = ex.fetch_order(buy["id"], "BTC/EUR")
    assert filled["status"] == "closed" and filled["trades"][0]["takerOrMaker"] == "maker"
    # maker fill: 11.80 × 1.0015 = 11.8177 → 11.82 debited, the fee is 0.02
    assert D(filled["info"]["feePaid"]) == D("0.02")
    assert s.balance(TRADE_KEY) == {"EUR": D("13.18"), "BTC": D("0.0002")}
    assert s.balance(TRADE_KEY, in_order=True)["EUR"] == 0

    client_id = cid()
    sell = ex.create_order("BTC/EUR", "limit", "sell", 0.0002, 70000, {"clientOrderId": client_id})
    assert s.balance(TRADE_KEY)["BTC"] == 0
    canceled = ex.cancel_order(None, "BTC/EUR", {"clientOrderId": client_id})
    assert canceled["id"] == sell["id"]
    assert ex.fetch_order(sell["id"], "BTC/EUR")["status"] == "canceled"
    assert s.balance(TRADE_KEY)["BTC"] == D("0.0002")
    with pytest.raises(ccxt.OrderNotFound) as e:
        ex.cancel_order(sell["id"], "BTC/EUR")
    assert error_code(e.value) == 233


def test_limit_orders_fill_when_the_price_path_crosses(sim_factory):
    s = sim_factory().sim
    price = s.price("BTC-EUR")
    s.set_balance(TRADE_KEY, "EUR", 10_000)
    s.create_order(
        TRADE_KEY,
        {
            "market": "BTC-EUR",
            "side": "buy",
            "orderType": "limit",
            "amount": "0.001",
            "price": str(price - 100),
            "operatorId": 1,
        },
    )
    for _ in range(2000):
        s.advance()
        if s.orders()[0]["status"] == "filled":
            break
    assert s.orders()[0]["status"] == "filled" and s.balance(TRADE_KEY)["BTC"] == D("0.001")


def test_a_filled_orders_client_id_may_be_reused_but_not_an_open_ones(sim, ccxt_client):
    ex = ccxt_client()
    client_id = cid()
    ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": client_id})
    ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": client_id})
    assert len(sim.sim.orders()) == 2  # Bitvavo's real behaviour: a resend is a second order

    resting = cid()
    ex.create_order("ETH/EUR", "limit", "buy", 0.002, 2500, {"clientOrderId": resting})
    with pytest.raises(ccxt.ExchangeError) as e:
        ex.create_order("ETH/EUR", "limit", "buy", 0.002, 2500, {"clientOrderId": resting})
    assert error_code(e.value) == 220
    ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 5, "clientOrderId": resting})  # other market


# --- refusals ------------------------------------------------------------------------

REFUSALS = [
    # (what, how to send it, ccxt exception, errorCode)
    (
        "client id not a uuid",
        lambda ex: ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": "abc"}),
        ccxt.BadRequest,
        205,
    ),
    (
        "below €5",
        lambda ex: ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 4.99}),
        ccxt.InvalidOrder,
        217,
    ),
    ("sell below €5", lambda ex: ex.create_order("BTC/EUR", "limit", "sell", 0.00001, 60000), ccxt.InvalidOrder, 217),
    (
        "insufficient EUR",
        lambda ex: ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 26}),
        ccxt.InsufficientFunds,
        216,
    ),
    (
        "insufficient BTC",
        lambda ex: ex.create_order("BTC/EUR", "market", "sell", 0.01, None),
        ccxt.InsufficientFunds,
        216,
    ),
    (
        "operatorId missing",
        lambda ex: ex.privatePostOrder({"market": "BTC-EUR", "side": "buy", "orderType": "market", "amountQuote": "6"}),
        ccxt.BadRequest,
        203,
    ),
    (
        "operatorId missing on cancel",
        lambda ex: ex.privateDeleteOrder({"market": "BTC-EUR", "orderId": str(uuid.uuid4())}),
        ccxt.BadRequest,
        203,
    ),
    # 422 is a definite refusal ccxt leaves unmapped (ExchangeError): BITVAVO.md. Too many decimals is 205
    # on the real exchange: ccxt issue 19346.
    (
        "price off tick",
        lambda ex: ex.privatePostOrder(
            {
                "market": "BTC-EUR",
                "side": "buy",
                "orderType": "limit",
                "amount": "0.0001",
                "price": "59000.5",
                "operatorId": 1,
            }
        ),
        ccxt.ExchangeError,
        422,
    ),
    (
        "amount too detailed",
        lambda ex: ex.privatePostOrder(
            {"market": "BTC-EUR", "side": "sell", "orderType": "market", "amount": "0.000100001", "operatorId": 1}
        ),
        ccxt.InvalidOrder,  # ccxt's broad match on "amount parameter is invalid"
        205,
    ),
    (
        "amountQuote too detailed",
        lambda ex: ex.privatePostOrder(
            {"market": "BTC-EUR", "side": "buy", "orderType": "market", "amountQuote": "6.001", "operatorId": 1}
        ),
        ccxt.BadRequest,
        205,
    ),
    (
        "unknown market",
        lambda ex: ex.privatePostOrder(
            {"market": "DOGE-EUR", "side": "buy", "orderType": "market", "amountQuote": "6", "operatorId": 1}
        ),
        ccxt.BadRequest,
        205,
    ),
    (
        "unknown body param",
        lambda ex: ex.privatePostOrder(
            {"market": "BTC-EUR", "side": "buy", "orderType": "market", "amountQuote": "6", "operatorId": 1, "foo": 1}
        ),
        ccxt.BadRequest,
        201,
    ),
    (
        "amount and amountQuote",
        lambda ex: ex.privatePostOrder(
            {
                "market": "BTC-EUR",
                "side": "buy",
                "orderType": "market",
                "amountQuote": "6",
                "amount": "0.001",
                "operatorId": 1,
            }
        ),
        ccxt.BadRequest,
        206,
    ),
    ("unknown order", lambda ex: ex.fetch_order(str(uuid.uuid4()), "BTC/EUR"), ccxt.OrderNotFound, 240),
    ("bad orderId", lambda ex: ex.fetch_order("nope", "BTC/EUR"), ccxt.InvalidOrder, 205),
    ("unknown url param", lambda ex: ex.fetch_balance({"foo": "1"}), ccxt.BadRequest, 200),
    ("bad candle interval", lambda ex: ex.fetch_ohlcv("BTC/EUR", "1w"), ccxt.BadRequest, 205),
]


@pytest.mark.parametrize("what,send,exc,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_match_bitvavo(sim, ccxt_client, what, send, exc, code):
    ex = ccxt_client()
    ex.load_markets()
    with pytest.raises(exc) as e:
        send(ex)
    assert error_code(e.value) == code
    assert sim.sim.orders() == []


def test_view_only_key_may_read_but_not_trade(sim, ccxt_client):
    ex = ccxt_client(READ_KEY, READ_SECRET)
    assert ex.fetch_balance()["EUR"]["free"] == 25.0
    with pytest.raises(ccxt.PermissionDenied) as e:
        ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6})
    assert error_code(e.value) == 310
    with pytest.raises(ccxt.PermissionDenied):
        ex.cancel_order(str(uuid.uuid4()), "BTC/EUR")
    assert sim.sim.orders() == []


@pytest.mark.parametrize(
    "tweak,code",
    [
        ({"secret": "wrong"}, 309),
        ({"key": "nobody"}, 301),  # not 64 characters long
        ({"key": "n" * 64}, 305),
        ({"options": {"recvWindow": 70000}}, 303),
    ],
)
def test_authentication_refusals(sim, ccxt_client, tweak, code):
    ex = ccxt_client(**tweak)
    ex.load_markets()  # public: no auth needed
    with pytest.raises(ccxt.AuthenticationError) as e:
        ex.fetch_balance()
    assert error_code(e.value) == code


def test_stale_or_future_timestamp_is_refused_304(sim, ccxt_client):
    ex = ccxt_client()
    ex.load_markets()
    real = ex.milliseconds
    for skew in (-10_001 - 500, 10_001 + 500):
        ex.milliseconds = lambda skew=skew: real() + skew
        with pytest.raises(ccxt.AuthenticationError) as e:
            ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6})
        assert error_code(e.value) == 304
    ex.milliseconds = lambda: real() - 25_000
    ex.options["recvWindow"] = 30_000  # a wider window lets the same delay through
    ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6})
    assert len(sim.sim.orders()) == 1


def test_missing_auth_headers_and_unknown_endpoint(sim):
    for path, status, code in (("/v2/balance", 403, 300), ("/v2/nope", 404, 110), ("/balance", 403, 300)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(sim.url + path, timeout=2)
        assert e.value.code == status and json.loads(e.value.read())["errorCode"] == code
    with urllib.request.urlopen(sim.url + "/time", timeout=2) as r:  # without /v2 too
        assert "time" in json.loads(r.read())


# --- rate limit ----------------------------------------------------------------------


def test_rate_limit_weights_headers_and_429(sim_factory):
    s = sim_factory(rate_limit=12)
    from helpers.sim import make_ccxt

    ex = make_ccxt(s.url)
    ex.load_markets()
    before = ex.milliseconds()
    ex.fetch_balance()  # 5
    assert ex.last_response_headers["bitvavo-ratelimit-remaining"] == "7"
    reset_at = int(ex.last_response_headers["bitvavo-ratelimit-resetat"])
    assert reset_at % 60_000 == 0 and before < reset_at <= before + 60_000  # the end of this wall-clock minute
    assert ex.last_response_headers["bitvavo-ratelimit-limit"] == "12"
    ex.fetch_balance()  # 10
    with pytest.raises(ccxt.BadRequest) as e:
        ex.fetch_balance()  # 15 > 12
    assert error_code(e.value) == 110 and ex.last_http_response is not None
    ex.fetch_order_book("BTC/EUR")  # public requests count per IP, not against the key


# --- faults -------------------------------------------------------------------------------

FAULTS = [
    # kind, add_fault kwargs, ccxt exception (None = returns), order recorded?
    ("timeout_after_accept", {"delay": 1.0}, ccxt.RequestTimeout, True),
    ("timeout_before_accept", {"delay": 1.0}, ccxt.RequestTimeout, False),
    ("html_5xx", {}, ccxt.ExchangeNotAvailable, False),
    ("html_5xx", {"status": 503}, ccxt.ExchangeNotAvailable, False),
    ("error_101", {}, ccxt.ExchangeError, True),
    ("error_101", {"accept": False}, ccxt.ExchangeError, False),
    ("error_109", {}, ccxt.ExchangeNotAvailable, True),
    ("error_109", {"accept": False}, ccxt.ExchangeNotAvailable, False),
    ("rate_limit_110", {}, ccxt.BadRequest, False),
    ("garbage_200", {}, None, True),
    ("garbage_200", {"accept": False}, None, False),
    ("reset", {}, ccxt.NetworkError, True),
    ("reset", {"accept": False}, ccxt.NetworkError, False),
]


@pytest.mark.parametrize(
    "kind,kwargs,exc,recorded",
    FAULTS,
    ids=[f"{k}-{'-'.join(f'{a}={b}' for a, b in kw.items()) or 'default'}" for k, kw, _, _ in FAULTS],
)
def test_fault_on_create_order_as_ccxt_sees_it(sim, ccxt_client, kind, kwargs, exc, recorded):
    ex = ccxt_client(timeout=300)
    ex.load_markets()
    sim.sim.add_fault(kind, on="create_order", **kwargs)
    client_id = cid()

    def send():
        return ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": client_id})

    if exc is None:
        order = send()
        assert order["id"] is None  # a 200 that is not an order: ambiguous, not a success
    else:
        with pytest.raises(exc) as e:
            send()
        if kind in ("error_101", "error_109", "rate_limit_110"):
            assert error_code(e.value) == int(kind[-3:])
    orders = sim.sim.orders()
    assert len(orders) == (1 if recorded else 0)
    if recorded:
        assert orders[0]["clientOrderId"] == client_id and orders[0]["status"] == "filled"
        assert sim.sim.balance(TRADE_KEY)["EUR"] == D(19)
    else:
        assert sim.sim.balance(TRADE_KEY)["EUR"] == D(25)
    # The fault is used up: the lookup the executor would do next sees the truth (the order list:
    # a filled order is not found by its clientOrderId by default).
    ex.timeout = 2000
    listed = [o for o in ex.fetch_orders("BTC/EUR") if o["info"].get("clientOrderId") == client_id]
    assert [o["status"] for o in listed] == (["closed"] if recorded else [])


def test_delay_fault_and_fault_scoping(sim, ccxt_client):
    ex = ccxt_client()
    ex.load_markets()
    sim.sim.add_fault("delay", on="balance", delay=0.3)
    t = time.monotonic()
    ex.fetch_balance()
    assert time.monotonic() - t >= 0.3
    sim.sim.add_fault("html_5xx", on="ticker", count=2)
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            ex.fetch_ticker("BTC/EUR")
    ex.fetch_ticker("BTC/EUR")  # count used up
    sim.sim.add_fault("error_109", on="any", count=None)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_balance()
    sim.sim.clear_faults()
    ex.fetch_balance()


def test_fault_spec_parsing():
    f = parse_fault_spec("create_order:timeout_after_accept:count=2,delay=1.5")
    assert (f.on, f.kind, f.count, f.delay, f.accept) == ("create_order", "timeout_after_accept", 2, 1.5, True)
    assert parse_fault_spec("any:reset:accept=false,count=always").count is None
    for bad in (
        "create_order",
        "nowhere:reset",
        "create_order:nope",
        "create_order:reset:count=x",
        "create_order:timeout_before_accept:accept=true",
        "create_order:reset:colour=red",
    ):
        with pytest.raises(ValueError):
            parse_fault_spec(bad)


# --- admin endpoints and serving ------------------------------------------------------------


def test_admin_endpoints(sim, ccxt_client):
    url = sim.url
    status, state = admin(url, "GET", "/_sim/state")
    assert status == 200 and state["balances"][TRADE_KEY]["EUR"] == {"available": "25", "inOrder": "0"}
    assert set(state) >= {"orders", "trades", "balances", "prices", "faults", "steps", "time"}

    assert admin(url, "POST", "/_sim/price", {"market": "BTC-EUR", "price": "50000"})[1]["price"] == "50000"
    assert sim.sim.price("BTC-EUR") == D(50000)
    assert admin(url, "POST", "/_sim/advance", {"steps": 3})[1]["steps"] == 3
    assert admin(url, "POST", "/_sim/balance", {"key": TRADE_KEY, "asset": "BTC", "available": "0.5"})[0] == 200
    assert sim.sim.balance(TRADE_KEY)["BTC"] == D("0.5")

    assert admin(url, "POST", "/_sim/faults", {"spec": "create_order:error_101:accept=false"})[0] == 200
    status, body = admin(url, "POST", "/_sim/faults", {"kind": "html_5xx", "on": "balance", "count": None})
    assert [f["kind"] for f in body["faults"]] == ["error_101", "html_5xx"]
    ex = ccxt_client()
    with pytest.raises(ccxt.ExchangeError):
        ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6})
    assert admin(url, "GET", "/_sim/faults")[1]["faults"][0]["kind"] == "html_5xx"
    assert admin(url, "DELETE", "/_sim/faults")[1] == {"faults": []}
    ex.fetch_balance()

    ex.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6})
    state = admin(url, "GET", "/_sim/state")[1]
    assert len(state["orders"]) == 1 and state["orders"][0]["apiKey"] == TRADE_KEY and len(state["trades"]) == 1

    assert admin(url, "POST", "/_sim/faults", {"kind": "nope"})[0] == 400
    assert admin(url, "POST", "/_sim/price", {"market": "XXX-EUR", "price": "1"})[0] == 400
    assert admin(url, "POST", "/_sim/advance", {"steps": 0})[0] == 400
    assert admin(url, "GET", "/_sim/nope")[0] == 404


def test_serve_refuses_non_loopback_hosts():
    s = Simulator()
    for host in ("0.0.0.0", "8.8.8.8"):
        with pytest.raises(ValueError, match="loopback only"):
            s.serve(host=host)
    with s, s.serve(host="localhost") as server:
        assert server.url.startswith("http://127.0.0.1:")


def test_cli_starts_prints_url_and_stops_on_ctrl_c(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinybot.sim",
            "--port",
            "0",
            "--key",
            "K",
            "--secret",
            "S",
            "--permissions",
            "view,trade",
            "--balance",
            "EUR=25",
            "--balance",
            "BTC=0.001",
            "--key",
            "R",
            "--secret",
            "RS",
            "--permissions",
            "view",
            "--balance",
            "R:EUR=3",
            "--fault",
            "balance:html_5xx:count=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Bitvavo simulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        status, state = admin(url, "GET", "/_sim/state")
        assert state["balances"]["K"]["BTC"]["available"] == "0.001"
        assert state["balances"]["R"]["EUR"]["available"] == "3"
        assert [f["kind"] for f in state["faults"]] == ["html_5xx"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0 and "simulator stopped" in out, err
    finally:
        proc.kill()


@pytest.mark.parametrize(
    "args,flag",
    [
        (["--fault", "create_order:bogus"], "--fault"),
        (["--port", "70000"], "--port"),
        (["--permissions", "view,admin"], "--permissions"),
        (["--balance", "EUR=lots"], "--balance"),
        (["--market", "btceur"], "--market"),
        (["--key", "K"], "--secret"),
    ],
)
def test_cli_bad_flags_name_the_flag(args, flag):
    from click.testing import CliRunner

    from tinybot.cli.sim import sim_command

    result = CliRunner().invoke(sim_command, args)
    assert result.exit_code == 2 and flag in result.output, result.output


def test_cli_refuses_a_non_loopback_host():
    from click.testing import CliRunner

    from tinybot.cli.sim import sim_command

    result = CliRunner().invoke(sim_command, ["--host", "0.0.0.0"])
    assert result.exit_code == 1 and "Error: the simulator binds to loopback only" in result.output


def test_default_clock_follows_freezegun():
    from freezegun import freeze_time

    with freeze_time("2025-06-01 12:00:30") as frozen:
        s = Simulator(history=10)
        assert s.now_ms() == 1_748_779_230_000
        assert s.candles("BTC-EUR")[-1][0] == 1_748_779_200_000
        frozen.tick(90)
        assert s.candles("BTC-EUR")[-1][0] == 1_748_779_320_000


@pytest.mark.parametrize("prefix", ["/v2", ""])
def test_hand_signed_request_like_any_bitvavo_client(sim, prefix):
    import hashlib
    import hmac

    body = json.dumps(
        {
            "market": "BTC-EUR",
            "side": "buy",
            "orderType": "market",
            "amountQuote": "6",
            "operatorId": 1,
            "clientOrderId": cid(),
        },
        separators=(",", ":"),
    )
    ts = str(int(time.time() * 1000))
    # Clients always sign "/v2" + path, whatever URL prefix they were configured with.
    sig = hmac.new(b"trade-secret", (ts + "POST" + "/v2/order" + body).encode(), hashlib.sha256).hexdigest()
    req = urllib.request.Request(
        sim.url + prefix + "/order",
        data=body.encode(),
        method="POST",
        headers={
            "Bitvavo-Access-Key": TRADE_KEY,
            "Bitvavo-Access-Signature": sig,
            "Bitvavo-Access-Timestamp": ts,
            "Bitvavo-Access-Window": "10000",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=2) as r:
        order = json.loads(r.read())
        assert r.headers["bitvavo-ratelimit-remaining"] == "999"
    assert order["status"] == "filled" and order["operatorId"] == 1 and order["amountQuote"] == "6"
    tampered = urllib.request.Request(
        sim.url + prefix + "/order", data=body.replace('"6"', '"7"').encode(), method="POST", headers=dict(req.headers)
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(tampered, timeout=2)
    assert e.value.code == 403 and json.loads(e.value.read())["errorCode"] == 309


def test_keys_of_one_account_share_balances_and_orders(sim_factory, ccxt_client):
    """Two API keys of one account: the view-only key sees what the trade key did (as on Bitvavo)."""
    from helpers.sim import TRADE_SECRET, make_ccxt, shared_accounts

    running = sim_factory(accounts=shared_accounts())
    trader = make_ccxt(running.url, TRADE_KEY, TRADE_SECRET)
    reader = make_ccxt(running.url, READ_KEY, READ_SECRET)
    cid = str(uuid.uuid4())
    placed = trader.create_order("BTC/EUR", "market", "buy", None, None, {"cost": "5", "clientOrderId": cid})
    # Reading orders is a Trade right (SDK README): the view-only key is refused, the balance is not.
    with pytest.raises(ccxt.PermissionDenied) as e:
        reader.fetch_order(placed["id"], "BTC/EUR")
    assert error_code(e.value) == 310
    assert trader.fetch_order(placed["id"], "BTC/EUR")["info"]["clientOrderId"] == cid
    assert reader.fetch_balance()["EUR"]["free"] == 20
    with pytest.raises(ccxt.PermissionDenied):
        reader.create_order("BTC/EUR", "market", "buy", None, None, {"cost": "5", "clientOrderId": str(uuid.uuid4())})
    with pytest.raises(ValueError, match="give balances on its first key only"):
        Simulator(
            accounts=[
                *shared_accounts()[:1],
                type(shared_accounts()[1])("k2", "s2", frozenset({"view"}), {"EUR": 1}, account="me"),
            ]
        )
