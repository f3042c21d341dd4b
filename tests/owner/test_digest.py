"""The daily digest and alerts that say what happened (issue 16, items 3 and 5)."""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import matplotlib.dates  # noqa: F401  first import outside freeze_time, or it registers freezegun's datetime
from freezegun import freeze_time

from tinybot.owner import digest
from tinybot.trade import executor, proposals
from tinybot.owner.notify import Notifier
from tinybot.trade.proposals import Draft

from helpers.configs import paper_setup


class Recorder:
    def __init__(self):
        self.sent = []

    def alert(self, kind, text, *, key=None, severity="warning", force=False, attach=None):
        self.sent.append((kind, text, key, [Path(a).read_bytes()[:8] for a in attach or []]))


def setup(write_config):
    cfg, conn, ex = paper_setup(lambda t: write_config('timezone = "Europe/Amsterdam"\n' + t))
    with freeze_time("2026-11-27 09:00:00"):
        pid = proposals.create(
            conn, Draft("BTC-EUR", "buy", Decimal("8")), source="cli", ttl=timedelta(minutes=30), approve=True
        )
        r = executor.execute(conn, cfg, ex, pid)
    return cfg, conn, ex, r


def test_the_digest_goes_out_once_a_day_at_the_local_time_with_a_chart(write_config):
    cfg, conn, ex, _ = setup(write_config)
    rec = Recorder()
    with freeze_time("2026-11-27 19:59:00"):  # 20:59 in Amsterdam: not yet
        assert digest.maybe_send(conn, cfg, rec) is False
    with freeze_time("2026-11-27 20:00:00"):  # 21:00 local
        assert digest.maybe_send(conn, cfg, rec) is True
        assert digest.maybe_send(conn, cfg, rec) is False  # once a day, even if asked again
    [(kind, text, key, attached)] = rec.sent
    assert kind == "digest" and key == "digest:2026-11-27"
    assert text.startswith("Friday 27 November: realised €0.00, 1 fill(s) (1 buy, 0 sell), fees €0.02, LLM €0.00.")
    assert "\nAgainst holding: €25.00 put into BTC-EUR at the start and held (fees included): " in text
    assert "; DCA: €25.00 in " in text  # the benchmarks as tinybot.trade.book names them
    assert attached == [b"\x89PNG\r\n\x1a\n"]  # the chart, a real PNG file at the time it was sent
    with freeze_time("2026-11-28 22:30:00"):  # next day, the Pi was off at 21:00: sent late, still once
        assert digest.maybe_send(conn, cfg, rec) is True
    assert rec.sent[-1][2] == "digest:2026-11-28"


def a_day(write_config):
    """A day in Amsterdam with hourly prices, a buy by DCA, and a fill whose fee Bitvavo took in the coin."""
    from tinybot.store import db
    from tinybot.trade import ledger
    from tinybot.analysis import pnl
    from tinybot.exchange.base import Balance, Fill, Ticker

    cfg, conn, ex = paper_setup(lambda t: write_config('timezone = "Europe/Amsterdam"\n' + t))
    day = datetime(2026, 11, 26, 23, tzinfo=timezone.utc)  # 27 November 00:00 in Amsterdam
    price = Decimal("60000")
    for h in range(21):
        with freeze_time(day + timedelta(hours=h)):
            price += Decimal(70 if h % 4 else -150)
            ex.source.prices["BTC-EUR"] = price
            pnl.record_snapshot(
                conn, {"BTC-EUR": Ticker("BTC-EUR", price, price + 10, price + 5, 0)}, {"EUR": Balance(Decimal(25), 0)}
            )
            if h == 3:
                pid = proposals.create(
                    conn, Draft("BTC-EUR", "buy", Decimal("8")), source="dca", ttl=timedelta(minutes=30), approve=True
                )
                executor.execute(conn, cfg, ex, pid)
            if h == 9:
                at = int((day + timedelta(hours=h)).timestamp() * 1000)
                fill = Fill("t1", "o1", "BTC-EUR", "buy", Decimal("0.0001"), price, Decimal("0.0000003"), "BTC", at)
                with db.transaction(conn):
                    ledger.record_fill(conn, None, "paper", fill, None)
    return cfg, conn


def figure_of(text: str, pattern: str) -> Decimal:
    return Decimal(re.search(pattern, text).group(1).replace("€", ""))


