"""`tinybot report FILE.html`: the page's data (from the book) and its HTML: one self-contained page.

Every money figure comes from tinybot.trade.book: the P/L table and the books per
advisor from ``figures.summary``, the lines of the charts from ``figures.series``
(its last point *is* the summary, so a chart ends where its table does), the
table of trades from ``figures.trades``.  The page first builds its data (a
JSON-ready dict), embeds it as ``<script type="application/json"
id="report-data">`` (data, never executed) and tinybot.analysis.charts draws every
chart from that data alone, so what others reuse is what the charts show.

Every time on the page is in the configured ``timezone``, to the second at
most.  A chart with too little history behind it (a young bot) is a sentence,
not an empty frame.  The page needs no network to view (inline SVG; inline
styles; nothing executes, nothing is fetched) and is laid out for a phone
390 px wide as well as a desktop.  It reads the database only, so it works
for the paper or live history and for a replay's scratch database.
"""

from __future__ import annotations

import html
import json
import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal

from ..base.errors import TinybotError
from ..base import clock, money
from . import score
from ..trade.book import benchmarks, figures, valuation
from .charts import figure, svg

MIN_SPAN = timedelta(hours=1)  # less history than this behind a chart: a sentence instead (price_log is hourly)


class ReportError(TinybotError):
    """The report cannot be made for the period asked; the message says what to do (no plotting library:
    tinybot.analysis.charts.ChartError)."""


# --- time, as people here read it --------------------------------------------------------------------


def local_time(dt: datetime, tz, *, seconds: bool = False) -> str:
    """A moment in the configured timezone, without microseconds: '2026-11-27 10:00'."""
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def stamp(dt: datetime, tz) -> str:
    """A moment for the embedded data: ISO 8601 in the configured timezone with its offset, to the second."""
    return dt.astimezone(tz).isoformat(timespec="seconds")


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} minute(s)"
    return f"{minutes // 60} hour(s)"


def _cents(d: Decimal | None) -> str | None:
    return None if d is None else money.cents(d)


# --- the data: tables and charts, from the book ---------------------------------------------------------


SHORT_PERIOD = "Too little history in this period for a chart: it covers less than an hour."


def _too_short(times: list[datetime]) -> bool:
    moments = sorted(set(times))
    return len(moments) < 2 or moments[-1] - moments[0] < MIN_SPAN


def young_sentence(start: benchmarks.Start, at: datetime, tz) -> str | None:
    """What a chart says instead while tinybot is too young for one (None: old enough)."""
    if start.at is None:
        return (
            "No history yet: tinybot has recorded no prices, balances or fills. Charts appear after about an hour"
            " of `tinybot run` (it logs each market's price once an hour)."
        )
    if at - start.at < MIN_SPAN:
        return (
            f"Too little history for a chart yet: tinybot's records start {local_time(start.at, tz)}"
            f" ({_age(max(at - start.at, timedelta(0)))} before this). Charts appear once they cover an hour."
        )
    return None


def _sentence(young: str | None, times: list[datetime]) -> str | None:
    """Why a chart is a sentence: the bot is young, or the period is too short; None: draw it."""
    return young or (SHORT_PERIOD if _too_short(times) else None)


def _line(name: str, label: str, values, *, style: str = "solid", step: bool = False) -> dict:
    """One line of a chart; ``ends_at`` is the id of the table cell its last point equals."""
    return {
        "name": name,
        "label": label,
        "style": style,
        "step": step,
        "values": [_cents(v) for v in values],
        "ends_at": "fig-" + name.replace(":", "-"),
    }


def _chart(cid: str, title: str, **kw) -> dict:
    return {"id": cid, "title": title, "kind": "lines", "drawn": True, "sentence": None, "x": [], "lines": [], **kw}


def _not_drawn(chart: dict, sentence: str) -> dict:
    return {**chart, "drawn": False, "sentence": sentence, "x": [], "lines": [], "markers": [], "bars": []}


