"""One contract, two backends: the paper exchange and ccxt → the Bitvavo simulator.

Every assertion here holds for both. Where the two may differ (how a reused
clientOrderId is answered), the test says what both must guarantee.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

from tinybot.base.config import Config, ExchangeConfig
from tinybot.exchange.base import MarketData, Trading

MARKET = "BTC-EUR"


@dataclass
class Backend:
    exchange: Trading
    eur_start: Decimal


def _paper(tmp_path: Path, request) -> Backend:
    from tinybot.exchange.paper import PaperExchange
    from tinybot.exchange.static import StaticMarketData

    ex = PaperExchange(tmp_path / "t.db", StaticMarketData(), starting_eur=Decimal("25"))
    request.addfinalizer(ex.close)
    return Backend(ex, Decimal("25"))


def _live(tmp_path: Path, request) -> Backend:
    from tinybot.exchange.bitvavo.clients import BitvavoTrading

    sim = request.getfixturevalue("sim")  # view+trade key with EUR 25
    cfg = Config(
        path=tmp_path / "bot.toml",
        exchange=ExchangeConfig(operator_id=sim.OPERATOR_ID, url=sim.url, timeout=timedelta(seconds=2)),
    )
    return Backend(BitvavoTrading(cfg, sim.TRADE_KEY, sim.TRADE_SECRET, rate_limit=False), Decimal("25"))


BACKENDS: dict[str, Callable] = {"paper": _paper, "live": _live}


@pytest.fixture(autouse=True)
def no_rate_limit_backoff():
    # the adapter's backoff is process-wide, keyed by URL; a new simulator may reuse a port
    from tinybot.exchange.bitvavo import endpoint

    endpoint._backoff_until.clear()


@pytest.fixture(params=list(BACKENDS))
def backend(request, tmp_path) -> Backend:
    return BACKENDS[request.param](tmp_path, request)


def cid() -> str:
    return str(uuid.uuid4())


def recent(ex: Trading) -> int:
    """An hour ago on the exchange's clock: every order of a test is newer (Bitvavo pages by 24 h)."""
    return ex.server_time_ms() - 3_600_000


def orders_with(ex: Trading, client_order_id: str) -> list:
    return [o for o in ex.orders_since(MARKET, recent(ex)) if o.client_order_id == client_order_id]