def test_the_digest_chart_ends_at_the_figures_its_text_quotes(write_config):
    """Its net line ends at the net the text says, its holding and DCA lines at theirs, to the cent."""
    from tinybot.analysis import charts

    cfg, conn = a_day(write_config)
    with freeze_time("2026-11-27 20:00:00"):
        d = digest.compose(conn, cfg)
    net = figure_of(d.text, r"Since the start: net (-?€\d+\.\d\d)")
    holding = figure_of(d.text, r"Against holding: [^\n;]*\): (-?€\d+\.\d\d)")
    dca = figure_of(d.text, r"; DCA: [^\n;]*\): (-?€\d+\.\d\d)")
    lines = {line["name"]: line for line in d.chart["lines"]}
    assert Decimal(lines["net_eur"]["values"][-1]) == net
    assert Decimal(lines["holding_eur"]["values"][-1]) == holding
    assert Decimal(lines["dca_eur"]["values"][-1]) == dca
    assert d.chart["x"][-1] == "2026-11-27T21:00:00+01:00" and d.chart["x"][0] == "2026-11-27T00:00:00+01:00"
    drawn = {line.get_label(): line for line in charts.figure(d.chart, cfg.tz).axes[0].get_lines()}
    for name, want in (("net_eur", net), ("holding_eur", holding), ("dca_eur", dca)):
        assert abs(Decimal(str(drawn[lines[name]["label"]].get_ydata()[-1])) - want) < Decimal("0.005"), name


def test_the_digest_chart_is_titled_with_its_local_day(write_config):
    """27 November starts at 23:00 UTC on the 26th: the chart still says the 27th."""
    from tinybot.analysis import charts

    cfg, conn = a_day(write_config)
    with freeze_time("2026-11-27 20:00:00"):
        d = digest.compose(conn, cfg)
    assert d.text.startswith("Friday 27 November:")
    assert charts.figure(d.chart, cfg.tz).axes[0].get_title() == "Net P/L, 2026-11-27 (Europe/Amsterdam)"


def test_without_matplotlib_the_digest_still_goes_out_and_says_how_to_get_its_chart(write_config, monkeypatch):
    cfg, conn = a_day(write_config)
    rec = Recorder()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed: importing it raises
    with freeze_time("2026-11-27 20:00:00"):
        assert digest.maybe_send(conn, cfg, rec) is True
    [(kind, text, key, attached)] = rec.sent
    assert attached == [] and text.endswith("\n(For a chart: pip install 'tinybot[report]'.)")


def test_the_digests_fees_value_a_fee_paid_in_the_coin(write_config):
    """The day's fees are the book's: the EUR fee of the DCA buy and the BTC fee at its fill's price."""
    from tinybot.trade.book import steps

    cfg, conn = a_day(write_config)
    with freeze_time("2026-11-27 20:00:00"):
        text = digest.compose(conn, cfg).text
    fills = steps.fills(conn)
    assert {f.fee_currency for f in fills} == {"EUR", "BTC"}
    expected = sum((f.fee_eur for f in fills), Decimal(0)).quantize(Decimal("0.01"))
    assert figure_of(text, r"fees (€\d+\.\d\d)") == expected > fills[0].fee


def test_a_young_bots_digest_says_so_instead_of_a_chart(write_config):
    cfg, conn, ex, _ = setup(write_config)  # its first fill at 09:00 UTC
    rec = Recorder()
    with freeze_time("2026-11-27 09:30:00"):  # 10:30 in Amsterdam: half an hour of history
        cfg = write_config(cfg.path.read_text() + '[alerts]\ndigest_at = "10:00"\n')
        assert digest.maybe_send(conn, cfg, rec) is True
    [(kind, text, key, attached)] = rec.sent
    assert attached == [] and "(Too little history for a chart yet: tinybot's records start 2026-11-27 10:00" in text


def test_no_digest_when_off(write_config):
    cfg = write_config(
        'timezone = "Europe/Amsterdam"\n' + write_config().path.read_text() + '[alerts]\ndigest_at = ""\n'
    )
    from tinybot.store import db

    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-27 22:00:00"):
        assert digest.due(conn, cfg) is None


