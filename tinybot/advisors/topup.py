"""The ``top_up`` advisor: free a stranded position with the smallest buy that makes it sellable.

A position worth less than Bitvavo's €5 minimum at the bid cannot be sold
(tinybot.base.sizing), and each book is sold on its own (tinybot.trade.book), so a
book's position is stranded when *it* is worth less than that.  With ``[risk]
top_up_to_exit = true`` the scheduler runs this advisor every tick: for each
stranded book on an allowlisted market it proposes, into that book, the
smallest buy after which the book's position is worth the minimum plus
``risk.sellable_margin`` — if that buy fits under the caps (the guards decide
again at send time).  One proposal at a time per book and market: while one
is waiting or in flight, or blocked less than ``risk.proposal_ttl`` ago,
nothing new is proposed.
"""

from __future__ import annotations

from ..base import sizing
from ..base.config import Config
from ..trade.proposals import Draft
from . import Snapshot

SOURCE = "top_up"


def advise(snapshot: Snapshot, cfg: Config) -> list[Draft]:
    if not cfg.risk.top_up_to_exit:
        return []
    room = min(snapshot.caps.max_trade_eur, snapshot.caps.daily_left_eur, snapshot.caps.exposure_left_eur)
    drafts = []
    for book, positions in sorted(snapshot.books.items()):
        held = {m: p.base for m, p in positions.items() if m in snapshot.allowlist and p.base > 0}
        for s in sizing.stranded(cfg, held, dict(snapshot.tickers), dict(snapshot.markets)):
            recent = [p for p in snapshot.proposals_by(SOURCE) if p.market == s.market and p.book == book]
            if recent and snapshot.now < recent[0].created_at + cfg.risk.proposal_ttl:
                continue  # one at a time: the last one is still waiting, in flight, or just came to nothing
            if s.top_up_eur > room:
                continue  # over the caps: the guards would block it; say nothing rather than spam proposals
            room -= s.top_up_eur
            drafts.append(
                Draft(
                    s.market,
                    "buy",
                    amount_quote=s.top_up_eur,
                    reason=f"top up: the {book} book's {s.market} is worth €{s.value_eur:.2f}, under the"
                    f" €{s.minimum_eur} minimum; €{s.top_up_eur} makes it sellable again",
                    book=book,
                )
            )
    return drafts
