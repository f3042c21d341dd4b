"""The daily digest and alerts that say what happened (issue 16, items 3 and 5)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import matplotlib.dates  # noqa: F401  first import outside freeze_time, or it registers freezegun's datetime
from freezegun import freeze_time

from tinybot import digest, executor, proposals
from tinybot.notify import Notifier
from tinybot.proposals import Draft

from tests_helpers import paper_setup


class Recorder:
    def __init__(self):
        self.sent = []

    def alert(self, kind, text, *, key=None, severity="warning", force=False, attach=None):
        self.sent.append((kind, text, key, [Path(a).read_bytes()[:8] for a in attach or []]))


def setup(write_config):
    cfg, conn, ex = paper_setup(lambda t: write_config('timezone = "Europe/Amsterdam"\n' + t))
    with freeze_time("2026-11-27 09:00:00"):
        pid = proposals.create(
            conn, Draft("BTC-EUR", "buy", Decimal("8")), source="t", ttl=timedelta(minutes=30), approve=True
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
    assert "against holding" in text
    assert attached == [b"\x89PNG\r\n\x1a\n"]  # the chart, a real PNG file at the time it was sent
    with freeze_time("2026-11-28 22:30:00"):  # next day, the Pi was off at 21:00: sent late, still once
        assert digest.maybe_send(conn, cfg, rec) is True
    assert rec.sent[-1][2] == "digest:2026-11-28"


def test_no_digest_when_off(write_config):
    cfg = write_config(
        'timezone = "Europe/Amsterdam"\n' + write_config().path.read_text() + '[alerts]\ndigest_at = ""\n'
    )
    from tinybot import db

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
    from tinybot import clock, telegram
    from tinybot.loop import scheduler

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
