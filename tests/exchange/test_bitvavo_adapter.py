"""The live adapter against the simulator over real HTTP: how every outcome is classified.

A spy on ccxt's requests session records each HTTP request the adapter makes,
so "nothing was sent" is checked on the wire, not assumed.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from helpers.sim import OPERATOR_ID, READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, make_ccxt
from tinybot.base import clock
from tinybot.base.config import Config, ExchangeConfig
from tinybot.base.errors import ConfigError
from tinybot.base.secrets import Secrets
from tinybot.exchange.bitvavo import endpoint, reads
from tinybot.exchange.base import READ_METHODS, ExchangeError, ReadOnlyClientError
from tinybot.exchange.bitvavo.clients import BitvavoReadOnly, BitvavoTrading, probe_key_rights, read_only_client
from tinybot.exchange.bitvavo.errors import classify_send
from tinybot.sim import SimAccount

MARKET = "BTC-EUR"
CLIENT_TIMEOUT = timedelta(milliseconds=300)  # a hanging fault costs this much, not 30 s


@pytest.fixture(autouse=True)
def no_backoff_left_over():
    # the backoff is process-wide, keyed by URL: a later simulator may reuse a port
    endpoint._backoff_until.clear()
    yield
    endpoint._backoff_until.clear()


@pytest.fixture
def rich_sim(sim_factory):
    """Like `sim`, but the trade key has €1000 so several faulty sends still have funds."""
    return sim_factory(
        accounts=[
            SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal("1000")}),
            SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {"EUR": Decimal("25")}),
        ]
    )


def make_cfg(tmp_path, url, **exchange) -> Config:
    exchange = {"operator_id": OPERATOR_ID, "url": url, "timeout": CLIENT_TIMEOUT} | exchange
    return Config(path=tmp_path / "bot.toml", exchange=ExchangeConfig(**exchange))


@dataclass
class Wire:
    """Every HTTP request one client made: (method, url, body, headers)."""

    requests: list = field(default_factory=list)
    responses: list = field(default_factory=list)  # (status, headers) of each answer that came

    def to(self, method: str, path: str) -> list:
        return [r for r in self.requests if r[0] == method and r[1].split("?")[0].endswith(path)]

    def bodies(self) -> list[dict]:
        return [json.loads(r[2]) for r in self.to("POST", "/v2/order")]


def spy(client) -> Wire:
    wire, session = Wire(), client.client.session
    real = session.request

    def request(method, url, data=None, headers=None, **kw):
        wire.requests.append((method, url, data, dict(headers or {})))
        response = real(method, url, data=data, headers=headers, **kw)
        wire.responses.append((response.status_code, response.headers))
        return response

    session.request = request
    return wire


def never_sleep(seconds):
    raise AssertionError(f"a test tried to sleep {seconds}s: inject a sleep that moves the clock")


@pytest.fixture
def trading(rich_sim, tmp_path):
    t = BitvavoTrading(make_cfg(tmp_path, rich_sim.url), TRADE_KEY, TRADE_SECRET, rate_limit=False, sleep=never_sleep)
    return t, spy(t), rich_sim.sim


def cid() -> str:
    return str(uuid.uuid4())


def buy(t, amount_quote="5", client_order_id=None):
    return t.send_order(MARKET, "buy", client_order_id=client_order_id or cid(), amount_quote=Decimal(amount_quote))


# --- faults on the order request, through real HTTP ------------------------------------


def test_timeout_after_accept_is_ambiguous_and_the_order_exists(trading):
    t, wire, sim = trading
    sim.add_fault("timeout_after_accept", delay=5)
    c = cid()
    since = t.server_time_ms() - 1000
    out = buy(t, client_order_id=c)
    assert (out.kind, out.code) == ("ambiguous", "RequestTimeout")
    assert [o["clientOrderId"] for o in sim.orders()] == [c]
    assert len(wire.to("POST", "/v2/order")) == 1
    # what reconcile will find: not by its clientOrderId (a filled order, the simulator's default reading),
    # but in the market's orders since the send
    assert t.fetch_order(MARKET, c) is None
    assert [o.status for o in t.orders_since(MARKET, since) if o.client_order_id == c] == ["filled"]


def test_timeout_before_accept_is_ambiguous_and_nothing_exists(trading):
    t, wire, sim = trading
    sim.add_fault("timeout_before_accept", delay=5)
    c = cid()
    out = buy(t, client_order_id=c)
    assert (out.kind, out.code) == ("ambiguous", "RequestTimeout")
    assert sim.orders() == []
    assert t.fetch_order(MARKET, c) is None


@pytest.mark.parametrize(
    "kind, code, created",
    [
        ("html_5xx", "ExchangeNotAvailable", 0),
        ("error_101", "101", 1),
        ("error_109", "109", 1),
        ("rate_limit_110", "110", 0),
        ("garbage_200", "no_order_in_200", 1),
        ("reset", "NetworkError", 1),
    ],
)
def test_faults_that_leave_the_order_in_doubt_are_ambiguous(trading, kind, code, created):
    t, wire, sim = trading
    sim.add_fault(kind)
    out = buy(t)
    assert (out.kind, out.code) == ("ambiguous", code), out
    assert out.order is None and out.reason
    assert "<" not in out.reason  # no HTML or traceback in the audit line
    assert len(sim.orders()) == created
    assert len(wire.to("POST", "/v2/order")) == 1


@pytest.mark.parametrize("kind", ["error_101", "error_109", "garbage_200", "reset"])
def test_ambiguous_even_when_the_exchange_did_nothing(trading, kind):
    t, _, sim = trading
    sim.add_fault(kind, accept=False)
    assert buy(t).kind == "ambiguous"
    assert sim.orders() == []


def test_220_open_order_with_same_client_id_is_ambiguous(trading, monkeypatch):
    t, wire, sim = trading
    c = cid()
    resting = make_ccxt(t.url)  # a limit order far below the market stays open
    resting.create_order("BTC/EUR", "limit", "buy", 0.01, 1000, {"clientOrderId": c})
    monkeypatch.setattr(t.reader, "fetch_order", lambda market, client_order_id: None)  # skip the pre-send lookup
    monkeypatch.setattr(t.reader, "orders_since", lambda market, since_ms: [])  # and its scan
    out = buy(t, client_order_id=c)
    assert (out.kind, out.code) == ("ambiguous", "220")
    assert len(wire.to("POST", "/v2/order")) == 1  # the exchange said 220, not the pre-send lookup
    assert len(sim.orders()) == 1


def test_resend_after_fill_is_caught_by_the_lookup(trading):
    t, wire, sim = trading
    c = cid()
    assert buy(t, client_order_id=c).kind == "accepted"
    out = buy(t, client_order_id=c)
    assert (out.kind, out.code) == ("ambiguous", "220")
    assert len(sim.orders()) == 1 and len(wire.to("POST", "/v2/order")) == 1


# --- refusals -----------------------------------------------------------------------------


def test_insufficient_funds_from_the_exchange_is_refused_216(trading):
    t, wire, sim = trading
    out = buy(t, "5000")
    assert (out.kind, out.code) == ("refused", "216")
    assert "sufficient balance" in out.reason
    assert sim.orders() == [] and len(wire.to("POST", "/v2/order")) == 1


def test_below_minimum_from_the_exchange_is_refused_217(trading, monkeypatch):
    t, wire, sim = trading
    import dataclasses

    lax = {k: dataclasses.replace(m, min_quote=Decimal("0")) for k, m in t.markets().items()}
    monkeypatch.setattr(t.reader, "cached_markets", lambda: lax)  # let the exchange be the one to refuse
    out = buy(t, "4")
    assert (out.kind, out.code) == ("refused", "217")
    assert sim.orders() == [] and len(wire.to("POST", "/v2/order")) == 1


def test_local_checks_refuse_without_an_order_request(trading):
    t, wire, sim = trading
    cases = [
        (dict(amount_quote=Decimal("4.99")), "217"),  # below €5
        (dict(amount=Decimal("0.00001")), "217"),  # ~€0.60 of BTC, priced from the ticker
        (dict(amount_quote=Decimal("10.001")), "205"),  # more than notionalDecimals
        (dict(amount=Decimal("0.000100001")), "205"),  # more than quantityDecimals
        (dict(amount_quote=Decimal("10"), amount=Decimal("1")), "205"),
        (dict(), "205"),
        (dict(amount_quote=Decimal("-5")), "205"),
    ]
    for kwargs, code in cases:
        out = t.send_order(MARKET, "buy", client_order_id=cid(), **kwargs)
        assert (out.kind, out.code) == ("refused", code), (kwargs, out)
    assert t.send_order("DOGE-EUR", "buy", client_order_id=cid(), amount_quote=Decimal("5")).kind == "refused"
    assert t.send_order(MARKET, "buy", client_order_id="not-a-uuid", amount_quote=Decimal("5")).code == "205"
    assert wire.to("POST", "/v2/order") == [] and sim.orders() == []


def test_bad_operator_id_is_refused(rich_sim, tmp_path):
    t = BitvavoTrading(make_cfg(tmp_path, rich_sim.url, operator_id=0), TRADE_KEY, TRADE_SECRET, rate_limit=False)
    out = buy(t)
    assert (out.kind, out.code) == ("refused", "205")
    assert "operatorId" in out.reason
    assert rich_sim.sim.orders() == []


def test_view_only_key_is_refused(rich_sim, tmp_path):
    # a view-only key may not even read orders, so the pre-send clientOrderId check is refused (31x)
    # and nothing is sent; were it allowed to read, the order request itself would get 310
    t = BitvavoTrading(make_cfg(tmp_path, rich_sim.url), READ_KEY, READ_SECRET, rate_limit=False)
    wire = spy(t)
    out = buy(t)
    assert out.kind == "refused", out
    assert re.search(r"errorCode 31\d", out.reason), out.reason
    assert rich_sim.sim.orders() == [] and wire.to("POST", "/v2/order") == []


def test_missing_operator_id_fails_construction(rich_sim, tmp_path):
    cfg = make_cfg(tmp_path, rich_sim.url, operator_id=None)
    with pytest.raises(ConfigError) as e:
        BitvavoTrading(cfg, TRADE_KEY, TRADE_SECRET)
    assert str(e.value) == f"live mode needs an operatorId: set [exchange] operator_id in {tmp_path / 'bot.toml'}"


def test_missing_operator_id_is_refused_before_any_request(trading):
    t, wire, sim = trading
    t.operator_id = None
    t.client.options["operatorId"] = None
    out = buy(t)
    assert (out.kind, out.code) == ("refused", "no_operator_id")
    assert wire.requests == [] and sim.orders() == []


# --- exact amounts on the wire ---------------------------------------------------------------


def test_amounts_are_sent_exactly_as_given(trading):
    t, wire, sim = trading
    assert buy(t, "10").kind == "accepted"
    assert buy(t, "10.00").kind == "accepted"
    assert buy(t, "5.10").kind == "accepted"
    btc = t.balances()["BTC"].available
    out = t.send_order(MARKET, "sell", client_order_id=cid(), amount=btc)
    assert out.kind == "accepted", out
    bodies = wire.bodies()
    assert [b.get("amountQuote") for b in bodies[:3]] == ["10", "10.00", "5.10"]
    assert bodies[3]["amount"] == format(btc, "f") and "amountQuote" not in bodies[3]
    for b in bodies:
        assert b["operatorId"] == OPERATOR_ID and isinstance(b["operatorId"], int)
        assert b["orderType"] == "market" and uuid.UUID(b["clientOrderId"])
        assert "cost" not in b
    # what the exchange booked (the simulator echoes amounts in its own normal form)
    assert [Decimal(o["amountQuote"]) for o in sim.orders()[:3]] == [Decimal("10"), Decimal("10"), Decimal("5.1")]


def test_buy_by_base_and_sell_by_eur(trading):
    t, wire, sim = trading
    out = t.send_order(MARKET, "buy", client_order_id=cid(), amount=Decimal("0.0002"))
    assert out.kind == "accepted", out
    assert out.order.amount == Decimal("0.0002") and out.order.filled_amount == Decimal("0.0002")
    out = t.send_order(MARKET, "sell", client_order_id=cid(), amount_quote=Decimal("6"))
    assert out.kind == "accepted", out
    assert wire.bodies()[0]["amount"] == "0.0002" and wire.bodies()[1]["amountQuote"] == "6"


def test_access_window_timeout_and_operator_reach_ccxt(rich_sim, tmp_path):
    cfg = make_cfg(tmp_path, rich_sim.url, access_window=timedelta(seconds=5), timeout=timedelta(seconds=3))
    t = BitvavoTrading(cfg, TRADE_KEY, TRADE_SECRET, rate_limit=False)
    assert t.client.timeout == 3000 and t.client.options["operatorId"] == OPERATOR_ID
    assert t.client.enableRateLimit is False
    assert BitvavoTrading(cfg, TRADE_KEY, TRADE_SECRET).client.enableRateLimit is True
    wire = spy(t)
    t.balances()
    headers = {k.lower(): v for k, v in wire.requests[-1][3].items()}
    assert headers["bitvavo-access-window"] == "5000"
    assert headers["bitvavo-access-key"] == TRADE_KEY


# --- rate limits ------------------------------------------------------------------------------


def at_second_15_of_next_minute() -> datetime:
    """A moment a few seconds ahead (freezegun moves the simulator's clock too): hh:mm:15."""
    now = datetime.now(timezone.utc)
    return now.replace(second=15, microsecond=0) + timedelta(minutes=1)


def test_after_a_110_nothing_reaches_the_exchange_until_the_end_of_the_next_minute(trading):
    t, wire, sim = trading
    sim.add_fault("rate_limit_110", on="balance")
    over = at_second_15_of_next_minute()
    free = over.replace(second=0) + timedelta(minutes=2)  # over at 12:00:15 → free at 12:02:00
    with freeze_time(over):
        with pytest.raises(ExchangeError) as e:
            t.balances()
    assert "errorCode 110" in str(e.value)
    status, headers = wire.responses[-1]
    assert status == 429 and int(headers["bitvavo-ratelimit-resetat"]) < clock.to_ms(free)  # the header says +60 s
    assert t.rate_limited_until_ms() == clock.to_ms(free)
    n = len(wire.requests)
    with freeze_time(free - timedelta(milliseconds=1)):
        with pytest.raises(ExchangeError, match=r"^Bitvavo rate limited until \d{4}-"):
            t.ticker(MARKET)
        out = buy(t)
        assert (out.kind, out.code) == ("refused", "rate_limited")
    assert len(wire.requests) == n and sim.orders() == []
    with freeze_time(free):
        assert t.ticker(MARKET).bid > 0
    assert len(wire.requests) == n + 1


def test_a_105_ban_lasts_as_long_as_its_message_says(trading, monkeypatch):
    t, wire, sim = trading
    monkeypatch.setattr(endpoint, "PACE_RESERVE", 0)  # let it run into the limit (pacing would stop short)
    sim.set_mode(rate_limit_code=105)
    sim.rate_limit = 6  # balance weighs 5: the second call goes over
    over = at_second_15_of_next_minute()
    with freeze_time(over):
        t.balances()
        with pytest.raises(ExchangeError) as e:
            t.balances()
    assert "errorCode 105" in str(e.value)
    stated = int(re.search(r"\b(\d{13})\b", str(e.value)).group(1))
    assert t.rate_limited_until_ms() == max(stated, clock.to_ms(over.replace(second=0) + timedelta(minutes=2)))


def test_110_with_http_404_is_an_invalid_endpoint_not_a_rate_limit(trading):
    t, wire, sim = trading
    with pytest.raises(ExchangeError) as e:
        t._ep.call("nothing", t.client.fetch, t.url + "/v2/nowhere", "GET")
    assert "errorCode 110" in str(e.value) and wire.responses[-1][0] == 404
    assert t.rate_limited_until_ms() is None  # no backoff: it was a bug, not a ban
    assert t.ticker(MARKET).bid > 0


def test_a_send_answered_110_with_404_is_refused_and_one_with_429_is_ambiguous():
    import ccxt

    e = ccxt.BadRequest('bitvavo {"errorCode":110,"error":"Invalid endpoint. Please check url and HTTP method."}')
    assert (classify_send(e, 404).kind, classify_send(e, 404).code) == ("refused", "110")
    assert classify_send(e, 429).kind == "ambiguous"
    assert classify_send(e).kind == "ambiguous"  # no status known: the safe side


def test_reads_pause_before_the_minute_budget_runs_out(sim_factory, tmp_path):
    """Bitvavo answers every call with bitvavo-ratelimit-remaining/-resetat: tinybot waits for the
    minute to end before it reaches 0, instead of running into a 429 (the sleep is injected)."""
    rich = sim_factory(
        accounts=[SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal("1000")})],
        rate_limit=30,
    )
    sleeps: list[float] = []
    start = at_second_15_of_next_minute()
    with freeze_time(start) as frozen:

        def sleep(seconds):
            sleeps.append(seconds)
            frozen.tick(timedelta(seconds=seconds))

        t = BitvavoTrading(make_cfg(tmp_path, rich.url), TRADE_KEY, TRADE_SECRET, rate_limit=False, sleep=sleep)
        wire = spy(t)
        for _ in range(12):  # 12 × weight 5 = 60: twice the minute's budget of 30
            assert t.balances()["EUR"].available == Decimal("1000")
    assert [s for s, _ in wire.responses] == [200] * 12  # never a 429
    assert len(sleeps) >= 2 and all(0 < s <= 61 for s in sleeps)
    assert t.rate_limited_until_ms() is None


