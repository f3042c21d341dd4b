"""A local Bitvavo REST v2 simulator: real clients (ccxt first) talk to it on loopback.

    from decimal import Decimal
    from tinybot.sim import Simulator, SimAccount

    sim = Simulator(accounts=[SimAccount("k", "s", frozenset({"view", "trade"}), {"EUR": Decimal("25")})])
    with sim.serve() as server:
        ...  # point ccxt.bitvavo at server.url

Modules: simulator (the ``Simulator``, owner of the rest), market (price path,
candles, book), accounts (keys and balances), engine (orders, fills,
matching, modes), wire (Bitvavo's JSON shapes and refusals), faults, server
(HTTP), transport (ccxt without a socket), cli (``tinybot sim``).

See docs/SIMULATOR.md for the fill/fee model, candle timestamps, faults, modes,
outcomes, and the table of each behaviour's source in Bitvavo's documents.
"""

from .accounts import SimAccount
from .engine import OUTCOME_KINDS, Outcome
from .faults import KINDS as FAULT_KINDS
from .faults import REQUEST_KINDS, Fault, parse_fault_spec
from .market import INTERVALS, MARKET_STATUSES
from .server import SimServer
from .simulator import Simulator
from .wire import SimError

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
