"""Guards per book (issue 21 item 2; issue 20 items 6 and 8): a sell is bounded by its own book, an external sell by
the coins outside every book, a sell sized in EUR sells exactly what the guards counted."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from tinybot.store import db
from tinybot.trade import executor, ledger, proposals
from tinybot.exchange.paper import PaperExchange
from tinybot.exchange.static import StaticMarketData
from tinybot.trade.proposals import Draft

from helpers.configs import paper_setup

T0 = "2026-11-27 12:00:00"


def setup(write_config, **risk):
    return paper_setup(
        write_config, cooldown='"0s"', anti_flip='"0s"', max_daily_eur="100", max_exposure_eur="100", **risk
    )


def trade(conn, cfg, ex, side, source="cli", book=None, external=False, **amounts):
    d = Draft("BTC-EUR", side, amounts.get("eur"), amounts.get("amount"), book=book)
    pid = proposals.create(conn, d, source=source, ttl=timedelta(hours=1), approve=True, external=external)
    return executor.execute(conn, cfg, ex, pid)


def blocks(conn, r):
    return {
        g["reason_code"]
        for g in conn.execute(
            "SELECT reason_code FROM guard_decisions WHERE execution_id = ? AND verdict = 'block'", (r.execution_id,)
        )
    }


@freeze_time(T0)
def test_a_sell_is_bounded_by_its_own_book_and_a_person_names_the_book(write_config):
    cfg, conn, ex = setup(write_config)
    assert trade(conn, cfg, ex, "buy", source="dca", eur=Decimal("7")).state == "filled"
    assert trade(conn, cfg, ex, "buy", source="rules", eur=Decimal("7")).state == "filled"
    dca = ledger.position_base(conn, "BTC-EUR", "dca")
    # rules may not sell DCA's coins: neither more than its own book, nor from the dca book
    r = trade(conn, cfg, ex, "sell", source="rules", amount=dca + ledger.position_base(conn, "BTC-EUR", "rules"))
    assert r.state == "blocked" and "over_own_position" in blocks(conn, r)
    r = trade(conn, cfg, ex, "sell", source="rules", book="dca", amount=dca)
    assert r.state == "blocked" and blocks(conn, r) == {"book_not_allowed"}
    assert "rules.sell_from in bot.toml" in r.reason
    # a manual sell sells from the manual book by default (empty here), or from the book it names
    r = trade(conn, cfg, ex, "sell", amount=dca)
    assert r.state == "blocked" and "the manual book's BTC-EUR position is 0.00000000" in r.reason
    assert "other books: dca" in r.reason
    assert trade(conn, cfg, ex, "sell", book="dca", amount=dca).state == "filled"
    assert ledger.position_base(conn, "BTC-EUR", "dca") == 0
    assert ledger.position_base(conn, "BTC-EUR", "rules") > 0
    [realised] = [r for r in ledger.book_positions(conn, "BTC-EUR") if r["book"] == "dca"]
    assert Decimal(realised["realised_eur"]) < 0  # its buy's fee and the spread: the dca book's, nobody else's


@freeze_time(T0)
def test_the_five_euro_rule_works_per_book(write_config):
    cfg, conn, ex = setup(write_config)
    assert trade(conn, cfg, ex, "buy", source="dca", eur=Decimal("7")).state == "filled"
    # €3 into the rules book would strand it, however much the dca book holds of the same market
    r = trade(conn, cfg, ex, "buy", source="rules", eur=Decimal("5"))
    assert r.state == "blocked" and "would_strand" in blocks(conn, r) and "the rules book's" in r.reason
    # selling part of the dca book must not leave dust in it
    half = (ledger.position_base(conn, "BTC-EUR", "dca") / 2).quantize(Decimal("0.00000001"))
    r = trade(conn, cfg, ex, "sell", book="dca", amount=half)
    assert r.state == "blocked" and "would_leave_dust" in blocks(conn, r)


@freeze_time(T0)
def test_an_external_sell_never_sells_tinybots_own_coins(write_config):
    """Issue 20 item 6: `propose ... sell --external` was bounded by the exchange balance only."""
    cfg, conn, ex = setup(write_config)
    assert trade(conn, cfg, ex, "buy", eur=Decimal("7")).state == "filled"
    own = ledger.position_base(conn, "BTC-EUR")
    with db.transaction(conn):  # the owner deposits coins tinybot never bought
        conn.execute("UPDATE paper_balances SET available = available + 0.0002 WHERE asset = 'BTC'")
    everything = own + Decimal("0.0002")
    r = trade(conn, cfg, ex, "sell", external=True, amount=everything)
    assert r.state == "blocked" and "over_outside_books" in blocks(conn, r)
    assert "only 0.00020000 is outside tinybot's books" in r.reason
    # an own sell in flight is not yet booked: the room shrinks by it too
    pid = proposals.create(
        conn, Draft("BTC-EUR", "sell", amount=Decimal("0.00005")), source="cli", ttl=timedelta(hours=1)
    )
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount, state,"
            " claimed_at, updated_at, submitting_at) VALUES (?, 'x', 'paper', 'BTC-EUR', 'sell', '0.00005',"
            " 'submitting', ?, ?, ?)",
            (pid, "2026-11-27T12:00:00.000000Z", "2026-11-27T12:00:00.000000Z", "2026-11-27T12:00:00.000000Z"),
        )
    r = trade(conn, cfg, ex, "sell", external=True, amount=Decimal("0.0002"))
    assert r.state == "blocked" and "over_outside_books" in blocks(conn, r)
    with db.transaction(conn):
        conn.execute("UPDATE trade_executions SET state = 'failed' WHERE client_order_id = 'x'")
    assert trade(conn, cfg, ex, "sell", external=True, amount=Decimal("0.0002")).state == "filled"
    # tinybot's own coins are still there, and its own sell of them goes through
    assert ledger.position_base(conn, "BTC-EUR") == own
    assert trade(conn, cfg, ex, "sell", amount=own).state == "filled"


class FallingPaper(PaperExchange):
    """The price falls between the guards' look and the fill (a fast market)."""

    fall_to: Decimal | None = None

    def send_order(self, market, side, **kw):
        if self.fall_to is not None:
            self.source.prices[market] = self.fall_to
        return super().send_order(market, side, **kw)


