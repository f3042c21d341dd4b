"""The scoreboard: the book's figures per row, metrics checked against empyrical, the block bootstrap's interval."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pytest
from freezegun import freeze_time

from tinybot.analysis import score
from tinybot.base import clock
from tinybot.store import db
from tinybot.trade.book import figures

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc)


def _history(conn, days: int, seed: int = 3):
    """An hourly BTC price path over ``days`` days (every 6 hours), a random walk; returns the prices."""
    rng = random.Random(seed)
    price, out = Decimal("60000"), []
    with db.transaction(conn):
        for h in range(0, days * 24 + 1, 6):
            price = (price * Decimal(str(1 + rng.gauss(0, 0.02)))).quantize(Decimal("0.01"))
            at = clock.to_iso(T0 + timedelta(hours=h))
            conn.execute(
                "INSERT INTO price_log (hour, market, bid, ask, last) VALUES (?, 'BTC-EUR', ?, ?, ?)",
                (at, str(price - 5), str(price + 5), str(price)),
            )
            out.append(price)
    return out


def _fill(conn, n: int, side: str, amount: str, price: str, at: datetime, book: str = "rules"):
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO trade_history (exchange, trade_id, order_id, market, side, amount, price, fee, fee_currency,"
            " executed_at, recorded_at, book) VALUES ('paper', ?, ?, 'BTC-EUR', ?, ?, ?, '0.02', 'EUR', ?, ?, ?)",
            (f"t{n}", f"o{n}", side, amount, price, clock.to_iso(at), clock.to_iso(at), book),
        )


@pytest.fixture
def scored(write_config):
    cfg = write_config()
    conn = db.open_db(cfg.db_path)
    _history(conn, 30)
    _fill(conn, 1, "buy", "0.0001", "60010", T0 + timedelta(days=2))
    _fill(conn, 2, "sell", "0.00005", "61000", T0 + timedelta(days=9))
    _fill(conn, 3, "buy", "0.0001", "59000", T0 + timedelta(days=12), book="dca")
    with freeze_time(T0 + timedelta(days=30, hours=1)):
        board = score.scoreboard(conn, cfg, until=T0 + timedelta(days=30))
        from tinybot.trade.book.figures import summary

        s = summary(conn, cfg, until=T0 + timedelta(days=30))
    return cfg, conn, board, s


def test_each_row_is_the_books_figure(scored):
    """net, fees, trades of a live row are the book's summary; holding and DCA rows are the book's benchmarks."""
    _, _, board, s = scored
    rows = {r["advisor"]: r for r in board["rows"]}
    assert Decimal(rows["rules"]["net_eur"]) == s.by_book["rules"].net_eur.quantize(Decimal("0.01"))
    assert Decimal(rows["dca"]["fees_eur"]) == s.by_book["dca"].fees_eur.quantize(Decimal("0.01"))
    assert rows["rules"]["trades"] == 2 and rows["dca"]["trades"] == 1  # fills: a round trip is two
    assert Decimal(rows["benchmark:holding"]["net_eur"]) == s.holding_eur.quantize(Decimal("0.01"))
    assert Decimal(rows["dca"]["net_eur"]) == s.by_book["dca"].net_eur.quantize(Decimal("0.01"))
    assert Decimal(rows["benchmark:dca"]["net_eur"]) == s.dca_eur.quantize(Decimal("0.01"))
    assert rows["rules"]["days"] == 31  # 09:00 on the 1st to 09:00 on the 31st: two partial days and 29 whole
    assert set(rows["rules"]["versus"]) == {"holding", "dca"}
    json.dumps(board)  # every figure is JSON as it stands


@pytest.fixture(scope="module")
def empyrical():
    """empyrical imports scipy (1.4 s): only the tests checked against it pay for it, not every worker's collection."""
    import empyrical

    return empyrical


def _returns(equity: list[str]) -> np.ndarray:
    e = np.array([float(x) for x in equity])
    return e[1:] / e[:-1] - 1


