"""The built-in advisors at their boundaries (time moves with freezegun), and the snapshot they get."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import MappingProxyType

import pytest
from freezegun import freeze_time

from helpers.configs import PAPER_TOML

from tinybot.base import clock
from tinybot.store import db
from tinybot.trade import proposals
from tinybot.advisors import Caps, Position, Snapshot, build_snapshot, closed_candles, dca, rules, run_advisor
from tinybot.exchange.base import Balance, Candle
from tinybot.exchange.static import eur_market
from tinybot.store.liveness import slot_of
from tinybot.loop import scheduler

T0 = datetime(2026, 11, 27, 20, 0, tzinfo=timezone.utc)
MIN = 60_000


def candles(closes, *, end=T0, step_ms=MIN):
    """Candles with these closes whose last one *opened* one step before `end` (so it closed at `end`)."""
    start = clock.to_ms(end) - step_ms * len(closes)
    return tuple(
        Candle(start + i * step_ms, Decimal(c), Decimal(c), Decimal(c), Decimal(c), Decimal(1))
        for i, c in enumerate(closes)
    )


def snap(*, now=T0, market_candles=None, positions=None, balances=None, history=None, price="100", books=None):
    markets = {"BTC-EUR": eur_market("BTC-EUR", tick="0.01")}
    from tinybot.exchange.base import Ticker

    p = Decimal(price)
    return Snapshot(
        now=now,
        mode="paper",
        markets=MappingProxyType(markets),
        tickers=MappingProxyType({"BTC-EUR": Ticker("BTC-EUR", p, p, p, clock.to_ms(now))}),
        candle_interval="1m",
        candles=MappingProxyType(market_candles or {}),
        balances=MappingProxyType(balances or {"EUR": Balance(Decimal(25), Decimal(0))}),
        positions=MappingProxyType(positions or {}),
        caps=Caps(Decimal(10), Decimal(20), Decimal(25)),
        allowlist=("BTC-EUR",),
        history=MappingProxyType(history or {}),
        books=MappingProxyType({b: MappingProxyType(m) for b, m in (books or {}).items()}),
    )


def rules_cfg(write_config, extra=""):
    return write_config(
        'advisors = ["rules"]\n'
        + PAPER_TOML
        + f'[rules]\ncandle_interval = "1m"\nfast = 2\nslow = 4\nbuy_eur = 6\n{extra}'
    )


# --- closed candles ------------------------------------------------------------------


def test_the_still_open_candle_is_dropped_at_the_exact_boundary():
    cs = candles(["1", "2", "3"], end=T0)  # the last one opened at T0 - 1m and closes at T0
    assert len(closed_candles(list(cs), "1m", clock.to_ms(T0))) == 3
    assert len(closed_candles(list(cs), "1m", clock.to_ms(T0) - 1)) == 2  # 1 ms before it closes: still open


def test_build_snapshot_keeps_only_closed_candles(write_config):
    cfg = rules_cfg(write_config)
    conn = db.open_db(cfg.db_path)
    from tinybot.exchange import read_only

    with freeze_time("2026-11-27 20:00:30"):
        s = build_snapshot(conn, cfg, read_only(cfg), sources=("rules",))
    # static prices: one candle, the current one, which is still open at 20:00:30
    assert s.candles["BTC-EUR"] == () and s.tickers["BTC-EUR"].last == Decimal("60000")
    assert s.caps == Caps(Decimal(10), Decimal(20), Decimal(25))
    with pytest.raises(TypeError):
        s.tickers["X"] = None  # read-only mapping
    with pytest.raises(AttributeError):
        s.now = T0  # frozen


# --- rules -------------------------------------------------------------------------


def test_rules_signal_needs_a_real_cross():
    # fast(2) vs slow(4): flat then a jump on the newest closed candle → cross up
    assert rules.signal(candles(["10", "10", "10", "10", "12"]), 2, 4) == "up"
    assert rules.signal(candles(["10", "10", "10", "10", "8"]), 2, 4) == "down"
    assert rules.signal(candles(["10", "10", "10", "12", "13"]), 2, 4) is None  # already above: no new cross
    assert rules.signal(candles(["10", "10", "10", "12"]), 2, 4) is None  # too few candles (needs slow + 1)
    # equal averages on the previous candle count as "not above" (≤): a rise from equality is a cross
    assert rules.signal(candles(["10", "10", "10", "10", "10.01"]), 2, 4) == "up"


def test_rules_buys_on_a_cross_up_once_per_crossing_candle(write_config):
    cfg = rules_cfg(write_config)
    cs = {"BTC-EUR": candles(["10", "10", "10", "10", "12"])}
    [d] = rules.advise(snap(market_candles=cs), cfg)
    assert (d.market, d.side, d.amount_quote) == ("BTC-EUR", "buy", Decimal("6"))
    assert d.reason == (
        "SMA2 11.00 crossed above SMA4 10.50 on the 1m candle closed 2026-11-27T20:00:00.000000Z: buy €6"
    )
    # a later tick sees the same crossing candle and a rules buy made after it closed: nothing new
    from tinybot.advisors import PastProposal

    made = PastProposal(
        1, "rules", "BTC-EUR", "buy", Decimal(6), None, "approved", T0 + timedelta(seconds=5), "filled", d.reason
    )
    assert rules.advise(snap(market_candles=cs, history={"rules": (made,)}), cfg) == []
    # a buy made *before* that candle closed was for an older cross: this one is new
    older = PastProposal(
        1, "rules", "BTC-EUR", "buy", Decimal(6), None, "approved", T0 - timedelta(seconds=1), "filled", ""
    )
    assert len(rules.advise(snap(market_candles=cs, history={"rules": (older,)}), cfg)) == 1
    # a sell came in between (the newest rules proposal is a sell): a new cross up is a new signal
    sell = PastProposal(
        2, "rules", "BTC-EUR", "sell", None, Decimal(1), "approved", T0 + timedelta(seconds=9), "filled", ""
    )
    assert len(rules.advise(snap(market_candles=cs, history={"rules": (sell, made)}), cfg)) == 1


def test_rules_sells_its_own_book_on_a_cross_down_and_nothing_without_one(write_config):
    cfg = rules_cfg(write_config)
    cs = {"BTC-EUR": candles(["10", "10", "10", "10", "8"])}
    assert rules.advise(snap(market_candles=cs), cfg) == []  # nothing held
    pos = {"BTC-EUR": Position("BTC-EUR", Decimal("0.123456789"), Decimal("6"), Decimal(0), book="rules")}
    bal = {"EUR": Balance(Decimal(19), Decimal(0)), "BTC": Balance(Decimal("0.12"), Decimal(0))}
    [d] = rules.advise(snap(market_candles=cs, positions=pos, balances=bal, books={"rules": pos}), cfg)
    assert (d.side, d.amount, d.amount_quote, d.book) == ("sell", Decimal("0.12"), None, "rules")  # capped: available
    # worth less than the €5 minimum at the bid: no sell is proposed
    assert (
        rules.advise(snap(market_candles=cs, positions=pos, balances=bal, price="40", books={"rules": pos}), cfg) == []
    )


def test_rules_never_sells_what_dca_bought_unless_told_to(write_config):
    """Issue 21: the rules advisor sold the whole position, including the coins DCA bought for the long run."""
    cs = {"BTC-EUR": candles(["10", "10", "10", "10", "8"])}
    mine = {"BTC-EUR": Position("BTC-EUR", Decimal("0.6"), Decimal("6"), Decimal(0), book="rules")}
    dcas = {"BTC-EUR": Position("BTC-EUR", Decimal("0.7"), Decimal("7"), Decimal(0), book="dca")}
    total = {"BTC-EUR": Position("BTC-EUR", Decimal("1.3"), Decimal("13"), Decimal(0))}
    bal = {"EUR": Balance(Decimal(12), Decimal(0)), "BTC": Balance(Decimal("1.3"), Decimal(0))}
    s = snap(market_candles=cs, positions=total, balances=bal, books={"rules": mine, "dca": dcas})
    [d] = rules.advise(s, rules_cfg(write_config))
    assert (d.amount, d.book) == (Decimal("0.6"), "rules")
    told = rules_cfg(write_config, 'sell_from = ["rules", "dca"]\n')
    assert [(d.amount, d.book) for d in rules.advise(s, told)] == [(Decimal("0.6"), "rules"), (Decimal("0.7"), "dca")]


def test_book_names_in_the_config_are_checked(write_config):
    import pytest

    from tinybot.base.errors import ConfigError

    with pytest.raises(ConfigError, match=r"rules.sell_from: 'dac' is not a book; books are 'dca', 'rules'"):
        rules_cfg(write_config, 'sell_from = ["rules", "dac"]\n')
    with pytest.raises(ConfigError, match=r"exits.books: 'mine:advise' is not a book"):
        write_config(PAPER_TOML + '[exits]\nbooks = ["mine:advise"]\n')
    ok = write_config('advisors = ["mine:advise"]\n' + PAPER_TOML + '[exits]\nbooks = ["mine:advise", "dca"]\n')
    assert ok.exits.books == ("mine:advise", "dca")


def test_rules_run_through_the_output_checks(write_config):
    cfg = rules_cfg(write_config)
    out = run_advisor("rules", snap(market_candles={"BTC-EUR": candles(["10", "10", "10", "10", "12"])}), cfg)
    assert out.errors == [] and len(out.drafts) == 1


# --- dca -----------------------------------------------------------------------------


def dca_cfg(write_config, every="1d", ttl="30m"):
    return write_config(
        'advisors = ["dca"]\n'
        + PAPER_TOML.replace('proposal_ttl = "30m"', f'proposal_ttl = "{ttl}"')
        .replace('cooldown = "1h"', 'cooldown = "0s"')
        .replace('anti_flip = "6h"', 'anti_flip = "0s"')
        + f'[dca]\nmarket = "BTC-EUR"\nbuy_eur = 6\nevery = "{every}"\n'
    )


def dca_proposals(conn):
    return [
        (r["created_at"][:19], r["status"])
        for r in conn.execute("SELECT created_at, status FROM proposals WHERE source = 'dca' ORDER BY id")
    ]


def test_dca_buys_every_period_exactly_at_the_boundary(write_config):
    cfg = dca_cfg(write_config, every="1d")
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 20:00:00") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        first = sched.tick()
        assert first.orders and first.proposals == ["#1 dca buy BTC-EUR €6.00"]
        frozen.move_to("2026-11-28 19:59:59")  # one second before a day has passed
        sched.tick(slot_of(clock.now(), timedelta(seconds=1)))
        assert len(dca_proposals(conn)) == 1
        frozen.move_to("2026-11-28 20:00:00")  # exactly `every` after the last one
        r = sched.tick(slot_of(clock.now(), timedelta(seconds=1)))
    assert r.proposals == ["#2 dca buy BTC-EUR €6.00"] and r.orders
    assert dca_proposals(conn) == [("2026-11-27T20:00:00", "approved"), ("2026-11-28T20:00:00", "approved")]
    assert "last one proposed 2026-11-27 20:00Z" in proposals.get(conn, 2)["reason"]


def test_dca_retries_a_blocked_buy_after_the_ttl_not_every_tick(write_config):
    cfg = dca_cfg(write_config, every="7d", ttl="30m")
    conn = db.open_db(cfg.db_path)
    from tinybot.trade import killswitch

    killswitch.set_enabled(conn, False, "test", by="test")
    with freeze_time("2026-11-27 20:00:00") as frozen:
        sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None)
        assert sched.tick().blocks == ["#1 kill_switch_on"]
        frozen.move_to("2026-11-27 20:29:59")
        sched.tick()
        assert len(dca_proposals(conn)) == 1  # blocked, but not retried before the TTL
        killswitch.set_enabled(conn, True, "test", by="test")
        frozen.move_to("2026-11-27 20:30:00")
        r = sched.tick()
    assert r.proposals == ["#2 dca buy BTC-EUR €6.00"] and r.orders and "first buy" in proposals.get(conn, 2)["reason"]


def test_dca_waits_for_a_pending_manual_proposal_and_counts_a_rejection(write_config):
    cfg = dca_cfg(write_config, every="1d", ttl="2h")
    db.open_db(cfg.db_path)
    s = lambda now, hist: dca.advise(snap(now=now, history={"dca": hist}), cfg)  # noqa: E731
    from tinybot.advisors import PastProposal

    def past(status, state, at):
        return PastProposal(1, "dca", "BTC-EUR", "buy", Decimal(5), None, status, at, state, "")

    assert len(s(T0, ())) == 1
    assert s(T0 + timedelta(hours=3), (past("pending", None, T0),)) == []  # still waiting for a person
    assert s(T0 + timedelta(hours=3), (past("rejected", None, T0),)) == []  # a person decided this period
    assert len(s(T0 + timedelta(hours=3), (past("expired", None, T0),))) == 1  # came to nothing: retry
    assert len(s(T0 + timedelta(days=1), (past("approved", "filled", T0),))) == 1
    assert s(T0 + timedelta(days=1) - timedelta(microseconds=1), (past("approved", "filled", T0),)) == []


def test_dca_off_without_a_market(write_config):
    cfg = write_config('advisors = ["dca"]\n' + PAPER_TOML)
    assert dca.advise(snap(), cfg) == []


def test_an_advisor_cannot_place_orders_through_the_read_only_client(write_config):
    from tinybot.exchange import read_only
    from tinybot.exchange.base import ReadOnlyClientError

    cfg = write_config(PAPER_TOML)
    ro = read_only(cfg)
    with pytest.raises(ReadOnlyClientError):
        ro.send_order("BTC-EUR", "buy", client_order_id="x", amount_quote=Decimal(5))
    s = build_snapshot(db.open_db(cfg.db_path), cfg, ro)
    assert not any(hasattr(s, a) for a in ("send_order", "exchange", "conn"))


def test_closed_candles_are_read_again_only_when_the_next_one_has_closed(write_config):
    """The scheduler's candle cache: closed candles never change, so one read per candle interval."""
    from tinybot.exchange import read_only

    cfg = rules_cfg(write_config)
    conn = db.open_db(cfg.db_path)
    client = read_only(cfg)
    reads = []
    real = client.candles
    client.candles = lambda *a, **k: reads.append(a) or real(*a, **k)
    src = client._inner.source  # the static prices behind the paper account
    cache: dict = {}
    with freeze_time("2026-11-27 20:00:30") as frozen:
        for price in ("60000", "60100"):  # history: two closed candles by 20:02
            frozen.tick(timedelta(minutes=1))
            src.set_price("BTC-EUR", price)
        first = build_snapshot(conn, cfg, client, sources=("rules",), candle_cache=cache)
        frozen.tick(timedelta(seconds=20))  # same minute: served from the cache
        again = build_snapshot(conn, cfg, client, sources=("rules",), candle_cache=cache)
        assert again.candles == first.candles and len([r for r in reads if r[0] == "BTC-EUR"]) == 1
        frozen.tick(timedelta(minutes=1))  # a new candle closed: read again
        build_snapshot(conn, cfg, client, sources=("rules",), candle_cache=cache)
    assert len([r for r in reads if r[0] == "BTC-EUR"]) == 2
