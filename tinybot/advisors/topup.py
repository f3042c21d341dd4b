"""The ``top_up`` advisor: free a stranded position with the smallest buy that makes it sellable.

A position worth less than Bitvavo's €5 minimum at the bid cannot be sold
(tinybot.sizing).  With ``[risk] top_up_to_exit = true`` the scheduler runs
this advisor every tick: for each such position on an allowlisted market it
proposes the smallest buy after which the position is worth the minimum plus
``risk.sellable_margin`` — if that buy fits under the caps (the guards decide
again at send time).  One proposal at a time per market: while one is
waiting or in flight, or blocked less than ``risk.proposal_ttl`` ago,
nothing new is proposed.
"""

from __future__ import annotations

from .. import sizing
from ..config import Config
from ..proposals import Draft
from . import Snapshot

SOURCE = "top_up"


def advise(snapshot: Snapshot, cfg: Config) -> list[Draft]:
    if not cfg.risk.top_up_to_exit:
        return []
    held = {m: p.base for m, p in snapshot.positions.items() if m in snapshot.allowlist and p.base > 0}
    room = min(snapshot.caps.max_trade_eur, snapshot.caps.daily_left_eur, snapshot.caps.exposure_left_eur)
    drafts = []
    for s in sizing.stranded(cfg, held, dict(snapshot.tickers), dict(snapshot.markets)):
        recent = [p for p in snapshot.proposals_by(SOURCE) if p.market == s.market]
        if recent and snapshot.now < recent[0].created_at + cfg.risk.proposal_ttl:
            continue  # one at a time: the last one is still waiting, in flight, or just came to nothing
        if s.top_up_eur > room:
            continue  # over the caps: the guards would block it; say nothing rather than spam proposals
        drafts.append(
            Draft(
                s.market,
                "buy",
                amount_quote=s.top_up_eur,
                reason=f"top up: {s.market} is worth €{s.value_eur:.2f}, under the €{s.minimum_eur}"
                f" minimum; €{s.top_up_eur} makes it sellable again",
            )
        )
    return drafts