def equity_chart(ser: figures.Series, tz, young: str | None, title: str = "Net P/L against the benchmarks") -> dict:
    """tinybot's net P/L since its start and the benchmarks' (as the book names them), over time."""
    chart = _chart(cid="equity", title=title, ylabel="EUR since the start", zero_line=True)
    if why := _sentence(young, ser.times):
        return _not_drawn(chart, why)
    chart["x"] = [stamp(t, tz) for t in ser.times]
    chart["lines"] = [_line("net_eur", "tinybot: net P/L (fees and LLM cost included)", ser.values("net_eur"))]
    if ser.holding is not None:
        chart["lines"].append(_line("holding_eur", ser.holding.title, ser.values("holding_eur"), style="dashed"))
    if ser.dca is not None:
        chart["lines"].append(_line("dca_eur", ser.dca.title, ser.values("dca_eur"), style="dotted"))
    return chart


def advisors_chart(ser: figures.Series, tz, young: str | None) -> dict:
    chart = _chart(cid="advisors", title="Net P/L per advisor's book", ylabel="EUR since the start", zero_line=True)
    if not ser.books():
        return _not_drawn(chart, "No advisor has traded yet.")
    if why := _sentence(young, ser.times):
        return _not_drawn(chart, why)
    chart["x"] = [stamp(t, tz) for t in ser.times]
    chart["lines"] = [_line(f"book:{b}", b, ser.values(f"book:{b}")) for b in ser.books()]
    return chart


def costs_chart(ser: figures.Series, tz, young: str | None) -> dict:
    chart = _chart(cid="costs", title="What trading cost: fees and the LLM", ylabel="EUR since the start")
    if not any(ser.values("fees_eur")) and not any(ser.values("llm_cost_eur")):
        return _not_drawn(chart, "Nothing paid yet: no fees, no LLM cost.")
    if why := _sentence(young, ser.times):
        return _not_drawn(chart, why)
    chart["x"] = [stamp(t, tz) for t in ser.times]
    chart["lines"] = [
        _line("fees_eur", "fees (a fee in the coin at its fill's price)", ser.values("fees_eur"), step=True),
        _line("llm_cost_eur", "LLM cost", ser.values("llm_cost_eur"), step=True, style="dashed"),
    ]
    return chart


def price_chart(market: str, hours: list[tuple[datetime, Decimal]], end, trades, tz, young: str | None) -> dict:
    """The market's bid (hourly, then the price the table values it at) with tinybot's fills marked."""
    chart = _chart(cid=f"price-{market}", title=f"{market}: price and tinybot's fills", ylabel="EUR")
    points = list(hours) + ([end] if end is not None else [])
    if why := _sentence(young, [t for t, _ in points]):
        return _not_drawn(chart, why)
    chart["x"] = [stamp(t, tz) for t, _ in points]
    chart["lines"] = [
        {
            "name": f"bid:{market}",
            "label": "bid (hourly; the last is the price the table values it at)",
            "style": "solid",
            "step": False,
            "values": [money.plain(p) for _, p in points],
            "ends_at": f"fig-bid-{market}" if end is not None else None,
        }
    ]
    chart["markers"] = [
        {
            "side": side,
            "label": side,
            "x": [stamp(t.fill.when, tz) for t in trades if t.fill.side == side],
            "y": [money.plain(t.fill.price) for t in trades if t.fill.side == side],
        }
        for side in ("buy", "sell")
        if any(t.fill.side == side for t in trades)
    ]
    return chart


def blocks_chart(blocks: list[tuple[str, int]]) -> dict:
    chart = _chart(cid="blocks", title="Why it did not trade: guard blocks by reason", kind="bars")
    if not blocks:
        return _not_drawn(chart, "No proposal was blocked by a guard in this period.")
    chart["bars"] = [{"label": reason, "count": n} for reason, n in blocks]
    chart["xlabel"] = "blocked proposals"
    return chart


