"""The ``exits`` advisor: protective exits — stop-loss, take-profit and a trailing stop.

Evaluated every tick on the ticker's bid, per position of each book in
``exits.books`` (default ``rules``, ``llm``, ``manual``: not the coins DCA
holds for the long run) on an allowlisted market, as shares of that book's
average cost (``[exits]``); a sell is proposed from that book:

* ``stop_loss = 0.10``: sell everything once the bid is 10 % under the cost;
* ``take_profit = 0.25``: sell everything once the bid is 25 % over the cost;
* ``trailing_stop = 0.08``: sell everything once the bid is 8 % under the
  highest price since the book's last buy there (the highs of the closed
  candles the snapshot holds since then, and the bid; a buy older than those
  candles is measured over what they cover).

0 turns a rule off (the default: all off).  The reason code of each exit is
in its proposal's reason (``stop_loss``, ``take_profit``, ``trailing_stop``).
Its sells pass the kill switch, allowlist, own-position, balance and
sellability guards like any other, but not cooldown or anti-flip: a stop-loss
that waits six hours after a buy is no stop-loss (the guards record them as
passed with "exempt: protective exit").  A proposal is made once per
``risk.proposal_ttl`` per book and market while the condition holds.
"""

from __future__ import annotations

from decimal import Decimal

from ..base import clock
from ..base.config import Config
from ..trade.proposals import Draft
from . import Snapshot

SOURCE = "exits"


def advise(snapshot: Snapshot, cfg: Config) -> list[Draft]:
    ex = cfg.exits
    if not (ex.stop_loss or ex.take_profit or ex.trailing_stop):
        return []
    drafts = []
    for book in ex.books:
        for market, pos in sorted(snapshot.books.get(book, {}).items()):
            t = snapshot.tickers.get(market)
            if market not in snapshot.allowlist or t is None or pos.base <= 0:
                continue
            recent = [p for p in snapshot.proposals_by(SOURCE) if p.market == market and p.book == book]
            if recent and snapshot.now < recent[0].created_at + cfg.risk.proposal_ttl:
                continue  # one at a time: the last exit is still waiting, in flight, or just came to nothing
            why = _trigger(pos, t.bid, snapshot, market, cfg)
            if why:
                drafts.append(Draft(market, "sell", amount=pos.base, reason=f"{why}; the {book} book", book=book))
    return drafts


def _trigger(pos, bid: Decimal, snapshot: Snapshot, market: str, cfg: Config) -> str | None:
    ex = cfg.exits
    cost = pos.cost_eur / pos.base
    if ex.stop_loss and bid <= cost * (1 - ex.stop_loss):
        return f"stop_loss: bid {bid} is {_pct(1 - bid / cost)} under the average cost {cost:.2f} (exits.stop_loss {_pct(ex.stop_loss)})"
    if ex.take_profit and bid >= cost * (1 + ex.take_profit):
        return f"take_profit: bid {bid} is {_pct(bid / cost - 1)} over the average cost {cost:.2f} (exits.take_profit {_pct(ex.take_profit)})"
    if ex.trailing_stop:
        since = clock.to_ms(pos.last_buy_at) if pos.last_buy_at else 0
        highs = [c.high for c in snapshot.candles.get(market, ()) if c.timestamp_ms >= since]
        peak = max([bid, *highs])
        if bid <= peak * (1 - ex.trailing_stop):
            return (
                f"trailing_stop: bid {bid} is {_pct(1 - bid / peak)} under the peak {peak} since the last buy"
                f" (exits.trailing_stop {_pct(ex.trailing_stop)})"
            )
    return None


def _pct(share: Decimal) -> str:
    return f"{(share * 100).quantize(Decimal('0.1'))} %"