class TestExchangeContract:
    def test_implements_the_protocols(self, backend):
        assert isinstance(backend.exchange, MarketData)
        assert isinstance(backend.exchange, Trading)

    def test_markets_carry_minimum_and_precision(self, backend):
        m = backend.exchange.markets()[MARKET]
        assert (m.name, m.base, m.quote, m.status) == (MARKET, "BTC", "EUR", "trading")
        assert m.min_quote == Decimal("5")
        assert m.quantity_decimals == 8 and m.notional_decimals == 2
        assert isinstance(m.tick_size, Decimal) and m.tick_size > 0

    def test_ticker_bid_below_ask(self, backend):
        t = backend.exchange.ticker(MARKET)
        assert isinstance(t.bid, Decimal) and isinstance(t.ask, Decimal)
        assert 0 < t.bid < t.ask

    def test_starting_balance(self, backend):
        assert backend.exchange.balances()["EUR"].available == backend.eur_start

    def test_buy_by_eur_fills_with_fee_and_moves_balances(self, backend):
        ex, c = backend.exchange, cid()
        out = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("10"))
        assert out.kind == "accepted", out
        o = out.order
        assert (o.client_order_id, o.market, o.side, o.status) == (c, MARKET, "buy", "filled")
        assert o.amount_quote == Decimal("10")
        assert o.fee_currency == "EUR"
        assert o.filled_amount > 0 and o.fills and all(f.settled for f in o.fills)
        assert sum(f.amount for f in o.fills) == o.filled_amount
        assert sum(f.amount * f.price for f in o.fills) == o.filled_amount_quote
        assert sum(f.fee for f in o.fills) == o.fee_paid
        # Bitvavo: a buy by amountQuote costs exactly amountQuote; the base is truncated to
        # quantityDecimals (8 on BTC-EUR) and that remainder is part of the fee (tinybot/base/fees.py)
        assert o.filled_amount_quote + o.fee_paid == Decimal("10")
        assert o.filled_amount == o.filled_amount.quantize(Decimal("1e-8"))
        top = max(f.price for f in o.fills)
        nominal = Decimal("0.0025") * o.filled_amount_quote  # 0.25 % taker on what was traded
        assert nominal <= o.fee_paid < nominal + top * Decimal("1e-8") * Decimal("1.0025")
        bal = ex.balances()
        assert bal["EUR"].available == backend.eur_start - Decimal("10")
        assert bal["BTC"].available == o.filled_amount

    def test_sell_by_base_amount(self, backend):
        ex = backend.exchange
        bought = ex.send_order(MARKET, "buy", client_order_id=cid(), amount_quote=Decimal("10")).order
        eur_before = ex.balances()["EUR"].available
        out = ex.send_order(MARKET, "sell", client_order_id=cid(), amount=bought.filled_amount)
        assert out.kind == "accepted", out
        o = out.order
        assert (o.side, o.status, o.amount, o.filled_amount) == (
            "sell",
            "filled",
            bought.filled_amount,
            bought.filled_amount,
        )
        assert o.fee_currency == "EUR" and o.fee_paid > 0
        bal = ex.balances()
        assert bal.get("BTC") is None or bal["BTC"].available == 0
        assert bal["EUR"].available == eur_before + o.filled_amount_quote - o.fee_paid
        # by base amount the EUR side settles in whole cents, rounded down for a sell
        received = o.filled_amount_quote - o.fee_paid
        assert received == received.quantize(Decimal("0.01"))
        assert received == (o.filled_amount_quote * Decimal("0.9975")).quantize(Decimal("0.01"), "ROUND_FLOOR")

    def test_fetch_order_by_client_id(self, backend):
        """A filled order is found by its clientOrderId or, where the exchange finds only open orders that
        way (Bitvavo's websocket and FIX pages; the simulator's default), in the orders since the send."""
        ex, c = backend.exchange, cid()
        sent = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("6")).order
        found = ex.fetch_order(MARKET, c) or next(iter(orders_with(ex, c)), None)
        assert found is not None
        assert (found.order_id, found.client_order_id, found.status) == (sent.order_id, c, "filled")
        assert found.filled_amount == sent.filled_amount and found.fills == sent.fills
        assert ex.fetch_order(MARKET, cid()) is None

    def test_orders_since_includes_the_order(self, backend):
        ex = backend.exchange
        since = ex.server_time_ms() - 1000
        sent = ex.send_order(MARKET, "buy", client_order_id=cid(), amount_quote=Decimal("6")).order
        assert sent.order_id in [o.order_id for o in ex.orders_since(MARKET, since)]
        assert sent.order_id in [f.order_id for f in ex.trades_since(MARKET, since)]
        assert ex.orders_since(MARKET, sent.created_ms + 60_000) == []

    def test_below_minimum_is_refused_217_and_creates_nothing(self, backend):
        ex, c = backend.exchange, cid()
        out = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("4.99"))
        assert (out.kind, out.code) == ("refused", "217")
        assert out.reason
        assert ex.fetch_order(MARKET, c) is None
        assert ex.orders_since(MARKET, recent(ex)) == []
        assert ex.balances()["EUR"].available == backend.eur_start

    def test_insufficient_funds_is_refused_216(self, backend):
        ex, c = backend.exchange, cid()
        out = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("100"))
        assert (out.kind, out.code) == ("refused", "216")
        assert ex.fetch_order(MARKET, c) is None
        assert ex.balances()["EUR"].available == backend.eur_start

    def test_same_client_order_id_twice_never_makes_two_orders(self, backend):
        ex, c = backend.exchange, cid()
        first = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("6"))
        assert first.kind == "accepted"
        second = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("6"))
        assert second.kind in ("ambiguous", "refused"), second
        assert second.order is None
        assert len(orders_with(ex, c)) == 1
        assert ex.balances()["EUR"].available == backend.eur_start - Decimal("6")

    def test_a_resend_with_the_claim_time_is_never_a_second_order(self, backend):
        ex, c = backend.exchange, cid()
        claimed = ex.server_time_ms() - 2_000
        first = ex.send_order(MARKET, "buy", client_order_id=c, amount_quote=Decimal("6"), claimed_ms=claimed)
        assert first.kind == "accepted", first
        again = ex.send_order(
            MARKET,
            "buy",
            client_order_id=c,
            amount_quote=Decimal("6"),
            claimed_ms=claimed,
            sign_by_ms=ex.server_time_ms() + 10_000,
        )
        assert (again.kind, again.code) == ("ambiguous", "220"), again
        assert len(orders_with(ex, c)) == 1
        assert ex.balances()["EUR"].available == backend.eur_start - Decimal("6")