def test_return_and_drawdown_agree_with_empyrical_on_the_same_series(scored, empyrical):
    """Each row's daily equity series given to empyrical: cumulative return and maximum drawdown agree to the
    0.01 percentage point the row shows."""
    cfg, conn, _, _ = scored
    with freeze_time(T0 + timedelta(days=30, hours=1)):
        players, _, _ = score.players(conn, cfg, None, T0 + timedelta(days=30))
    assert len(players) == 2
    for p in players:
        r = score.row(p)
        rets = _returns([str(e) for e in p.equity])
        assert float(r["return_pct"]) == pytest.approx(empyrical.cum_returns_final(rets) * 100, abs=0.006)
        assert float(r["max_drawdown_pct"]) == pytest.approx(-empyrical.max_drawdown(rets) * 100, abs=0.006)
    assert any(float(score.row(p)["max_drawdown_pct"]) > 0.1 for p in players)  # a real drawdown was compared


def test_max_drawdown_against_empyrical_on_a_long_random_path(empyrical):
    rng = random.Random(9)
    equity = [Decimal("25")]
    for _ in range(400):
        equity.append((equity[-1] * Decimal(str(1 + rng.gauss(0, 0.03)))).quantize(Decimal("0.00000001")))
    rets = _returns([str(e) for e in equity])
    assert float(figures.max_drawdown(equity)) == pytest.approx(-empyrical.max_drawdown(rets), rel=1e-9)


