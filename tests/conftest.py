"""Shared fixtures.  Every test gets its own config dir under tmp_path: no test touches real state."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

# Compiled bytecode, shared by the whole run.  Where the environment says PYTHONDONTWRITEBYTECODE (this machine
# class does), every xdist worker rewrote every test module's asserts from source (collection: 5.4 s of CPU per
# worker, 2.5 s with a cache) and each of the suite's few hundred `python -m tinybot` processes compiled tinybot
# again.  The run keeps its compiled files in a cache folder of its own, outside the source tree.
if sys.dont_write_bytecode:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "tinybot-tests-pycache"))
    sys.pycache_prefix = sys.pycache_prefix or os.environ["PYTHONPYCACHEPREFIX"]
    sys.dont_write_bytecode = False

# helpers/ holds fixtures and checks too: its asserts explain themselves like a test module's
pytest.register_assert_rewrite("helpers")

# matplotlib registers its datetime converter for the datetime class it sees on first import: under
# freeze_time that is freezegun's FakeDatetime, and every later real datetime fails to plot.  Import it
# before any test freezes time (report and digest tests plot dates).
try:
    import matplotlib.dates  # noqa: F401
except ImportError:  # the report extra is not installed: those tests say so themselves
    pass

pytest_plugins = ["helpers.sim"]


def pytest_collection_modifyitems(items):
    """Tests marked ``waits`` (a bot ticking on the wall clock for tens of seconds, mostly idle) run first.

    pytest-xdist hands out the first tests one per worker: started early, their waiting overlaps the other
    workers' short tests; collected last (tests/test_bench_smoke.py sorts late), they made a 50 s tail.
    """
    items.sort(key=lambda item: item.get_closest_marker("waits") is None)  # stable: file order otherwise kept


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Point tinybot at tmp_path and clear every secret from the environment."""
    monkeypatch.setenv("TINYBOT_CONFIG", str(tmp_path / "bot.toml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYBOT_CRASH_AT", raising=False)
    monkeypatch.delenv("TINYBOT_RAISE_ERRORS", raising=False)
    from tinybot.base.secrets import SECRET_NAMES

    for name in SECRET_NAMES:  # a new secret is cleared here the day it is named there
        monkeypatch.delenv(name, raising=False)
    endpoint = sys.modules.get("tinybot.exchange.bitvavo.endpoint")
    if endpoint is not None:  # a rate-limit backoff is process-wide: never let one test's 110 leak into the next
        endpoint._backoff_until.clear()
    yield tmp_path


@pytest.fixture
def write_config(tmp_path):
    """write_config(text=PAPER_TOML, name="bot.toml", init=True) -> Config loaded from tmp_path/name.

    ``init=True`` also creates the database, as `tinybot init` does: every other
    command refuses a missing one.  Pass ``init=False`` to test that refusal.
    """
    from tinybot.base import config
    from tinybot.store import db

    from helpers.configs import PAPER_TOML

    def write(text: str = PAPER_TOML, name: str = "bot.toml", init: bool = True):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        cfg = config.load(path)
        if init:
            cfg.db_path.parent.mkdir(parents=True, exist_ok=True)
            db.open_db(cfg.db_path).close()
        return cfg

    return write


@pytest.fixture
def paper(write_config):
    """A paper-mode setup: (cfg, conn, exchange over fixed prices)."""
    from tinybot.store import db
    from tinybot.exchange.paper import PaperExchange
    from tinybot.exchange.static import StaticMarketData

    cfg = write_config()
    conn = db.open_db(cfg.db_path)
    prices = StaticMarketData(cfg.paper.prices)
    ex = PaperExchange(cfg.db_path, prices, starting_eur=cfg.paper.starting_eur)
    yield cfg, conn, ex, prices
    ex.close()
    conn.close()
