"""The ``rules`` advisor: a simple moving-average crossover on closed candles.

The rule, per market in ``rules.markets`` (empty = every market in
``risk.allowlist``), on candles of ``rules.candle_interval``:

* Only **closed** candles count; the candle still forming is dropped, so a
  signal cannot flicker within a candle.
* ``fast`` = the mean close of the last ``rules.fast`` closed candles,
  ``slow`` = the same over ``rules.slow``.  Both are computed for the newest
  closed candle and for the one before it.
* **Cross up** (fast was ≤ slow, now fast > slow): buy ``rules.buy_eur`` EUR.
* **Cross down** (fast was ≥ slow, now fast < slow): sell the whole position
  of each book in ``rules.sell_from`` (default: its own, ``rules``; the coins
  DCA bought stay unless you add ``"dca"``), one proposal per book, capped by
  the available balance, if it is worth at least the exchange minimum.
* Only the newest closed candle is looked at, on every tick: a cross on an
  older candle (the bot was down, or ticks are slower than candles) is not
  acted on late.
* One proposal per cross: if the newest ``rules`` proposal on that market has
  the same side and was made after the crossing candle closed, later ticks
  that still see that candle propose nothing.

It only proposes.  The caps, cooldown and anti-flip guards still decide.
Size ``buy_eur`` a little above Bitvavo's €5 minimum (the fee comes out of the
buy), or the position cannot be sold again as one market order.
"""

from __future__ import annotations

import logging
from decimal import ROUND_DOWN, Decimal

from ..base import clock
from ..base.config import Config
from ..exchange.base import Candle
from ..trade.proposals import Draft
from . import Snapshot

log = logging.getLogger("tinybot.advisors.rules")
SOURCE = "rules"


def sma(closes: list[Decimal], n: int) -> Decimal:
    return sum(closes[-n:], Decimal(0)) / n


def signal(candles: tuple[Candle, ...] | list[Candle], fast: int, slow: int) -> str | None:
    """'up', 'down' or None for the newest closed candle (candles are closed, oldest first)."""
    if len(candles) < slow + 1:
        return None
    closes = [c.close for c in candles]
    f_now, s_now = sma(closes, fast), sma(closes, slow)
    f_prev, s_prev = sma(closes[:-1], fast), sma(closes[:-1], slow)
    if f_prev <= s_prev and f_now > s_now:
        return "up"
    if f_prev >= s_prev and f_now < s_now:
        return "down"
    return None


def _already_proposed(snapshot: Snapshot, market: str, side: str, since) -> bool:
    """Did this cross already lead to a proposal?  True if the newest ``rules`` proposal on the
    market has this side and was made after the crossing candle closed."""
    last = next((p for p in snapshot.proposals_by(SOURCE) if p.market == market), None)
    return last is not None and last.side == side and last.created_at >= since


def advise(snapshot: Snapshot, cfg: Config) -> list[Draft]:
    rc = cfg.rules
    step = clock.parse_duration(rc.candle_interval)
    drafts: list[Draft] = []
    for market in rc.markets or snapshot.allowlist:
        candles = snapshot.candles.get(market)
        if not candles:
            continue
        sig = signal(candles, rc.fast, rc.slow)
        if sig is None:
            continue
        newest = candles[-1]
        closed_at = clock.from_ms(newest.timestamp_ms) + step
        closes = [c.close for c in candles]
        what = (
            f"SMA{rc.fast} {sma(closes, rc.fast):.2f} crossed {'above' if sig == 'up' else 'below'}"
            f" SMA{rc.slow} {sma(closes, rc.slow):.2f} on the {rc.candle_interval} candle closed"
            f" {clock.to_iso(closed_at)}"
        )
        side = "buy" if sig == "up" else "sell"
        if _already_proposed(snapshot, market, side, closed_at):
            continue
        if side == "buy":
            drafts.append(Draft(market, "buy", amount_quote=rc.buy_eur, reason=f"{what}: buy €{rc.buy_eur}"))
            continue
        taken = Decimal(0)
        for book in rc.sell_from:
            amount = _sellable(snapshot, market, book, taken)
            if amount is None:
                continue
            taken += amount
            drafts.append(
                Draft(market, "sell", amount=amount, reason=f"{what}: sell the {book} book ({amount})", book=book)
            )
    return drafts


def _sellable(snapshot: Snapshot, market: str, book: str, taken: Decimal = Decimal(0)) -> Decimal | None:
    """The book's position in the market, no more than is available (less what earlier drafts take), rounded
    down to the market's step."""
    pos = snapshot.position(market, book)
    if pos is None or pos.base <= 0:
        return None
    m = snapshot.markets.get(market)
    amount = pos.base
    bal = snapshot.balances.get(m.base if m else market.split("-")[0])
    if bal is not None:
        amount = min(amount, bal.available - taken)
    if m is not None:
        amount = amount.quantize(Decimal(1).scaleb(-m.quantity_decimals), ROUND_DOWN)
    if amount <= 0:
        return None
    t = snapshot.tickers.get(market)
    if m is not None and t is not None and amount * t.bid < m.min_quote:
        log.info(
            "rules: %s position %s of the %s book is worth less than the €%s minimum; not proposing a sell",
            market,
            amount,
            book,
            m.min_quote,
        )
        return None
    return amount