def _table(s: figures.Summary) -> dict:
    t = s.total
    hold, spread = s.holding_eur, s.dca_eur
    return {
        "realised_eur": _cents(t.realised_eur),
        "unrealised_eur": _cents(t.unrealised_eur),
        "fees_eur": _cents(t.fees_eur),
        "llm_cost_eur": _cents(t.llm_cost_eur),
        "net_eur": _cents(t.net_eur),
        "holding_eur": _cents(hold),
        "dca_eur": _cents(spread),
        "vs_holding_eur": None if hold is None else _cents(t.net_eur - hold),
        "vs_dca_eur": None if spread is None else _cents(t.net_eur - spread),
        "unpriced": list(t.unpriced),
    }


def _benchmark(b: benchmarks.Benchmark | None) -> dict | None:
    if b is None:
        return None
    return {"name": b.name, "title": b.title, "capital_eur": _cents(b.capital_eur), "spent_eur": _cents(b.spent_eur)}


def _advisors(s: figures.Summary) -> list[dict]:
    out = []
    for name, fig in s.by_book.items():
        out.append(
            {
                "advisor": name,
                "realised_eur": _cents(fig.realised_eur),
                "unrealised_eur": _cents(fig.unrealised_eur),
                "fees_eur": _cents(fig.fees_eur),
                "llm_cost_eur": _cents(fig.llm_cost_eur),
                "net_eur": _cents(fig.net_eur),
                "markets": [
                    {
                        "market": x.market,
                        "base": money.plain(x.position.base),
                        "cost_eur": _cents(x.position.cost_eur),
                        "realised_eur": _cents(x.position.realised_eur),
                        "unrealised_eur": _cents(x.unrealised_eur),
                        "fees_eur": _cents(x.position.fees_eur),
                        "fills": x.position.fills,
                    }
                    for x in s.lines
                    if x.book == name
                ],
            }
        )
    return out


def _markets(s: figures.Summary, names: list[str]) -> list[dict]:
    out = []
    for m in names:
        fig = s.by_market.get(m)
        p = s.walk.market(m)
        price = s.prices.get(m)
        out.append(
            {
                "market": m,
                "base": money.plain(p.base),
                "bid": None if price is None else money.plain(price.bid),
                "realised_eur": _cents(fig.realised_eur if fig else Decimal(0)),
                "unrealised_eur": None if fig is None or fig.unpriced else _cents(fig.unrealised_eur),
                "fees_eur": _cents(fig.fees_eur if fig else Decimal(0)),
                "fills": p.fills,
            }
        )
    return out


def _score_table(d: dict) -> str:
    """The scoreboard (tinybot.analysis.score): a row per advisor and benchmark, each verdict beside it."""
    heads = ["advisor", "net", "return", "max drawdown", "trades", "fees", "LLM", "in market", "vs holding", "vs DCA"]
    rows = []
    for r in d["scoreboard"]["rows"]:
        pct = [
            f"{r[k]} %" if r[k] is not None else "" for k in ("return_pct", "max_drawdown_pct", "time_in_market_pct")
        ]
        vs = [r["versus"][k]["verdict"] if k in r["versus"] else "" for k in ("holding", "dca")]
        cells = [r["advisor"], money.eur_text(r["net_eur"]), pct[0], pct[1], str(r["trades"])]
        cells += [money.eur_text(r["fees_eur"]), money.eur_text(r["llm_cost_eur"]), pct[2], *vs]
        cells[0] += " (look-ahead)" if r["look_ahead"] else ""
        rows.append("<tr>" + "".join(_td(h, _e(c)) for h, c in zip(heads, cells)) + "</tr>")
    note = (
        "<p class='note'>LOOK-AHEAD: the model may have seen this period.</p>" if d["scoreboard"]["look_ahead"] else ""
    )
    return note + _cards("scoreboard", heads, rows)


def _trade(t: figures.Trade, tz) -> dict:
    f = t.fill
    return {
        "at": stamp(f.when, tz),
        "market": f.market,
        "side": f.side,
        "amount": money.plain(f.amount),
        "price": money.plain(f.price),
        "eur": _cents(f.quote),
        "fee": money.plain(f.fee),
        "fee_currency": f.fee_currency,
        "fee_eur": _cents(f.fee_eur),
        "advisor": t.book,
        "reason": t.reason if t.proposal_id is not None else "no proposal of tinybot's placed it",
        "realised_eur": _cents(t.realised_eur),
    }