def test_backoff_is_shared_by_clients_of_the_same_key(trading, tmp_path):
    t, _, sim = trading
    sim.add_fault("rate_limit_110", on="ticker")
    with pytest.raises(ExchangeError):
        t.ticker(MARKET)
    other = BitvavoTrading(t.cfg, TRADE_KEY, TRADE_SECRET, rate_limit=False)
    wire = spy(other)
    with pytest.raises(ExchangeError, match="rate limited until"):
        other.markets()
    assert wire.requests == []
    assert BitvavoReadOnly(t.cfg, READ_KEY, READ_SECRET, rate_limit=False).balances()["EUR"].available == 25


# --- the read-only client and key separation -------------------------------------------------


def test_both_clients_answer_every_read_with_their_readers_own_method(tmp_path):
    """The reads have one home (reads.Reader): neither client class defines or forwards one by hand."""
    cfg = make_cfg(tmp_path, "http://127.0.0.1:9")  # nothing is called: construction opens no socket
    ro = BitvavoReadOnly(cfg, READ_KEY, READ_SECRET, lookup_key=TRADE_KEY, lookup_secret=TRADE_SECRET)
    trading = BitvavoTrading(cfg, TRADE_KEY, TRADE_SECRET)
    for client in (ro, trading):
        for name in reads.EXPOSED:
            assert name not in vars(type(client)), f"{type(client).__name__}.{name} is written by hand"
            assert getattr(client, name).__self__ is client.reader, name
    assert set(READ_METHODS) <= set(reads.EXPOSED)