def test_the_interval_is_seeded_and_as_wide_as_the_textbook_for_independent_days():
    """Blocks of one day on independent normal days: the 95 % interval is mean ± 1.96 sd/√n within 10 %;
    the same input gives the same interval twice."""
    rng = random.Random(1)
    diffs = [Decimal(str(round(rng.gauss(0.05, 0.4), 6))) for _ in range(400)]
    lo, hi = score.bootstrap_ci(diffs, block=1)
    assert (lo, hi) == score.bootstrap_ci(diffs, block=1)
    x = np.array([float(d) for d in diffs])
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert float(hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert float(lo) < x.mean() < float(hi)


def test_blocks_widen_the_interval_when_days_follow_each_other():
    """Days that move together (a trend lasting ~10 days): one-day blocks understate the width, blocks do not."""
    rng = random.Random(2)
    diffs, level = [], 0.0
    for i in range(300):
        if i % 10 == 0:
            level = rng.gauss(0, 1)
        diffs.append(Decimal(str(round(level + rng.gauss(0, 0.1), 6))))
    single = score.bootstrap_ci(diffs, block=1)
    blocked = score.bootstrap_ci(diffs, block=10)
    assert (blocked[1] - blocked[0]) > Decimal("1.8") * (single[1] - single[0])


def test_verdicts_in_words():
    assert score.verdict("DCA", Decimal("1"), (Decimal("0.5"), Decimal("1.5")), 40) == (
        "ahead of DCA with 95 % confidence"
    )
    assert score.verdict("holding", Decimal("-1"), (Decimal("-2"), Decimal("-0.1")), 40) == (
        "behind holding with 95 % confidence"
    )
    assert score.verdict("DCA", Decimal("0.1"), (Decimal("-0.1"), Decimal("0.3")), 12) == (
        "not enough evidence yet (12 days; a difference this size needs about 48)"
    )
    assert score.verdict("DCA", None, None, 1) == "not enough evidence yet (1 day)"


def test_block_length_is_the_cube_root_of_the_days():
    assert [score.block_length(n) for n in (1, 8, 27, 30, 64, 365)] == [1, 2, 3, 3, 4, 7]


def test_score_command_json_and_table(scored, tmp_path):
    from click.testing import CliRunner

    from tinybot.cli import cli

    cfg, _, _, _ = scored
    with freeze_time(T0 + timedelta(days=30, hours=1)):
        out = CliRunner().invoke(cli, ["--config", str(cfg.path), "score", "--json", "--since", "2026-10-15"])
        table = CliRunner().invoke(cli, ["--config", str(cfg.path), "score"])
    assert out.exit_code == 0, out.output
    board = json.loads(out.output)
    rules = next(r for r in board["rows"] if r["advisor"] == "rules")
    assert rules["trades"] == 0 and rules["days"] == 17  # the window: nothing traded after the 15th
    for key in ("net_eur", "return_pct", "max_drawdown_pct", "fees_eur", "llm_cost_eur", "time_in_market_pct"):
        assert key in rules
    assert set(rules["versus"]["dca"]) >= {"ci95", "verdict", "mean_daily_diff_eur"}
    assert table.exit_code == 0 and "rules vs holding" in table.output
    bad = CliRunner().invoke(cli, ["--config", str(cfg.path), "score", "--since", "yesterday"])
    assert bad.exit_code != 0 and "--since: 'yesterday' is not a date" in bad.output


def test_a_shadow_has_its_row_with_its_llm_cost_and_the_live_llm_book_does_not(scored):
    """A shadow llm that bought once on paper and paid €0.30 for its calls: its row's net is its book's net minus
    that cost; no live llm row appears for it."""
    from tinybot.exchange.base import Market, Ticker
    from tinybot.trade import shadow
    from tinybot.trade.proposals import Draft

    cfg, conn, _, _ = scored
    opened = T0 + timedelta(days=20)
    shadow.open_book(conn, "llm", Decimal("25"), opened)
    shadow.record(conn, "llm", [Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason="x")], opened)
    t = {"BTC-EUR": Ticker("BTC-EUR", Decimal("59990"), Decimal("60010"), Decimal("60000"), 0)}
    m = {"BTC-EUR": Market("BTC-EUR", "BTC", "EUR", "trading", Decimal("1"), 8, 2, Decimal("5"), Decimal("0.00001"))}
    (o,) = shadow.fill_pending(conn, cfg, t, m, opened + timedelta(minutes=1))
    assert o.state == "filled"
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO gpt_usage_log (state, model, reserved_at, settled_at, day, month, prompt_tokens_est,"
            " max_tokens, reserved_eur, cost_eur, book) VALUES ('settled', 'm', ?, ?, '2026-10-21', '2026-10', 1, 1,"
            " '0.30', '0.30', 'shadow:llm')",
            (clock.to_iso(opened), clock.to_iso(opened)),
        )
    with freeze_time(T0 + timedelta(days=30, hours=1)):
        board = score.scoreboard(conn, cfg, until=T0 + timedelta(days=30))
    rows = {r["advisor"]: r for r in board["rows"]}
    assert "llm" not in rows
    s = rows["shadow:llm"]
    assert (s["kind"], s["trades"], s["llm_cost_eur"], s["days"]) == ("shadow", 1, "0.30", 11)
    (f,) = shadow.fills(conn, book="llm")
    bid = conn.execute("SELECT bid FROM price_log ORDER BY hour DESC LIMIT 1").fetchone()[0]
    book_net = f.amount * Decimal(bid) - f.eur  # what the one buy is worth at the last bid, minus what it cost
    assert Decimal(s["net_eur"]) == (book_net - Decimal("0.30")).quantize(Decimal("0.01"))


def test_every_row_of_a_window_starts_at_since(scored):
    cfg, conn, _, _ = scored
    since = datetime(2026, 10, 15, tzinfo=timezone.utc)
    with freeze_time(T0 + timedelta(days=30, hours=1)):
        board = score.scoreboard(conn, cfg, since=since, until=T0 + timedelta(days=30))
    assert {r["from"] for r in board["rows"]} == {clock.to_iso(since)}
    whole = {r["advisor"]: r for r in scored[2]["rows"]}
    assert {r["from"] for r in whole.values()} == {clock.to_iso(T0)}
