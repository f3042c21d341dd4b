"""tinybot.base.fees against Bitvavo's recorded fills, and the invariants the caps rely on."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from helpers import FIXTURES
from tinybot.base import fees


def recorded_orders() -> list[dict]:
    return json.loads((FIXTURES / "ccxt_bitvavo_orders.json").read_text())


@pytest.mark.parametrize("raw", recorded_orders(), ids=lambda r: f"{r['side']}-{r['amount']}")
def test_orders_by_base_settle_like_the_recorded_bitvavo_fills(raw):
    fills = [(Decimal(f["amount"]), Decimal(f["price"])) for f in raw["fills"]]
    s = fees.by_base(raw["side"], fills)
    assert s.base == Decimal(raw["filledAmount"])
    assert s.quote == Decimal(raw["filledAmountQuote"])
    assert s.fee == Decimal(raw["feePaid"])  # to the last digit Bitvavo sent
    assert s.eur == s.eur.quantize(fees.CENT)  # whole cents moved


def test_the_recorded_effective_fee_is_above_the_nominal_rate():
    for raw in recorded_orders():
        rate = Decimal(raw["feePaid"]) / Decimal(raw["filledAmountQuote"])
        assert Decimal("0.0032") < rate < Decimal("0.0036"), rate


def test_cent_rounding_is_against_the_user():
    # 0.0002 BTC @ 34488: 6.8976 × 1.0025 = 6.914844 → €6.92, not €6.91
    buy = fees.by_base("buy", [(Decimal("0.0002"), Decimal("34488"))])
    assert (buy.eur, buy.fee) == (Decimal("6.92"), Decimal("0.0224"))
    # 0.0002 BTC @ 34464: 6.8928 × 0.9975 = 6.875568 → €6.87, not €6.88
    sell = fees.by_base("sell", [(Decimal("0.0002"), Decimal("34464"))])
    assert (sell.eur, sell.fee) == (Decimal("6.87"), Decimal("0.0228"))


@pytest.mark.parametrize(
    "amount_quote, price, qd",
    [
        ("5", "60030", 8),
        ("10", "60030", 8),
        ("6.37", "34488", 8),
        ("25", "0.50025", 6),
        ("5.01", "3001.5", 4),
    ],
)
def test_buy_by_quote_costs_exactly_amount_quote(amount_quote, price, qd):
    x, p = Decimal(amount_quote), Decimal(price)
    s = fees.buy_by_quote(x, p, qd)
    assert s.quote + s.fee == x == s.eur  # filledAmountQuote + feePaid == amountQuote
    assert s.base == s.base.quantize(fees.quantity_step(qd))  # truncated to quantityDecimals
    assert s.quote == s.base * p
    # the fee is the nominal rate on what was traded plus less than one quantity step of base
    assert (
        fees.TAKER_FEE * s.quote <= s.fee < fees.TAKER_FEE * s.quote + p * fees.quantity_step(qd) * (1 + fees.TAKER_FEE)
    )


def test_buy_by_quote_truncates_not_rounds():
    # 10 / (60030 × 1.0025) = 0.000166168…: truncated to 0.00016616, never rounded up to …17
    s = fees.buy_by_quote(Decimal("10"), Decimal("60030"), 8)
    assert s.base == Decimal("0.00016616")
    assert s.fee == Decimal("10") - Decimal("0.00016616") * Decimal("60030")


def test_sell_by_quote_sells_truncated_base_and_settles_like_a_sell_by_base():
    raw = json.loads((FIXTURES / "constructed_bitvavo_sell_by_quote_order.json").read_text())["order"]
    s = fees.sell_by_quote(Decimal(raw["amountQuote"]), Decimal("34500"), 8)
    assert s.base == Decimal(raw["filledAmount"])
    assert (s.quote, s.fee) == (Decimal(raw["filledAmountQuote"]), Decimal(raw["feePaid"]))
    assert s.eur == Decimal("5.98")


def test_settle_dispatches_and_insists_on_one_amount():
    p = Decimal("34488")
    assert fees.settle("buy", p, 8, amount=Decimal("0.0002")) == fees.by_base("buy", [(Decimal("0.0002"), p)])
    assert fees.settle("buy", p, 8, amount_quote=Decimal("7")) == fees.buy_by_quote(Decimal("7"), p, 8)
    assert fees.settle("sell", p, 8, amount_quote=Decimal("7")) == fees.sell_by_quote(Decimal("7"), p, 8)
    with pytest.raises(ValueError):
        fees.settle("buy", p, 8)
    with pytest.raises(ValueError):
        fees.settle("buy", p, 8, amount=Decimal(1), amount_quote=Decimal(1))
    with pytest.raises(ValueError):
        fees.by_base("hold", [(Decimal(1), p)])


def test_several_fills_settle_as_one_order_and_the_fee_splits_exactly():
    fills = [(Decimal("0.0001"), Decimal("34488")), (Decimal("0.00010002"), Decimal("34490"))]
    s = fees.by_base("buy", fills)
    assert s.quote == Decimal("3.4488") + Decimal("0.00010002") * Decimal("34490")
    assert s.eur == fees.cents_up(s.quote * Decimal("1.0025"))
    shares = fees.split_fee(s.fee, [a * p for a, p in fills])
    assert sum(shares) == s.fee and all(x > 0 for x in shares)
    assert fees.split_fee(Decimal("0.02"), []) == []


def test_max_spend_is_never_below_what_bitvavo_takes():
    # by amountQuote: exactly that
    assert fees.max_spend_eur(amount_quote=Decimal("7.50")) == Decimal("7.50")
    # by base, at the recorded price: at least the €6.92 Bitvavo charged
    m = fees.max_spend_eur(amount=Decimal("0.0002"), price=Decimal("34488"))
    assert m == Decimal("6.90") + Decimal("0.02") and m >= Decimal("6.92")
    # with slippage the price is worse, and it is rounded up to the cent before the fee
    m = fees.max_spend_eur(amount=Decimal("0.0002"), price=Decimal("34488"), slippage=Decimal("0.01"))
    assert m == fees.cents_up(Decimal("6.8976") * Decimal("1.01")) + fees.cents_up(Decimal("6.97") * fees.TAKER_FEE)
    for price in ("34488", "60030.5", "0.50025", "3001.47"):
        for amount in ("0.0002", "0.00016616", "13", "0.0017"):
            a, p = Decimal(amount), Decimal(price)
            assert fees.max_spend_eur(amount=a, price=p) >= fees.by_base("buy", [(a, p)]).eur
    with pytest.raises(ValueError):
        fees.max_spend_eur(amount=Decimal(1))
    with pytest.raises(ValueError):
        fees.max_spend_eur()


def test_eur_balances_are_whole_cents_rounded_down():
    assert fees.cents_down(Decimal("16.489")) == Decimal("16.48")
    assert fees.cents_down(Decimal("25")) == Decimal("25.00")
