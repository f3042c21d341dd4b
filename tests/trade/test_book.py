"""The book (issue 21): one average-cost step, books per advisor, benchmarks that could have happened, drift at
one moment, and the chart's last point equal to the table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from freezegun import freeze_time

from tinybot.base import clock
from tinybot.store import db
from tinybot.trade import ledger, proposals
from tinybot.analysis import pnl
from tinybot.trade.book import benchmarks, figures, holdings, steps, valuation
from tinybot.trade.book.steps import Fill, Position
from tinybot.exchange.base import Balance, Ticker
from tinybot.exchange.base import Fill as ExchangeFill

from helpers.configs import PAPER_TOML

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
CENT = Decimal("0.01")


def fill(side, amount, price, fee="0", fee_currency="EUR", book_name="rules", at=T0, market="BTC-EUR", external=False):
    return Fill(
        market,
        side,
        Decimal(amount),
        Decimal(price),
        Decimal(fee),
        fee_currency,
        clock.to_iso(at),
        book_name,
        external,
    )


# --- the step ------------------------------------------------------------------------------------------------------


def test_a_buy_adds_its_eur_and_fee_a_sell_takes_its_share_and_realises_the_difference():
    books: dict[str, Position] = {}
    steps.apply(books, fill("buy", "0.0001", "60000", fee="0.02"))  # €6 + €0.02 fee
    assert books["rules"].base == Decimal("0.0001") and books["rules"].cost_eur == Decimal("6.02")
    realised = steps.apply(books, fill("sell", "0.00004", "70000", fee="0.01"))  # 40 % of it, at a higher price
    # proceeds 2.80 - 0.01 fee; cost taken 40 % of 6.02 = 2.408
    assert realised == {"rules": Decimal("0.382")}
    assert books["rules"].base == Decimal("0.00006") and books["rules"].cost_eur == Decimal("3.612")
    assert books["rules"].fees_eur == Decimal("0.03") and books["rules"].fills == 2


def test_a_fee_in_the_coin_is_valued_at_the_fill_price_and_leaves_the_position():
    f = fill("buy", "0.0001", "60000", fee="0.00000025", fee_currency="BTC")
    assert f.fee_eur == Decimal("0.015") and f.moves == {"BTC": Decimal("0.00009975"), "EUR": Decimal("-6")}
    books: dict[str, Position] = {}
    steps.apply(books, f)
    # the EUR paid is the cost; fewer coins came in
    assert books["rules"].base == Decimal("0.00009975") and books["rules"].cost_eur == Decimal("6")
    assert books["rules"].fees_eur == Decimal("0.015")


def test_eur_figures_are_kept_to_eight_decimals_at_every_step():
    books: dict[str, Position] = {}
    steps.apply(books, fill("buy", "0.00010001", "61234.57", fee="0.01531"))
    steps.apply(books, fill("sell", "0.00003333", "60001.01", fee="0.005"))
    for v in (books["rules"].cost_eur, books["rules"].realised_eur):
        assert v == v.quantize(steps.EUR_PLACES)


def test_a_sell_bigger_than_its_book_takes_the_rest_from_the_other_books_dca_last():
    books: dict[str, Position] = {}
    steps.apply(books, fill("buy", "0.0001", "50000", book_name="dca"))
    steps.apply(books, fill("buy", "0.0001", "60000", book_name="manual"))
    # before books existed, an exits sell sold the whole market position
    realised = steps.apply(books, fill("sell", "0.00015", "70000", book_name="exits"))
    assert books["manual"].base == 0 and books["dca"].base == Decimal("0.00005")
    assert realised == {"manual": Decimal("1"), "dca": Decimal("1")}  # 7 - 6 and 3.5 - 2.5
    assert sum(p.base for p in books.values()) == Decimal("0.00005")  # the books sum to the market


def test_an_external_fill_moves_the_account_but_no_book():
    w = steps.walk_fills(
        [
            fill("buy", "0.0001", "60000", book_name="dca"),
            fill("sell", "0.001", "60000", external=True, book_name="external"),
        ]
    )
    assert w.market("BTC-EUR").base == Decimal("0.0001")
    assert w.external_eur == Decimal("60") and w.delta["BTC"] == Decimal("-0.0009")


# --- the stored books ------------------------------------------------------------------------------------------------


def _proposal(conn, source, side="buy", book_name=None, external=False):
    from tinybot.trade.proposals import Draft

    pid = proposals.create(
        conn,
        Draft("BTC-EUR", side, amount=Decimal("0.0001"), book=book_name),
        source=source,
        ttl=timedelta(hours=1),
        external=external,
    )
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount, state,"
            " claimed_at, updated_at, external) VALUES (?, ?, 'sim', 'BTC-EUR', ?, '0.0001', 'submitted', ?, ?, ?)",
            (pid, f"cid-{pid}", side, clock.now_iso(), clock.now_iso(), int(external)),
        )
    return cur.lastrowid


def _record(conn, execution_id, trade_id, side, amount, price, at, fee="0.01", settled=True, external=False):
    f = ExchangeFill(
        trade_id,
        f"order-{execution_id}",
        "BTC-EUR",
        side,
        Decimal(amount),
        Decimal(price),
        Decimal(fee),
        "EUR",
        clock.to_ms(at),
        settled,
    )
    with db.transaction(conn):
        ledger.record_fill(conn, execution_id, "sim", f, f"cid-{execution_id}", external=external)


def _stored(conn):
    return {
        (r["book"], r["market"]): (Decimal(r["base"]), Decimal(r["cost_eur"]), Decimal(r["realised_eur"]))
        for r in ledger.book_positions(conn)
    }


def _walked(conn):
    w = steps.walk(conn)
    return {(b, m): (p.base, p.cost_eur, p.realised_eur) for b, m, p in w.lines()}


def test_each_fill_lands_in_its_proposals_book_and_the_stored_books_are_the_walk(write_config):
    cfg = write_config()
    conn = db.open_db(cfg.db_path)
    with freeze_time(T0):
        dca, rules, manual = _proposal(conn, "dca"), _proposal(conn, "rules"), _proposal(conn, "cli")
        sell = _proposal(conn, "rules", "sell")
    _record(conn, dca, "t1", "buy", "0.0001", "60000", T0)
    _record(conn, rules, "t2", "buy", "0.0002", "61000", T0 + timedelta(hours=1), settled=False, fee="0")
    _record(conn, manual, "t3", "buy", "0.00005", "62000", T0 + timedelta(hours=2))
    _record(conn, sell, "t4", "sell", "0.00007", "63000", T0 + timedelta(hours=3))
    _record(conn, None, "t5", "buy", "0.00001", "63000", T0 + timedelta(hours=4))  # no execution accounts for it
    # found late: an older fill of the rules buy, and the unsettled fee settles afterwards (both re-book the market)
    _record(conn, rules, "t0", "buy", "0.00001", "59000", T0 + timedelta(minutes=30))
    _record(conn, rules, "t2", "buy", "0.0002", "61000", T0 + timedelta(hours=1), fee="0.03")
    books = {r["trade_id"]: r["book"] for r in conn.execute("SELECT trade_id, book FROM trade_history")}
    assert books == {"t0": "rules", "t1": "dca", "t2": "rules", "t3": "manual", "t4": "rules", "t5": "external"}
    assert _stored(conn) == _walked(conn)
    total = conn.execute("SELECT base, cost_eur FROM positions WHERE market = 'BTC-EUR'").fetchone()
    stored = _stored(conn)
    assert Decimal(total["base"]) == sum(v[0] for v in stored.values())
    assert Decimal(total["cost_eur"]) == sum(v[1] for v in stored.values())
    assert ledger.position_base(conn, "BTC-EUR", "dca") == Decimal("0.0001")
    assert ledger.position_base(conn, "BTC-EUR", "rules") == Decimal("0.00014")


def test_cost_is_stored_at_a_fixed_precision_after_a_partial_sell(write_config):
    """Issue 20 item 9: positions.cost_eur had 27 decimals after a partial sell."""
    from helpers.configs import paper_setup

    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"', max_trade_eur="20")
    from tinybot.trade import executor
    from tinybot.trade.proposals import Draft

    for side, kw in (("buy", {"amount_quote": Decimal("15")}), ("sell", {"amount": Decimal("0.00009")})):
        pid = proposals.create(conn, Draft("BTC-EUR", side, **kw), source="cli", ttl=timedelta(hours=1), approve=True)
        r = executor.execute(conn, cfg, ex, pid)
        assert r.state == "filled", r.reason
    for table in ("positions", "book_positions"):
        for r in conn.execute(f"SELECT cost_eur, realised_eur FROM {table}"):
            for v in (r["cost_eur"], r["realised_eur"]):
                assert len(v.split(".")[1]) == 8, (table, v)


# --- benchmarks -------------------------------------------------------------------------------------------------------


def _history(prices):
    h = valuation.PriceHistory()
    for market, rows in prices.items():
        for at, p in rows:
            h.add(market, clock.to_iso(at), valuation.Price(Decimal(p), Decimal(p), Decimal(p), None))
    return h


def test_holding_and_dca_never_spend_more_than_there_was():
    h = _history({"BTC-EUR": [(T0, "60000"), (T0 + timedelta(days=20), "66000")], "ETH-EUR": [(T0, "3000")]})
    capital = Decimal("25")
    hold = benchmarks.holding(capital, ["BTC-EUR", "ETH-EUR"], T0, h.at)
    spread = benchmarks.dca(capital, ["BTC-EUR", "ETH-EUR"], T0, T0 + timedelta(days=30), timedelta(days=7), h.at)
    assert hold.spent_eur <= capital and spread.spent_eur <= capital
    assert [b.eur for b in hold.buys] == [Decimal("12.50"), Decimal("12.50")]
    assert all(b.eur >= 5 for b in spread.buys) and len(spread.buys) == 4  # €25 buys at most 2 rounds × 2 markets
    # €9 cannot buy two markets at the €5 minimum: the benchmark holds one, as a real account would
    assert [b.market for b in benchmarks.holding(Decimal("9"), ["BTC-EUR", "ETH-EUR"], T0, h.at).buys] == ["BTC-EUR"]
    # the fee is in: at the start price holding has lost exactly what the fee and the truncation took
    bids = {"BTC-EUR": Decimal("60000"), "ETH-EUR": Decimal("3000")}
    assert Decimal("-0.07") < hold.pnl_at(T0, bids) < 0


def test_the_holding_benchmark_invests_the_starting_money_once_not_every_buy(write_config):
    """Issue 21: "holding the same buys" spent €66 of a €25 account (each buy counted again)."""
    from helpers.configs import paper_setup

    from tinybot.trade import executor
    from tinybot.trade.proposals import Draft

    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"', max_daily_eur="100")
    with freeze_time(T0) as frozen:
        pnl.record_snapshot(conn, {"BTC-EUR": Ticker("BTC-EUR", *(Decimal("60000"),) * 3, 0)}, None)
        for _ in range(4):
            pid = proposals.create(
                conn, Draft("BTC-EUR", "buy", Decimal("10")), source="cli", ttl=timedelta(hours=1), approve=True
            )
            assert executor.execute(conn, cfg, ex, pid).state == "filled"
            held = ledger.position_base(conn, "BTC-EUR")
            pid = proposals.create(
                conn, Draft("BTC-EUR", "sell", amount=held), source="cli", ttl=timedelta(hours=1), approve=True
            )
            assert executor.execute(conn, cfg, ex, pid).state == "filled"
            frozen.tick(timedelta(hours=1))
        rep = pnl.report(conn, cfg)
    assert Decimal(rep["benchmarks"]["holding"]["spent_eur"]) <= cfg.paper.starting_eur
    # at an unchanged price, holding €25 lost only one buy's fee, never more than the account had
    assert Decimal("-0.07") <= Decimal(rep["hold_eur"]) < 0


# --- the chart's last point is the table ---------------------------------------------------------------------------------


def test_the_series_ends_on_the_summary_figure_for_figure(write_config):
    from helpers.configs import paper_setup

    from tinybot.trade import executor
    from tinybot.trade.proposals import Draft

    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"')
    with freeze_time(T0) as frozen:
        for i, (source, side, kw) in enumerate(
            [("dca", "buy", {"amount_quote": Decimal("6")}), ("rules", "buy", {"amount_quote": Decimal("7")})]
        ):
            pnl.record_snapshot(conn, {"BTC-EUR": Ticker("BTC-EUR", *(Decimal(60000 + 500 * i),) * 3, 0)}, None)
            pid = proposals.create(
                conn, Draft("BTC-EUR", side, **kw), source=source, ttl=timedelta(hours=1), approve=True
            )
            assert executor.execute(conn, cfg, ex, pid).state == "filled"
            frozen.tick(timedelta(hours=2))
        with db.transaction(conn):
            conn.execute(
                "INSERT INTO gpt_usage_log (state, model, reserved_at, settled_at, day, month, prompt_tokens_est,"
                " max_tokens, reserved_eur, cost_eur) VALUES ('settled', 'm', ?, ?, 'd', 'm', 1, 1, '0.01', '0.004')",
                (clock.now_iso(), clock.now_iso()),
            )
        frozen.tick(timedelta(hours=1))
        prices = {"BTC-EUR": valuation.Price(Decimal("61234.5"), Decimal("61300"), Decimal("61250"), clock.now_iso())}
        now = clock.now()
        s = figures.summary(conn, cfg, prices=prices, until=now)
        ser = figures.series(conn, cfg, prices=prices, until=now)
    last = ser.points[-1]
    assert (last.net_eur, last.realised_eur, last.unrealised_eur, last.fees_eur, last.llm_cost_eur) == (
        s.total.net_eur,
        s.total.realised_eur,
        s.total.unrealised_eur,
        s.total.fees_eur,
        s.total.llm_cost_eur,
    )
    assert last.holding_eur == s.holding_eur and last.dca_eur == s.dca_eur and last.holding_eur is not None
    assert dict(last.by_book) == {b: f.net_eur for b, f in s.by_book.items()}
    assert set(last.by_book) == {"dca", "rules", "llm"}  # the llm book carries the LLM's cost before any fill


# --- drift at one moment ------------------------------------------------------------------------------------------------


def test_drift_compares_the_balances_with_the_ledger_as_of_their_time(write_config):
    """Issue 21: tinybot's own fresh buy showed as drift (`BTC -0.00009659, EUR 6.00`) until the next tick."""
    cfg = write_config(PAPER_TOML.replace('mode = "paper"', 'mode = "live"') + "[exchange]\noperator_id = 1\n")
    conn = db.open_db(cfg.db_path)
    t = {"BTC-EUR": Ticker("BTC-EUR", Decimal("60000"), Decimal("60010"), Decimal("60005"), 0)}
    with freeze_time(T0):
        pnl.record_snapshot(conn, t, {"EUR": Balance(Decimal("25"), Decimal(0))})
        ex = _proposal(conn, "dca")
    # the tick traded after it read the balances: its fill is booked after them
    with freeze_time(T0 + timedelta(seconds=5)):
        _record(conn, ex, "t1", "buy", "0.00009659", "62000", T0 + timedelta(seconds=5), fee="0.01")
    with freeze_time(T0 + timedelta(seconds=10)):
        assert holdings.drift(conn, cfg)["assets"] == {"EUR": "0.00"}
        assert pnl.report(conn, cfg)["drift"]["assets"] == {"EUR": "0.00"}
    # the next tick reads the balances after the fill: still none
    with freeze_time(T0 + timedelta(minutes=1)):
        pnl.record_snapshot(
            conn, t, {"EUR": Balance(Decimal("19.00"), Decimal(0)), "BTC": Balance(Decimal("0.00009659"), Decimal(0))}
        )
        assert set(holdings.drift(conn, cfg)["assets"].values()) == {"0", "0.00"}
    # money really moved outside: it shows
    with freeze_time(T0 + timedelta(minutes=2)):
        pnl.record_snapshot(
            conn, t, {"EUR": Balance(Decimal("29.00"), Decimal(0)), "BTC": Balance(Decimal("0.00009659"), Decimal(0))}
        )
        assert holdings.drift(conn, cfg)["assets"] == {"BTC": "0", "EUR": "10.00"}


