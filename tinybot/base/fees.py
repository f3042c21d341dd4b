"""Bitvavo's settlement arithmetic: what an order moves, in EUR and base, fee included.

One home for it, so the paper exchange, the simulator and the caps agree
(``Decimal`` only). The rules, from Bitvavo's recorded fills
(tests/fixtures/ccxt_bitvavo_*.json) and docs/LIVE.md:

* **Market buy by amountQuote** costs exactly ``amountQuote``:
  ``filledAmountQuote + feePaid == amountQuote``. The base bought is
  truncated to the market's ``quantityDecimals``; the remainder of that
  truncation is part of the fee. (How Bitvavo splits amountQuote between
  trade and fee is not documented; tinybot's model spends
  ``amountQuote / (1 + fee rate)`` on base, so the fee is never below the
  rate on what was traded. The equality above is what the code relies on.)
* **Orders by base amount** settle the EUR side in whole cents, rounded
  against the user: a buy pays ``ceil_cent(quote × (1 + rate))``, a sell
  receives ``floor_cent(quote × (1 - rate))``; the fee is the difference
  (about 0.32–0.36 % on €6–7 orders, not 0.25 %).
* **Sells by amountQuote** sell ``amountQuote / price`` of base, truncated to
  ``quantityDecimals``, and then settle like a sell by base.
* EUR balances have 2 decimals; the taker fee at the lowest tier is 0.25 %.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Iterable
from .record import Record, record

TAKER_FEE = Decimal("0.0025")  # lowest volume tier, market orders
EUR_DECIMALS = 2
CENT = Decimal("0.01")
FEE_QUANTUM = Decimal("0.00000001")  # a per-fill share of a fee is never finer than this


@record
class Settlement(Record):
    """What one (complete) market order moves.

    ``base`` = filledAmount; ``quote`` = filledAmountQuote (Σ amount × price);
    ``fee`` = feePaid (EUR); ``eur`` = EUR that leaves the account (buy,
    ``quote + fee``) or reaches it (sell, ``quote - fee``).
    """

    side: str
    base: Decimal
    quote: Decimal
    fee: Decimal
    eur: Decimal


def quantity_step(decimals: int) -> Decimal:
    return Decimal(1).scaleb(-decimals)


def truncate(x: Decimal, decimals: int) -> Decimal:
    """Round toward zero to ``decimals`` places (Bitvavo truncates base amounts)."""
    return x.quantize(quantity_step(decimals), rounding=ROUND_DOWN)


def cents_up(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_CEILING)


def cents_down(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_FLOOR)


def buy_by_quote(
    amount_quote: Decimal, price: Decimal, quantity_decimals: int, rate: Decimal = TAKER_FEE
) -> Settlement:
    """A market buy of €amount_quote filled at one price: costs exactly amount_quote."""
    base = truncate(amount_quote / (price * (1 + rate)), quantity_decimals)
    quote = base * price
    return Settlement("buy", base, quote, amount_quote - quote, amount_quote)


def by_base(side: str, fills: Iterable[tuple[Decimal, Decimal]], rate: Decimal = TAKER_FEE) -> Settlement:
    """An order by base amount, from its fills ``[(amount, price), …]``: EUR in whole cents against the user."""
    fills = list(fills)
    base = sum((a for a, _ in fills), Decimal(0))
    quote = sum((a * p for a, p in fills), Decimal(0))
    if side == "buy":
        paid = cents_up(quote * (1 + rate))
        return Settlement("buy", base, quote, paid - quote, paid)
    if side == "sell":
        received = cents_down(quote * (1 - rate))
        return Settlement("sell", base, quote, quote - received, received)
    raise ValueError(f"side must be 'buy' or 'sell', not {side!r}")


def sell_by_quote(
    amount_quote: Decimal, price: Decimal, quantity_decimals: int, rate: Decimal = TAKER_FEE
) -> Settlement:
    """A market sell of about €amount_quote worth of base, filled at one price."""
    return by_base("sell", [(truncate(amount_quote / price, quantity_decimals), price)], rate)


def settle(
    side: str,
    price: Decimal,
    quantity_decimals: int,
    *,
    amount: Decimal | None = None,
    amount_quote: Decimal | None = None,
    rate: Decimal = TAKER_FEE,
) -> Settlement:
    """A market order filled completely at one price, by exactly one of amount / amount_quote."""
    if (amount is None) == (amount_quote is None):
        raise ValueError("give exactly one of amount (base) or amount_quote (EUR)")
    if amount_quote is not None:
        if side == "buy":
            return buy_by_quote(amount_quote, price, quantity_decimals, rate)
        return sell_by_quote(amount_quote, price, quantity_decimals, rate)
    return by_base(side, [(amount, price)], rate)


def split_fee(fee: Decimal, fill_quotes: list[Decimal]) -> list[Decimal]:
    """An order's fee shared over its fills, in proportion to their quote, summing to the fee exactly.

    Each share is rounded down to 8 decimals; the last fill takes what is left.
    """
    if not fill_quotes:
        return []
    total = sum(fill_quotes, Decimal(0))
    shares = [
        (fee * q / total).quantize(FEE_QUANTUM, rounding=ROUND_DOWN) if total else Decimal(0) for q in fill_quotes[:-1]
    ]
    return shares + [fee - sum(shares, Decimal(0))]


def max_spend_eur(
    *,
    amount_quote: Decimal | None = None,
    amount: Decimal | None = None,
    price: Decimal | None = None,
    slippage: Decimal = Decimal(0),
    rate: Decimal = TAKER_FEE,
) -> Decimal:
    """The most EUR a market buy can take from the account (what the caps must count).

    By amountQuote: exactly amountQuote. By base amount: the notional at
    ``price × (1 + slippage)`` rounded up to the cent, plus its fee rounded up
    to the cent (never less than Bitvavo's own cent rounding at that price).
    """
    if (amount is None) == (amount_quote is None):
        raise ValueError("give exactly one of amount (base) or amount_quote (EUR)")
    if amount_quote is not None:
        return amount_quote
    if price is None:
        raise ValueError("a buy by base amount needs a price to be valued")
    notional = cents_up(amount * price * (1 + slippage))
    return notional + cents_up(notional * rate)
