"""The ``dca`` advisor: buy ``dca.buy_eur`` of ``dca.market`` every ``dca.every``.

When is a buy due?  Measured from the last ``dca`` proposal on that market
that *counts*:

* its order was sent (execution submitting, submitted, filled, canceled or
  unknown), or
* it is still waiting (pending or approved, not expired), or
* a person rejected it (``tinybot reject``: that period was decided).

A buy is due once ``now >= that proposal's created_at + every`` (or at once
if there is none), and once ``every`` has passed since any other buy on the
market the exchange shows: the newest buy fill in another book (another
advisor's, a person's, or an order reconcile found that no execution
accounts for).  That is how a restore cannot make DCA buy a period twice: the
buy it made after the backup is gone from the restored database's proposals,
but reconcile finds it on the exchange and books it (a restore rolls back
the database, never the world).  A proposal that came to nothing (blocked by a guard,
refused by the exchange, or expired unapproved) does not count, so DCA tries
again, but not before ``min(every, risk.proposal_ttl)`` after its last
attempt: a guard that keeps blocking costs one proposal per TTL, not one per
tick.  Unset ``dca.market`` = off.
"""

from __future__ import annotations

from ..base.config import Config
from ..trade.proposals import Draft
from . import PastProposal, Snapshot

SOURCE = "dca"
SENT = ("submitting", "submitted", "filled", "canceled", "unknown")


def counts(p: PastProposal, now) -> bool:
    if p.execution_state in SENT:
        return True
    if p.status == "rejected":
        return True
    if p.status in ("pending", "approved") and p.execution_state in (None, "claimed"):
        return True  # still waiting (expiry is swept at the start of each tick)
    return False


def others_bought_at(snapshot: Snapshot, market: str):
    """When the newest buy on ``market`` outside DCA's own book filled (None: none is held).  DCA's own buys
    count by their proposals (from when each was proposed, so the period does not drift by a fill's delay)."""
    times = [
        held[market].last_buy_at
        for book, held in snapshot.books.items()
        if book != SOURCE and market in held and held[market].last_buy_at is not None
    ]
    return max(times, default=None)


def advise(snapshot: Snapshot, cfg: Config) -> list[Draft]:
    dc = cfg.dca
    if not dc.market:
        return []
    market = dc.market.upper().replace("/", "-")
    now = snapshot.now
    mine = [p for p in snapshot.proposals_by(SOURCE) if p.market == market]  # newest first
    if mine:
        retry = min(dc.every, cfg.risk.proposal_ttl)
        if now < mine[0].created_at + retry:
            return []
    last = next((p for p in mine if counts(p, now)), None)
    if last is not None and now < last.created_at + dc.every:
        return []
    other = others_bought_at(snapshot, market)
    if other is not None and now < other + dc.every:
        return []
    every = _fmt(dc.every)
    why = f"DCA: €{dc.buy_eur} of {market} every {every}; " + (
        f"last one proposed {last.created_at:%Y-%m-%d %H:%M}Z" if last else "first buy"
    )
    return [Draft(market, "buy", amount_quote=dc.buy_eur, reason=why)]


def _fmt(td) -> str:
    from ..base.clock import format_duration

    return format_duration(td)
