"""`tinybot report`: a self-contained page a user would trust, checked in a real headless Chromium (issues 16, 21).

Every chart ends where its table does (one test per chart, the figures from tinybot.trade.book); times are local and
without microseconds; a young bot gets a sentence; legends sit off the plot; counts are whole; a phone 390 px
wide never scrolls sideways; the data each chart draws is in the page as JSON.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib.dates  # noqa: F401  first import outside freeze_time, or it registers freezegun's datetime
import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.analysis import charts, pnl, report
from tinybot.base import config, money
from tinybot.store import db
from tinybot.trade import executor, ledger, proposals
from tinybot.exchange.base import Balance, Fill, Ticker
from tinybot.trade.proposals import Draft

from helpers.browser import load, phone
from helpers.configs import PAPER_TOML, paper_config_text, paper_exchange, run_cli

AMS = ZoneInfo("Europe/Amsterdam")
T0 = datetime(2026, 11, 27, tzinfo=timezone.utc)
CENT = Decimal("0.01")


def history(cfg_text: str, folder: Path):
    """Two days of hourly prices; buys by dca, rules and a person, a blocked buy, a rules sell, a fill with its fee
    in BTC that no proposal accounts for, and an LLM call: every book and every way of paying."""

    (folder / "bot.toml").write_text(cfg_text)
    cfg = config.load(folder / "bot.toml")
    conn = db.open_db(cfg.db_path)
    ex = paper_exchange(cfg)
    price = Decimal("60000")
    plan = {5: ("dca", "buy", "8"), 30: ("rules", "buy", "8"), 31: ("rules", "buy", "12"), 44: ("cli", "buy", "6")}
    for h in range(48):
        with freeze_time(T0 + timedelta(hours=h)):
            price += Decimal(50 if h % 3 else -80)
            ex.source.prices["BTC-EUR"] = price
            eur = Decimal(conn.execute("SELECT available FROM paper_balances WHERE asset = 'EUR'").fetchone()[0])
            pnl.record_snapshot(
                conn,
                {"BTC-EUR": Ticker("BTC-EUR", price, price + 10, price + 5, 0)},
                {"EUR": Balance(eur, Decimal(0))},
            )
            if h in plan:  # h31: €12 is over max_trade_eur, a block for the chart
                source, side, eur_amount = plan[h]
                draft = Draft("BTC-EUR", side, Decimal(eur_amount))
                pid = proposals.create(conn, draft, source=source, ttl=timedelta(minutes=30), approve=True)
                executor.execute(conn, cfg, ex, pid)
            if h == 40:  # rules sells what rules bought, not DCA's coins
                held = ledger.position_base(conn, "BTC-EUR", "rules")
                draft = Draft("BTC-EUR", "sell", amount=held)
                pid = proposals.create(conn, draft, source="rules", ttl=timedelta(minutes=30), approve=True)
                executor.execute(conn, cfg, ex, pid)
            if h == 20:  # a fill whose fee Bitvavo took in the coin
                with db.transaction(conn):
                    ledger.record_fill(
                        conn,
                        None,
                        "paper",
                        Fill(
                            "t-coin",
                            "o-coin",
                            "BTC-EUR",
                            "buy",
                            Decimal("0.0001"),
                            price + 10,
                            Decimal("0.00000025"),
                            "BTC",
                            int((T0 + timedelta(hours=h)).timestamp() * 1000),
                        ),
                        None,
                    )
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO gpt_usage_log (state, model, reserved_at, settled_at, day, month, prompt_tokens_est,"
            " max_tokens, reserved_eur, cost_eur) VALUES ('settled', 'm', '2026-11-27T10:00:00.000000Z',"
            " '2026-11-27T10:00:01.000000Z', '2026-11-27', '2026-11', 10, 10, '0.05', '0.034')"
        )
    return cfg, conn


@dataclass
class Made:
    cfg: object
    conn: object
    path: Path
    html: str
    data: dict
    out: dict


def page_data(text: str) -> dict:
    [block] = re.findall(r"<script type='application/json' id='report-data'>(.*?)</script>", text, re.S)
    return json.loads(block)


def write(cfg, conn, path: Path, **kw) -> Made:
    with freeze_time("2026-11-29 00:00:00"):
        out = report.write(conn, cfg, path, **kw)
    text = path.read_text()
    return Made(cfg, conn, path, text, page_data(text), out)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Made]:
    """The whole history, and a window inside it (--from/--to) whose end is before the last fill."""
    folder = tmp_path_factory.mktemp("report")
    cfg, conn = history(
        'timezone = "Europe/Amsterdam"\n' + paper_config_text(cooldown='"0s"', anti_flip='"0s"'), folder
    )
    return {
        "whole": write(cfg, conn, folder / "whole.html"),
        "window": write(
            cfg,
            conn,
            folder / "window.html",
            since=datetime(2026, 11, 27, 12, tzinfo=AMS),
            until=datetime(2026, 11, 28, 20, tzinfo=AMS),
        ),
    }


def cell(text: str, ident: str) -> str:
    [value] = re.findall(rf"id='{re.escape(ident)}'[^>]*>([^<]*)</td>", text)
    return value


def euros(shown: str) -> Decimal:
    """'-€0.06' → Decimal('-0.06'); a price cell is a plain number."""
    return Decimal(shown.replace("€", ""))


def chart(m: Made, cid: str) -> dict:
    [c] = [c for c in m.data["charts"] if c["id"] == cid]
    return c


@pytest.mark.parametrize("cid", ["equity", "advisors", "costs", "price-BTC-EUR"])
@pytest.mark.parametrize("which", ["whole", "window"])
def test_each_chart_ends_where_its_table_does_to_the_cent(made, cid, which):
    """Every line of the chart, as embedded and as drawn, ends at the figure of the table cell it names."""
    m = made[which]
    c = chart(m, cid)
    assert c["drawn"] and c["lines"], c
    drawn = {line.get_label(): line for line in charts.figure(c, m.cfg.tz).axes[0].get_lines()}
    for line in c["lines"]:
        table = euros(cell(m.html, line["ends_at"]))
        last = Decimal(line["values"][-1])
        assert last == table, (line["name"], last, table)
        assert abs(Decimal(str(drawn[line["label"]].get_ydata()[-1])) - table) < CENT / 2, line["name"]


def test_the_tables_are_the_books_figures(made):
    """The P/L table is `tinybot pnl`'s (one book); the window's stops at --to, before the last fill."""
    whole, window = made["whole"], made["window"]
    with freeze_time("2026-11-29 00:00:00"):
        p = pnl.report(whole.conn, whole.cfg)
    for key in ("realised_eur", "unrealised_eur", "fees_eur", "llm_cost_eur", "net_eur", "hold_eur", "dca_eur"):
        shown = cell(whole.html, "fig-" + key.replace("hold_eur", "holding_eur"))
        assert euros(shown) == Decimal(p[key]), key
    assert {a["advisor"] for a in whole.data["advisors"]} == {"dca", "rules", "manual", "external", "llm"}
    assert [t["advisor"] for t in whole.data["trades"]] == ["dca", "external", "rules", "rules", "manual"]
    assert [t["advisor"] for t in window.data["trades"]] == ["external", "rules", "rules"]  # after 12:00, to 20:00
    assert Decimal(window.data["table"]["fees_eur"]) < Decimal(whole.data["table"]["fees_eur"])  # h44's fee


def test_the_blocks_chart_counts_what_its_table_lists_on_a_whole_number_axis(made):
    m = made["whole"]
    c = chart(m, "blocks")
    rows = re.findall(r"<tr><td>([a-z_]+)</td><td>(\d+)</td></tr>", m.html.split("id='blocks'")[1])
    assert [(b["label"], b["count"]) for b in c["bars"]] == [(r, int(n)) for r, n in rows] != []
    fig = charts.figure(c, m.cfg.tz)
    ax = fig.axes[0]
    assert sorted(p.get_width() for p in ax.patches) == sorted(int(n) for _, n in rows)
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(t == int(t) for t in ticks), ticks  # 0, 1 — never 0.2, 0.4


def test_the_price_chart_marks_the_trades_of_its_table(made):
    m = made["whole"]
    c = chart(m, "price-BTC-EUR")
    prices = {side: [t["price"] for t in m.data["trades"] if t["side"] == side] for side in ("buy", "sell")}
    assert {k["side"]: k["y"] for k in c["markers"]} == prices
    for side, price in prices.items():
        assert all(f"data-label='price'>{p}</td>" in m.html for p in price), side


def test_legends_sit_off_the_plot(made):
    """A legend never covers a line or a marker: it is outside the axes, below them."""
    m = made["whole"]
    for cid in ("equity", "advisors", "costs", "price-BTC-EUR"):
        fig = charts.figure(chart(m, cid), m.cfg.tz)
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)  # lays it out as savefig does
        [legend] = fig.legends
        box, plot = legend.get_window_extent(renderer), fig.axes[0].get_window_extent(renderer)
        assert box.y1 < plot.y0, (cid, box, plot)
        assert not fig.axes[0].get_legend()


def test_every_time_is_local_and_without_microseconds(made):
    m = made["whole"]
    # the first fill, at 05:00 UTC, is 06:00 in Amsterdam
    assert "data-label='time'" in m.html and ">2026-11-27 06:00:00</td>" in m.html
    assert "2026-11-27 05:00:00" not in m.html
    assert m.data["trades"][0]["at"] == "2026-11-27T06:00:00+01:00"
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", m.html), "a time with a fraction of a second"
    assert not re.search(r"\d\d:\d\dZ|\d\d:\d\d:\d\dZ", m.html), "a UTC time"
    assert "times are Europe/Amsterdam" in m.html and "time (Europe/Amsterdam)" in m.html
    header = re.search(r"<p class='note' id='period'>(.*?)</p>", m.html).group(1)
    assert header == "Paper account, from 2026-11-27 01:00 to 2026-11-29 01:00."


def test_a_time_axis_is_in_the_configured_timezone():
    """Ticks fall on local whole hours: in Kolkata (UTC+05:30) a UTC axis would put them at half past."""
    tz = ZoneInfo("Asia/Kolkata")
    x = [T0 + timedelta(hours=h) for h in range(30)]
    c = report._chart(cid="equity", title="t")
    c["x"] = [report.stamp(t, tz) for t in x]
    c["lines"] = [report._line("net_eur", "net", [Decimal(h) for h in range(30)])]
    ax = charts.figure(c, tz).axes[0]
    ticks = [matplotlib.dates.num2date(t, tz=tz) for t in ax.get_xticks()]
    assert ticks and all(t.minute == 0 for t in ticks), ticks
    assert ax.get_xlabel() == "time (Asia/Kolkata)"


def test_the_page_carries_the_data_each_chart_draws(made):
    m = made["whole"]
    assert m.html.count("<script") == 1  # the data block, the only one: the page runs nothing
    scored = {f"score-{r['advisor'].replace(':', '-')}" for r in m.data["scoreboard"]["rows"]}
    assert {"score-rules", "score-benchmark-holding"} <= scored
    assert {c["id"] for c in m.data["charts"]} == {"equity", "advisors", "price-BTC-EUR", "costs", "blocks"} | scored
    assert all(c["drawn"] for c in m.data["charts"])
    e = chart(m, "equity")
    assert [line["name"] for line in e["lines"]] == ["net_eur", "holding_eur", "dca_eur"]
    assert e["lines"][1]["label"].startswith("holding: €25.00 put into BTC-EUR at the start")  # the book's name
    assert len(e["x"]) == len(e["lines"][0]["values"])
    assert m.data["timezone"] == "Europe/Amsterdam" and m.data["kind"] == "paper" and m.data["replay"] is None
    rows = len(m.data["scoreboard"]["rows"])  # one equity chart per scoreboard row
    assert m.out == {"path": str(m.path), "bytes": len(m.html.encode()), "charts": 5 + rows, "fills": 5}


def test_report_renders_offline_with_its_charts_and_no_console_errors(made):
    m = made["whole"]
    page = load(m.path)
    assert page.requests == [] and page.console == []
    assert page.dom.count("<svg") == 5 + len(m.data["scoreboard"]["rows"])
    for cid in ("chart-equity", "chart-advisors", "chart-price-BTC-EUR", "chart-costs", "chart-blocks"):
        assert f'id="{cid}"' in page.dom
    assert 'id="pnl"' in page.dom and 'id="trades"' in page.dom and 'id="advisors"' in page.dom
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000


def test_a_phone_390_px_wide_never_scrolls_sideways(made):
    for m in made.values():
        p = phone(m.path, width=390)
        assert p.viewport_width == 390  # the page lays itself out for the phone, not for a zoomed-out desktop
        assert p.scroll_width <= 390, p.scroll_width
        assert p.console == [] and p.requests == []
        assert p.screenshot.startswith(b"\x89PNG")


def test_the_browser_harness_sees_requests_console_errors_and_sideways_scrolling(tmp_path):
    """The checks above could not pass by accident: a page that reaches out, errs or is too wide is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><img src='http://tracker.invalid/p.png'><script>console.error('boom')</script></body></html>"
    )
    page = load(bad)
    assert any("tracker.invalid" in r for r in page.requests)
    assert any("boom" in line for line in page.console)
    wide = tmp_path / "wide.html"
    wide.write_text(
        "<!doctype html><meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<table><tr><td style='white-space: nowrap'>" + "a very long line " * 10 + "</td></tr></table>"
    )
    p = phone(wide)
    assert p.viewport_width == 390 and p.scroll_width > 390
    desktop = tmp_path / "desktop.html"  # no viewport meta: a phone lays it out 980 px wide and shrinks it
    desktop.write_text("<!doctype html><p>hello</p>")
    assert phone(desktop).viewport_width > 390


