"""Market names: what a user may type, and Bitvavo's spelling.  No imports: config, status,
proposals and `tinybot kill` use it without loading the exchange contract (tinybot.exchange.base
re-exports normalise_market for the adapters)."""

from __future__ import annotations

import re

from decimal import Decimal

# tinybot trades EUR markets only: "BTC-EUR", "ETH-EUR", "1INCH-EUR"
MARKET_RE = re.compile(r"^[A-Z0-9]{1,12}-EUR$")
# fixed [paper] prices are mid prices: bid and ask sit this half-spread around them (exchange.static, pnl)
PAPER_HALF_SPREAD = Decimal("0.0005")


def normalise_market(name: str) -> str:
    """Accept ``BTC/EUR`` and ``btc-eur``; return Bitvavo's ``BTC-EUR``."""
    return name.strip().upper().replace("/", "-")


def is_eur_market(name: str) -> bool:
    """Is ``name``, once normalised, a Bitvavo EUR market name?"""
    return bool(MARKET_RE.match(normalise_market(name)))
