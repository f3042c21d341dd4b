"""`tinybot pnl`: parse, call tinybot.analysis.pnl, print.  Registered lazily in cli.py; imports no exchange code
unless asked for live prices."""

from __future__ import annotations

import click

from ..base import exitcodes
from .common import Fail, echo_json, friendly, json_option, pass_state
from ..base.money import eur_text


@click.command(name="pnl")
@click.option("--daily", "period", flag_value="daily", help="Realised P/L, fees and LLM cost per UTC day.")
@click.option("--weekly", "period", flag_value="weekly", help="… per ISO week.")
@click.option("--monthly", "period", flag_value="monthly", help="… per month.")
@click.option(
    "--prices",
    "price_source",
    type=click.Choice(["last", "live"]),
    default="last",
    show_default=True,
    help="last: the prices the last tick saw (no network); live: ask the exchange now (read-only).",
)
@click.option(
    "--by",
    "by",
    type=click.Choice(["market", "advisor"]),
    default="market",
    show_default=True,
    help="advisor: each advisor's book per market (base, cost, realised, unrealised, fees, LLM cost, net).",
)
@json_option("Print JSON (amounts as exact decimal strings; `advisors` holds the books whatever --by says).")
@pass_state
@friendly
def pnl_command(state, period, price_source, by, as_json):
    """Did it make money?  Realised and unrealised P/L, fees, LLM cost, net, against holding and DCA.

    \b
    Recomputed from the fills in the database (tinybot.trade.book); drift compares
    the ledger with the exchange's balances at the moment they were read
    (paper: the paper account; live: the last tick).
    \b
    Examples:
        tinybot pnl
        tinybot pnl --by advisor
        tinybot pnl --daily --json
    """
    from ..analysis import pnl

    cfg, conn = state.cfg, state.conn
    prices = None
    if price_source == "live":
        prices = _live_prices(cfg, conn)
    data = pnl.report(conn, cfg, prices=prices, period=period)
    if as_json:
        echo_json(data)
        return
    _print(data, cfg.tz)
    if by == "advisor":
        _print_advisors(data)


def _live_prices(cfg, conn):
    from ..base import clock
    from ..analysis import pnl
    from ..exchange import read_only
    from ..exchange.base import ExchangeError

    ro = read_only(cfg)
    markets = sorted(
        {r[0] for r in conn.execute("SELECT DISTINCT market FROM trade_history")} | set(cfg.risk.allowlist)
    )
    out = {}
    try:
        for m in markets:
            t = ro.ticker(m)
            out[m] = pnl.Price(t.bid, t.ask, t.last, clock.now_iso())
    except ExchangeError as e:
        raise Fail(
            f"could not read live prices: {e}; `tinybot pnl` without --prices live uses the last tick's",
            code=exitcodes.UNREACHABLE,
        ) from None
    return out


def _print(d: dict, tz) -> None:
    from ..base import clock

    when = (
        f"prices of {clock.human_time(d['prices_at'], tz, seconds=True)}"
        if d["prices_at"]
        else "configured paper prices"
    )
    click.echo(f"P/L ({d['mode']}, {when})")
    click.echo(f"  realised    {eur_text(d['realised_eur'])}")
    click.echo(
        f"  unrealised  {eur_text(d['unrealised_eur'])}"
        + (f"  (no price for {', '.join(d['unpriced'])})" if d["unpriced"] else "")
    )
    click.echo(f"  LLM cost    {eur_text(d['llm_cost_eur'])}")
    click.echo(f"  net         {eur_text(d['net_eur'])}   (fees paid, included above: {eur_text(d['fees_eur'])})")
    for key, vs in (("holding", "vs_hold_eur"), ("dca", "vs_dca_eur")):
        b = d["benchmarks"][key]
        if b is None:
            click.echo(f"  {key:<11} —   (no start yet: it needs the first tick's prices and balance)")
            continue
        click.echo(f"  {key:<11} {eur_text(b['pnl_eur'])}   ({b['title']}); net vs {key} {eur_text(d[vs])}")
    if d["external_eur"] != "0.00":
        click.echo(
            f"  external    {eur_text(d['external_eur'])}   (sales of coins tinybot did not buy; not in its P/L)"
        )
    for p in d["positions"]:
        state = (
            "sellable"
            if p["sellable"]
            else ("STRANDED: under the €5 minimum" if p["sellable"] is False else "no price")
        )
        click.echo(
            f"  {p['market']}: {p['base']} at cost {eur_text(p['cost_eur'])}, worth {eur_text(p['value_eur'])} ({state})"
        )
    for s in d["stranded"]:
        click.echo(
            f"  {s['market']} ({s['advisor']} book): worth {eur_text(s['value_eur'])}, under the {eur_text(s['minimum_eur'])}"
            f" minimum: a buy of {eur_text(s['top_up_eur'])} into that book makes it sellable again"
            f" ([risk] top_up_to_exit does it for you)"
        )
    drift = d["drift"]
    if drift["note"]:
        click.echo(f"  drift: {drift['note']}")
    else:
        off = {a: v for a, v in drift["assets"].items() if v not in ("0", "0.00")}
        click.echo(
            "  drift: none (ledger = exchange)"
            if not off
            else "  drift: "
            + ", ".join(f"{a} {v}" for a, v in off.items())
            + " (money moved outside tinybot: deposits, withdrawals, manual trades?)"
        )
    for p in d.get("periods", []):
        click.echo(
            f"  {p['period']}: realised {eur_text(p['realised_eur'])}, fees {eur_text(p['fees_eur'])},"
            f" LLM {eur_text(p['llm_cost_eur'])}, {p['trades']} fill(s)"
        )


