"""One run carried out as planned: its backup, its proposal's racing attempts, the restart, the restore drill.

The run's fault is armed on the simulator, its processes are released
together, crashed or stopped executions are executed again (never sent
twice), a reconcile follows, and a backup the run took is restored at its
end: then trading is resumed, the proposal executed again before any
reconcile, and the DCA advisor has its turn.
"""

from __future__ import annotations

from tinybot.store import backup

from .bench import Bench
from .plan import Plan
from .processes import CRASH_EXIT, env
from .report import Report
from .settings import SLOW_PREPARE


def arm(bench: Bench, fault: dict | None) -> list:
    """Arm the run's fault on the simulator; → the armed faults (the last one tells whether it fired)."""
    if fault is None:
        return []
    if fault["kind"] == SLOW_PREPARE:
        return [
            bench.sim.add_fault("delay", on="markets", count=2, delay=fault["delay"]),  # preflight, then ccxt
            bench.sim.add_fault("delay", on="assets", delay=fault["delay"]),
        ]
    return [bench.sim.add_fault(**fault)]


def do_run(bench: Bench, plan: Plan, report: Report) -> None:
    """One run: its backup (if any), its proposal and the attempts at it, a reconcile, an LLM call, the restore."""
    saved = bench.start_backup if plan.backup_at == "batch_start" else None
    if plan.backup_at == "before_propose":
        saved = bench.take_backup("chaos-before-propose")
    draft = plan.draft
    if plan.dca:
        draft = bench.bot.dca_draft()
    pid = None
    if draft is not None:
        pid = bench.propose(draft, source="dca" if plan.dca else "chaos")
        report.proposals += 1
        saved = attempt(bench, plan, pid, report) or saved
    elif plan.backup_at in ("before_execute", "after_first_attempt"):  # DCA had nothing to buy: back up all the same
        saved = bench.take_backup(f"chaos-{plan.backup_at.replace('_', '-')}")
    bench.reconcile_here()  # the restarted bot reconciles at start
    if plan.llm:
        bench.llm_call()
    if saved is not None:
        restore_and_resume(bench, pid, saved, report, plan.backup_at, plan.racing_reconcile)


def attempt(bench: Bench, plan: Plan, pid: int, report: Report) -> backup.Backup | None:
    """The run's processes on its proposal: racers, crash points, a fault, the restart; → a backup taken
    before the execute or after the first attempt, when the plan says so."""
    saved = bench.take_backup("chaos-before-execute") if plan.backup_at == "before_execute" else None
    armed = arm(bench, plan.fault)
    if armed:
        report.faults_armed[plan.fault["kind"]] += 1
    stopped = first_attempt(bench, racers(bench, plan, pid, report), report)
    if plan.backup_at == "after_first_attempt":  # often while the execution is claimed or submitting
        saved = bench.take_backup("chaos-after-first-attempt")
    if stopped:
        restart(bench, pid)
    if armed:
        bench.sim.clear_faults()
        if armed[-1].fired:
            report.faults[plan.fault["kind"]] += 1
    if plan.reconcile_crash and not plan.racing_reconcile:  # not armed in a racer: in a reconcile of its own
        crashing_reconcile(bench, plan.reconcile_crash, plan.reconcile_crash_after, report)
    return saved


def racers(bench: Bench, plan: Plan, pid: int, report: Report) -> list[tuple[str, dict, dict]]:
    """The first attempt's jobs: the executors (a crash point armed in the first) and the racing reconcile."""
    jobs = [
        ("execute", env(bench.cfg_path, plan.exec_crash if i == 0 else None), {"proposal_id": pid})
        for i in range(plan.racers)
    ]
    if plan.exec_crash:
        report.crashes_armed[plan.exec_crash] += 1
    if plan.racing_reconcile:
        # it stops when the executors have ended; the bound only matters if one hangs
        crash_at, after = plan.reconcile_crash, plan.reconcile_crash_after
        jobs.append(("reconcile", env(bench.cfg_path, crash_at, after), {"seconds": 6}))
        if crash_at:
            report.crashes_armed[crash_at] += 1
    return jobs


def first_attempt(bench: Bench, jobs: list[tuple[str, dict, dict]], report: Report) -> bool:
    """The jobs released together; → whether a process was killed or an execution stopped before deciding."""
    stopped = False
    for (kind, e, _), (code, data) in zip(jobs, bench.spawn(jobs)):
        if code == CRASH_EXIT:
            report.crashes[e["TINYBOT_CRASH_AT"]] += 1
            stopped = True
        if kind == "execute" and data is not None and data["state"] == "claimed":
            stopped = True  # a preflight read failed: nothing was sent; the next attempt resumes it
    return stopped


def restart(bench: Bench, pid: int) -> None:
    """The restart: execute again; an existing execution is returned, never resent."""
    for _ in range(3):
        ((_, data),) = bench.spawn([("execute", env(bench.cfg_path), {"proposal_id": pid})])
        if data is None or data["state"] != "claimed":  # claimed: a read failed (the fault again); retry
            break


def crashing_reconcile(bench: Bench, point: str, after: int, report: Report) -> None:
    """A reconcile of its own with a crash point armed, after the executors (a restarted bot's first act)."""
    report.crashes_armed[point] += 1
    ((code, _),) = bench.spawn([("reconcile", env(bench.cfg_path, point, after), {"seconds": 0})])
    if code == CRASH_EXIT:
        report.crashes[point] += 1


def restore_and_resume(
    bench: Bench, pid: int | None, saved: backup.Backup, report: Report, moment: str, racing: bool = False
) -> None:
    """The rollback drill: restore the run's backup, resume, execute the proposal again, reconcile, and
    let the DCA advisor have its turn, as the bot's next tick would.

    The executions the backup had in flight may have been sent and filled
    since, and the proposal may have been executed after the backup under a
    clientOrderId the restored database never saw: nothing may be sent again,
    and reconcile must find or book every order.  The restart executes before
    any reconcile (the hard case: `tinybot resume && tinybot execute ID`),
    with a reconcile racing it when the run had one.  The DCA advisor must
    not buy a period it bought after the backup (invariant 8).
    """
    report.restores[moment] += 1
    if saved.label.startswith("chaos-schema-"):
        report.schemas[saved.label.removeprefix("chaos-schema-")] += 1
    report.quarantined.update(bench.restore(saved))
    bench.resume()
    if pid is not None:
        jobs = [("execute", env(bench.cfg_path), {"proposal_id": pid})]
        if racing:
            jobs.append(("reconcile", env(bench.cfg_path), {"seconds": 6}))
        results = bench.spawn(jobs)
        for (kind, _, _), (_, data) in zip(jobs, results):
            if kind == "execute" and data is not None and data["sent"]:
                bench.problems.append(
                    f"(1) after restoring {saved.path.name}, execute sent an order for proposal"
                    f" {pid} again (clientOrderId {data['client_order_id']})"
                )
    bench.reconcile_here()
    bench.dca_tick()
