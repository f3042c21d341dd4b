"""Key separation: only the executor's factory builds a trading client or reads the trade key for one."""

from __future__ import annotations

import ast

import pytest

from tinybot.exchange import ReadOnlyView, read_only
from tinybot.exchange.base import ExchangeError, ReadOnlyClientError

from helpers import ROOT

from helpers.configs import RISK_TOML

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
        ("tinybot/trade/executor.py", "BitvavoTrading"),
        ("tinybot/trade/executor.py", "PaperExchange"),
        ("tinybot/exchange/__init__.py", "PaperExchange"),
    }


def names_trade_key(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("TINYBOT_TRADE")


def test_only_the_executor_reads_the_trade_key_to_trade():
    """Who names TINYBOT_TRADE_*: the list of names, the executor's factory, doctor's checks, the
    environment of child processes the demo and the chaos harness start with throwaway simulator keys,
    and the read-only client's order lookups (Bitvavo lets only a trade key read orders)."""
    readers = set()
    for name, tree in modules():
        for node in ast.walk(tree):
            if names_trade_key(node):
                readers.add(name)
    assert readers <= {
        "tinybot/base/secrets.py",
        "tinybot/trade/executor.py",
        "tinybot/ops/doctor/keys.py",
        "tinybot/rehearse/demo.py",
        "tinybot/rehearse/chaos/settings.py",
        "tinybot/exchange/bitvavo/clients.py",
    }
    assert "tinybot/trade/executor.py" in readers


def test_the_adapter_reads_the_trade_key_only_for_get_only_lookups():
    """In the adapter the trade key is read in read_only_client alone, and handed only to lookup_key/lookup_secret."""
    adapter = [ast.parse(p.read_text()) for p in sorted((PACKAGE / "exchange" / "bitvavo").glob("*.py"))]
    nodes = [n for m in adapter for n in ast.walk(m)]
    readers = {f.name for f in nodes if isinstance(f, ast.FunctionDef) and any(names_trade_key(n) for n in ast.walk(f))}
    assert readers == {"read_only_client"}
    (fn,) = [f for f in nodes if isinstance(f, ast.FunctionDef) and f.name == "read_only_client"]
    (build,) = [c for c in ast.walk(fn) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "BitvavoReadOnly"]
    assert {k.arg for k in build.keywords} == {"lookup_key", "lookup_secret", "rate_limit"}
    lookups = [
        c
        for c in nodes
        if isinstance(c, ast.Call)
        and getattr(c.func, "id", "") == "Endpoint"
        and any(
            k.arg == "lookup_key" or (isinstance(a, ast.Name) and a.id == "lookup_key")
            for k in c.keywords
            for a in c.args
        )
    ]
    assert lookups and all(
        any(k.arg == "get_only" and getattr(k.value, "value", None) is True for k in c.keywords) for c in lookups
    )


def test_advisors_cannot_reach_trading_code():
    forbidden = ("tinybot.trade.executor", "tinybot.exchange.bitvavo", "tinybot.exchange.paper", "ccxt")
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


# --- live mode: the view key for data, the trade key for lookups, and no way to trade ------------------

LIVE_TOML = (
    'mode = "live"\n'
    + RISK_TOML
    + """\
[exchange]
operator_id = 1
url = "{url}"
timeout = "2s"
"""
)


@pytest.fixture
def live_ro(sim_factory, write_config, monkeypatch):
    """read_only(cfg) in live mode against one account with a view-only key and a trade key."""
    from helpers.sim import READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, shared_accounts

    running = sim_factory(accounts=shared_accounts())  # the simulator refuses order reads to a view-only key
    monkeypatch.setenv("TINYBOT_READ_KEY", READ_KEY)
    monkeypatch.setenv("TINYBOT_READ_SECRET", READ_SECRET)
    monkeypatch.setenv("TINYBOT_TRADE_KEY", TRADE_KEY)
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", TRADE_SECRET)
    cfg = write_config(LIVE_TOML.format(url=running.url))
    return cfg, running


def reachable(root, limit: int = 200_000):
    """Every object reachable from root through references (what code holding root could get at)."""
    import gc

    seen, todo, out = {id(root)}, [root], []
    while todo and len(out) < limit:
        obj = todo.pop()
        out.append(obj)
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not isinstance(ref, type) and type(ref).__name__ != "module":
                seen.add(id(ref))
                todo.append(ref)
    return out


def test_live_read_only_uses_the_view_key_for_data_and_the_trade_key_for_lookups(live_ro):
    import uuid

    from helpers.sim import READ_KEY, TRADE_KEY, make_ccxt

    cfg, running = live_ro
    cid = str(uuid.uuid4())
    make_ccxt(running.url).create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6, "clientOrderId": cid})
    ro = read_only(cfg)
    seen: list[tuple[str, str | None]] = []
    for inst in {id(o): o for o in reachable(ro) if type(o).__name__ == "bitvavo"}.values():
        real = inst.session.request

        def request(method, url, *a, _real=real, **k):
            headers = {h.lower(): v for h, v in (k.get("headers") or {}).items()}
            seen.append((url.split("?")[0].rsplit("/v2", 1)[-1], headers.get("bitvavo-access-key")))
            return _real(method, url, *a, **k)

        inst.session.request = request
    assert ro.balances()["EUR"].available > 0
    assert ro.ticker("BTC-EUR").ask > 0
    assert ro.fetch_order("BTC-EUR", cid) is None  # filled: not found by clientOrderId (the default reading)
    assert [o.client_order_id for o in ro.orders_since("BTC-EUR", ro.server_time_ms() - 60_000)] == [cid]
    assert len(ro.trades_since("BTC-EUR", ro.server_time_ms() - 60_000)) >= 1
    assert ro.open_orders("BTC-EUR") == []
    keys = dict(seen)
    assert keys["/balance"] == READ_KEY and keys["/ticker/24h"] is None
    assert {keys[p] for p in ("/order", "/orders", "/trades", "/ordersOpen")} == {TRADE_KEY}