def test_a_young_bot_gets_a_sentence_not_an_empty_chart(write_config, tmp_path):
    cfg = write_config('timezone = "Europe/Amsterdam"\n' + PAPER_TOML)
    conn = db.open_db(cfg.db_path)
    with freeze_time("2026-11-29 10:00:00"):
        report.write(conn, cfg, tmp_path / "new.html")
    text = (tmp_path / "new.html").read_text()
    assert "<svg" not in text
    assert "No history yet: tinybot has recorded no prices, balances or fills." in text
    with freeze_time("2026-11-29 10:00:00"):
        pnl.record_snapshot(
            conn,
            {"BTC-EUR": Ticker("BTC-EUR", Decimal(60000), Decimal(60010), Decimal(60005), 0)},
            {"EUR": Balance(Decimal(25), Decimal(0))},
        )
    with freeze_time("2026-11-29 10:20:00"):
        out = report.write(conn, cfg, tmp_path / "young.html")
    text = (tmp_path / "young.html").read_text()
    assert out["charts"] == 0 and "<svg" not in text
    young = "Too little history for a chart yet: tinybot's records start 2026-11-29 11:00 (20 minute(s) before this)."
    assert text.count(young) == 2  # equity and the BTC-EUR price (advisors and costs say why on their own)
    assert "No advisor has traded yet." in text and "Nothing paid yet: no fees, no LLM cost." in text
    assert "No proposal was blocked by a guard in this period." in text
    with freeze_time("2026-11-29 11:30:00"):  # an hour and a half of history: charts
        pnl.record_snapshot(
            conn,
            {"BTC-EUR": Ticker("BTC-EUR", Decimal(60100), Decimal(60110), Decimal(60105), 0)},
            {"EUR": Balance(Decimal(25), Decimal(0))},
        )
        out = report.write(conn, cfg, tmp_path / "older.html")
    assert out["charts"] == 2 + 2  # equity and the price, and the two benchmarks' equity; nothing traded yet


