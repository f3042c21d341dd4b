"""`tinybot run`, `tinybot advise` and `tinybot demo`: parse, call the core, print.

Registered lazily in cli.py, so `tinybot kill` and friends never import this.
"""

from __future__ import annotations

import os
import sys

import click

from ..base import exitcodes
from .common import Fail, friendly, pass_state
from ..base.runlock import AlreadyRunning


@click.command(name="run")
@click.option("--once", is_flag=True, help="Run a single tick for the current slot and exit (for cron).")
@click.option(
    "--ignore-doctor",
    is_flag=True,
    help="Live mode: start even though a blocking `tinybot doctor` check fails (logged and alerted loudly).",
)
@pass_state
@friendly
def run_command(state, once, ignore_doctor):
    """Run the scheduler: tick every scheduler.interval until Ctrl-C / SIGTERM.

    \b
    Each tick: reconcile, expire stale proposals, read the market, ask the
    advisors, apply the approval policy, execute approved proposals, sync
    fills.  One line per tick here; full detail in scheduler.log_file.
    An unreachable exchange or a full disk pauses trading; it resumes by
    itself.  Every allowlisted market must be one the exchange lists.
    Live mode: in-flight orders are reconciled first, then doctor's blocking
    checks must pass (the others only warn).
    \b
    Exit codes: 0 stopped cleanly (--once: the tick ran), Ctrl-C included,
    even when what read the output (`| tee`) went away first; 1 the loop
    died or the tick failed; 5 (--once) the exchange was unreachable; 75
    another `tinybot run` holds the lock; 78 refused to start (an allowlist
    market the exchange does not list, or see `tinybot doctor`).
    \b
    Example (in tmux on the Pi):
        tinybot run
    """
    from ..loop import scheduler

    cfg = state.cfg
    gate = (lambda sched: _doctor_gate(sched, ignore_doctor)) if cfg.mode == "live" else None
    sched = scheduler.Scheduler(cfg, state.conn, echo=_echo, gate=gate)
    try:
        if not once:
            _echo(
                f"tinybot run: mode {cfg.mode}, every {_fmt(cfg.scheduler.interval)}, approval "
                f"{cfg.scheduler.approval}, advisors {', '.join(cfg.advisors) or '(none)'};"
                f" log {cfg.log_path}. Ctrl-C stops after the current step."
            )
        code = sched.run(once=once)
    except AlreadyRunning as e:
        _echo(f"Error: {e}", err=True)
        sys.exit(exitcodes.LOCKED)
    sys.exit(code)


def _echo(text: str, err: bool = False) -> None:
    """A line for whoever reads `tinybot run`'s output.  When that reader is gone (`| tee run.log` ended by
    the same Ctrl-C, `| head`), the run goes on, or stops as it was asked to, without a word more there:
    the log file has every line.  A closed pipe is not a reason to die."""
    stream = sys.stderr if err else sys.stdout
    if stream in _GONE:
        return
    try:
        click.echo(text, err=err)
    except BrokenPipeError:
        _GONE.add(stream)
        # what is still buffered would fail again when Python flushes it on the way out (exit 120)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


_GONE: set = set()


def _doctor_gate(sched, ignore: bool) -> list[str]:
    """Live mode starts only when doctor's blocking checks pass (after the start-up reconcile); the rest warn.

    Prints doctor's decision (doctor.gate logs it and sends the override's alert).  Returns the reasons to
    refuse the start (the scheduler logs them, alerts and exits REFUSED_START).
    """
    from ..ops.doctor.gate import decide_start

    decision = decide_start(sched.cfg, sched.notifier(), ignore=ignore)
    for c in decision.warnings:
        _echo(f"Warning: doctor: {c.name}: {c.detail}", err=True)
    if decision.ignored:
        _echo(f"Warning: {decision.override}", err=True)
    elif decision.refused:
        _echo(f"Error: refusing to start live trading: {decision.summary}", err=True)
        for c in decision.blocking:
            _echo(f"  fix {c.name}: {c.fix}", err=True)
        _echo(
            f"Run `tinybot doctor` after fixing it (exit code {exitcodes.REFUSED_START}: systemd does not"
            " restart this; --ignore-doctor overrides, loudly).",
            err=True,
        )
    return decision.reasons()


@click.command(name="advise")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def advise_command(state, as_json):
    """Ask the configured advisors once and print their drafts with reasons; nothing is proposed or executed."""
    import json

    from ..advisors import build_snapshot, run_advisor
    from ..exchange import read_only

    cfg = state.cfg
    if not cfg.advisors:
        raise Fail(f'no advisors configured: set advisors = ["rules"] (or "dca", ...) in {cfg.path}')
    snap = build_snapshot(state.conn, cfg, read_only(cfg), sources=tuple(cfg.advisors))
    results = [_advise_llm(state, snap) if name == "llm" else run_advisor(name, snap, cfg) for name in cfg.advisors]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "now": snap.now.isoformat(),
                    "problems": list(snap.problems),
                    "advisors": [
                        {
                            "name": r.name,
                            "errors": r.errors,
                            "drafts": [
                                {
                                    "market": d.market,
                                    "side": d.side,
                                    "amount_quote": None if d.amount_quote is None else str(d.amount_quote),
                                    "amount": None if d.amount is None else str(d.amount),
                                    "reason": d.reason,
                                }
                                for d in r.drafts
                            ],
                        }
                        for r in results
                    ],
                },
                indent=2,
            )
        )
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

    from ..advisors import Outcome, llm

    r = llm.run(snap, state.cfg, conn=state.conn, min_interval=timedelta(0))
    out = Outcome("llm")
    out.drafts.extend(r.drafts)
    if r.skipped or r.rejected:
        out.errors.append(r.message or r.rejected or r.skipped)
    return out


@click.command(name="demo")
@click.option(
    "--seconds", default=40, show_default=True, type=click.IntRange(3, 600), help="How long the scheduler runs."
)
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
    from ..rehearse.demo import run_demo

    run_demo(seconds=seconds, seed=seed, keep=keep, echo=click.echo)


def _fmt(td) -> str:
    from ..base.clock import format_duration

    return format_duration(td)
