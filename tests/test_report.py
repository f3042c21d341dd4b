"""`tinybot report`: a self-contained page, checked in a real headless Chromium (issue 16)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import matplotlib.dates  # noqa: F401  first import outside freeze_time, or it registers freezegun's datetime
from freezegun import freeze_time

from tinybot import db, executor, pnl, proposals, report
from tinybot.exchange.base import Balance, Ticker
from tinybot.proposals import Draft

from browser import load
from conftest import run_cli
from tests_helpers import paper_setup


def history(write_config):
    """Two days of hourly prices, a buy, a blocked buy, a sell, and an LLM call."""
    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"')
    price = Decimal("60000")
    for h in range(48):
        with freeze_time("2026-11-27 00:00:00") as f:
            f.tick(timedelta(hours=h))
            price += Decimal(50 if h % 3 else -80)
            ex.source.prices["BTC-EUR"] = price
            pnl.record_snapshot(
                conn,
                {"BTC-EUR": Ticker("BTC-EUR", price, price + 10, price + 5, 0)},
                {"EUR": Balance(Decimal("25"), Decimal(0))},
            )
            if h in (5, 30, 31, 40):  # h31: €12 is over max_trade_eur, a block for the chart
                side, kw = (
                    ("buy", {"amount_quote": Decimal("12" if h == 31 else "8")})
                    if h != 40
                    else ("sell", {"amount": Decimal(conn.execute("SELECT base FROM positions").fetchone()[0])})
                )
                pid = proposals.create(
                    conn, Draft("BTC-EUR", side, **kw), source="test", ttl=timedelta(minutes=30), approve=True
                )
                executor.execute(conn, cfg, ex, pid)
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO gpt_usage_log (state, model, reserved_at, settled_at, day, month, prompt_tokens_est,"
            " max_tokens, reserved_eur, cost_eur) VALUES ('settled', 'm', '2026-11-27T10:00:00.000000Z',"
            " '2026-11-27T10:00:01.000000Z', '2026-11-27', '2026-11', 10, 10, '0.01', '0.004')"
        )
    return cfg, conn


def test_report_renders_offline_with_its_charts_and_no_console_errors(write_config, tmp_path):
    cfg, conn = history(write_config)
    blocked = conn.execute("SELECT COUNT(*) FROM guard_decisions WHERE verdict = 'block'").fetchone()[0]
    assert blocked > 0
    with freeze_time("2026-11-29 00:00:00"):
        out = report.write(conn, cfg, tmp_path / "r.html")
    assert out["charts"] == 4 and out["fills"] >= 2
    page = load(tmp_path / "r.html")
    assert page.requests == [] and page.console == []
    assert page.dom.count("<svg") == 4
    for chart in ("chart-equity", "chart-price-BTC-EUR", "chart-costs", "chart-blocks"):
        assert f'id="{chart}"' in page.dom
    assert "Equity: profit and loss against holding" in page.dom and 'id="pnl"' in page.dom
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000


def test_the_browser_harness_sees_requests_and_console_errors(tmp_path):
    """The checks above could not pass by accident: a page that reaches out or errs is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><img src='http://tracker.invalid/p.png'><script>console.error('boom')</script></body></html>"
    )
    page = load(bad)
    assert any("tracker.invalid" in r for r in page.requests)
    assert any("boom" in line for line in page.console)


def test_report_command_json_and_a_bad_range(tmp_path):
    assert run_cli("init").returncode == 0
    ok = run_cli("report", str(tmp_path / "r.html"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"charts": 3' in ok.stdout  # no market traded yet: equity, costs, blocks
    bad = run_cli("report", str(tmp_path / "r2.html"), "--from", "2026-02-01", "--to", "2026-01-01")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "Error: --from (2026-02-01T00:00:00.000000Z) must be before --to (2026-01-01T00:00:00.000000Z)"
    )
    assert not (tmp_path / "r2.html").exists()
    worse = run_cli("report", str(tmp_path / "r3.html"), "--from", "yesterday")
    assert worse.returncode == 1 and "--from: 'yesterday' is not a date like 2026-01-31" in worse.stderr


def test_daily_digest_picture_is_a_png(write_config):
    cfg, conn = history(write_config)
    from datetime import datetime, timezone

    png = report.digest_png(
        conn, cfg, datetime(2026, 11, 28, tzinfo=timezone.utc), datetime(2026, 11, 29, tzinfo=timezone.utc)
    )
    assert png.startswith(b"\x89PNG") and len(png) > 5_000
