"""The exchange side of a bench: a Bitvavo simulator with one account (a trade key and a read key), and its holdings."""

from __future__ import annotations

from decimal import Decimal

from tinybot.sim import SimAccount, Simulator

from .settings import READ_KEY, READ_SECRET, SIM_MARKETS, TRADE_KEY, TRADE_SECRET


def open_account(seed: int, start: dict[str, Decimal], closed_lookup: bool) -> Simulator:
    """A simulator whose one account starts with ``start``; ``closed_lookup``: it finds closed orders by
    clientOrderId (Bitvavo documents neither way).  No rate limit: the harness is not testing that."""
    return Simulator(
        accounts=[
            SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), dict(start), account="me"),
            SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {}, account="me"),
        ],
        markets=SIM_MARKETS,
        seed=seed,
        rate_limit=10**9,
        find_closed_by_client_id=closed_lookup,
    )


def holdings(sim: Simulator) -> dict[str, Decimal]:
    """What the account holds, per asset: available plus held in open orders."""
    bal = sim.balance(TRADE_KEY)
    held = sim.balance(TRADE_KEY, in_order=True)
    return {a: bal.get(a, Decimal(0)) + held.get(a, Decimal(0)) for a in set(bal) | set(held)}
