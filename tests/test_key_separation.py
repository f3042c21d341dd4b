"""Key separation: only the executor's factory builds a trading client or reads the trade key for one."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tinybot.exchange import ReadOnlyView, read_only
from tinybot.exchange.base import ReadOnlyClientError

from conftest import ROOT

PACKAGE = ROOT / "tinybot"


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def test_only_the_executor_constructs_the_trading_client():
    builders = set()
    for name, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                fn = node.func
                called = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                if called in ("BitvavoTrading", "PaperExchange"):
                    builders.add((name, called))
    # PaperExchange is also the read side of paper mode, wrapped read-only in exchange/__init__.py
    assert builders == {
        ("tinybot/executor.py", "BitvavoTrading"),
        ("tinybot/executor.py", "PaperExchange"),
        ("tinybot/exchange/__init__.py", "PaperExchange"),
    }


def test_only_the_executor_reads_the_trade_key_to_trade():
    """Who names TINYBOT_TRADE_*: the list of names, the executor's factory, doctor's checks, and the
    environment of child processes the demo and the chaos harness start with throwaway simulator keys."""
    readers = set()
    for name, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("TINYBOT_TRADE"):
                readers.add(name)
    assert readers <= {"tinybot/config.py", "tinybot/executor.py", "tinybot/doctor.py", "tinybot/demo.py",
                       "tinybot/chaos/__init__.py"}
    assert "tinybot/executor.py" in readers


def test_advisors_cannot_reach_trading_code():
    forbidden = ("tinybot.executor", "tinybot.exchange.bitvavo", "tinybot.exchange.paper", "ccxt")
    for name, tree in modules():
        if not name.startswith("tinybot/advisors/"):
            continue
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against tinybot.advisors
                    parent = ["tinybot", "advisors"][: 2 - (node.level - 1)]
                    base = ".".join(parent + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            bad = [t for t in targets if t.startswith(forbidden)]
            assert not bad, f"{name} imports {bad}"


def test_read_only_clients_refuse_orders(write_config):
    cfg = write_config()
    client = read_only(cfg)
    assert isinstance(client, ReadOnlyView)
    assert client.balances()["EUR"].available > 0  # it reads
    with pytest.raises(ReadOnlyClientError):
        client.send_order("BTC-EUR", "buy", client_order_id="x", amount_quote=5)
    with pytest.raises(ReadOnlyClientError):
        client.cancel_order("BTC-EUR", "x")