def _local(board: dict, tz) -> dict:
    """The scoreboard with every time in the config's timezone, as the rest of the page."""
    at = {k: None if board[k] is None else stamp(clock.from_iso(board[k]), tz) for k in ("at", "since")}
    rows = [
        r
        | {
            "from": stamp(clock.from_iso(r["from"]), tz),
            "equity": [[stamp(clock.from_iso(t), tz), e] for t, e in r["equity"]],
        }
        for r in board["rows"]
    ]
    return board | at | {"rows": rows}


def score_charts(board: dict, tz) -> list[dict]:
    """One equity chart per scoreboard row, drawn from the row's own daily marks (the table's figures)."""
    out = []
    for r in board["rows"]:
        chart = _chart(f"score-{r['advisor'].replace(':', '-')}", f"Equity: {r['advisor']}", ylabel="EUR")
        times = [datetime.fromisoformat(t) for t, _ in r["equity"]]
        if _too_short(times):
            out.append(_not_drawn(chart, SHORT_PERIOD))
            continue
        chart["x"] = [stamp(t, tz) for t in times]
        chart["lines"] = [_line(f"score:{r['advisor']}", r["advisor"], [Decimal(e) for _, e in r["equity"]])]
        out.append(chart)
    return out


def _hourly_prices(conn: sqlite3.Connection, lo: str, hi: str) -> dict[str, list[tuple[datetime, Decimal]]]:
    out: dict[str, list[tuple[datetime, Decimal]]] = {}
    for r in conn.execute(
        "SELECT hour, market, bid FROM price_log WHERE hour >= ? AND hour <= ? ORDER BY market, hour", (lo, hi)
    ):
        out.setdefault(r["market"], []).append((clock.from_iso(r["hour"]), Decimal(r["bid"])))
    return out


def _blocks(conn: sqlite3.Connection, lo: str, hi: str) -> list[tuple[str, int]]:
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT reason_code, COUNT(*) FROM guard_decisions WHERE verdict = 'block' AND decided_at >= ?"
            " AND decided_at <= ? GROUP BY reason_code ORDER BY COUNT(*) DESC, reason_code",
            (lo, hi),
        )
    ]


def collect(
    conn: sqlite3.Connection,
    cfg,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    prices: dict[str, valuation.Price] | None = None,
    title: str = "tinybot report",
    replay: tuple[datetime, datetime] | None = None,
    look_ahead: bool = False,
) -> dict:
    """The page's data (JSON-ready): tables from ``figures.summary``, chart lines from ``figures.series`` at the same
    moment and prices, trades from ``figures.trades``.  ``replay``: the replayed period, for a replay's page."""
    tz = cfg.tz
    s = figures.summary(conn, cfg, prices=prices, until=until)
    ser = figures.series(conn, cfg, since=since, until=until, prices=prices)
    trades = figures.trades(conn, since=since, until=until)
    lo, hi = clock.to_iso(since) if since else "", clock.to_iso(s.at)
    young = young_sentence(s.start, s.at, tz)
    hours = _hourly_prices(conn, lo, hi)
    names = sorted(set(hours) | {t.fill.market for t in trades} | set(s.positions()))
    blocks = _blocks(conn, lo, hi)
    charts = [equity_chart(ser, tz, young), advisors_chart(ser, tz, young)]
    for m in names:
        end = (s.at, s.prices[m].bid) if m in s.prices else None
        charts.append(price_chart(m, hours.get(m, []), end, [t for t in trades if t.fill.market == m], tz, young))
    charts += [costs_chart(ser, tz, young), blocks_chart(blocks)]
    board = score.mark_look_ahead(score.scoreboard(conn, cfg, since=since, until=until, prices=prices), look_ahead)
    board = _local(board, tz)
    charts += score_charts(board, tz)
    first = since or s.start.at
    return {
        "title": title,
        "kind": "replay" if replay else cfg.mode,
        "replay": None if replay is None else {"from": stamp(replay[0], tz), "to": stamp(replay[1], tz)},
        "timezone": cfg.timezone,
        "made_at": stamp(clock.now(), tz),
        "started_at": None if s.start.at is None else stamp(s.start.at, tz),
        "from": None if first is None else stamp(first, tz),
        "to": stamp(s.at, tz),
        "table": _table(s),
        "benchmarks": {"holding": _benchmark(s.holding), "dca": _benchmark(s.dca)},
        "advisors": _advisors(s),
        "markets": _markets(s, names),
        "trades": [_trade(t, tz) for t in trades],
        "blocks": [{"reason": r, "count": n} for r, n in blocks],
        "charts": charts,
        "scoreboard": board,
    }