def test_without_matplotlib_the_report_says_how_to_install_it_and_writes_nothing(made, tmp_path, monkeypatch):
    """The drawing (tinybot.analysis.charts) needs matplotlib: without it `tinybot report` is one line naming the package to
    install, exit code 1, and no page, not even a partial one."""
    from tinybot.cli import cli

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed: importing it raises
    monkeypatch.setenv("TINYBOT_CONFIG", str(made["whole"].cfg.path))
    monkeypatch.setenv("TINYBOT_RAISE_ERRORS", "1")  # the command's own handling says it, not the catch-all
    with freeze_time("2026-11-29 00:00:00"):
        r = CliRunner().invoke(cli, ["report", str(tmp_path / "r.html")])
    assert r.exit_code == 1, r.output
    assert r.output.splitlines()[-1] == (
        "Error: the report draws its charts with matplotlib: pip install 'tinybot[report]'"
        " (or: .venv/bin/pip install matplotlib)"
    )
    assert list(tmp_path.iterdir()) == []


def test_report_command_json_and_a_bad_range(tmp_path):
    assert run_cli("init").returncode == 0
    ok = run_cli("report", str(tmp_path / "r.html"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["charts"] == 0  # nothing recorded yet: sentences, no charts
    bad = run_cli("report", str(tmp_path / "r2.html"), "--from", "2026-02-01", "--to", "2026-01-01")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "Error: --from 2026-02-01 00:00 must be before --to 2026-01-01 00:00 (Europe/Amsterdam)"
    )
    assert not (tmp_path / "r2.html").exists()
    future = run_cli("report", str(tmp_path / "r2.html"), "--from", "2999-01-01")
    assert future.returncode == 1 and future.stderr.startswith("Error: --from 2999-01-01 00:00 must be before now, ")
    worse = run_cli("report", str(tmp_path / "r3.html"), "--from", "yesterday")
    assert worse.returncode == 1 and "--from: 'yesterday' is not a date like 2026-01-31" in worse.stderr


def test_from_and_to_are_local_dates(tmp_path):
    (tmp_path / "bot.toml").write_text('timezone = "Europe/Amsterdam"\n' + PAPER_TOML)
    assert run_cli("init").returncode == 0
    r = run_cli("report", str(tmp_path / "r.html"), "--from", "2026-06-01", "--to", "2026-06-02")
    assert r.returncode == 0, r.stderr
    data = page_data((tmp_path / "r.html").read_text())
    assert (data["from"], data["to"]) == ("2026-06-01T00:00:00+02:00", "2026-06-02T00:00:00+02:00")


REPLAY_TOML = """\
timezone = "Europe/Amsterdam"
mode = "paper"
advisors = ["rules"]

[risk]
allowlist = ["BTC-EUR"]
max_trade_eur = 10
max_daily_eur = 40
max_exposure_eur = 25
cooldown = "1h"
anti_flip = "2h"
proposal_ttl = "30m"

[scheduler]
interval = "1h"

[rules]
candle_interval = "1h"
fast = 3
slow = 8
buy_eur = 6
"""


def test_a_replays_page_names_the_replayed_period_and_its_folder_is_not_printed_once_gone(tmp_path, monkeypatch):
    """The header says replay and its period (not "the start to <today>"); its figures are the replay's; the
    scratch folder the page was made from is deleted and not printed as kept."""
    import math

    from tinybot.analysis import candles
    from tinybot.cli import cli

    (tmp_path / "bot.toml").write_text(REPLAY_TOML)
    start = int(datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)
    rows = ["market,timestamp,open,high,low,close,volume"]
    p = 60000.0
    for i in range(150):  # a wave: the averages cross a few times
        o, p = p, 60000 * (1 + 0.03 * math.sin(i / 9))
        rows.append(f"BTC-EUR,{start + i * 3_600_000},{o:.0f},{max(o, p) + 20:.0f},{min(o, p) - 20:.0f},{p:.0f},1")
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    cfg = config.load(tmp_path / "bot.toml")
    conn = db.open_db(cfg.db_path)
    candles.import_csv(conn, tmp_path / "c.csv")
    conn.close()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    args = [
        "replay",
        "--no-progress",
        "--from",
        "2025-01-02",
        "--to",
        "2025-01-06",
        "--report",
        str(tmp_path / "r.html"),
    ]
    human = CliRunner().invoke(cli, args)
    assert human.exit_code == 0, human.output
    assert "kept in" not in human.output and f"report: {tmp_path / 'r.html'}" in human.output
    r = CliRunner().invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["scratch_dir"] is None and list((tmp_path / "tmp").iterdir()) == []  # gone, and said so
    text = (tmp_path / "r.html").read_text()
    header = re.search(r"<p class='note' id='period'>(.*?)</p>", text).group(1)
    assert header.startswith("A replay of 2025-01-02 01:00 to 2025-01-06 00:00: tinybot&#x27;s real tick")
    assert "not trades that happened" in header
    data = page_data(text)
    assert data["kind"] == "replay" and data["replay"] == {
        "from": "2025-01-02T01:00:00+01:00",
        "to": "2025-01-06T00:00:00+01:00",
    }
    assert data["to"] == data["replay"]["to"]  # the page ends where the replay did, not today
    assert len(data["trades"]) == len(s["trades"]) > 0
    assert data["table"]["net_eur"] == s["pnl_eur"] and data["table"]["fees_eur"] == s["fees_eur"]
    assert chart_by(data, "equity")["lines"][0]["values"][-1] == s["pnl_eur"]


def chart_by(data: dict, cid: str) -> dict:
    [c] = [c for c in data["charts"] if c["id"] == cid]
    return c


@pytest.mark.parametrize("which", ["whole", "window"])
def test_the_scoreboard_section_and_its_charts_are_tinybot_scores_figures(made, which):
    """The page's scoreboard is `tinybot score`'s for the same period (times in local time); each advisor's
    equity chart, as drawn, ends at its row's equity, and the table shows its net."""
    from tinybot.analysis import score

    m = made[which]
    board = m.data["scoreboard"]
    since = None if which == "whole" else datetime(2026, 11, 27, 12, tzinfo=AMS)
    until = None if which == "whole" else datetime(2026, 11, 28, 20, tzinfo=AMS)
    with freeze_time("2026-11-29 00:00:00"):  # when the page was made
        fresh = score.scoreboard(m.conn, m.cfg, since=since, until=until)
    assert [(r["advisor"], r["net_eur"], r["trades"]) for r in board["rows"]] == [
        (r["advisor"], r["net_eur"], r["trades"]) for r in fresh["rows"]
    ]
    assert "id='scoreboard'" in m.html
    for r in board["rows"]:
        c = chart(m, f"score-{r['advisor'].replace(':', '-')}")
        assert c["drawn"] and c["lines"][0]["values"][-1] == r["equity"][-1][1]
        (line,) = charts.figure(c, m.cfg.tz).axes[0].get_lines()
        assert line.get_ydata()[-1] == pytest.approx(float(r["equity"][-1][1]))
        assert f"<td data-label='net'>{money.eur_text(r['net_eur'])}</td>" in m.html.replace("&#x27;", "'")