def test_without_a_trade_key_lookups_say_which_key_to_set(live_ro, monkeypatch):
    monkeypatch.delenv("TINYBOT_TRADE_KEY")
    monkeypatch.delenv("TINYBOT_TRADE_SECRET")
    cfg, _ = live_ro
    ro = read_only(cfg)
    assert ro.ticker("BTC-EUR").ask > 0 and ro.balances()["EUR"].available > 0
    for call in (
        lambda: ro.fetch_order("BTC-EUR", "x"),
        lambda: ro.orders_since("BTC-EUR", 0),
        lambda: ro.open_orders("BTC-EUR"),
        lambda: ro.trades_since("BTC-EUR", 0),
    ):
        with pytest.raises(ExchangeError) as e:
            call()
        assert "TINYBOT_TRADE_KEY" in str(e.value) and "trade rights" in str(e.value)


def test_nothing_reachable_from_the_live_read_only_client_can_place_or_cancel(live_ro):
    """Even with getattr tricks: every ccxt instance inside read_only(cfg) is tried with create_order and
    cancel_order. The trade key's instance refuses any HTTP method but GET before a byte leaves; the view
    key's is refused by the exchange. No order exists afterwards."""
    import ccxt

    from helpers.sim import TRADE_KEY

    cfg, running = live_ro
    ro = read_only(cfg)
    instances = {id(o): o for o in reachable(ro) if isinstance(o, ccxt.Exchange)}.values()
    assert {i.apiKey for i in instances} >= {TRADE_KEY}
    for inst in instances:
        inst.options["operatorId"] = 1  # as if someone set it
        attempts = (
            lambda inst=inst: inst.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6}),
            lambda inst=inst: inst.privatePostOrder(
                {"market": "BTC-EUR", "side": "buy", "orderType": "market", "amountQuote": "6", "operatorId": 1}
            ),
            lambda inst=inst: inst.cancel_order("00000000-0000-4000-8000-000000000000", "BTC/EUR"),
            lambda inst=inst: inst.session.request("POST", running.url + "/v2/order", data="{}"),
        )
        for attempt in attempts:
            try:
                answer = attempt()
            except Exception as e:
                if inst.apiKey == TRADE_KEY:  # refused here, before any request
                    assert isinstance(e, ReadOnlyClientError), e
                continue
            assert inst.apiKey != TRADE_KEY, f"the trade key's instance let {answer!r} through"
            assert getattr(answer, "status_code", 200) >= 400  # the view key: the exchange refuses
    assert running.sim.orders() == []
    for name in ("send_order", "cancel_order"):
        with pytest.raises(ReadOnlyClientError):
            getattr(ro, name)("BTC-EUR", "buy", client_order_id="x") if name == "send_order" else ro.cancel_order(
                "BTC-EUR", "x"
            )


def test_the_lookup_facade_has_no_trading_method_and_trading_composes_instead_of_inheriting():
    from tinybot.exchange.bitvavo.clients import BitvavoReadOnly, BitvavoTrading
    from tinybot.exchange.bitvavo.reads import Reader

    verbs = ("send", "cancel", "create", "place", "post", "delete", "put", "edit", "withdraw")
    for cls in (Reader,):
        assert not [a for a in dir(cls) if any(v in a.lower() for v in verbs)]
    # BitvavoReadOnly's refusing methods are its own, and nothing that trades inherits from it
    assert BitvavoTrading.__mro__ == (BitvavoTrading, object)
    assert BitvavoReadOnly.__mro__ == (BitvavoReadOnly, object)


def test_an_advisor_snapshot_reaches_no_client_key_or_trading_method(live_ro):
    """Advisors (and the LLM's prompt) get a Snapshot built from the read-only client: data only."""
    import ccxt
    import requests

    from helpers.sim import READ_SECRET, TRADE_SECRET
    from tinybot.store import db
    from tinybot.advisors import build_snapshot
    from tinybot.exchange.bitvavo.clients import BitvavoReadOnly, BitvavoTrading
    from tinybot.exchange.bitvavo.endpoint import Endpoint
    from tinybot.exchange.bitvavo.reads import Reader

    cfg, _ = live_ro
    ro = read_only(cfg)
    snap = build_snapshot(db.open_db(cfg.db_path), cfg, ro, sources=("rules",))
    assert snap.tickers and snap.balances  # it did read through the client
    objs = reachable(snap)
    forbidden = (
        ccxt.Exchange,
        requests.Session,
        BitvavoReadOnly,
        Reader,
        Endpoint,
        BitvavoTrading,
    )
    assert not [o for o in objs if isinstance(o, forbidden)]
    assert not [o for o in objs if callable(o) and not isinstance(o, type)]
    assert not [o for o in objs if isinstance(o, str) and o in (TRADE_SECRET, READ_SECRET)]
