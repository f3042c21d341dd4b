"""Shadow advisors ([scoreboard] shadow): on paper only, against the real simulator, in live mode."""

from __future__ import annotations

import ast
from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from helpers import ROOT
from helpers.configs import PAPER_TOML, live_text
from helpers.sim import shared_accounts, use_keys

from tinybot.advisors import read_caps
from tinybot.base import clock, fees
from tinybot.loop import scheduler
from tinybot.store import db
from tinybot.trade import executor, shadow


def _live_shadow(write_config, sim_factory, monkeypatch, shadows=('"helpers.advisors:buy_btc"',), advisors=""):
    sim = sim_factory(accounts=shared_accounts())
    use_keys(monkeypatch)
    text = f"advisors = [{advisors}]\n" + live_text(sim.url) + f"[scoreboard]\nshadow = [{', '.join(shadows)}]\n"
    cfg = write_config(text)
    return sim, cfg, db.open_db(cfg.db_path)


def test_a_shadow_run_makes_no_order_and_never_asks_for_the_trading_client(write_config, sim_factory, monkeypatch):
    """Two ticks with a shadow that buys every tick and no live advisor: the simulator's order record stays
    empty, the trading client (the only holder of the trade key) is never built, and the shadow's buy is filled
    on paper at the second tick's ask with Bitvavo's fee into its own book."""
    sim, cfg, conn = _live_shadow(write_config, sim_factory, monkeypatch)

    def no_trade_key(cfg):
        raise AssertionError("the trading client was asked for")

    monkeypatch.setattr(executor, "trading_exchange", no_trade_key)
    with freeze_time("2026-11-27 20:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        first = sched.tick()
        asked_at = conn.execute("SELECT ask FROM market_prices WHERE market = 'BTC-EUR'").fetchone()["ask"]
        frozen.tick(timedelta(minutes=1))
        sim.sim.advance(3)
        second = sched.tick()
    assert first.status == second.status == "ok", (first.line(), second.line())
    assert sim.sim.orders() == []
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM trade_executions").fetchone()[0] == 0
    rows = conn.execute("SELECT * FROM shadow_proposals ORDER BY id").fetchall()
    assert [r["state"] for r in rows] == ["filled", "pending"]
    (f,) = conn.execute("SELECT * FROM shadow_fills").fetchall()
    price = Decimal(f["price"])
    seen = conn.execute("SELECT ask FROM market_prices WHERE market = 'BTC-EUR'").fetchone()
    assert price == Decimal(seen["ask"])  # the second tick's ask, not the first's
    assert price != Decimal(asked_at)  # the price moved between the ticks: filled at the later one
    s = fees.buy_by_quote(Decimal("6"), price, 8)
    assert (Decimal(f["amount"]), Decimal(f["fee"])) == (s.base, s.fee)
    assert any(n.startswith("shadow: ") for n in second.notes)


def test_shadow_buys_obey_the_caps_on_the_shadow_book_and_never_count_in_the_live_ones(
    write_config, sim_factory, monkeypatch
):
    """The shadow buys €6 each tick (cooldown off): €20 a day lets three through, the fourth is blocked
    over_daily_cap on the shadow's book; the live caps never see them (a live €6 buy still goes through)."""
    sim, cfg, conn = _live_shadow(write_config, sim_factory, monkeypatch)
    cfg = write_config(
        cfg.path.read_text()
        .replace('cooldown = "1h"', 'cooldown = "0s"')
        .replace('anti_flip = "6h"', 'anti_flip = "0s"')
    )
    with freeze_time("2026-11-27 10:00:05") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        for _ in range(5):
            sched.tick()
            frozen.tick(timedelta(minutes=1))
    states = [r["state"] for r in conn.execute("SELECT state FROM shadow_proposals ORDER BY id")]
    assert states[:4] == ["filled", "filled", "filled", "blocked"]
    detail = conn.execute("SELECT detail FROM shadow_proposals WHERE state = 'blocked'").fetchone()[0]
    assert detail.startswith("over_daily_cap")
    with freeze_time("2026-11-27 10:06:00"):
        assert read_caps(conn, cfg, clock.now()).daily_left_eur == Decimal("20")


def test_a_shadow_sell_is_bounded_by_the_shadow_book_and_fills_at_the_bid(write_config):
    """A sell with nothing in the shadow's book is blocked over_own_position; after a buy it fills at the bid."""
    cfg = write_config()
    conn = db.open_db(cfg.db_path)
    from tinybot.exchange.base import Market, Ticker
    from tinybot.trade.proposals import Draft

    now = clock.now()
    t = {"BTC-EUR": Ticker("BTC-EUR", Decimal("59000"), Decimal("60000"), Decimal("59500"), 0)}
    m = {"BTC-EUR": Market("BTC-EUR", "BTC", "EUR", "trading", Decimal("1"), 8, 2, Decimal("5"), Decimal("0.00001"))}
    shadow.open_book(conn, "rules", Decimal("25"), now)
    shadow.record(conn, "rules", [Draft("BTC-EUR", "sell", amount=Decimal("0.0001"), reason="x")], now)
    (o,) = shadow.fill_pending(conn, cfg, t, m, now)
    assert o.state == "blocked" and o.detail.startswith("over_own_position")
    shadow.record(conn, "rules", [Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason="x")], now)
    shadow.fill_pending(conn, cfg, t, m, now)
    book = shadow.load(conn, "rules")
    held = book.position("BTC-EUR").base
    assert book.cash_eur == Decimal("19")
    shadow.record(conn, "rules", [Draft("BTC-EUR", "sell", amount=held, reason="x")], now + timedelta(hours=7))
    (o,) = shadow.fill_pending(conn, cfg, t, m, now + timedelta(hours=7))
    assert o.state == "filled"
    sold = conn.execute("SELECT price FROM shadow_fills WHERE side = 'sell'").fetchone()[0]
    assert Decimal(sold) == Decimal("59000")
    assert shadow.load(conn, "rules").cash_eur == Decimal("19") + fees.by_base("sell", [(held, Decimal("59000"))]).eur