# --- the page ---------------------------------------------------------------------------------------------

STYLE = """
html { -webkit-text-size-adjust: 100%; }
body { font-family: system-ui, sans-serif; margin: 1em auto; padding: 0 .6em; max-width: 60em; color: #222;
       line-height: 1.35; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 1.8em; }
p, h1, h2 { overflow-wrap: anywhere; }
table { border-collapse: collapse; max-width: 100%; }
td, th { padding: .2em .6em; border-bottom: 1px solid #ddd; text-align: right; vertical-align: top;
         white-space: nowrap; }
th { font-weight: 600; }
th:first-child, td:first-child, .text { text-align: left; white-space: normal; overflow-wrap: anywhere; }
tr.total td { font-weight: 600; }
.chart svg { display: block; width: 100%; max-width: 44em; height: auto; }
.note, .young { color: #555; font-size: .9em; }
@media (max-width: 40em) {
  table.cards, table.cards tbody { display: block; width: 100%; }
  table.cards tr.head { display: none; }
  table.cards tr { display: grid; grid-template-columns: 1fr 1fr; column-gap: .8em;
                   border-bottom: 1px solid #ccc; padding: .4em 0; }
  table.cards td { display: block; border: 0; text-align: left; padding: .05em 0; white-space: normal;
                   overflow-wrap: anywhere; }
  table.cards td.wide { grid-column: 1 / -1; }
  table.cards td:empty { display: none; }
  table.cards td[data-label]::before { content: attr(data-label) ": "; color: #666; }
}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _eur_html(v: str | None) -> str:
    return _e(money.eur_text(v))


def _cards(tid: str, heads: list[str], rows: list[str]) -> str:
    """A table that is a list of cards on a phone: each cell says its column's name there."""
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    return f"<table class='cards' id='{tid}'><tr class='head'>{head}</tr>{''.join(rows)}</table>"


def _td(label: str, value: str, *, cid: str | None = None, cls: str = "") -> str:
    ident = f" id='{_e(cid)}'" if cid else ""
    klass = f" class='{cls}'" if cls else ""
    return f"<td data-label='{_e(label)}'{ident}{klass}>{value}</td>"


def _pnl_table(d: dict) -> str:
    t, b = d["table"], d["benchmarks"]
    rows = [
        ("realised", "realised_eur"),
        ("unrealised (at the bid)", "unrealised_eur"),
        ("fees paid (inside the above)", "fees_eur"),
        ("LLM cost", "llm_cost_eur"),
        ("net", "net_eur"),
    ]
    for key, vs in (("holding", "vs_holding_eur"), ("dca", "vs_dca_eur")):
        if b[key] is None:
            rows.append((f"{key}: no benchmark yet (it needs tinybot's start: a first tick's prices and balance)", ""))
            continue
        rows += [(f"benchmark, {b[key]['title']}", f"{key}_eur"), (f"net against {key}", vs)]
    body = "".join(
        f"<tr><td>{_e(label)}</td>" + (f"<td id='fig-{key}'>{_eur_html(t[key])}</td>" if key else "<td></td>") + "</tr>"
        for label, key in rows
    )
    extra = f"<p class='note'>No price for {_e(', '.join(t['unpriced']))}: not valued.</p>" if t["unpriced"] else ""
    return f"<table id='pnl'>{body}</table>{extra}"


