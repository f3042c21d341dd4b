"""The exits advisor: stop-loss, take-profit, trailing stop; exempt from cooldown and anti-flip only (issue 15)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from tinybot.trade import executor, proposals
from tinybot.advisors import build_snapshot, run_advisor

from helpers.configs import paper_setup

T0 = "2026-11-27 12:00:00"


def bought(write_config, **exits):
    text_extra = "[exits]\n" + "".join(f"{k} = {v}\n" for k, v in exits.items())
    cfg, conn, ex = paper_setup(lambda t: write_config(t + text_extra))
    with freeze_time(T0):
        pid = proposals.create(
            conn,
            proposals.Draft("BTC-EUR", "buy", Decimal("10")),
            source="cli",
            ttl=timedelta(minutes=30),
            approve=True,
        )
        assert executor.execute(conn, cfg, ex, pid).state == "filled"
    return cfg, conn, ex


def advise_at(cfg, conn, ex, price, when="2026-11-27 12:10:00"):
    ex.source.prices["BTC-EUR"] = Decimal(price)
    with freeze_time(when):
        snap = build_snapshot(conn, cfg, ex, sources=cfg.active_advisors)
        return run_advisor("exits", snap, cfg).drafts


def test_stop_loss_sells_everything_and_skips_cooldown_and_anti_flip_only(write_config):
    cfg, conn, ex = bought(write_config, stop_loss="0.10")
    assert "exits" in cfg.active_advisors
    assert advise_at(cfg, conn, ex, "55000") == []  # 8 % down: not yet
    [d] = advise_at(cfg, conn, ex, "53000")  # ~12 % under the cost
    held = Decimal(conn.execute("SELECT base FROM positions").fetchone()[0])
    assert (d.side, d.amount) == ("sell", held) and d.reason.startswith("stop_loss:")
    with freeze_time("2026-11-27 12:10:00"):  # ten minutes after the buy: cooldown 1h and anti-flip 6h would block
        pid = proposals.create(conn, d, source="exits", ttl=cfg.risk.proposal_ttl, approve=True)
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "filled", r.reason
    details = {
        g["guard"]: g["detail"]
        for g in conn.execute("SELECT guard, detail FROM guard_decisions WHERE proposal_id = ?", (pid,))
    }
    assert details["cooldown"] == details["anti_flip"] == "exempt: protective exit"


def test_the_same_sell_from_elsewhere_is_still_held_by_cooldown(write_config):
    cfg, conn, ex = bought(write_config, stop_loss="0.10")
    [d] = advise_at(cfg, conn, ex, "53000")
    with freeze_time("2026-11-27 12:10:00"):
        pid = proposals.create(conn, d, source="cli", ttl=cfg.risk.proposal_ttl, approve=True)
        assert executor.execute(conn, cfg, ex, pid).state == "blocked"


def test_take_profit(write_config):
    cfg, conn, ex = bought(write_config, take_profit="0.20")
    assert advise_at(cfg, conn, ex, "70000") == []
    [d] = advise_at(cfg, conn, ex, "73000")
    assert d.reason.startswith("take_profit:")


def test_trailing_stop_measures_from_the_peak_since_the_last_buy(write_config):
    import dataclasses
    from types import MappingProxyType

    from tinybot.base import clock
    from tinybot.advisors import exits
    from tinybot.exchange.base import Candle

    cfg, conn, ex = bought(write_config, trailing_stop="0.05")
    ex.source.prices["BTC-EUR"] = Decimal("62000")  # bid 61969: 6.1 % under a 66000 peak
    with freeze_time("2026-11-27 15:00:00"):
        snap = build_snapshot(conn, cfg, ex, sources=cfg.active_advisors)
    buy_ms = clock.to_ms(snap.positions["BTC-EUR"].last_buy_at)

    def candle(ms, high):
        return Candle(ms, Decimal(high), Decimal(high), Decimal(high), Decimal(high), Decimal(1))

    before = candle(buy_ms - 3_600_000, "90000")  # a peak before the buy does not count
    since = [candle(buy_ms + 3_600_000, "65000"), candle(buy_ms + 7_200_000, "66000")]
    for history, expect in (([before], []), ([before, *since], ["trailing_stop"])):
        s2 = dataclasses.replace(snap, candles=MappingProxyType({"BTC-EUR": tuple(history)}))
        drafts = exits.advise(s2, cfg)
        assert [d.reason.split(":")[0] for d in drafts] == expect
    # 63100 is 4.4 % under 66000: a 5 % trailing stop holds
    s3 = dataclasses.replace(
        snap,
        candles=MappingProxyType({"BTC-EUR": tuple(since)}),
        tickers=MappingProxyType({"BTC-EUR": dataclasses.replace(snap.tickers["BTC-EUR"], bid=Decimal("63100"))}),
    )
    assert exits.advise(s3, cfg) == []


def test_off_by_default(write_config):
    cfg, conn, ex = bought(write_config)
    assert "exits" not in cfg.active_advisors
    assert advise_at(cfg, conn, ex, "1000") == []
