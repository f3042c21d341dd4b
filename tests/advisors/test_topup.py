"""[risk] top_up_to_exit: the smallest buy that frees a stranded position, once, within the caps (issue 11)."""

from __future__ import annotations

from decimal import Decimal

from freezegun import freeze_time

from tinybot.store import db
from tinybot.trade import proposals
from tinybot.base import sizing
from tinybot.advisors import build_snapshot, run_advisor

from helpers.configs import paper_setup


def stranded_setup(write_config, **risk):
    cfg, conn, ex = paper_setup(write_config, top_up_to_exit="true", **risk)
    with db.transaction(conn):  # the dca book holds 0.00005 BTC: €3 at 60000, under the €5 minimum
        conn.execute(
            "INSERT INTO book_positions (book, market, base, cost_eur, realised_eur, updated_at)"
            " VALUES ('dca', 'BTC-EUR', '0.00005', '3.20', '0', '2026-11-27T12:00:00.000000Z')"
        )
        conn.execute(
            "INSERT INTO positions (market, base, cost_eur, realised_eur, updated_at)"
            " VALUES ('BTC-EUR', '0.00005', '3.20', '0', '2026-11-27T12:00:00.000000Z')"
        )
    return cfg, conn, ex


@freeze_time("2026-11-27 12:00:00")
def test_a_stranded_position_gets_one_top_up_proposal_that_frees_it(write_config):
    cfg, conn, ex = stranded_setup(write_config)
    assert "top_up" in cfg.active_advisors
    snap = build_snapshot(conn, cfg, ex, sources=cfg.active_advisors)
    [d] = run_advisor("top_up", snap, cfg).drafts
    t = snap.tickers["BTC-EUR"]
    assert d.side == "buy" and d.amount_quote == sizing.top_up_eur(cfg, Decimal("0.00005"), t.bid, t.ask)
    assert d.book == "dca"  # into the book it frees: each book is sold on its own
    after = (Decimal("0.00005") + d.amount_quote * (1 - cfg.paper.taker_fee) / t.ask) * t.bid
    assert after >= sizing.min_sellable_eur(cfg)
    proposals.create(conn, d, source="top_up", ttl=cfg.risk.proposal_ttl)
    again = build_snapshot(conn, cfg, ex, sources=cfg.active_advisors)
    assert run_advisor("top_up", again, cfg).drafts == []  # one at a time


@freeze_time("2026-11-27 12:00:00")
def test_no_top_up_over_the_caps_or_when_off(write_config):
    cfg, conn, ex = stranded_setup(write_config, max_trade_eur="4")
    snap = build_snapshot(conn, cfg, ex, sources=cfg.active_advisors)
    assert run_advisor("top_up", snap, cfg).drafts == []
    off, conn2, _ = paper_setup(write_config)
    assert "top_up" not in off.active_advisors