def test_the_shadow_modules_import_no_trading_path():
    """No import of the executor or an exchange client: a shadow has no road to the trade key."""
    banned = ("executor", "exchange.bitvavo", "exchange.paper", "reconcile")
    for rel in ("tinybot/trade/shadow.py", "tinybot/advisors/shadow.py"):
        tree = ast.parse((ROOT / rel).read_text())
        names = [
            (n.module or "") + "." + a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names
        ] + [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [x for x in names if any(b in x for b in banned)], (rel, names)


def test_the_llm_shadows_calls_spend_the_one_budget_and_are_charged_to_its_score(write_config):
    """A shadow's reservation counts against the same daily budget, and the live llm book's cost leaves it out."""
    from tinybot.advisors import llm_budget
    from tinybot.trade.book import steps

    cfg = write_config(PAPER_TOML + "[llm]\ndaily_budget_eur = 0.01\nmonthly_budget_eur = 1\n")
    conn = db.open_db(cfg.db_path)
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000, book=shadow.SHADOW_LLM)
    llm_budget.settle(conn, r.id, cfg.llm, input_tokens=1000, output_tokens=100)
    paid = steps.llm_costs(conn, book=shadow.SHADOW_LLM)
    assert len(paid) == 1 and paid[0][1] > 0
    assert steps.llm_costs(conn) == []  # not on the live llm book
    assert llm_budget.committed_eur(conn, day=llm_budget.period_keys(clock.now())[0]) == paid[0][1]


def test_waiting_shadow_buys_fill_in_order_the_first_in_room_goes_through(write_config):
    """Two €6 buys waiting, €10 a day: the first fills, the second is over the daily cap (as live, in order)."""
    from tinybot.exchange.base import Market, Ticker
    from tinybot.trade.proposals import Draft

    cfg = write_config(PAPER_TOML.replace("max_daily_eur = 20", "max_daily_eur = 10"))
    conn = db.open_db(cfg.db_path)
    now = clock.now()
    t = {"BTC-EUR": Ticker("BTC-EUR", Decimal("59000"), Decimal("60000"), Decimal("59500"), 0)}
    m = {"BTC-EUR": Market("BTC-EUR", "BTC", "EUR", "trading", Decimal("1"), 8, 2, Decimal("5"), Decimal("0.00001"))}
    shadow.open_book(conn, "rules", Decimal("25"), now)
    buy = Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason="x")
    shadow.record(conn, "rules", [buy, buy], now)
    assert [o.state for o in shadow.fill_pending(conn, cfg, t, m, now)] == ["filled", "blocked"]