# --- migration 0010_books ----------------------------------------------------------------------------------------------


def _old_database(path):
    """A database as the last release left it: every migration before 0010_books."""
    conn = db.connect(path)
    db.applied_migrations(conn)
    for m in db.migrations():
        if m.name == "0010_books":
            break
        with db.transaction(conn):
            for statement in db._statements(m.sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (m.name, clock.now_iso()))
            if m.name == "0001_core":
                conn.execute(
                    "INSERT INTO kill_switch (id, trading_enabled, changed_at) VALUES (1, 1, ?)", (clock.now_iso(),)
                )
    return conn


def test_migration_0010_books_the_fills_by_their_proposals_source(tmp_path):
    conn = _old_database(tmp_path / "old.db")
    rows = [  # (source, side, amount, price, fee): rules and DCA shared one position; exits sold all of it
        ("rules", "buy", "0.0001", "60000", "0.02"),
        ("dca", "buy", "0.0001", "50000", "0.02"),
        ("cli", "buy", "0.00005", "55000", "0.01"),
        ("exits", "sell", "0.00025", "70000", "0.04"),
        ("dca", "buy", "0.0001", "65000", "0.02"),
    ]
    with db.transaction(conn):
        for i, (source, side, amount, price, fee) in enumerate(rows, 1):
            at = clock.to_iso(T0 + timedelta(hours=i))
            conn.execute(
                "INSERT INTO proposals (id, market, side, amount, source, status, created_at, expires_at)"
                " VALUES (?, 'BTC-EUR', ?, ?, ?, 'approved', ?, ?)",
                (i, side, amount, source, at, at),
            )
            conn.execute(
                "INSERT INTO trade_executions (id, proposal_id, client_order_id, exchange, market, side, amount, state,"
                " claimed_at, updated_at, exchange_order_id) VALUES (?, ?, ?, 'bitvavo', 'BTC-EUR', ?, ?, 'filled', ?, ?, ?)",
                (i, i, f"c{i}", side, amount, at, at, f"o{i}"),
            )
            conn.execute(
                "INSERT INTO trade_history (execution_id, exchange, trade_id, order_id, market, side, amount, price, fee,"
                " fee_currency, executed_at, recorded_at) VALUES (?, 'bitvavo', ?, ?, 'BTC-EUR', ?, ?, ?, ?, 'EUR', ?, ?)",
                (i, f"t{i}", f"o{i}", side, amount, price, fee, at, at),
            )
        # an order no execution accounts for (found by reconcile's surprise scan)
        conn.execute(
            "INSERT INTO trade_history (execution_id, exchange, trade_id, order_id, market, side, amount, price, fee,"
            " fee_currency, executed_at, recorded_at) VALUES (NULL, 'bitvavo', 't9', 'o9', 'BTC-EUR', 'buy', '0.00001',"
            " '65000', '0.01', 'EUR', ?, ?)",
            (clock.to_iso(T0 + timedelta(hours=9)),) * 2,
        )
    assert "0010_books" in db.migrate(conn, after_migration=ledger.after_migration)
    assert {r["trade_id"]: r["book"] for r in conn.execute("SELECT trade_id, book FROM trade_history")} == {
        "t1": "rules",
        "t2": "dca",
        "t3": "manual",
        "t4": "exits",
        "t5": "dca",
        "t9": "external",
    }
    assert [r[0] for r in conn.execute("SELECT book FROM proposals ORDER BY id")] == [
        "rules",
        "dca",
        "manual",
        "exits",
        "dca",
    ]
    assert _stored(conn) == _walked(conn)
    held = {b: base for (b, _), (base, _, _) in _stored(conn).items()}
    # the exits sell took manual's, rules' and then DCA's coins (dca last); DCA bought again: the books sum to the market
    assert held == {
        "manual": 0,
        "rules": 0,
        "dca": Decimal("0.0001"),
        "exits": 0,
        "external": Decimal("0.00001"),
    }
    total = conn.execute("SELECT base FROM positions WHERE market = 'BTC-EUR'").fetchone()[0]
    assert Decimal(total) == Decimal("0.00011")