def test_read_only_client_cannot_trade(rich_sim, tmp_path):
    r = BitvavoReadOnly(make_cfg(tmp_path, rich_sim.url), READ_KEY, READ_SECRET, rate_limit=False)
    wire = spy(r)
    with pytest.raises(ReadOnlyClientError):
        r.send_order(MARKET, "buy", client_order_id=cid(), amount_quote=Decimal("5"))
    with pytest.raises(ReadOnlyClientError):
        r.cancel_order(MARKET, cid())
    assert wire.requests == [] and rich_sim.sim.orders() == []
    assert r.client.options["operatorId"] is None


def test_read_only_client_reads_only_the_read_key(rich_sim, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYBOT_READ_KEY", READ_KEY)
    monkeypatch.setenv("TINYBOT_READ_SECRET", READ_SECRET)
    monkeypatch.setenv("TINYBOT_TRADE_KEY", TRADE_KEY)
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", TRADE_SECRET)
    secrets = Secrets(tmp_path / "secrets.env")
    monkeypatch.setattr(Config, "secrets", lambda self: secrets)
    r = read_only_client(make_cfg(tmp_path, rich_sim.url), rate_limit=False)
    assert secrets.requested == ["TINYBOT_READ_KEY", "TINYBOT_READ_SECRET"]
    assert (r.client.apiKey, r.client.secret) == (READ_KEY, READ_SECRET)
    assert TRADE_KEY not in (r.client.apiKey, r.client.secret)
    assert r.balances()["EUR"].available == Decimal("25")  # the read key's account


def test_without_a_read_key_public_data_works_and_balances_say_why(rich_sim, tmp_path, monkeypatch):
    for name in ("TINYBOT_READ_KEY", "TINYBOT_READ_SECRET"):
        monkeypatch.delenv(name, raising=False)
    r = read_only_client(make_cfg(tmp_path, rich_sim.url), rate_limit=False)
    assert not r.client.apiKey
    assert r.ticker(MARKET).ask > 0
    with pytest.raises(ExchangeError) as e:
        r.balances()
    assert str(e.value) == "balance needs a read key: set TINYBOT_READ_KEY/SECRET"


# --- reads ------------------------------------------------------------------------------------


def test_candles_are_oldest_first_and_exact(rich_sim, tmp_path):
    r = BitvavoReadOnly(make_cfg(tmp_path, rich_sim.url), rate_limit=False)
    cs = r.candles(MARKET, "1m", 5)
    assert len(cs) == 5
    assert [c.timestamp_ms for c in cs] == sorted(c.timestamp_ms for c in cs)
    assert all(isinstance(c.close, Decimal) for c in cs)
    assert cs[-1].close == rich_sim.sim.price(MARKET)


def test_failed_reads_raise_a_readable_exchange_error(trading):
    t, _, sim = trading
    for kind, words in [
        ("html_5xx", "exchange not available (HTTP 502)"),
        ("garbage_200", "unexpected answer to balance"),
        ("reset", "network error"),
    ]:
        sim.add_fault(kind, on="balance")
        with pytest.raises(ExchangeError) as e:
            t.balances()
        assert words in str(e.value)
        assert e.value.__cause__ is None and e.value.__suppress_context__
        assert "<" not in str(e.value) and "Traceback" not in str(e.value)


def test_open_orders_always_name_the_market_and_cancel(trading):
    t, wire, sim = trading
    c = cid()
    make_ccxt(t.url).create_order("BTC/EUR", "limit", "buy", 0.01, 1000, {"clientOrderId": c})
    [o] = t.open_orders(MARKET)
    assert (o.client_order_id, o.status, o.is_open) == (c, "new", True)
    assert all("market=BTC-EUR" in r[1] for r in wire.to("GET", "/v2/ordersOpen"))
    assert t.cancel_order(MARKET, c) is True
    assert t.open_orders(MARKET) == []
    assert t.cancel_order(MARKET, c) is False
    assert t.fetch_order(MARKET, c) is None  # closed: not found by clientOrderId (the default reading)
    assert [o.status for o in t.orders_since(MARKET, t.server_time_ms() - 60_000)] == ["canceled"]


# --- the classifier on its own ----------------------------------------------------------------


def test_classifier_on_exceptions_ccxt_raises_without_http():
    import ccxt

    assert classify_send(ccxt.ArgumentsRequired("bitvavo createOrder() requires an operatorId")).kind == "refused"
    assert classify_send(ccxt.BadRequest('bitvavo {"errorCode":110,"error":"Rate limit"}')).kind == "ambiguous"
    assert classify_send(ccxt.InvalidOrder('bitvavo {"errorCode":217,"error":"min"}')).code == "217"
    assert classify_send(ccxt.ExchangeError('bitvavo {"errorCode":220,"error":"dup"}')).kind == "ambiguous"
    assert classify_send(ccxt.ExchangeError('bitvavo {"errorCode":999,"error":"new"}')).kind == "ambiguous"
    assert classify_send(ccxt.BadRequest("bitvavo POST http://x/v2/order 400 Bad Request ")).kind == "ambiguous"
    assert classify_send(ccxt.DDoSProtection("bitvavo 418")).kind == "ambiguous"
    assert classify_send(TypeError("boom")).kind == "ambiguous"
    assert classify_send({"id": None, "info": "not json"}).kind == "ambiguous"
    assert classify_send({"id": "x", "info": {"orderId": "x"}}).kind == "ambiguous"  # an order we cannot read


# --- unsettled fills, time windows, pages, the pre-send check --------------------------------


def rich_accounts():
    return [SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal("1000")})]


