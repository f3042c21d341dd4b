"""The run loop: the tour (batch −1), the aged batches (−2, −3) and the seeded random batches; ``run`` drives them.

Each batch has its own bench (a simulator account and a fresh database)
and its own seed, derived from the run's seed and the batch number, so
``--seed S --only-batch B`` replays one.  At its end every window is let
pass, reconcile runs once more, and the invariants are checked.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from tinybot.base import clock
from tinybot.trade.proposals import Draft

from .backups import schema_backup
from .bench import Bench
from .plan import plan_run, tour
from .report import Report
from .runs import arm, do_run, restore_and_resume
from .settings import AGED_RISK, DEFAULTS, MARKETS, SCHEMAS, TOUR_RISK, Settings

AGED_BATCHES = {True: -2, False: -3}  # closed-order lookup on / off
LOOKUP_MODES = ("alternate", "on", "off")


def run_tour(root: Path, seed: int, report: Report, settings: Settings = DEFAULTS, closed_lookup: bool = False) -> None:
    bench = Bench(
        root,
        "tour",
        batch_seed(seed, -1),
        replace(settings, **TOUR_RISK),
        start={"EUR": Decimal("500")},
        closed_lookup=closed_lookup,
        schema=SCHEMAS[0],
    )
    try:
        for plan in tour():
            do_run(bench, plan, report)
            report.runs += 1
        finish(bench, -1, report)
    finally:
        bench.close()


def run_aged(root: Path, seed: int, report: Report, settings: Settings = DEFAULTS, closed_lookup: bool = True) -> None:
    """Backups restored a day or more after they were taken (batch −2: closed-order lookup on, −3: off).

    In this process, on a clock freezegun holds still and moves by hours and
    days (the simulator runs in this process too, on the same clock): no
    crash point, no racer.  Every shipped schema's backup is taken first, at
    the start, as a tinybot of that schema would have made its database, and
    each is restored later, a day after the last order.
    """
    try:
        from freezegun import freeze_time
    except ImportError:  # a test dependency: pip install -e '.[test]'
        raise RuntimeError("the aged batches move the clock with freezegun: pip install -e '.[test]'") from None
    batch = AGED_BATCHES[closed_lookup]
    with freeze_time(clock.now()) as frozen:
        bench = Bench(
            root,
            f"aged-lookup-{'on' if closed_lookup else 'off'}",
            batch_seed(seed, batch),
            replace(settings, **AGED_RISK),
            start={"EUR": Decimal("1000")},
            closed_lookup=closed_lookup,
            in_process=True,
            pause=lambda seconds: frozen.tick(timedelta(seconds=seconds)),
        )
        try:
            aged_runs(bench, frozen.tick, report)
            finish(bench, batch, report)
        finally:
            bench.close()


def aged_runs(bench: Bench, tick, report: Report) -> None:
    """The aged batch's steps; ``tick(timedelta)`` moves the clock."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    schemas = [schema_backup(bench.cfg, s) for s in SCHEMAS]  # all taken now, before any order

    def buy(market: str = "BTC-EUR", fault: dict | None = None) -> tuple[int, dict]:
        pid = bench.propose(Draft(market, "buy", Decimal("6"), None))
        report.proposals += 1
        report.runs += 1
        arm(bench, fault)
        ((_, data),) = bench.spawn([("execute", {}, {"proposal_id": pid})])
        bench.sim.clear_faults()
        return pid, data

    # 1. orders 47 and 23 hours old when a backup of two days ago is restored
    saved = bench.take_backup("chaos-aged-two-days")
    tick(hour)
    buy("BTC-EUR")
    bench.llm_call()
    tick(day)
    pid, _ = buy("ETH-EUR")
    bench.llm_call()
    tick(23 * hour)
    restore_and_resume(bench, pid, saved, report, "aged_two_days")
    # 2. an execution claimed in the backup (its preflight read failed), sent a day later
    pid, first = buy("BTC-EUR", {"kind": "html_5xx", "on": "balance"})
    saved = bench.take_backup("chaos-aged-claimed")
    tick(26 * hour)
    bench.spawn([("execute", {}, {"proposal_id": pid})])
    tick(25 * hour)
    restore_and_resume(bench, pid, saved, report, "aged_claimed")
    # 3. the DCA advisor buys after the backup; after the restore, a day later, not again; in its next period, yes
    saved = bench.take_backup("chaos-aged-dca")
    tick(hour)
    bench.dca_tick()
    tick(30 * hour)
    restore_and_resume(bench, None, saved, report, "aged_dca")
    tick(2 * day)
    bench.dca_tick()
    # 4. every shipped schema's backup, from before all of it, restored a day after the last order
    for i, saved in enumerate(schemas):
        tick(hour)
        pid, _ = buy(MARKETS[i % 2])
        bench.llm_call()
        tick(day)
        restore_and_resume(bench, pid, saved, report, "aged_schema")


