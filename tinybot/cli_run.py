"""`tinybot run`, `tinybot advise` and `tinybot demo`: parse, call the core, print.

Registered lazily in cli.py, so `tinybot kill` and friends never import this.
"""
from __future__ import annotations

import sys

import click

from .cli import Fail, friendly, pass_state


@click.command(name="run")
@click.option("--once", is_flag=True, help="Run a single tick for the current slot and exit (for cron).")
@pass_state
@friendly
def run_command(state, once):
    """Run the scheduler: tick every scheduler.interval until Ctrl-C / SIGTERM.

    \b
    Each tick: reconcile, expire stale proposals, read the market, ask the
    advisors, apply the approval policy, execute approved proposals, sync
    fills.  One line per tick here; full detail in scheduler.log_file.
    Only one `tinybot run` per database: a second one exits with code 75.
    \b
    Example (in tmux on the Pi):
        tinybot run
    """
    from . import scheduler

    cfg = state.cfg
    sched = scheduler.Scheduler(cfg, state.conn, echo=click.echo)
    try:
        if not once:
            click.echo(f"tinybot run: mode {cfg.mode}, every {_fmt(cfg.scheduler.interval)}, approval "
                       f"{cfg.scheduler.approval}, advisors {', '.join(cfg.advisors) or '(none)'};"
                       f" log {cfg.log_path}. Ctrl-C stops after the current step.")
        code = sched.run(once=once)
    except scheduler.AlreadyRunning as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(scheduler.EXIT_LOCKED)
    sys.exit(code)


@click.command(name="advise")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def advise_command(state, as_json):
    """Ask the configured advisors once and print their drafts with reasons; nothing is proposed or executed."""
    import json

    from .advisors import build_snapshot, run_advisor
    from .exchange import read_only

    cfg = state.cfg
    if not cfg.advisors:
        raise Fail(f"no advisors configured: set advisors = [\"rules\"] (or \"dca\", ...) in {cfg.path}")
    snap = build_snapshot(state.conn, cfg, read_only(cfg), sources=tuple(cfg.advisors))
    results = [run_advisor(name, snap, cfg) for name in cfg.advisors]
    if as_json:
        click.echo(json.dumps({
            "now": snap.now.isoformat(), "problems": list(snap.problems),
            "advisors": [{"name": r.name, "errors": r.errors, "drafts": [
                {"market": d.market, "side": d.side,
                 "amount_quote": None if d.amount_quote is None else str(d.amount_quote),
                 "amount": None if d.amount is None else str(d.amount), "reason": d.reason} for d in r.drafts]}
                for r in results]}, indent=2))
        return
    for p in snap.problems:
        click.echo(f"Warning: {p}", err=True)
    for r in results:
        if not r.drafts and not r.errors:
            click.echo(f"{r.name}: nothing to do")
        for d in r.drafts:
            amount = f"€{d.amount_quote}" if d.amount_quote is not None else str(d.amount)
            click.echo(f"{r.name}: {d.side} {d.market} {amount} — {d.reason}")
        for e in r.errors:
            click.echo(f"{r.name}: ERROR {e}", err=True)


@click.command(name="demo")
@click.option("--seconds", default=40, show_default=True, type=click.IntRange(3, 600),
              help="How long the scheduler runs.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the simulated price path.")
@click.option("--keep", is_flag=True, help="Keep the demo's data dir (bot.toml, DB, log) and print its path.")
def demo_command(seconds, seed, keep):
    """Watch the whole bot trade against a local Bitvavo simulator: offline, no keys, no money.

    \b
    Starts the simulator on a free loopback port, writes a fresh bot.toml in
    a temporary dir (live mode pointed at the simulator, throwaway keys),
    and runs the real scheduler over an accelerated price path, then prints
    a summary (orders, fees, P/L, guard blocks by reason) from the database.
    \b
    Example:
        tinybot demo --seconds 30
    """
    from .demo import run_demo

    run_demo(seconds=seconds, seed=seed, keep=keep, echo=click.echo)


def _fmt(td) -> str:
    from .clock import format_duration

    return format_duration(td)
