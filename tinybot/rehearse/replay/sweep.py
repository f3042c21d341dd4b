"""A sweep: the grid of --set combinations, each replayed in its own process, best net P/L first."""

from __future__ import annotations

import importlib
import os
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from typing import Callable

from ...analysis import candles
from ...base.config import Config, load
from ...base.errors import ConfigError
from .plan import ReplayError, open_store
from .run import replay
from .settings import apply_sets, parse_value

# what each combination keeps of its replay's summary (besides its --set list and its number of trades)
KEPT = (
    "ticks",
    "final_equity_eur",
    "pnl_eur",
    "pnl_pct",
    "fees_eur",
    "max_drawdown_pct",
    "proposals",
    "blocks",
    "benchmarks",
    "from",
    "to",
    "kill_switch",
)


def expand_sets(sets: list[str] | tuple[str, ...]) -> list[list[str]]:
    """``rules.fast=8,12`` ``rules.slow=26,50`` → the grid of plain --set lists (a TOML value is one value)."""
    axes: list[list[str]] = []
    for item in sets:
        key, eq, value = item.partition("=")
        if eq and "," in value and isinstance(parse_value(value.strip()), str):
            axes.append([f"{key}={v.strip()}" for v in value.split(",") if v.strip()])
        else:
            axes.append([item])
    grid: list[list[str]] = [[]]
    for axis in axes:
        grid = [g + [v] for g in grid for v in axis]
    return grid


def _sweep_one(args) -> dict:
    """One combination, in a worker process: its replay's key figures, or the error that stopped it.

    The worker is forked from the sweep with ccxt and the Bitvavo adapter already imported (a third of a
    second each worker would spend on its first replay; on a spawning platform it still imports them itself).
    """
    path, sets, kw = args
    try:
        cfg = apply_sets(load(path), sets)
        store = open_store(cfg.db_path)
        try:
            s = replay(cfg, store, **kw)
        finally:
            store.close()
    except (ReplayError, candles.CandleError, ConfigError) as e:
        return {"sets": sets, "error": str(e)}
    return {"sets": sets, "trades": len(s["trades"]), **{k: s[k] for k in KEPT}}


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def sweep(
    cfg: Config,
    grid: list[list[str]],
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    **kw,
) -> list[dict]:
    """Run every combination in its own process (the clock is per process), best net P/L first."""
    for sets in grid:  # bad keys fail before anything runs; combinations the config refuses are reported
        try:
            apply_sets(cfg, sets)
        except ReplayError as e:
            if "unknown key" in str(e) or "write it as key=value" in str(e):
                raise
    workers = max(1, min(workers or usable_cores(), len(grid)))
    importlib.import_module("tinybot.exchange.bitvavo.clients")  # see _sweep_one
    jobs = [(str(cfg.path), sets, kw) for sets in grid]
    results = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for r in pool.map(_sweep_one, jobs):
            results.append(r)
            if progress:
                progress(1)
    ok = sorted((r for r in results if "error" not in r), key=lambda r: Decimal(r["pnl_eur"]), reverse=True)
    return ok + [r for r in results if "error" in r]