def test_an_order_alert_names_market_side_amount_price_fee_and_eur_value(write_config):
    cfg, conn, ex, r = setup(write_config)
    n = Notifier(cfg, conn, urls=[])
    sent = []
    n.alert = lambda kind, text, **k: sent.append(text)
    n.execution(r)
    [text] = sent
    e = conn.execute("SELECT * FROM trade_executions").fetchone()
    price = (Decimal(e["filled_quote"]) / Decimal(e["filled_amount"])).quantize(Decimal("0.01"))
    assert text.startswith(
        f"order filled: buy BTC-EUR {Decimal(e['filled_amount']).normalize():f} @ {price.normalize():f}"
        f" = €{Decimal(e['filled_quote']):.2f}, fee €{Decimal(e['fee_paid']):.2f}; proposal 1"
    )


def test_a_tick_records_prices_pings_the_heartbeat_and_runs_exits(write_config, monkeypatch):
    """The scheduler's wiring: what `pnl`/`status`/the report read is written every tick; the outside
    heartbeat is pinged after it; an [exits] rule turns the exits advisor on."""
    from tinybot.loop import heartbeat, scheduler

    cfg, conn, ex, _ = setup(write_config)
    cfg = write_config(cfg.path.read_text() + "[exits]\nstop_loss = 0.05\n")
    pings = []
    monkeypatch.setattr(heartbeat, "ping", lambda c, ok: pings.append(ok))
    ex.source.prices["BTC-EUR"] = Decimal("50000")  # well under the cost: the stop-loss fires
    with freeze_time("2026-11-27 12:00:00"):
        r = scheduler.Scheduler(cfg, conn, echo=lambda s: None, read_only=ex, trading=ex).tick()
    assert r.status == "ok", r.errors
    assert pings == [True]
    assert conn.execute("SELECT market FROM market_prices").fetchall()[0][0] == "BTC-EUR"
    assert conn.execute("SELECT COUNT(*) FROM price_log").fetchone()[0] >= 1
    assert any(p.split()[1] == "exits" and " sell " in p for p in r.proposals), r.proposals


def test_the_loop_serves_telegram_beside_it_and_stops_it_but_run_once_does_not(write_config, monkeypatch):
    from tinybot.base import clock
    from tinybot.loop import scheduler
    from tinybot.owner.telegram import poller as telegram

    cfg, conn, ex, _ = setup(write_config)
    seen = []

    class FakeBackground:
        def __init__(self, c):
            seen.append("made")

        def start(self):
            seen.append("started")
            return self

        def stop(self):
            seen.append("stopped")

    monkeypatch.setattr(telegram, "Background", FakeBackground)
    sched = scheduler.Scheduler(cfg, conn, echo=lambda s: None, read_only=ex, trading=ex)
    assert sched.run(until=clock.now()) == 0  # the loop starts, finds `until` passed, and stops
    assert seen == ["made", "started", "stopped"]
    seen.clear()
    scheduler.Scheduler(cfg, conn, echo=lambda s: None, read_only=ex, trading=ex).run(once=True)
    assert seen == []  # a cron `run --once` must not answer the phone's queued commands


def test_with_alerts_fills_digest_the_days_fills_are_listed_in_the_digest(write_config):
    cfg, conn, ex, _ = setup(lambda t: write_config(t + '\n[alerts]\nfills = "digest"\n'))
    rec = Recorder()
    with freeze_time("2026-11-27 20:00:00"):
        assert digest.maybe_send(conn, cfg, rec) is True
    [(_, text, _, _)] = rec.sent
    assert re.search(r"\nFills:\n10:00 CET buy BTC-EUR [\d.]+ @ [\d.]+ = €7\.9\d\b", text), text


def test_sundays_digest_carries_the_scoreboard_in_one_line(write_config):
    """Once a week (Sunday, local) one line: each advisor's net and its verdict against DCA; other days none."""
    from tinybot.analysis import score

    cfg, conn, ex, _ = setup(write_config)
    with freeze_time("2026-11-27 20:00:00"):  # a Friday
        assert "Scoreboard:" not in digest.compose(conn, cfg).text
    with freeze_time("2026-11-29 20:00:00"):  # Sunday 21:00 in Amsterdam
        text = digest.compose(conn, cfg).text
        board = score.scoreboard(conn, cfg, prices=digest.valuation.last_prices(conn, cfg))
    [line] = [x for x in text.splitlines() if x.startswith("Scoreboard:")]
    assert line == score.one_line(board)
    assert line.startswith("Scoreboard: manual -€") and "(3 days; a difference this size needs about" in line