def test_unsettled_fills_carry_no_fee_until_bitvavo_settles_them(sim_factory, tmp_path):
    running = sim_factory(accounts=rich_accounts(), unsettled="manual")
    t = BitvavoTrading(make_cfg(tmp_path, running.url), TRADE_KEY, TRADE_SECRET, rate_limit=False, sleep=never_sleep)
    since = t.server_time_ms() - 1000
    out = buy(t, "6")
    assert out.kind == "accepted", out
    (f,) = out.order.fills
    assert (f.settled, f.fee) == (False, Decimal(0))
    (f,) = t.trades_since(MARKET, since)
    assert (f.settled, f.fee) == (False, Decimal(0))
    assert running.sim.settle_fills() == 1
    (g,) = t.trades_since(MARKET, since)
    assert (g.trade_id, g.settled) == (f.trade_id, True) and g.fee > 0
    [later] = t.orders_since(MARKET, since)
    assert g.fee == later.fee_paid


@pytest.mark.parametrize("window", ["clamp", "refuse"])
def test_orders_and_trades_older_than_a_day_are_read_in_24_hour_slices(sim_factory, tmp_path, window):
    """Bitvavo's GET /trades spans at most 24 h a request (its websocket docs say the same of orders):
    whether the exchange refuses a longer span or silently cuts it, every order and fill is found."""
    running = sim_factory(accounts=rich_accounts(), trades_window=window, orders_window=window)
    start = datetime.now(timezone.utc)
    with freeze_time(start) as frozen:
        t = BitvavoTrading(
            make_cfg(tmp_path, running.url), TRADE_KEY, TRADE_SECRET, rate_limit=False, sleep=never_sleep
        )
        sent = []
        for _ in range(3):
            out = buy(t)
            assert out.kind == "accepted", out
            sent.append(out.order.order_id)
            frozen.tick(timedelta(hours=25))
        wire = spy(t)
        since = clock.to_ms(start) - 60_000
        assert sorted(o.order_id for o in t.orders_since(MARKET, since)) == sorted(sent)
        assert sorted(f.order_id for f in t.trades_since(MARKET, since)) == sorted(sent)
        now = clock.now_ms()
    day = 86_400_000
    for path in ("/v2/orders", "/v2/trades"):
        spans = []
        for _, url, _, _ in wire.to("GET", path):
            q = dict(p.split("=") for p in url.split("?")[1].split("&"))
            s, e = int(q["start"]), int(q["end"]) if "end" in q else None
            assert (e - s if e is not None else now - s) <= day, url
            spans.append((s, e))
        assert len(spans) >= 4  # 75 hours in slices of at most 24
        assert spans[0][0] == since and spans[-1][1] is None
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous: nothing falls between


