"""What `tinybot status`, `tinybot kill` and the Telegram loop load: counted, never timed (issue 26).

Each command runs in a fresh OS process through the real entry point (``python -m tinybot``) against a real
config and database; the process writes its ``sys.modules`` when the command is done (the Telegram loop: once it
polls), and the test counts.  Three kinds of count:

* modules that must stay unloaded: ccxt and apprise (a command that needs no exchange must not pay for, or break
  with, them), the exchange contract, the backup room, the book where the command shows no figure;
* dataclasses whose methods were compiled at import: a ``@dataclass(frozen=True)`` compiles six methods from
  source per class (~0.5 ms each time a command starts); tinybot.base.record's share __repr__/__eq__/__hash__;
* how many modules in all, under a bound: what the command loads today plus a margin of 8, far below what
  one stray package brings (ccxt ~400 modules, apprise ~150, matplotlib ~250, the trade room ~10).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from helpers.configs import PAPER_TOML
from helpers.fake_telegram import FakeTelegram

NEVER = ("ccxt", "apprise", "aiohttp", "requests", "matplotlib", "sqlite_utils")

# At exit (or on SIGUSR1, for a loop that only ends when told): every loaded module, and the dataclasses of tinybot's
# modules whose __eq__ was compiled for them (a Record's comes from tinybot.base.record, compiled once).
PROBE = r"""
import atexit, dataclasses, json, os, runpy, signal, sys
OUT, ARGS = sys.argv[1], sys.argv[2:]

def dump(*_):
    compiled = sorted(
        f"{name}.{obj.__name__}"
        for name, mod in list(sys.modules.items()) if name.startswith("tinybot.")
        for obj in list(vars(mod).values())
        if isinstance(obj, type) and obj.__module__ == name and dataclasses.is_dataclass(obj) and "__eq__" in vars(obj)
    )
    with open(OUT, "w") as f:
        json.dump({"modules": sorted(sys.modules), "compiled": compiled}, f)
    if _:
        os._exit(0)

atexit.register(dump)
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["tinybot", *ARGS]
runpy.run_module("tinybot", run_name="__main__")
"""


def probe(tmp_path, args: list[str], env: dict | None = None) -> subprocess.Popen:
    full = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, str(tmp_path / "loaded.json"), *args],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def loaded(tmp_path) -> tuple[list[str], list[str]]:
    data = json.loads((tmp_path / "loaded.json").read_text())
    return data["modules"], data["compiled"]


def run_to_end(tmp_path, *args: str) -> tuple[list[str], list[str]]:
    p = probe(tmp_path, list(args))
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return loaded(tmp_path)


def unwanted(modules: list[str], *prefixes: str) -> list[str]:
    return [m for m in modules if m.split(".")[0] in NEVER or m.startswith(prefixes)]


@pytest.fixture
def initialised(tmp_path, write_config):
    write_config(PAPER_TOML)
    return tmp_path


def test_status_loads_neither_the_exchange_contract_nor_the_backup_room_and_compiles_few_dataclasses(initialised):
    """status shows the book's figures (so it loads the book) but no exchange: the ledger's book_positions loaded
    exchange.base (7 dataclasses) for a type it only names; opening the database loaded store.backup for a
    migration that almost never runs.  On main: both loaded (and the book's and config's dataclasses compiled)."""
    modules, compiled = run_to_end(initialised, "status")
    assert unwanted(modules, "tinybot.exchange", "tinybot.store.backup", "tinybot.trade.proposals") == []
    assert "tinybot.trade.book.figures" in modules  # the probe does see what status needs
    assert len(compiled) <= 2, compiled  # store.db's Migration and killswitch's KillOutcome (not this branch's files)
    assert len(modules) <= 182, len(modules)  # 174 on this branch, the probe's own included


def test_kill_loads_no_book_and_compiles_few_dataclasses(initialised):
    """kill writes the switch: no book, no exchange; the config it reads compiled 13 dataclasses' methods at every
    start.  A second kill (trading already off) formats the time it went off with analysis.status, which loaded the
    caps' figures and the book with it.  On main: 18 dataclasses compiled (config 13, secrets, sizing, fees, ...);
    the second kill loaded tinybot.trade.committed and the book."""
    for run in ("switches off", "already off"):
        modules, compiled = run_to_end(initialised, "kill", "--reason", "counted")
        heavy = ("tinybot.exchange", "tinybot.trade.book", "tinybot.trade.committed", "tinybot.analysis.pnl")
        assert unwanted(modules, *heavy, "tinybot.store.backup") == [], run
        assert len(compiled) <= 2, (run, compiled)  # store.db's Migration and killswitch's KillOutcome
        assert len(modules) <= 166, (run, len(modules))  # 158 and 160 on this branch


def test_the_telegram_loop_waits_for_updates_without_the_exchange_the_book_or_the_backup_room(initialised):
    """`tinybot telegram` polling, before any update: what it holds in memory for hours.  It loads the exchange
    package at the first pre-check of a proposal, the book at the first /status or /pnl, store.backup only for
    a migration.  On main: tinybot.exchange.static and .base (fixed paper prices) and store.backup were loaded."""
    with FakeTelegram(max_poll=0.5) as fake:
        toml = initialised / "bot.toml"
        toml.write_text(
            toml.read_text() + f'[telegram]\nchat_ids = [111]\napi_url = "{fake.url}"\npoll_timeout = "1s"\n'
        )
        p = probe(initialised, ["telegram"], {"TINYBOT_TELEGRAM_TOKEN": fake.token})
        try:
            assert fake.wait_for(lambda f: f.methods().count("getUpdates") >= 2, 30), "the loop never polled"
            p.send_signal(signal.SIGUSR1)
            p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    modules, compiled = loaded(initialised)
    heavy = ("tinybot.exchange", "tinybot.trade", "tinybot.analysis", "tinybot.store.backup", "tinybot.advisors")
    assert unwanted(modules, *heavy) == []
    assert "tinybot.owner.telegram.poller" in modules
    assert len(compiled) <= 3, compiled  # store.db's Migration, the poller's PollResult, notify's Sent
    assert len(modules) <= 212, len(modules)  # 204 on this branch