def _print_advisors(d: dict) -> None:
    click.echo("Books per advisor (the market's position is their sum):")
    for a in d["advisors"]:
        click.echo(
            f"  {a['advisor']}: net {eur_text(a['net_eur'])} (realised {eur_text(a['realised_eur'])}, unrealised"
            f" {eur_text(a['unrealised_eur'])}, fees {eur_text(a['fees_eur'])}"
            + (f", LLM {eur_text(a['llm_cost_eur'])}" if a["llm_cost_eur"] != "0.00" else "")
            + ")"
        )
        for m in a["markets"]:
            click.echo(
                f"    {m['market']}: {m['base']} at cost {eur_text(m['cost_eur'])}, realised {eur_text(m['realised_eur'])},"
                f" unrealised {eur_text(m['unrealised_eur'])}, fees {eur_text(m['fees_eur'])}, {m['fills']} fill(s)"
            )


def _date(value: str | None, name: str, tz):
    """A date or date and time the user typed, in the config's timezone unless it names its own offset."""
    if value is None:
        return None
    from datetime import datetime

    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Fail(f"{name}: {value!r} is not a date like 2026-01-31 (or 2026-01-31T12:00)") from None
    return d if d.tzinfo else d.replace(tzinfo=tz)


@click.command(name="report")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--from", "since", help="First moment, local time (the config's timezone), e.g. 2026-01-01.")
@click.option("--to", "until", help="Last moment, local time, e.g. 2026-12-31T23:59; default: now.")
@click.option("--title", default="tinybot report", show_default=True, help="The page's title.")
@json_option("Print what was written as JSON.")
@pass_state
@friendly
def report_command(state, file, since, until, title, as_json):
    """Write one self-contained HTML page: P/L and the books per advisor against the benchmarks, prices with
    trades, costs, guard blocks, and the table of trades.

    \b
    Every figure comes from the book (the same as `tinybot pnl`); every time
    is in the config's timezone.  The page needs no network to view (inline
    SVG charts, nothing executed) and fits a phone's screen; the data each
    chart draws is in it as JSON (<script type="application/json"
    id="report-data">).  It reads the database only: the paper or live
    history, or a replay's.
    \b
    Example:
        tinybot report ~/tinybot-2026.html --from 2026-01-01
    """
    from ..analysis.charts import ChartError
    from ..analysis.report import ReportError, write

    tz = state.cfg.tz
    try:
        out = write(
            state.conn,
            state.cfg,
            file,
            since=_date(since, "--from", tz),
            until=_date(until, "--to", tz),
            title=title,
        )
    except (ReportError, ChartError) as e:
        raise Fail(str(e)) from None
    if as_json:
        echo_json(out)
    else:
        click.echo(f"Report: {out['path']} ({out['charts']} charts, {out['fills']} fills, {out['bytes']} bytes)")


@click.command(name="export")
@click.option(
    "--csv",
    "file",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="The CSV file to write (replaced whole, or left alone on an error).",
)
@click.option("--year", type=int, help="Only fills of this year (in the config's timezone).")
@click.option(
    "--format",
    "layout",
    type=click.Choice(["generic", "koinly"]),
    default="generic",
    show_default=True,
    help="generic: one row per fill with every field; koinly: Koinly's universal import template.",
)
@json_option("Print what was written as JSON.")
@pass_state
@friendly
def export_command(state, file, year, layout, as_json):
    """Write every fill to a CSV file: for your books or a crypto-tax tool.

    \b
    Examples:
        tinybot export --csv fills-2026.csv --year 2026
        tinybot export --csv koinly.csv --format koinly
    """
    from ..analysis.export import ExportError, write

    try:
        out = write(state.conn, state.cfg, file, layout=layout, year=year)
    except ExportError as e:
        raise Fail(str(e)) from None
    if as_json:
        echo_json(out)
    else:
        click.echo(
            f"Exported {out['fills']} fill(s) to {out['path']} ({out['layout']} layout"
            + (f", {out['year']})" if out["year"] else ")")
        )


@click.command(name="tax")
@click.argument("year", type=int)
@click.option("--no-fetch", is_flag=True, help="Use stored candles only; never ask Bitvavo for prices.")
@click.option(
    "--opening",
    multiple=True,
    metavar="ASSET=AMOUNT",
    help="What the account held on 1 January YEAR 00:00, when tinybot did not see it yet (a peildatum before its"
    " first balance snapshot): one per asset, EUR included, e.g. --opening EUR=20 --opening BTC=0.0003"
    " (from Bitvavo's statement).",
)
@click.option(
    "--closing",
    multiple=True,
    metavar="ASSET=AMOUNT",
    help="The same for 1 January YEAR+1 (only if tinybot first saw the account after it).",
)
@json_option("Print JSON (amounts as exact decimal strings).")
@pass_state
@friendly
def tax_command(state, year, no_fetch, opening, closing, as_json):
    """A Box 3 worksheet (NL) for YEAR: the peildatum values and what a counter-evidence statement needs.

    \b
    Values on 1 January 00:00 Europe/Amsterdam of YEAR and YEAR+1 (EUR as
    savings, crypto as other assets) at Bitvavo's prices then (stored candles,
    fetched from Bitvavo's public candles when missing), the year's fills and
    fees, realised and unrealised results.  A peildatum before tinybot first
    saw the account (its first balance snapshot) is unknown to it: it says
    so, or uses what you supply with --opening/--closing.  A worksheet, not
    tax advice.
    \b
    Examples:
        tinybot tax 2026
        tinybot tax 2026 --opening EUR=20 --opening BTC=0.0003
    """
    from ..analysis.tax import TaxError, parse_held, worksheet

    client = None
    if not no_fetch:
        from ..exchange import market_data

        client = market_data(state.cfg)
    try:
        data = worksheet(
            state.conn,
            state.cfg,
            year,
            client,
            opening=parse_held(opening, "--opening"),
            closing=parse_held(closing, "--closing"),
        )
    except TaxError as e:
        raise Fail(str(e)) from None
    if as_json:
        echo_json(data)
        return
    _print_tax(year, data)


def _print_tax(year: int, data: dict) -> None:
    click.echo(f"Box 3 worksheet {year} — {data['disclaimer']}")
    for label, snap in (("Peildatum", data["peildatum"]), ("Next peildatum", data["next_peildatum"])):
        if snap is None:
            click.echo(f"{label}: not reached yet")
            continue
        if not snap["known"]:
            click.echo(f"{label} {snap['at_local']}: UNKNOWN — {snap['note']}")
            continue
        click.echo(
            f"{label} {snap['at_local']}: savings (EUR) {eur_text(snap['savings_eur'])}, other assets (crypto)"
            f" {eur_text(snap['other_assets_eur'])}, total {eur_text(snap['total_eur'])}"
        )
        for c in snap["crypto"]:
            click.echo(
                f"  {c['asset']} {c['amount']} × €{c['price_eur']} = {eur_text(c['value_eur'])} ({c['price_source']})"
            )
        if snap["note"]:
            click.echo(f"  note: {snap['note']}")
    f = data["fills"]
    click.echo(
        f"Fills in {year}: {f['count']} (bought {eur_text(f['bought_eur'])}, sold {eur_text(f['sold_eur'])},"
        f" fees {eur_text(f['fees_eur'])})"
    )
    ce = data["counter_evidence"]
    click.echo(
        f"Counter-evidence: value at start {eur_text(ce['value_start_eur'])}, at end {eur_text(ce['value_end_eur'])},"
        f" realised {eur_text(ce['realised_eur'])}, unrealised at the end {eur_text(ce['unrealised_end_eur'])}"
    )
    drift = {a: v for a, v in ce["deposits_withdrawals_seen"]["drift"].items() if v not in ("0", "0.00")}
    click.echo(
        "Deposits/withdrawals seen (drift against the ledger): "
        + (", ".join(f"{a} {v}" for a, v in drift.items()) or "none")
    )