def finish(bench: Bench, batch: int, report: Report) -> None:
    """End of a batch: let every window pass, reconcile once more, check the invariants."""
    bench.wait_out_windows()
    bench.reconcile_here()
    f = bench.findings()
    f.violations = bench.problems + f.violations
    report.add(batch, f)
    report.lookup["on" if bench.closed_lookup else "off"] += 1
    report.child_errors += [f"batch {batch}: {e}" for e in bench.jobs.errors]
    report.processes += bench.jobs.processes
    report.dca_ticks += bench.bot.dca_ticks
    report.llm_calls += bench.bot.llm_calls
    report.states.update(r[0] for r in bench.conn.execute("SELECT state FROM trade_executions"))
    report.batches += 1


def batch_seed(seed: int, batch: int) -> int:
    return seed * 1_000_003 + batch


def closed_lookup_for(mode: str, batch: int) -> bool:
    """Whether the simulator finds closed orders by clientOrderId in this batch (the tour is -1: off)."""
    return {"on": True, "off": False}.get(mode, batch % 2 == 0)


def run_batch(
    root: Path,
    seed: int,
    batch: int,
    runs: int,
    report: Report,
    settings: Settings = DEFAULTS,
    closed_lookup: bool = True,
) -> None:
    rng = random.Random(batch_seed(seed, batch))
    schema = SCHEMAS[batch % len(SCHEMAS)]  # the batches go through every shipped schema in turn
    bench = Bench(
        root, f"batch-{batch:04d}", batch_seed(seed, batch), settings, closed_lookup=closed_lookup, schema=schema
    )
    try:
        for _ in range(runs):
            do_run(bench, plan_run(rng, bench), report)
            report.runs += 1
        finish(bench, batch, report)
    finally:
        bench.close()


def run(
    runs: int,
    seed: int,
    *,
    batch_size: int = 20,
    only_batch: int | None = None,
    with_tour: bool = True,
    workdir: str | Path | None = None,
    progress=None,
    settings: Settings = DEFAULTS,
    closed_lookup: str = "alternate",
) -> Report:
    """The harness: the tour (batch -1), then `runs` seeded runs in batches of `batch_size`; → Report.

    ``closed_lookup``: "alternate" (even batches find closed orders by
    clientOrderId, odd ones and the tour do not), "on" or "off".
    """
    report = Report(seed=seed)
    t0 = time.monotonic()
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="tinybot-chaos-"))
    report.workdir = str(root)
    try:
        if with_tour and only_batch in (None, -1):
            run_tour(root, seed, report, settings, closed_lookup_for(closed_lookup, -1))
        for lookup in {"on": (True,), "off": (False,)}.get(closed_lookup, (True, False)):
            if with_tour and only_batch in (None, AGED_BATCHES[lookup]):
                run_aged(root, seed, report, settings, lookup)
        batches = range((runs + batch_size - 1) // batch_size)
        for b in batches:
            if only_batch is not None and b != only_batch:
                continue
            n = min(batch_size, runs - b * batch_size)
            run_batch(root, seed, b, n, report, settings, closed_lookup_for(closed_lookup, b))
            if progress:
                progress(report)
    finally:
        report.wall_seconds = time.monotonic() - t0
        if workdir is None and report.ok:
            shutil.rmtree(root, ignore_errors=True)  # a failure keeps its databases for inspection
    return report
