"""Pytest fixtures around the Bitvavo simulator, for any test that needs an exchange.

Load with ``pytest_plugins = ["simfixtures"]`` (tests/conftest.py does).

* ``sim``          a started simulator: ``.sim`` (the Simulator), ``.server``,
                   ``.url`` and the key constants below. Markets BTC-EUR and
                   ETH-EUR, seed 7; "trade-key" may view+trade and has €25;
                   "read-key" may only view and has €25.
* ``sim_factory``  ``sim_factory(**Simulator kwargs)`` for a differently
                   configured one (same accounts unless ``accounts=`` given).
* ``ccxt_client``  ``ccxt_client(key=TRADE_KEY, secret=TRADE_SECRET,
                   timeout=2000, **config)`` → a ``ccxt.bitvavo`` pointed at
                   ``sim`` (operatorId 1, enableRateLimit False).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from tinybot.sim import SimAccount, SimServer, Simulator

TRADE_KEY, TRADE_SECRET = "trade-key", "trade-secret"
READ_KEY, READ_SECRET = "read-key", "read-secret"
OPERATOR_ID = 1


def default_accounts() -> list[SimAccount]:
    return [
        SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal("25")}),
        SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {"EUR": Decimal("25")}),
    ]


def shared_accounts() -> list[SimAccount]:
    """One account with two keys, as a tinybot user sets up Bitvavo: view-only for reads, trade for orders."""
    return [
        SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal("25")}, account="me"),
        SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {}, account="me"),
    ]


def use_keys(monkeypatch) -> None:
    """tinybot's secrets for the simulator's two keys of one account (trade key, view-only read key)."""
    for name, value in (
        ("TINYBOT_TRADE_KEY", TRADE_KEY),
        ("TINYBOT_TRADE_SECRET", TRADE_SECRET),
        ("TINYBOT_READ_KEY", READ_KEY),
        ("TINYBOT_READ_SECRET", READ_SECRET),
    ):
        monkeypatch.setenv(name, value)


@dataclass
class RunningSim:
    sim: Simulator
    server: SimServer
    url: str
    TRADE_KEY: str = TRADE_KEY
    TRADE_SECRET: str = TRADE_SECRET
    READ_KEY: str = READ_KEY
    READ_SECRET: str = READ_SECRET
    OPERATOR_ID: int = OPERATOR_ID


def make_ccxt(url: str, key: str = TRADE_KEY, secret: str = TRADE_SECRET, timeout: int = 2000, **config):
    import ccxt  # here, not at module top: plain collection must not pay for ccxt

    options = {"operatorId": OPERATOR_ID} | config.pop("options", {})
    return ccxt.bitvavo(
        {
            "apiKey": key,
            "secret": secret,
            "timeout": timeout,
            "enableRateLimit": False,
            "urls": {"api": {"public": url, "private": url}},
            "options": options,
            **config,
        }
    )


@pytest.fixture
def sim_factory():
    started: list[Simulator] = []

    def make(**kwargs) -> RunningSim:
        kwargs.setdefault("accounts", default_accounts())
        kwargs.setdefault("markets", ("BTC-EUR", "ETH-EUR"))
        kwargs.setdefault("seed", 7)
        simulator = Simulator(**kwargs)
        started.append(simulator)
        server = simulator.serve()
        return RunningSim(simulator, server, server.url)

    yield make
    for simulator in started:
        simulator.close()


@pytest.fixture
def sim(sim_factory) -> RunningSim:
    return sim_factory()


@pytest.fixture
def ccxt_client(sim):
    def make(key: str = TRADE_KEY, secret: str = TRADE_SECRET, timeout: int = 2000, **config):
        return make_ccxt(sim.url, key, secret, timeout, **config)

    return make
