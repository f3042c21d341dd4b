"""`tinybot run`, `tinybot advise` and `tinybot demo`: parse, call the core, print.

Registered lazily in cli.py, so `tinybot kill` and friends never import this.
"""
from __future__ import annotations

import sys

import click

from .cli import Fail, friendly, pass_state


@click.command(name="run")
@click.option("--once", is_flag=True, help="Run a single tick for the current slot and exit (for cron).")
@click.option("--ignore-doctor", is_flag=True,
              help="Live mode: start even though `tinybot doctor` fails (logged and alerted loudly).")
@pass_state
@friendly
def run_command(state, once, ignore_doctor):
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
    if cfg.mode == "live":
        _doctor_gate(state, ignore_doctor)
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


def _doctor_gate(state, ignore: bool) -> None:
    """Live mode starts only when doctor's go/no-go passes, unless explicitly and loudly overridden."""
    import logging

    from . import doctor

    ok, failures = doctor.go_no_go(state.cfg)
    if ok:
        return
    summary = "; ".join(f"{c.name}: {c.detail}" for c in failures)
    if not ignore:
        raise Fail(f"doctor fails: {summary} — run `tinybot doctor` for the fixes, or start with --ignore-doctor")
    text = f"STARTING LIVE DESPITE FAILING DOCTOR CHECKS (--ignore-doctor): {summary}"
    click.echo(f"Warning: {text}", err=True)
    from .notify import Notifier, install_redaction
    from .scheduler import attach_log_file, detach_log_file

    handler = attach_log_file(state.cfg)  # the log file must say it too, not only the terminal
    try:
        install_redaction(state.cfg, logging.getLogger("tinybot"))
        logging.getLogger("tinybot.run").warning("%s", text)
    finally:
        detach_log_file(handler)

    Notifier(state.cfg, state.conn).alert("doctor_ignored", text, key="doctor_ignored", severity="error")


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
    results = [_advise_llm(state, snap) if name == "llm" else run_advisor(name, snap, cfg) for name in cfg.advisors]
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


def _advise_llm(state, snap):
    """The LLM on demand: ignores [llm] every (you asked now), still spends and respects the budget."""
    from datetime import timedelta

    from .advisors import Outcome, llm

    r = llm.run(snap, state.cfg, conn=state.conn, min_interval=timedelta(0))
    out = Outcome("llm")
    out.drafts.extend(r.drafts)
    if r.skipped or r.rejected:
        out.errors.append(r.message or r.rejected or r.skipped)
    return out


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
