"""The €5 rule: never strand a position tinybot cannot sell.

Bitvavo refuses orders under €5 (``minOrderInQuoteAsset``), so with €25 a
position worth less than that is money lost until it grows or is topped up.
Three rules keep tinybot out of that corner, each a guard with a reason code
(``tinybot.trade.guards``):

* a buy must leave the position worth at least the minimum plus
  ``[risk] sellable_margin`` (default 10 %) at the bid, after the fee
  (``would_strand``);
* a sell must not leave behind less than the minimum: sell all, or less
  (``would_leave_dust``);
* a position already worth less than the minimum is *stranded*: `tinybot
  status` shows it with the smallest buy that makes it sellable again, and
  ``[risk] top_up_to_exit = true`` proposes that buy (within the caps).

Also here: what a buy can spend at most, fee and slippage included, which is
what every cap counts (``max_spend_eur``).
"""

from __future__ import annotations

from decimal import Decimal

from . import fees
from .fees import cents_up as up_to_cent
from .record import Record, record

EXCHANGE_MINIMUM_EUR = Decimal("5")  # Bitvavo's minOrderInQuoteAsset on EUR markets
CENT = fees.CENT


def fee_rate(cfg) -> Decimal:
    """The taker fee the caps assume: the paper exchange's own fee, or [risk] fee_rate live."""
    return cfg.paper.taker_fee if cfg.mode == "paper" else cfg.risk.fee_rate


def slippage(cfg) -> Decimal:
    """Room for a live market order by base amount to fill above the ask (paper fills at the ask)."""
    return Decimal(0) if cfg.mode == "paper" else cfg.risk.slippage_margin


def max_spend_eur(cfg, *, amount_quote: Decimal | None, amount: Decimal | None, ask: Decimal | None) -> Decimal | None:
    """The most a buy can take from the account, in EUR (tinybot.base.fees, with the config's fee and slippage).

    By ``amountQuote`` Bitvavo charges exactly that amount, the fee included.
    By base amount the EUR side is rounded up to the cent, the fee comes on
    top (also rounded up), and a live market order may fill above the ask.
    """
    if amount_quote is None and ask is None:
        return None
    return fees.max_spend_eur(
        amount_quote=amount_quote,
        amount=None if amount_quote is not None else amount,
        price=ask,
        slippage=slippage(cfg),
        rate=fee_rate(cfg),
    )


def min_sellable_eur(cfg, min_quote: Decimal = EXCHANGE_MINIMUM_EUR) -> Decimal:
    """What a position must be worth at the bid to stay sellable after a drop of sellable_margin."""
    return min_quote * (1 + cfg.risk.sellable_margin)


def min_sellable_buy_eur(cfg, min_quote: Decimal = EXCHANGE_MINIMUM_EUR) -> Decimal:
    """The smallest buy by EUR that, from nothing, leaves a sellable position (no spread assumed)."""
    return up_to_cent(min_sellable_eur(cfg, min_quote) / (1 - fee_rate(cfg)))


def bought_base(cfg, *, amount_quote: Decimal | None, amount: Decimal | None, ask: Decimal) -> Decimal:
    """Base asset a buy adds to the position (fee out of the EUR for a buy by amountQuote)."""
    if amount is not None:
        return amount
    return amount_quote * (1 - fee_rate(cfg)) / ask


def top_up_eur(cfg, base: Decimal, bid: Decimal, ask: Decimal, min_quote: Decimal = EXCHANGE_MINIMUM_EUR) -> Decimal:
    """The smallest buy by EUR (itself at least the exchange minimum) after which the position is sellable."""
    missing = min_sellable_eur(cfg, min_quote) / bid - base
    need = up_to_cent(max(missing, Decimal(0)) * ask / (1 - fee_rate(cfg)))
    return max(need, min_quote)


@record
class Stranded(Record):
    """A position worth less than the exchange's minimum order: it cannot be sold as it is."""

    market: str
    base: Decimal
    value_eur: Decimal  # at the bid
    minimum_eur: Decimal
    top_up_eur: Decimal  # the smallest buy that makes it sellable again

    def as_dict(self) -> dict:
        return {
            "market": self.market,
            "base": str(self.base),
            "value_eur": str(self.value_eur.quantize(CENT)),
            "minimum_eur": str(self.minimum_eur),
            "top_up_eur": str(self.top_up_eur),
        }


def stranded(cfg, positions: dict[str, Decimal], tickers: dict, markets: dict | None = None) -> list[Stranded]:
    """Positions worth less than the exchange minimum at the bid (``tickers``: market → Ticker)."""
    out = []
    for market, base in sorted(positions.items()):
        t = tickers.get(market)
        if base <= 0 or t is None:
            continue
        m = (markets or {}).get(market)
        minimum = m.min_quote if m is not None else EXCHANGE_MINIMUM_EUR
        value = base * t.bid
        if value < minimum:
            out.append(Stranded(market, base, value, minimum, top_up_eur(cfg, base, t.bid, t.ask, minimum)))
    return out
