"""`python -m tinybot.rehearse.chaos`: the chaos harness from the command line."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from .batches import LOOKUP_MODES, run
from .settings import Settings
from .storms import cap_race, storm


@click.command()
@click.option(
    "--runs", default=200, show_default=True, type=click.IntRange(0), help="Seeded random runs (after the tour)."
)
@click.option(
    "--seed", default=1, show_default=True, type=int, help="Seed of the whole sequence; the same seed replays it."
)
@click.option(
    "--batch-size",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Runs per fresh database and simulator account; invariants are checked per batch.",
)
@click.option("--only-batch", type=int, help="Replay one batch of the sequence (-1 is the tour).")
@click.option("--no-tour", is_flag=True, help="Skip the tour (one run per crash point and per fault kind).")
@click.option(
    "--storm",
    "storms",
    multiple=True,
    type=click.IntRange(2),
    help="Also: N processes execute one proposal (repeatable), e.g. --storm 10 --storm 50.",
)
@click.option(
    "--cap-race",
    "cap_races",
    multiple=True,
    type=click.IntRange(2),
    help="Also: N processes each execute a different €6 buy under a €24 daily cap.",
)
@click.option(
    "--closed-lookup",
    type=click.Choice(LOOKUP_MODES),
    default="alternate",
    show_default=True,
    help="Whether the simulator finds closed orders by clientOrderId: alternate (even batches on;"
    " odd batches and the tour off), on, or off.",
)
@click.option(
    "--grace",
    default=Settings.grace,
    show_default=True,
    help="exchange.reconcile_grace for the runs (access_window is 1s, the timeout 1s).",
)
@click.option("--keep", type=click.Path(file_okay=False), help="Keep every database and result file in this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def main(runs, seed, batch_size, only_batch, no_tour, storms, cap_races, closed_lookup, grace, keep, as_json):
    """Crash and fault-inject tinybot against the Bitvavo simulator, then check the invariants.

    \b
    python -m tinybot.rehearse.chaos --runs 2000 --seed 20261127 --storm 10 --storm 50 --cap-race 50
    """
    replay = (
        f"python -m tinybot.rehearse.chaos --runs {runs} --seed {seed} --batch-size {batch_size} --grace {grace}"
        f" --closed-lookup {closed_lookup}"
    )

    started = time.monotonic()

    def progress(r):
        if not as_json:
            click.echo(
                f"  … {r.runs} runs, {r.orders} orders, {r.duplicates} duplicates, {r.lost} lost,"
                f" {len(r.violations)} violations, {time.monotonic() - started:.0f}s",
                err=True,
            )

    report = run(
        runs,
        seed,
        batch_size=batch_size,
        only_batch=only_batch,
        with_tour=not no_tour,
        workdir=keep,
        progress=progress,
        settings=Settings(grace=grace),
        closed_lookup=closed_lookup,
    )
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="tinybot-chaos-"))
    extra = {
        "storms": [storm(root, n, seed) for n in storms],
        "cap_races": [cap_race(root, n, seed) for n in cap_races],
    }
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    ok = report.ok and all(x["ok"] for x in extra["storms"] + extra["cap_races"])
    if as_json:
        click.echo(json.dumps(report.as_dict() | extra | {"ok": ok, "replay": replay}, indent=2))
    else:
        click.echo(report.text(replay))
        for s in extra["storms"]:
            click.echo(
                f"retry storm: {s['processes']} processes on one proposal → {s['orders']} exchange order,"
                f" {s['sent']} sent, {s['seconds']}s; returned {s['returned']}"
                + ("" if s["ok"] else f"  FAILED {s['violations'][:3]}")
            )
        for c in extra["cap_races"]:
            click.echo(
                f"cap race: {c['processes']} processes, one €{c['eur_each']} proposal each, daily cap"
                f" €{c['cap_eur']} → {c['orders']} orders (at most {c['allowed']}), €{c['spent_eur']} spent,"
                f" {c['seconds']}s; returned {c['returned']}" + ("" if c["ok"] else f"  FAILED {c['violations'][:3]}")
            )
    sys.exit(0 if ok else 1)
