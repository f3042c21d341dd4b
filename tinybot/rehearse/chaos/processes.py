"""Where a bench's jobs run: real OS processes forked from a preloaded forkserver, or (aged batches) this one.

A job is ``(kind, environment, extra)``: ``("execute", env, {"proposal_id": P})``
or ``("reconcile", env, {"seconds": S})``; running jobs answers
``[(exit code, result)]`` in their order.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from .bot import Bot
from .settings import KEYS_ENV

CRASH_EXIT = 137  # what a crash point's os._exit ends a process with (tinybot.base.crash)

_ctx = None


def processes():
    """The forkserver context; its server imports ccxt and tinybot once."""
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(["tinybot.rehearse.chaos.worker"])
    return _ctx


def env(cfg_path: Path, crash_at: str | None = None, crash_after: int = 0) -> dict:
    """A child's environment: its bot.toml, the simulator's keys, and a crash point when one is armed."""
    e = {"TINYBOT_CONFIG": str(cfg_path)} | KEYS_ENV
    if crash_at:
        e |= {"TINYBOT_CRASH_AT": crash_at, "TINYBOT_CRASH_AFTER": str(crash_after)}
    return e


class Spawner:
    """One OS process per job, released together by a barrier; each answers through a JSON file in ``directory``."""

    def __init__(self, directory: Path, cfg_path: Path):
        self.dir, self.cfg_path = directory, cfg_path
        self._n = 0
        self.processes = 0
        self.errors: list[str] = []

    def run(self, jobs: list[tuple[str, dict, dict]], timeout: float = 120) -> list[tuple[int, dict | None]]:
        """Start one process per job, released together by a barrier; → [(exit code, result)].

        Reconcile jobs loop until every execute job has ended (at most their
        ``seconds``), so they race the executors for the whole of their run.
        """
        ctx = processes()
        bar = ctx.Barrier(len(jobs)) if len(jobs) > 1 else None
        stop = ctx.Event()
        started = [self._start(ctx, kind, e, extra, bar, stop) for kind, e, extra in jobs]
        self.processes += len(started)
        for kind in ("execute", "reconcile"):
            for k, p, _ in started:
                if k == kind:
                    self._wait(k, p, timeout)
            stop.set()
        return [self._answer(kind, p, out) for kind, p, out in started]

    def _start(self, ctx, kind: str, e: dict, extra: dict, bar, stop):
        from . import worker

        self._n += 1
        out = str(self.dir / f"p{self._n}.json")
        if kind == "execute":
            p = ctx.Process(target=worker.execute, args=(str(self.cfg_path), extra["proposal_id"], e, bar, out))
        else:
            p = ctx.Process(
                target=worker.reconcile_loop, args=(str(self.cfg_path), e, bar, out, extra.get("seconds", 0), stop)
            )
        p.start()
        return kind, p, out

    def _wait(self, kind: str, p, timeout: float) -> None:
        p.join(timeout)
        if p.exitcode is None:
            p.kill()
            p.join()
            self.errors.append(f"{kind} process {p.pid} hung for {timeout}s and was killed")

    def _answer(self, kind: str, p, out: str) -> tuple[int, dict | None]:
        path = Path(out)
        data = json.loads(path.read_text()) if path.exists() else None
        if p.exitcode not in (0, CRASH_EXIT):
            self.errors.append(f"{kind} process {p.pid} exited {p.exitcode} (its traceback is on stderr)")
        return p.exitcode, data


class InProcess:
    """Every job in this process, one after the other (an aged batch: a clock freezegun moves, no crash point,
    no racer)."""

    def __init__(self, bot: Bot):
        self.bot = bot
        self.processes = 0  # none started
        self.errors: list[str] = []  # none that could hang or die

    def run(self, jobs: list[tuple[str, dict, dict]], timeout: float = 120) -> list[tuple[int, dict | None]]:
        return [self._one(kind, extra) for kind, _, extra in jobs]

    def _one(self, kind: str, extra: dict) -> tuple[int, dict]:
        if kind != "execute":
            self.bot.reconcile()
            return 0, {}
        return 0, self.bot.execute(extra["proposal_id"])
