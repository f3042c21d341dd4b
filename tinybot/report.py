"""`tinybot report FILE.html`: what it made, in pictures, in one self-contained file.

The page needs no network to view: charts are inline SVG drawn by
matplotlib (imported here only, so no other command pays for it), styles are
inline, there is no script and no external reference.  It reads the database
only, so it works for the paper or live history and for a replay's scratch
database alike.

Charts: tinybot's P/L against simply holding the same buys; each market's
price with the fills marked; fees and LLM cost over time; guard blocks by
reason.  Then the P/L table of `tinybot pnl`.

Prices over time come from ``price_log`` (one price per market per hour,
written by the scheduler) and from the fills themselves.
"""

from __future__ import annotations

import html
import io
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from . import clock, money, pnl


class ReportError(Exception):
    """The report cannot be made (no plotting library, bad range); the message says what to do."""


@dataclass
class Series:
    times: list[datetime] = field(default_factory=list)
    values: list[Decimal] = field(default_factory=list)

    def add(self, t: datetime, v: Decimal) -> None:
        self.times.append(t)
        self.values.append(v)


@dataclass
class Data:
    start: datetime | None
    end: datetime
    pnl_line: Series
    hold_line: Series
    fees: Series
    llm: Series
    prices: dict[str, Series]
    fills: dict[str, list[tuple[datetime, str, Decimal]]]  # market -> (time, side, price)
    blocks: list[tuple[str, int]]
    table: dict


def _figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError(
            "the report draws its charts with matplotlib: pip install 'tinybot[report]'"
            " (or: .venv/bin/pip install matplotlib)"
        ) from None
    import matplotlib
    import matplotlib.dates  # noqa: F401  registers the datetime converter (pyplot would; we do not use it)

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, selectable
    matplotlib.rcParams["svg.hashsalt"] = "tinybot"  # stable ids: the same data gives the same file
    return Figure(figsize=(8, 3.2), layout="constrained")