def test_a_period_values_coin_fees_and_the_series_starts_where_it_is_asked(write_config):
    cfg = write_config()
    conn = db.open_db(cfg.db_path)
    with freeze_time(T0):
        ex = _proposal(conn, "dca")
    for i, (trade_id, fee, cur) in enumerate((("t1", "0.02", "EUR"), ("t2", "0.00000030", "BTC"))):
        at = T0 + timedelta(days=i)
        f = ExchangeFill(
            trade_id,
            f"order-{ex}",
            "BTC-EUR",
            "buy",
            Decimal("0.0001"),
            Decimal("60000"),
            Decimal(fee),
            cur,
            clock.to_ms(at),
        )
        with freeze_time(at), db.transaction(conn):
            ledger.record_fill(conn, ex, "sim", f, f"cid-{ex}")
    w = steps.walk(conn)
    day2 = w.period(clock.to_iso(T0 + timedelta(hours=12)), clock.to_iso(T0 + timedelta(days=2)))
    assert (day2.fees_eur, day2.fills, day2.buys) == (Decimal("0.018"), 1, 1)  # 0.0000003 BTC at 60000
    [t1, t2] = figures.trades(conn)
    assert (t2.book, t2.source, t2.fill.fee_eur, t1.proposal_id) == ("dca", "dca", Decimal("0.018"), 1)
    with freeze_time(T0 + timedelta(days=3)):
        ser = figures.series(conn, cfg, since=T0 + timedelta(hours=12))
    assert ser.points[0].at == T0 + timedelta(hours=12) and ser.points[0].fees_eur == Decimal("0.02")
    assert ser.values("fees_eur")[-1] == Decimal("0.038") and ser.books() == ["dca"]
