"""The account from the phone: /balance (balances and the books), /daily (today's fills and result) and /sell.

Every figure is the core's: balances and books are ``status.status`` (the stored balances and
``ledger.book_positions``), the day is the daily digest's ``digest.compose`` (tinybot.trade.book).  /sell
only writes a pending proposal (``proposals.create``, source ``telegram``): it is sent for approval like
any other, and the guards decide at approval and again at send time.
"""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from decimal import Decimal

from ...base import clock
from ...base.config import Config

SELL_USAGE = (
    "Usage: /sell MARKET [AMOUNT|all] [BOOK] — e.g. /sell BTC-EUR all, /sell BTC-EUR 0.0001 dca."
    " AMOUNT is in the coin; default all of the book that holds it."
)


def balance_text(conn: sqlite3.Connection, cfg: Config) -> str:
    """The account's balances as the bot last read them, and what each book holds."""
    from ...analysis.status import status

    d = status(conn, cfg)
    if d["paper_balances"] is not None:
        head = "Paper balances: " + (
            ", ".join(f"{a} {b['available']}" for a, b in d["paper_balances"].items()) or "none yet"
        )
    else:
        lb = d["live_balances"]
        held = ", ".join(
            f"{a} {b['available']}" + (f" (+{b['in_order']} in orders)" if Decimal(b["in_order"]) else "")
            for a, b in lb["assets"].items()
        )
        when = (
            f"as of the last tick, {clock.spoken(timedelta(seconds=lb['age_s']))} ago"
            if lb["at"]
            else "no tick has read them yet"
        )
        head = f"Exchange balances ({when}): {held or 'none'}"
    books = [f"{b['market']} {b['advisor']}: {b['base']} (cost €{b['cost_eur']})" for b in d["books"]]
    return "\n".join([head, "Books:" if books else "Books: all empty", *books])


def daily_text(conn: sqlite3.Connection, cfg: Config) -> str:
    """Today (the local day) so far: the daily digest's text with the day's fills."""
    from .. import digest

    return digest.compose(conn, cfg, with_fills=True).text


def propose_sell(conn: sqlite3.Connection, cfg: Config, rest: str) -> str:
    """Write a pending sell proposal from ``MARKET [AMOUNT|all] [BOOK]``; the reply (ProposalError: the usage)."""
    from ...base.markets import normalise_market
    from ...trade import proposals

    words = rest.split()
    if not words or len(words) > 3:
        raise proposals.ProposalError(SELL_USAGE)
    market = normalise_market(words[0])
    asked = words[1].lower() if len(words) > 1 else "all"
    book, base = _holding_book(conn, market, words[2] if len(words) > 2 else None)
    if base <= 0:
        raise proposals.ProposalError(f"the {book} book holds no {market}: nothing to sell")
    amount = base if asked == "all" else proposals.parse_amount(asked, "amount")
    draft = proposals.Draft(market, "sell", amount=amount, reason="asked from the phone (/sell)", book=book)
    pid = proposals.create(conn, draft, source="telegram", ttl=cfg.risk.proposal_ttl)
    return (
        f"Proposal #{pid}: SELL {market} {amount} from the {book} book (it holds {base})."
        " It comes next with its Approve/Reject buttons, or one line if the guards block it."
    )


def _holding_book(conn: sqlite3.Connection, market: str, named: str | None) -> tuple[str, Decimal]:
    """(book, what it holds of ``market``): the one named, else the only book that holds the market."""
    from ...trade import proposals
    from ...trade.ledger import book_positions

    held = {r["book"]: Decimal(r["base"]) for r in book_positions(conn, market) if Decimal(r["base"]) > 0}
    if named is not None:
        return named, held.get(named, Decimal(0))
    if len(held) == 1:
        return next(iter(held.items()))
    if not held:
        raise proposals.ProposalError(f"no book holds {market}: nothing to sell")
    listed = ", ".join(f"{b} {v}" for b, v in sorted(held.items()))
    raise proposals.ProposalError(f"{market} is in several books ({listed}): name one, e.g. /sell {market} all BOOK")