def collect(conn: sqlite3.Connection, cfg, since: datetime | None = None, until: datetime | None = None) -> Data:
    """Walk fills, hourly prices and LLM costs once, in time order."""
    until = until or clock.now()
    lo = clock.to_iso(since) if since else ""
    hi = clock.to_iso(until)
    events: list[tuple[str, int, object]] = []  # (iso time, order, row): prices before fills at the same moment
    for r in conn.execute("SELECT * FROM price_log WHERE hour <= ? ORDER BY hour", (hi,)):
        events.append((r["hour"], 0, ("price", r)))
    for r in conn.execute("SELECT * FROM trade_history WHERE executed_at <= ? ORDER BY executed_at, id", (hi,)):
        events.append((r["executed_at"], 1, ("fill", r)))
    for r in conn.execute(
        "SELECT COALESCE(settled_at, reserved_at) AS at, cost_eur FROM gpt_usage_log"
        " WHERE cost_eur IS NOT NULL AND COALESCE(settled_at, reserved_at) <= ?",
        (hi,),
    ):
        events.append((r["at"], 2, ("llm", r)))
    events.sort(key=lambda e: (e[0], e[1]))

    cash = Decimal(0)  # EUR moved by fills (P/L is relative to the start)
    held: dict[str, Decimal] = {}
    hold_cash, hold_base = Decimal(0), {}
    bid: dict[str, Decimal] = {}
    fees = llm = Decimal(0)
    d = Data(since, until, Series(), Series(), Series(), Series(), {}, {}, [], {})
    for at, _, (kind, r) in events:
        t = clock.from_iso(at)
        if kind == "price":
            bid[r["market"]] = Decimal(r["bid"])
        elif kind == "llm":
            llm += Decimal(r["cost_eur"])
        else:
            m, asset = r["market"], r["market"].split("-")[0]
            amount, price, fee = Decimal(r["amount"]), Decimal(r["price"]), Decimal(r["fee"])
            bid.setdefault(m, price)
            if r["external"]:
                continue  # coins tinybot did not buy: not its P/L
            fee_eur = fee if r["fee_currency"] == "EUR" else (fee * price if r["fee_currency"] == asset else 0)
            fee_base = fee if r["fee_currency"] == asset else Decimal(0)
            fees += fee_eur
            sign = 1 if r["side"] == "buy" else -1
            eur_paid = fee if r["fee_currency"] == "EUR" else Decimal(0)
            cash += -sign * amount * price - eur_paid
            held[m] = held.get(m, Decimal(0)) + sign * amount - fee_base
            if r["side"] == "buy":
                hold_cash -= amount * price + eur_paid
                hold_base[m] = hold_base.get(m, Decimal(0)) + amount - fee_base
            if since is None or t >= since:
                d.fills.setdefault(m, []).append((t, r["side"], price))
        if since is not None and t < since:
            continue
        if kind == "price":
            d.prices.setdefault(r["market"], Series()).add(t, Decimal(r["bid"]))
        d.pnl_line.add(t, cash + sum((b * bid.get(m, Decimal(0)) for m, b in held.items()), Decimal(0)) - llm)
        d.hold_line.add(t, hold_cash + sum((b * bid.get(m, Decimal(0)) for m, b in hold_base.items()), Decimal(0)))
        d.fees.add(t, fees)
        d.llm.add(t, llm)
    d.blocks = [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT reason_code, COUNT(*) FROM guard_decisions WHERE verdict = 'block' AND decided_at >= ?"
            " AND decided_at <= ? GROUP BY reason_code ORDER BY COUNT(*) DESC, reason_code",
            (lo, hi),
        )
    ]
    d.table = pnl.report(conn, cfg)
    return d


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and doctype: inline in HTML


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this period", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def charts(d: Data) -> dict[str, str]:
    out = {}
    fig = _figure()
    ax = fig.subplots()
    if d.pnl_line.times:
        ax.plot(d.pnl_line.times, [float(v) for v in d.pnl_line.values], label="tinybot (net of fees and LLM)")
        ax.plot(
            d.hold_line.times, [float(v) for v in d.hold_line.values], label="holding the same buys", linestyle="--"
        )
        ax.axhline(0, color="grey", linewidth=0.5)
        ax.set_ylabel("P/L, EUR")
        ax.legend(loc="best")
    else:
        _empty(ax, "trades or prices")
    ax.set_title("Equity: profit and loss against holding")
    out["equity"] = _svg(fig)

    for market in sorted(set(d.prices) | set(d.fills)):
        fig = _figure()
        ax = fig.subplots()
        s = d.prices.get(market, Series())
        if s.times:
            ax.plot(s.times, [float(v) for v in s.values], color="tab:blue", linewidth=1, label="bid (hourly)")
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            pts = [(t, p) for t, sd, p in d.fills.get(market, []) if sd == side]
            if pts:
                ax.scatter(
                    [t for t, _ in pts],
                    [float(p) for _, p in pts],
                    marker=marker,
                    color=color,
                    s=50,
                    label=side,
                    zorder=3,
                )
        ax.set_title(f"{market}: price and tinybot's fills")
        ax.set_ylabel("EUR")
        ax.legend(loc="best")
        out[f"price {market}"] = _svg(fig)

    fig = _figure()
    ax = fig.subplots()
    if d.fees.times:
        ax.step(d.fees.times, [float(v) for v in d.fees.values], where="post", label="fees (cumulative)")
        ax.step(d.llm.times, [float(v) for v in d.llm.values], where="post", label="LLM cost (cumulative)")
        ax.set_ylabel("EUR")
        ax.legend(loc="best")
    else:
        _empty(ax, "costs")
    ax.set_title("What trading cost: fees and the LLM")
    out["costs"] = _svg(fig)

    fig = _figure()
    ax = fig.subplots()
    if d.blocks:
        ax.barh([c for c, _ in d.blocks][::-1], [n for _, n in d.blocks][::-1], color="tab:orange")
        ax.set_xlabel("blocked proposals")
    else:
        _empty(ax, "guard blocks")
    ax.set_title("Why it did not trade: guard blocks by reason")
    out["blocks"] = _svg(fig)
    return out


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.chart svg { width: 100%; height: auto; }
.note { color: #666; font-size: .9em; }
"""


def render(d: Data, title: str) -> str:
    t = d.table
    rows = [
        ("realised", t["realised_eur"]),
        ("unrealised (at the bid)", t["unrealised_eur"]),
        ("fees paid (inside the above)", t["fees_eur"]),
        ("LLM cost", t["llm_cost_eur"]),
        ("net", t["net_eur"]),
        ("holding the same buys", t["hold_eur"]),
        ("net vs holding", t["vs_hold_eur"]),
    ]
    table = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(money.eur(v))}</td></tr>" for k, v in rows)
    per_market = "".join(
        f"<tr><td>{html.escape(m['market'])}</td><td>{money.eur(m['realised_eur'])}</td>"
        f"<td>{money.eur(m['unrealised_eur'])}</td><td>{money.eur(m['fees_eur'])}</td><td>{m['trades']}</td></tr>"
        for m in t["markets"]
    )
    span = f"{clock.to_iso(d.start)[:10] if d.start else 'the start'} to {clock.to_iso(d.end)[:10]}"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p class='note'>{html.escape(t['mode'])} mode, {span};"
        f" made {html.escape(clock.now_iso())} from the database alone.</p>",
        "<h2>Profit and loss</h2><table id='pnl'>",
        table,
        "</table>",
        "<h2>Per market</h2><table id='markets'><tr><th>market</th><th>realised</th><th>unrealised</th>"
        "<th>fees</th><th>fills</th></tr>",
        per_market,
        "</table>",
    ]
    for name, svg in charts(d).items():
        parts.append(
            f"<h2>{html.escape(name[0].upper() + name[1:])}</h2><div class='chart' id='chart-{html.escape(name.replace(' ', '-'))}'>"
            f"{svg}</div>"
        )
    parts.append("<p class='note'>Guard blocks are kept [scheduler] keep_days; fills, prices and P/L forever.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def write(
    conn: sqlite3.Connection,
    cfg,
    path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    title: str = "tinybot report",
) -> dict:
    """Write the report atomically (a partial file never replaces a good one); return what it holds."""
    import os
    from pathlib import Path

    if since and until and since >= until:
        raise ReportError(f"--from ({clock.to_iso(since)}) must be before --to ({clock.to_iso(until)})")
    d = collect(conn, cfg, since, until)
    page = render(d, title)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return {
        "path": str(path),
        "bytes": len(page.encode()),
        "charts": page.count("<svg"),
        "fills": sum(len(v) for v in d.fills.values()),
    }


def digest_png(conn: sqlite3.Connection, cfg, since: datetime, until: datetime) -> bytes:
    """The daily digest's picture: the day's P/L against holding, as a PNG for the phone."""
    d = collect(conn, cfg, since, until)
    fig = _figure()
    ax = fig.subplots()
    if d.pnl_line.times:
        ax.plot(d.pnl_line.times, [float(v) for v in d.pnl_line.values], label="tinybot")
        ax.plot(d.hold_line.times, [float(v) for v in d.hold_line.values], label="holding", linestyle="--")
        ax.legend(loc="best")
    else:
        _empty(ax, "trades or prices")
    ax.set_title(f"P/L {clock.to_iso(since)[:10]}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