def _advisors_table(d: dict) -> str:
    heads = ["advisor", "market", "held", "cost", "realised", "unrealised", "fees", "LLM", "net", "fills"]
    rows = []
    for a in d["advisors"]:
        for m in a["markets"]:
            rows.append(
                "<tr>"
                + _td("advisor", _e(a["advisor"]), cls="text")
                + _td("market", _e(m["market"]), cls="text")
                + _td("held", _e(m["base"]))
                + _td("cost", _eur_html(m["cost_eur"]))
                + _td("realised", _eur_html(m["realised_eur"]))
                + _td("unrealised", _eur_html(m["unrealised_eur"]))
                + _td("fees", _eur_html(m["fees_eur"]))
                + _td("LLM", "")
                + _td("net", "")
                + _td("fills", _e(m["fills"]))
                + "</tr>"
            )
        name = a["advisor"]
        rows.append(
            "<tr class='total'>"
            + _td("advisor", _e(name), cls="text")
            + _td("market", "all", cls="text")
            + _td("held", "")
            + _td("cost", "")
            + _td("realised", _eur_html(a["realised_eur"]))
            + _td("unrealised", _eur_html(a["unrealised_eur"]))
            + _td("fees", _eur_html(a["fees_eur"]))
            + _td("LLM", _eur_html(a["llm_cost_eur"]))
            + _td("net", _eur_html(a["net_eur"]), cid=f"fig-book-{name}")
            + _td("fills", "")
            + "</tr>"
        )
    if not rows:
        return "<p class='young'>No advisor has traded yet.</p>"
    return _cards("advisors", heads, rows)


def _markets_table(d: dict) -> str:
    if not d["markets"]:
        return "<p class='young'>No market traded or priced yet.</p>"
    heads = ["market", "held", "valued at (bid)", "realised", "unrealised", "fees", "fills"]
    rows = [
        "<tr>"
        + _td("market", _e(m["market"]), cls="text")
        + _td("held", _e(m["base"]))
        + _td("valued at (bid)", "—" if m["bid"] is None else _e(m["bid"]), cid=f"fig-bid-{m['market']}")
        + _td("realised", _eur_html(m["realised_eur"]))
        + _td("unrealised", _eur_html(m["unrealised_eur"]))
        + _td("fees", _eur_html(m["fees_eur"]))
        + _td("fills", _e(m["fills"]))
        + "</tr>"
        for m in d["markets"]
    ]
    return _cards("markets", heads, rows)


def _fee(t: dict) -> str:
    if t["fee_currency"] == "EUR":
        return _eur_html(t["fee"])
    return f"{_e(t['fee'])} {_e(t['fee_currency'])} ({_eur_html(t['fee_eur'])})"


def _trades_table(d: dict, tz) -> str:
    if not d["trades"]:
        return "<p class='young'>No trades in this period.</p>"
    heads = [f"time ({tz.key})", "market", "side", "amount", "price", "EUR", "fee", "advisor", "reason"]
    rows = [
        "<tr>"
        + _td("time", _e(local_time(datetime.fromisoformat(t["at"]), tz, seconds=True)), cls="text wide")
        + _td("market", _e(t["market"]), cls="text")
        + _td("side", _e(t["side"]), cls="text")
        + _td("amount", _e(t["amount"]))
        + _td("price", _e(t["price"]))
        + _td("EUR", _eur_html(t["eur"]))
        + _td("fee", _fee(t))
        + _td("advisor", _e(t["advisor"]), cls="text")
        + _td("reason", _e(t["reason"]), cls="text wide")
        + "</tr>"
        for t in d["trades"]
    ]
    return _cards("trades", heads, rows)


def _blocks_table(d: dict) -> str:
    if not d["blocks"]:
        return ""
    rows = "".join(f"<tr><td>{_e(b['reason'])}</td><td>{_e(b['count'])}</td></tr>" for b in d["blocks"])
    return f"<table id='blocks'><tr><th>reason</th><th>blocked</th></tr>{rows}</table>"


