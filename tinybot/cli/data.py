"""`tinybot data fetch|import|list` and `tinybot replay`: parse, call the core, print.

Registered lazily in cli.py, so `tinybot kill` and friends never import this.
"""

from __future__ import annotations

import sys

import click

from .common import Fail, emit, friendly, pass_state, table


class _Bar:
    """A progress bar on stderr whose length is known only once the work is planned."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled, self.bar = label, enabled, None

    def start(self, total: int) -> None:
        if self.enabled and total > 0:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()

    def step(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.group(name="data")
def data_group():
    """Candles for `tinybot replay`: fetch from Bitvavo, import a CSV, list what is stored."""


@data_group.command(name="fetch")
@click.argument("markets", nargs=-1, required=True)
@click.option(
    "--interval", default="1h", show_default=True, help="Candle interval (1m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d)."
)
@click.option("--since", required=True, help="First candle, UTC (2025-01-01 or 2025-01-01T12:00Z).")
@click.option("--until", help="Stop before this time, UTC (default: now; only closed candles are stored).")
@click.option("--json", "as_json", is_flag=True, help="Print what was downloaded as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@pass_state
@friendly
def fetch_command(state, markets, interval, since, until, as_json, no_progress):
    """Download Bitvavo candles into the candle store (public endpoint, no key needed).

    \b
    Paginated (1440 candles a request), rate-limit aware, and resumable: run
    the same command again after an interruption and only what is missing
    is downloaded.  Candles already stored are not downloaded again.
    \b
    Example:
        tinybot data fetch BTC-EUR ETH-EUR --interval 1h --since 2025-01-01
    """
    from ..analysis import candles
    from ..exchange.bitvavo.clients import read_only_client

    candles.interval_ms(interval)
    start = candles.parse_time(since, "--since")
    end = candles.parse_time(until, "--until") if until else None
    cfg = state.cfg
    client = read_only_client(cfg)
    bar = _Bar(f"fetching {interval} candles", enabled=not no_progress and not as_json)
    try:
        report = candles.fetch(
            state.conn, client, list(markets), interval, start, end, on_plan=bar.start, progress=bar.step
        )
    finally:
        bar.close()

    def human(r):
        for m, got in r["markets"].items():
            if not got["requests"]:
                click.echo(f"{m}: already stored, nothing to download")
            else:
                click.echo(f"{m}: {got['candles']} {interval} candles in {got['requests']} request(s)")

    emit(report.as_dict(), as_json, human)


@data_group.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--interval", help="Candle interval of the file (default: inferred per market).")
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
@pass_state
@friendly
def import_command(state, path, interval, as_json):
    """Import candles from a CSV file (the simulator's --candles-csv format).

    \b
    Header: market,timestamp,open,high,low,close,volume
    timestamp: the candle's open time, milliseconds since the epoch (UTC).
    The file is checked completely first: a bad row names its line and
    nothing is imported.  The interval is inferred unless --interval.
    \b
    Example:
        tinybot data import btc-2024.csv --interval 1h
    """
    from ..analysis import candles

    report = candles.import_csv(state.conn, path, interval)

    def human(r):
        for m, d in r["markets"].items():
            gaps = f", {d['gaps']} gap(s)" if d["gaps"] else ""
            click.echo(f"{m}: {d['candles']} {d['interval']} candles, {d['first']} to {d['last']}{gaps}")

    emit(report.as_dict(), as_json, human)


@data_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def list_command(state, as_json):
    """What the candle store holds: per market and interval, span, count, gaps."""
    from ..analysis import candles

    rows = candles.listing(state.conn)

    def human(rs):
        table(
            [{**r, "not_fetched": len(r["not_fetched"]) or ""} for r in rs],
            ["market", "interval", "candles", "first", "last", "gaps", "not_fetched"],
        )
        if rs and any(r["gaps"] for r in rs):
            click.echo("gaps: intervals without trades (Bitvavo has no candle for them)")

    emit(rows, as_json, human)


def _print_summary(s: dict, report_path=None) -> None:
    e = click.echo
    e(
        f"Replay {s['from'][:16]}Z → {s['to'][:16]}Z: {s['ticks']} ticks every {s['tick_interval']},"
        f" markets {', '.join(s['markets'])}, advisors {', '.join(s['advisors']) or '(none)'}"
    )
    src = ", ".join(f"{k} {v}" for k, v in s["proposals_by_source"].items())
    e(f"  proposals: {s['proposals']}" + (f" ({src})" if src else ""))
    e(
        f"  trades: {len(s['trades'])}, fees €{s['fees_eur']}"
        + (f", LLM €{s['llm_cost_eur']}" if s["llm_cost_eur"] != "0.00" else "")
    )
    for t in s["trades"][:20]:
        e(
            f"    {t['time'][:16]}Z {t['side']:4} {t['market']} {t['amount']} @ {t['price']} fee {t['fee']}"
            f" ({t['source']} #{t['proposal_id']})"
        )
    if len(s["trades"]) > 20:
        e(f"    … {len(s['trades']) - 20} more (--json or --report FILE for all)")
    blocks = ", ".join(f"{k} {v}" for k, v in s["blocks"].items())
    e(f"  blocked by reason: {blocks or 'none'}")
    e(
        f"  equity: €{s['starting_eur']} → €{s['final_equity_eur']}; P/L €{s['pnl_eur']} ({s['pnl_pct']} %)"
        " net of fees and LLM cost"
    )
    e(
        f"  max drawdown €{s['max_drawdown_eur']} ({s['max_drawdown_pct']} %); max exposure €{s['max_exposure_eur']};"
        f" in the market {s['time_in_market_pct']} % of ticks"
    )
    h, d = s["benchmarks"]["hold"], s["benchmarks"]["dca"]
    e(
        f"  benchmarks: buy and hold €{h['final_equity_eur']} (P/L €{h['pnl_eur']});"
        f" DCA {d['buys']} × €{d['eur_per_buy']} €{d['final_equity_eur']} (P/L €{d['pnl_eur']})"
    )
    if not s["kill_switch"]["trading_enabled"]:
        e(f"  kill switch turned OFF at {s['kill_switch']['changed_at'][:16]}Z: {s['kill_switch']['reason']}")
    if s["skipped_advisors"]:
        e(f"  not replayed: {', '.join(s['skipped_advisors'])} (--llm off; docs/REPLAY.md)")
    llm = s["llm"]
    if "answers_from_record" in llm:
        e(
            f"  LLM ({llm['mode']}): {llm['answers_from_record']} answer(s) from the record at €0,"
            f" {llm['not_in_record']} prompt(s) not in the record (no LLM proposal)"
            + (
                f", {llm['live_calls']} live call(s) for €{llm['spent_eur']} (budget €{llm['live_budget_eur']},"
                f" {llm['live_refused_by_budget']} refused)"
                if llm["mode"] == "live"
                else ""
            )
        )
    if s["failed_ticks"]:
        e(f"  {s['failed_ticks']} tick(s) failed (see replay.log with --keep)")
    if s["ticks_with_errors"]:
        e(f"  {s['ticks_with_errors']} tick(s) reported errors (see replay.log with --keep), first:")
        for err in s["tick_errors"]:
            e(f"    {err}")
    for w in s["warnings"]:
        e(f"  warning: {w}")
    if s["scratch_dir"]:
        e(
            f"  kept in {s['scratch_dir']}: replay.db and replay.log; look around with"
            f" tinybot --config {s['scratch_dir']}/replay.toml why N (or proposals, executions, history)"
        )
    if report_path:
        e(f"  report: {report_path}")


def _print_sweep(result: dict) -> None:
    runs = result["runs"]
    ok = [r for r in runs if "error" not in r]
    if ok:
        first = ok[0]
        click.echo(
            f"Sweep {first['from'][:16]}Z → {first['to'][:16]}Z, {first['ticks']} ticks each; best net P/L first"
        )
        rows = []
        for r in ok:
            row = {
                "settings": " ".join(r["sets"]),
                "trades": r["trades"],
                "fees": r["fees_eur"],
                "P/L €": r["pnl_eur"],
                "P/L %": r["pnl_pct"],
                "max DD %": r["max_drawdown_pct"],
                "hold P/L €": r["benchmarks"]["hold"]["pnl_eur"],
                "DCA P/L €": r["benchmarks"]["dca"]["pnl_eur"],
            }
            if not r["kill_switch"]["trading_enabled"]:
                row["settings"] += " (kill switch tripped)"
            rows.append(row)
        table(rows, list(rows[0]))
    for r in runs:
        if "error" in r:
            click.echo(f"skipped {' '.join(r['sets'])}: {r['error']}")


@click.command(name="replay")
@click.option("--from", "start", help="First tick, UTC (default: once the advisors have their history).")
@click.option("--to", "end", help="Stop before this time, UTC (default: the end of the stored candles).")
@click.option(
    "--markets",
    multiple=True,
    help="Markets to replay, replacing risk.allowlist and rules.markets (default: the markets the"
    " config watches); repeat or comma-separate.",
)
@click.option("--eur", type=str, help="Starting euros (default: paper.starting_eur).")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a bot.toml setting, e.g. rules.fast=8; rules.fast=8,12,20 sweeps (the grid of all --set"
    " lists runs in parallel).",
)
@click.option(
    "--slippage",
    default="0.05%",
    show_default=True,
    help="Extra price slippage on every market order, against you, on top of the simulator's spread.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the whole summary as JSON.")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Also write FILE: FILE.html is the report of `tinybot report` for the replay's history (charts:"
    " pip install 'tinybot[report]'); any other name gets the JSON summary.",
)
@click.option(
    "--keep",
    "keep_dir",
    type=click.Path(file_okay=False),
    help="Keep the scratch database and log in DIR, a new or empty folder (replay.toml, replay.db, replay.log).",
)
@click.option(
    "--llm",
    "llm_mode",
    type=click.Choice(["record", "live", "off"]),
    default="record",
    show_default=True,
    help="The llm advisor: answers from the LLM record at €0 (a prompt not in it: no proposal); live"
    " also calls the LLM for those, within today's llm budget; off leaves it out.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--score", "scored", is_flag=True, help="Head to head: the --advisors each on its own book, scored.")
@click.option("--advisors", "score_names", help="With --score: advisors to compare, e.g. rules,dca,llm.")
@click.option("--allow-look-ahead", is_flag=True, help="With --score: score llm before [llm] knowledge_cutoff, marked.")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="A sweep's combinations replayed at once, one process each (default: every core this process may use).",
)
@pass_state
@friendly
def replay_command(
    state,
    start,
    end,
    markets,
    eur,
    sets,
    slippage,
    as_json,
    report_path,
    keep_dir,
    llm_mode,
    no_progress,
    jobs,
    **score,
):
    """What would tinybot have done?  The real tick over stored candles.

    \b
    The configured advisors, [risk] and [scheduler] settings run through the
    real scheduler, guards and executor against a simulated Bitvavo (fees,
    the €5 minimum, precision, balances), one tick per scheduler.interval,
    on a simulated clock, in a scratch database.  The live database is only
    read.  Semantics: docs/REPLAY.md.
    \b
    Example:
        tinybot data fetch BTC-EUR --interval 1h --since 2025-01-01
        tinybot replay --from 2025-02-01 --set scheduler.interval=1h --set rules.fast=8
        tinybot replay --set rules.fast=8,12,20 --set rules.slow=26,50
    """
    import json
    from decimal import Decimal, InvalidOperation
    from pathlib import Path

    from ..analysis import candles
    from ..rehearse.replay.plan import open_store
    from ..rehearse.replay.run import replay
    from ..rehearse.replay.settings import apply_sets
    from ..rehearse.replay.sweep import expand_sets, sweep

    grid = expand_sets(sets)
    cfg = apply_sets(state.cfg, grid[0]) if len(grid) == 1 else state.cfg
    head_to_head = _head_to_head(cfg, grid, **score)
    begin = candles.parse_time(start, "--from") if start else None
    stop = candles.parse_time(end, "--to") if end else None
    if begin and stop and stop <= begin:
        raise Fail(f"empty range: --to {end} is not after --from {start}")
    try:
        text = slippage.strip()
        slip = Decimal(text[:-1]) / 100 if text.endswith("%") else Decimal(text)
        start_eur = Decimal(eur) if eur is not None else None
    except InvalidOperation:
        raise Fail("--slippage must be like 0.05% and --eur a number like 25") from None
    if not slip.is_finite() or not 0 <= slip < Decimal("0.5"):
        raise Fail("--slippage must be between 0% and 50%")
    if start_eur is not None and (not start_eur.is_finite() or start_eur <= 0):
        raise Fail("--eur must be a number above 0, like 25")
    html_report = bool(report_path) and str(report_path).lower().endswith((".html", ".htm"))
    if html_report and len(grid) > 1:
        raise Fail("--report FILE.html shows one history; a sweep has one per combination: use --report FILE.json")
    if len(grid) > 1 and llm_mode == "live":
        raise Fail(
            "--llm live runs one replay at a time: a sweep would spend the LLM budget once per"
            " combination; sweep with --llm record (the default) or off"
        )
    store = open_store(cfg.db_path)
    if len(grid) > 1:
        store.close()
        bar = _Bar(f"replaying {len(grid)} combinations", enabled=not no_progress)
        bar.start(len(grid))
        try:
            runs = sweep(
                state.cfg,
                grid,
                workers=jobs,
                progress=bar.step,
                start=begin,
                end=stop,
                markets=tuple(markets),
                eur=start_eur,
                slippage=slip,
                llm=llm_mode,
            )
        finally:
            bar.close()
        result = {"runs": runs}
        if report_path:
            Path(report_path).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        emit(result, as_json, _print_sweep)
        return
    bar = _Bar("replaying", enabled=not no_progress)
    import shutil
    import tempfile

    keep = (
        Path(keep_dir)
        if keep_dir
        else (Path(tempfile.mkdtemp(prefix="tinybot-replay-report-")) if html_report else None)
    )
    try:
        try:
            summary = replay(
                cfg,
                store,
                start=begin,
                end=stop,
                markets=markets,
                eur=start_eur,
                slippage=slip,
                keep=keep,
                llm=llm_mode,
                on_plan=bar.start,
                progress=bar.step,
                score_advisors=head_to_head,
                allow_look_ahead=score["allow_look_ahead"],
            )
        finally:
            bar.close()
            store.close()
        if html_report:
            _html_report(cfg, keep, report_path, summary)
        elif report_path:
            Path(report_path).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        if keep is not None and not keep_dir:
            shutil.rmtree(keep, ignore_errors=True)
    if not keep_dir:
        summary["scratch_dir"] = None  # the report's scratch folder is gone: never print it as kept
    if head_to_head:
        from ..analysis.score import render

        emit(summary["score"] | {"replay": summary}, as_json, lambda b: click.echo(render(b)))
        return
    emit(summary, as_json, lambda s: _print_summary(s, report_path))


def _head_to_head(cfg, grid, *, scored: bool, score_names: str | None, allow_look_ahead: bool):
    """`--score --advisors a,b`: the advisors to run head to head (default: the configured ones), or None."""
    from ..rehearse.replay.score import parse_advisors

    if not scored:
        if score_names or allow_look_ahead:
            raise Fail("--advisors and --allow-look-ahead go with --score")
        return None
    if len(grid) > 1:
        raise Fail("--score runs one replay: a --set sweep has one per combination")
    return parse_advisors(score_names if score_names is not None else ",".join(cfg.advisors))


def _html_report(cfg, scratch, path, summary: dict) -> None:
    """`tinybot report` over the replay's scratch database: the same page as for the live history, for the
    replayed period (valued at its last tick's prices), in the user's timezone, saying it is a replay."""
    from ..base import clock
    from ..store import db
    from ..trade.book import valuation
    from ..analysis.charts import ChartError
    from ..rehearse.replay.settings import scratch_config
    from ..analysis.report import ReportError, write

    rcfg = scratch_config(cfg, scratch, "", tuple(summary["markets"]))  # as the replay's ticks saw it
    conn = db.connect(scratch / "replay.db")
    period = (clock.from_iso(summary["from"]), clock.from_iso(summary["to"]))
    try:
        write(
            conn,
            rcfg,
            path,
            until=period[1],
            prices=valuation.last_prices(conn, rcfg),
            title="tinybot replay",
            replay=period,
            look_ahead=summary.get("score", {}).get("look_ahead", False),  # --score over a model's training period
        )
    except (ReportError, ChartError) as e:
        raise Fail(str(e)) from None
    finally:
        conn.close()
