"""At start: every market of ``risk.allowlist`` must be one the exchange lists (a typo, a market it dropped).

The allowlist is read strictly (an EUR market name), but only the exchange knows which markets exist:
a market it does not list can never trade, and every proposal for it would be blocked in every tick.
`tinybot run` refuses to start on it, in one line naming the market (exit 78, as doctor's gate refuses);
doctor's ``allowlist`` check says the same with ``unlisted``.  An exchange that does not answer at start
is no reason to refuse: the ticks pause for the outage, and the next start checks again.
"""

from __future__ import annotations

import logging
from typing import Iterable

from ..base.config import Config

log = logging.getLogger("tinybot.scheduler")


def unlisted(allowlist: Iterable[str], markets: dict) -> list[str]:
    """The allowlisted markets the exchange does not list (``markets``: its market table)."""
    return [m for m in allowlist if m not in markets]


def start_refusal(cfg: Config, market_data) -> str | None:
    """Why `tinybot run` must not start (one line naming the markets and the fix), or None."""
    try:
        markets = market_data.markets()
    except Exception as e:
        log.warning("allowlist not checked at start (the exchange did not answer: %s); the next start checks", e)
        return None
    missing = unlisted(cfg.risk.allowlist, markets)
    if not missing:
        return None
    names, them = ", ".join(missing), ("it" if len(missing) == 1 else "them")
    where = "[paper] prices" if getattr(market_data, "name", "") == "static" else "the exchange"
    return (
        f"risk.allowlist in {cfg.path}: {names} {'is' if len(missing) == 1 else 'are'} not listed by {where}:"
        f" remove {them} from the allowlist (or fix the spelling, e.g. BTC-EUR)"
    )
