"""A local Bitvavo REST v2 simulator: real clients (ccxt first) talk to it on loopback.

    from decimal import Decimal
    from tinybot.sim import Simulator, SimAccount

    sim = Simulator(accounts=[SimAccount("k", "s", frozenset({"view", "trade"}), {"EUR": Decimal("25")})])
    with sim.serve() as server:
        ...  # point ccxt.bitvavo at server.url

See docs/SIMULATOR.md for the fill/fee model, candle timestamps, faults, modes,
outcomes, and the table of each behaviour's source in Bitvavo's documents.
"""

from .engine import INTERVALS, MARKET_STATUSES, OUTCOME_KINDS, Outcome, SimAccount, SimError, Simulator
from .faults import KINDS as FAULT_KINDS
from .faults import REQUEST_KINDS, Fault, parse_fault_spec
from .server import SimServer

__all__ = [
    "Simulator",
    "SimAccount",
    "SimServer",
    "SimError",
    "Fault",
    "FAULT_KINDS",
    "REQUEST_KINDS",
    "INTERVALS",
    "parse_fault_spec",
    "Outcome",
    "OUTCOME_KINDS",
    "MARKET_STATUSES",
]
