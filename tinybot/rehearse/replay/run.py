"""One replay: plan it, start the simulator, then the real scheduler tick per slot on the simulated clock."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

from ...base import clock
from ...store import db
from ...base.config import Config
from ...exchange import read_only
from ...trade.executor import trading_exchange
from ...loop import logfile, scheduler
from ...sim.transport import InProcessSession
from .llm import LLM_MODES, RecordedLLM, llm_answers, llm_summary
from .plan import Plan, ReplayError, load_candles, plan_replay
from .settings import scratch_config, scratch_folder, write_kept_config
from .simulator import DEFAULT_SLIPPAGE, ReplaySimulator, make_simulator
from . import score
from .summary import TickPoint, summarize


def replay(
    cfg: Config,
    store: sqlite3.Connection,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    markets: tuple[str, ...] | list[str] | None = None,
    eur: Decimal | None = None,
    slippage: Decimal = DEFAULT_SLIPPAGE,
    keep: Path | None = None,
    llm: str = "record",
    on_plan: Callable[[int], None] | None = None,
    progress: Callable[[int], None] | None = None,
    score_advisors: tuple[str, ...] | None = None,
    allow_look_ahead: bool = False,
) -> dict:
    """Replay the stored candles through the real tick; return the summary (JSON-ready).

    ``llm``: "record" answers the llm advisor from the LLM record (else it proposes nothing),
    "live" also calls the provider for prompts not in the record (within the budget left today),
    "off" leaves the advisor out.  ``score_advisors``: run these head to head, each a shadow on its own book
    (tinybot.rehearse.replay.score); the summary then has ``score``, `tinybot score`'s board.
    """
    eur = cfg.paper.starting_eur if eur is None else Decimal(eur)
    if eur <= 0:
        raise ReplayError("--eur must be more than 0")
    if llm not in LLM_MODES:
        raise ReplayError(f"--llm must be one of {', '.join(LLM_MODES)}, not {llm!r}")
    if score_advisors:
        cfg = score.score_config(cfg, score_advisors)
    plan = plan_replay(store, cfg, markets, start, end)
    ahead = score.look_ahead(cfg, score_advisors, plan.slots[0], allow_look_ahead, llm) if score_advisors else False
    series, limits = load_candles(store, cfg, plan)
    answers = llm_answers(cfg, store, llm)  # before the scratch folder: a refused --llm live leaves nothing behind

    scratch = scratch_folder(keep)
    sim_clock = clock.Simulated(plan.slots[0])
    sim = make_simulator(series, plan.data_interval, limits, eur, sim_clock, slippage)
    conn = stand_in = None
    try:
        if answers is not None:
            stand_in = RecordedLLM(*answers)
        points = run_ticks(
            cfg, plan, sim, sim_clock, scratch, on_plan, progress, stand_in.base_url if stand_in else None
        )
        conn = sqlite3.connect(scratch / "replay.db")
        conn.row_factory = sqlite3.Row
        if keep is not None:
            write_kept_config(scratch)
        summary = summarize(conn, cfg, plan, points, sim, eur, slippage, scratch if keep else None)
        summary.update(llm_summary(cfg, llm, stand_in))
        if score_advisors:
            summary["score"] = score.board(conn, cfg, plan.markets, plan.slots[-1], ahead)
        return summary
    finally:
        sim.close()
        if stand_in is not None:
            stand_in.close()
        if conn is not None:
            conn.close()
        if keep is None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_ticks(
    cfg: Config,
    plan: Plan,
    sim: ReplaySimulator,
    sim_clock: clock.Simulated,
    scratch: Path,
    on_plan: Callable[[int], None] | None,
    progress: Callable[[int], None] | None,
    llm_url: str | None = None,
) -> list[TickPoint]:
    """One real scheduler tick per slot, on the simulated clock, against the simulator on loopback."""
    server = sim.serve()
    points: list[TickPoint] = []
    with clock.simulated(sim_clock):
        rcfg = scratch_config(cfg, scratch, server.url, plan.markets if plan.explicit else None, llm_url)
        conn = open_scratch_db(rcfg.db_path)
        log_handler = logfile.attach_log_file(rcfg)
        try:
            ro, trading = read_only(rcfg), trading_exchange(rcfg)
            session = InProcessSession(sim)
            for client in (ro, trading):  # every key's requests: in-process, signed on the simulated clock
                client.route_requests(session, milliseconds=sim_clock.ms)
            sched = scheduler.Scheduler(rcfg, conn, echo=lambda line: None, read_only=ro, trading=trading)
            if on_plan:
                on_plan(len(plan.slots))
            for slot in plan.slots:
                sim_clock.t = slot
                prices = sim.move_to(clock.to_ms(slot))
                report = sched.tick(slot)
                equity, exposure = sim.equity_and_exposure(prices)
                points.append(TickPoint(slot, equity, exposure, tuple(report.errors)))
                if progress:
                    progress(1)
        finally:
            logfile.detach_log_file(log_handler)
            conn.close()
            server.close()
    return points


def open_scratch_db(path: Path) -> sqlite3.Connection:
    """The replay's own database, without fsync: a replay that dies is run again, so durability buys nothing
    here.  Only this connection: the live database (``db.connect``) keeps ``synchronous = FULL``."""
    conn = db.open_db(path)
    conn.execute("PRAGMA synchronous = OFF")
    return conn