def _header(d: dict, tz) -> str:
    def when(key: str) -> str:
        return local_time(datetime.fromisoformat(d[key]), tz)

    if d["replay"] is not None:
        what = (
            f"A replay of {local_time(datetime.fromisoformat(d['replay']['from']), tz)} to"
            f" {local_time(datetime.fromisoformat(d['replay']['to']), tz)}: tinybot's real tick on a simulated"
            " clock against stored candles (`tinybot replay`), not trades that happened."
        )
    else:
        what = f"{d['kind'].capitalize()} account, from {when('from') if d['from'] else 'its start'} to {when('to')}."
    since = f"P/L is counted from tinybot's start ({when('started_at')})" if d["started_at"] else "No history yet"
    return (
        f"<h1>{_e(d['title'])}</h1><p class='note' id='period'>{_e(what)}</p>"
        f"<p class='note'>{_e(since)}; times are {_e(tz.key)}; made {_e(when('made_at'))} from the database alone.</p>"
    )


def _chart_section(chart: dict, tz) -> str:
    body = (
        f"<div class='chart'>{svg(figure(chart, tz, titled=False))}</div>"
        if chart["drawn"]
        else f"<p class='young'>{_e(chart['sentence'])}</p>"
    )
    return f"<section id='chart-{_e(chart['id'])}'><h2>{_e(chart['title'])}</h2>{body}</section>"


def embedded(d: dict) -> str:
    """The data as a JSON block browsers never execute; '<' escaped so no text in it can end the element."""
    text = json.dumps(d, ensure_ascii=True, separators=(",", ":")).replace("<", "\\u003c")
    return f"<script type='application/json' id='report-data'>{text}</script>"


def render(d: dict, tz) -> str:
    charts = {c["id"]: c for c in d["charts"]}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(d['title'])}</title><style>{STYLE}</style></head><body>",
        _header(d, tz),
        "<h2>Profit and loss</h2>",
        _pnl_table(d),
        _chart_section(charts.pop("equity"), tz),
        "<h2>Books per advisor</h2>",
        _advisors_table(d),
        _chart_section(charts.pop("advisors"), tz),
        "<h2>Scoreboard (docs/SCORE.md)</h2>",
        _score_table(d),
        *[_chart_section(charts.pop(k), tz) for k in [k for k in charts if k.startswith("score-")]],
        "<h2>Per market</h2>",
        _markets_table(d),
    ]
    blocks, costs = charts.pop("blocks"), charts.pop("costs")
    parts += [_chart_section(c, tz) for c in charts.values()]  # the price charts, by market
    parts += [
        _chart_section(costs, tz),
        f"<h2>Trades</h2>{_trades_table(d, tz)}",
        _chart_section(blocks, tz),
        _blocks_table(d),
        "<p class='note'>Guard blocks are kept [scheduler] keep_days; fills, prices and P/L forever."
        " The data every chart draws is in this page as JSON (script id report-data).</p>",
        embedded(d),
        "</body></html>",
    ]
    return "".join(parts)


def write(
    conn: sqlite3.Connection,
    cfg,
    path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    prices: dict[str, valuation.Price] | None = None,
    title: str = "tinybot report",
    replay: tuple[datetime, datetime] | None = None,
    look_ahead: bool = False,
) -> dict:
    """Write the report atomically (a partial file never replaces a good one); return what it holds."""
    import os
    from pathlib import Path

    end = until or clock.now()
    if since and since >= end:
        to = f"--to {local_time(until, cfg.tz)}" if until else f"now, {local_time(end, cfg.tz)}"
        raise ReportError(f"--from {local_time(since, cfg.tz)} must be before {to} ({cfg.timezone})")
    d = collect(conn, cfg, since, until, prices=prices, title=title, replay=replay, look_ahead=look_ahead)
    page = render(d, cfg.tz)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return {
        "path": str(path),
        "bytes": len(page.encode()),
        "charts": sum(1 for c in d["charts"] if c["drawn"]),
        "fills": len(d["trades"]),
    }