@freeze_time(T0)
def test_a_sell_sized_in_eur_sells_what_was_counted_when_the_price_falls(write_config):
    """Issue 20 item 8, verified: sent by amountQuote, a sell counted at the bid sold EUR / fill price — more coins
    than counted when the price fell, past the book's position or leaving dust.  It is sent by base amount now."""
    cfg, conn, _ = setup(write_config, max_trade_eur="20")
    ex = FallingPaper(cfg.db_path, StaticMarketData(cfg.paper.prices), starting_eur=cfg.paper.starting_eur)
    assert trade(conn, cfg, ex, "buy", eur=Decimal("12.5")).state == "filled"
    assert trade(conn, cfg, ex, "buy", source="dca", eur=Decimal("6")).state == "filled"
    mine = ledger.position_base(conn, "BTC-EUR", "manual")
    dca = ledger.position_base(conn, "BTC-EUR", "dca")
    ex.fall_to = Decimal("54000")  # 10 % down by the time the order fills
    r = trade(conn, cfg, ex, "sell", eur=Decimal("6.50"))
    assert r.state == "filled", r.reason
    bid = Decimal("60000") * Decimal("0.9995")  # what the guards saw
    counted = (Decimal("6.50") / bid).quantize(Decimal("0.00000001"), "ROUND_DOWN")
    sold = Decimal(
        conn.execute("SELECT amount FROM trade_history WHERE execution_id = ?", (r.execution_id,)).fetchone()[0]
    )
    assert sold == counted  # by EUR it would have sold 6.50 / 53973 = 0.00012043
    assert ledger.position_base(conn, "BTC-EUR", "manual") == mine - counted
    assert ledger.position_base(conn, "BTC-EUR", "dca") == dca  # never past its own book
