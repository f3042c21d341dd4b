"""The adapter's parsers and classifier against Bitvavo's answers as recorded (tests/fixtures, see SOURCE)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal

import ccxt
import pytest

from helpers import FIXTURES
from tinybot.base.config import Config, ExchangeConfig
from tinybot.exchange.base import ExchangeError
from tinybot.exchange.bitvavo.clients import BitvavoReadOnly
from tinybot.exchange.bitvavo.errors import ERROR_CODES, classify_send
from tinybot.exchange.bitvavo.parse import fill_from_raw, markets_from_raw, order_from_raw


def load(name: str):
    return json.loads((FIXTURES / name).read_text())


# --- orders and fills ---------------------------------------------------------------------


def test_recorded_orders_parse_to_exact_decimals():
    raw = load("ccxt_bitvavo_orders.json")
    orders = [order_from_raw(r) for r in raw]
    o = orders[0]
    assert (o.order_id, o.client_order_id, o.market, o.side, o.order_type, o.status) == (
        "af596202-5712-4453-81fa-41bdca71e7b4",
        "123b3e62-bb61-41db-8425-cbc541c05fe9",
        "BTC-EUR",
        "sell",
        "market",
        "filled",
    )
    assert (o.amount, o.amount_quote) == (Decimal("0.00020002"), None)
    assert (o.filled_amount, o.filled_amount_quote, o.fee_paid, o.fee_currency) == (
        Decimal("0.00020002"),
        Decimal("6.89448938"),
        Decimal("0.02448938"),
        "EUR",
    )
    assert o.created_ms == 1700130652264 and not o.is_open
    (f,) = o.fills
    assert (f.trade_id, f.order_id, f.amount, f.price, f.fee, f.fee_currency, f.timestamp_ms, f.settled) == (
        "66aaa9c7-c9e9-4920-8629-d0e878d9cc3d",
        o.order_id,
        Decimal("0.00020002"),
        Decimal("34469"),
        Decimal("0.02448938"),
        "EUR",
        1700130652275,
        True,
    )
    for o, r in zip(orders, raw):
        assert sum(f.fee for f in o.fills) == o.fee_paid == Decimal(r["feePaid"])
        assert all(isinstance(x, Decimal) for x in (o.filled_amount, o.filled_amount_quote, o.fee_paid))


def test_recorded_open_limit_order_and_cancel_answer():
    o = order_from_raw(load("ccxt_bitvavo_create_order_limit.json"))
    assert (o.status, o.is_open, o.order_type, o.amount, o.fills) == ("new", True, "limit", Decimal("0.0003"), ())
    # a cancel answers only the id: enough for cancel_order's True, not an order to parse
    with pytest.raises(ExchangeError, match="has no 'market'"):
        order_from_raw(load("ccxt_bitvavo_cancel_order.json"))


def test_recorded_trades_parse_settled():
    fills = [fill_from_raw(r) for r in load("ccxt_bitvavo_trades.json")]
    assert [(f.side, f.amount, f.price, f.fee, f.settled) for f in fills] == [
        ("sell", Decimal("0.00020002"), Decimal("34469"), Decimal("0.02448938"), True),
        ("buy", Decimal("0.0002"), Decimal("34488"), Decimal("0.0224"), True),
    ]


def test_an_unsettled_trade_has_no_fee_yet_and_says_so():
    (row,) = load("constructed_bitvavo_unsettled_trade.json")["rows"]
    f = fill_from_raw(row)
    assert (f.settled, f.fee, f.fee_currency) == (False, Decimal(0), "")
    assert (f.amount, f.price) == (Decimal("0.00016"), Decimal("34500"))
    # the same trade once settled
    f2 = fill_from_raw(row | {"settled": True, "fee": "0.0138", "feeCurrency": "EUR"})
    assert (f2.trade_id, f2.settled, f2.fee) == (f.trade_id, True, Decimal("0.0138"))
    # a fee sent while settled is still false is not final either
    assert fill_from_raw(row | {"fee": "0.01", "feeCurrency": "EUR"}).settled is False


def test_an_order_whose_fill_is_not_settled():
    o = order_from_raw(load("constructed_bitvavo_unsettled_order.json")["order"])
    (f,) = o.fills
    assert (f.settled, f.fee, f.fee_currency) == (False, Decimal(0), "EUR")  # the order's feeCurrency
    assert (o.amount, o.amount_quote) == (None, Decimal("5.54"))


def test_a_sell_by_amount_quote_parses_with_amount_quote_and_no_amount():
    o = order_from_raw(load("constructed_bitvavo_sell_by_quote_order.json")["order"])
    assert (o.side, o.amount, o.amount_quote) == ("sell", None, Decimal("6"))
    assert (o.filled_amount, o.fee_paid) == (Decimal("0.00017391"), Decimal("0.019895"))


def test_a_malformed_fill_is_an_error_naming_the_field():
    raw = load("ccxt_bitvavo_orders.json")[0]
    bad = raw | {"fills": [raw["fills"][0] | {"price": "abc"}]}
    with pytest.raises(ExchangeError, match="'abc' for fill price, not a number"):
        order_from_raw(bad)


# --- balance ------------------------------------------------------------------------------------


def make_cfg(tmp_path) -> Config:
    return Config(
        path=tmp_path / "bot.toml",
        exchange=ExchangeConfig(operator_id=1, url="http://127.0.0.1:9", timeout=timedelta(seconds=1)),
    )


def offline(tmp_path, **answers) -> BitvavoReadOnly:
    """A read-only client whose ccxt raw endpoints answer with recorded JSON (no socket is opened)."""
    r = BitvavoReadOnly(make_cfg(tmp_path), "k", "s", rate_limit=False)
    for name, value in answers.items():
        setattr(r.client, name, lambda params, _v=value: _v)
    return r


def test_recorded_balance_and_omitted_zero_rows(tmp_path):
    rows = load("ccxt_bitvavo_balance.json")
    bal = offline(tmp_path, privateGetBalance=rows).balances()
    assert bal["EUR"].available == Decimal("16.48") and bal["EUR"].in_order == 0
    assert bal["ETH"].available == Decimal("0.00002812")
    # Bitvavo leaves zero balances out: the same account without them reads the same where it matters
    nonzero = [r for r in rows if Decimal(r["available"]) or Decimal(r["inOrder"])]
    bal2 = offline(tmp_path, privateGetBalance=nonzero).balances()
    assert "BTC" not in bal2 and bal2["EUR"] == bal["EUR"]
    assert offline(tmp_path, privateGetBalance=[]).balances() == {}


# --- markets ------------------------------------------------------------------------------------


def test_a_malformed_market_row_is_skipped_and_reported(tmp_path, caplog):
    rows = load("constructed_bitvavo_markets.json")["rows"]
    good, skipped = markets_from_raw(rows)
    assert sorted(good) == ["BTC-EUR", "ETH-EUR", "OLD-EUR"]
    assert list(skipped) == ["XYZ-EUR"] and "tickSize" in skipped["XYZ-EUR"]
    btc = good["BTC-EUR"]
    assert (btc.tick_size, btc.quantity_decimals, btc.notional_decimals, btc.min_quote, btc.min_base) == (
        Decimal("1"),
        8,
        2,
        Decimal("5.00"),
        Decimal("0.00006100"),
    )
    assert good["OLD-EUR"].status == "halted"  # usable row, not trading: the guards say so
    r = offline(tmp_path, publicGetMarkets=rows)
    with caplog.at_level(logging.WARNING, logger="tinybot.exchange"):
        assert sorted(r.markets()) == ["BTC-EUR", "ETH-EUR", "OLD-EUR"]
    assert r.skipped_markets == skipped
    assert "XYZ-EUR" in caplog.text


def test_a_market_table_with_no_usable_row_is_an_error():
    with pytest.raises(ExchangeError, match="no usable row"):
        markets_from_raw([{"market": "A-EUR"}, "garbage"])
    with pytest.raises(ExchangeError, match="unexpected answer to markets"):
        markets_from_raw({"errorCode": 101})
    assert markets_from_raw([]) == ({}, {})


# --- errors -------------------------------------------------------------------------------------


def ccxt_error(body: dict) -> Exception:
    """The exception ccxt raises for this body (its own exact-code table, or ExchangeError)."""
    text = "bitvavo " + json.dumps(body, separators=(",", ":"))
    cls = ccxt.bitvavo().exceptions["exact"].get(str(body["errorCode"]), ccxt.ExchangeError)
    return cls(text)


EXPECTED = {  # (HTTP status, errorCode) → kind
    (429, 110): "ambiguous",
    (429, 105): "ambiguous",
    (404, 110): "refused",
    (400, 219): "refused",
    (400, 422): "refused",
    (400, 423): "refused",
    (400, 429): "refused",
    (403, 310): "refused",
    (403, 311): "refused",
    (500, 101): "ambiguous",
    (503, 109): "ambiguous",
    (400, 205): "refused",  # too many decimals, as the real exchange answered it
    (403, 301): "refused",  # a key that is not 64 characters
    (404, 240): "ambiguous",  # "not found" is no answer to a send: reconcile looks (errors.py)
}


def test_every_recorded_error_is_classified_as_bitvavo_means_it():
    errors = load("constructed_bitvavo_errors.json")["errors"]
    assert {(s, b["errorCode"]) for s, b in errors} == set(EXPECTED)
    for status, body in errors:
        out = classify_send(ccxt_error(body), status)
        assert out.kind == EXPECTED[(status, body["errorCode"])], (status, body, out)
        assert out.code == str(body["errorCode"]) and body["error"] in out.reason


@pytest.mark.parametrize("code", [219, 313, 316, 317, 318, 319, 320, 422, 423, 424, 425, 426, 429])
def test_definite_refusals_ccxt_leaves_unmapped(code):
    out = classify_send(ccxt.ExchangeError(f'bitvavo {{"errorCode":{code},"error":"no"}}'), 400)
    assert (out.kind, out.code) == ("refused", str(code))


@pytest.mark.parametrize("code", [101, 109, 220])
def test_in_doubt_codes_stay_ambiguous(code):
    assert classify_send(ccxt.ExchangeError(f'bitvavo {{"errorCode":{code},"error":"?"}}'), 500).kind == "ambiguous"


def test_a_200_that_is_not_an_order_and_timeouts_stay_ambiguous():
    assert classify_send({"id": None, "info": "<html>"}).kind == "ambiguous"
    assert classify_send(ccxt.RequestTimeout("bitvavo POST")).kind == "ambiguous"
    assert classify_send(ccxt.ExchangeNotAvailable("bitvavo 502 <html>")).kind == "ambiguous"
    assert ERROR_CODES[110][0] == "ambiguous"  # with HTTP 429, or when the status is unknown


# --- answer shapes seen live (issue 24 item 5) --------------------------------------------------------


def test_answer_shapes_seen_live_parse_the_same():
    """Timestamps as strings, decimals counts as integers, a market order without timeInForce/postOnly and a
    filled amountQuote buy whose amountQuoteRemaining is its fee: tinybot reads each as it reads the rest."""
    from tinybot.exchange.bitvavo.parse import candles_from_raw, ticker_from_raw

    order = {
        "orderId": "1be6d0df-d5dc-4b53-a250-3376f3b393e6",
        "clientOrderId": "2be6d0df-d5dc-4b53-a250-3376f3b393e6",
        "market": "BTC-EUR",
        "created": "1706100650751",
        "updated": "1706100650751",
        "status": "filled",
        "side": "buy",
        "orderType": "market",
        "amountQuote": "6",
        "amountQuoteRemaining": "0.0149",
        "onHold": "0",
        "onHoldCurrency": "EUR",
        "filledAmount": "0.0001",
        "filledAmountQuote": "5.9851",
        "feePaid": "0.0149",
        "feeCurrency": "EUR",
        "fills": [
            {
                "id": "371c6bd3-d06d-4573-9f15-18697cd210e5",
                "timestamp": "1706100650759",
                "amount": "0.0001",
                "price": "59851",
                "taker": True,
                "fee": "0.0149",
                "feeCurrency": "EUR",
                "settled": True,
            }
        ],
        "selfTradePrevention": "decrementAndCancel",
        "visible": False,
    }
    o = order_from_raw(order)
    assert (o.status, o.created_ms, o.fills[0].timestamp_ms) == ("filled", 1706100650751, 1706100650759)
    assert (o.filled_amount_quote, o.fee_paid, o.amount_quote) == (Decimal("5.9851"), Decimal("0.0149"), Decimal(6))
    row = {
        "market": "BTC-EUR",
        "status": "trading",
        "base": "BTC",
        "quote": "EUR",
        "tickSize": "1",
        "minOrderInBaseAsset": "0.00006",
        "minOrderInQuoteAsset": "5.00",
        "quantityDecimals": 8,
        "notionalDecimals": 2,
    }
    markets, skipped = markets_from_raw([row])
    assert skipped == {} and (markets["BTC-EUR"].quantity_decimals, markets["BTC-EUR"].notional_decimals) == (8, 2)
    [c] = candles_from_raw([["1706100600000", "59800", "59900", "59700", "59851", "0.5"]])
    assert c.timestamp_ms == 1706100600000
    t = ticker_from_raw("BTC-EUR", {"bid": "1", "ask": "2", "last": "1.5", "timestamp": "1706100650751"})
    assert t.timestamp_ms == 1706100650751