def test_a_full_page_is_followed_back_until_it_is_not_full(trading, monkeypatch):
    t, _, sim = trading
    since = t.server_time_ms() - 1000
    sent = {buy(t).order.order_id for _ in range(5)}
    monkeypatch.setattr(reads, "PAGE_LIMIT", 2)
    wire = spy(t)
    assert {o.order_id for o in t.orders_since(MARKET, since)} == sent
    assert {f.order_id for f in t.trades_since(MARKET, since)} == sent
    assert len(wire.to("GET", "/v2/orders")) >= 3 and len(wire.to("GET", "/v2/trades")) >= 3


def test_lookups_further_back_than_a_month_are_refused_not_silently_cut(trading):
    t, wire, _ = trading
    with pytest.raises(ExchangeError, match="more than 31 days back"):
        t.orders_since(MARKET, 0)
    assert wire.requests == []


def test_the_pre_send_check_scans_orders_since_the_claim_when_the_id_lookup_finds_nothing(sim_factory, tmp_path):
    """Bitvavo may not find a closed order by clientOrderId: a resend after a fill must still be caught."""
    running = sim_factory(accounts=rich_accounts(), find_closed_by_client_id=False)
    t = BitvavoTrading(make_cfg(tmp_path, running.url), TRADE_KEY, TRADE_SECRET, rate_limit=False, sleep=never_sleep)
    c, claimed = cid(), t.server_time_ms() - 5_000
    first = t.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("5"), claimed_ms=claimed)
    assert first.kind == "accepted", first
    assert t.fetch_order(MARKET, c) is None  # the premise: the filled order is not found by its id
    wire = spy(t)
    again = t.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("5"), claimed_ms=claimed)
    assert (again.kind, again.code) == ("ambiguous", "220"), again
    assert first.order.order_id in again.reason
    assert wire.to("POST", "/v2/order") == [] and len(running.sim.orders()) == 1
    (scan,) = wire.to("GET", "/v2/orders")
    assert f"start={claimed}" in scan[1]
    # without a claim time the scan starts one day before the signing deadline
    sign_by = t.server_time_ms() + 10_000
    wire.requests.clear()
    again = t.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("5"), sign_by_ms=sign_by)
    assert (again.kind, again.code) == ("ambiguous", "220")
    assert f"start={sign_by - 86_400_000}" in wire.to("GET", "/v2/orders")[0][1]
    assert len(running.sim.orders()) == 1


def test_probing_what_each_key_may_read_uses_get_only(sim_factory, tmp_path):
    from helpers.sim import shared_accounts

    running = sim_factory(accounts=shared_accounts())
    cfg = make_cfg(tmp_path, running.url)
    keys = {"read": (READ_KEY, READ_SECRET), "trade": (TRADE_KEY, TRADE_SECRET)}
    read, trade = probe_key_rights(cfg, MARKET, keys, rate_limit=False)
    assert (read.role, read.balance, read.reads_orders) == ("read", None, False)
    assert "errorCode 310" in read.orders
    assert (trade.role, trade.balance, trade.orders, trade.reads_orders) == ("trade", None, None, True)
    # a "view" key that can read orders is reported as such (it very likely has trade rights)
    running.sim.set_mode(view_key_reads_orders=True)
    read, _ = probe_key_rights(cfg, MARKET, keys, rate_limit=False)
    assert read.reads_orders
    (bad,) = probe_key_rights(cfg, MARKET, {"read": ("nobody", "nothing")}, rate_limit=False)
    assert bad.balance and bad.orders and "errorCode 30" in bad.balance
    assert running.sim.orders() == []
