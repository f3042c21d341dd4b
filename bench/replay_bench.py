"""Replay speed (issue 15, item 8): ticks per second, and one replay tick against one idle live tick.

    python bench/replay_bench.py            # a year of hourly candles on two markets (target ≤ 15 s, issue 26)
    python bench/replay_bench.py --days 7   # quick

Both figures come from the same run: the replay of ``--days`` of synthetic hourly candles
(BTC-EUR, ETH-EUR, the rules advisor), and ``--live-ticks`` idle ticks of a live-mode scheduler
against the Bitvavo simulator over loopback HTTP with the same config.  ``bench_replay`` returns
the figures as a dict, for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIG = """\
advisors = ["rules"]
[risk]
allowlist = ["BTC-EUR", "ETH-EUR"]
[scheduler]
interval = "1h"
[rules]
candle_interval = "1h"
buy_eur = 6
"""
T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def write_candles(path: Path, days: int, seed: int = 11) -> None:
    rnd = random.Random(seed)
    lines = ["market,timestamp,open,high,low,close,volume"]
    for market, p, dec in (("BTC-EUR", 60000.0, 0), ("ETH-EUR", 3000.0, 1)):
        for i in range(days * 24):
            o = p
            c = o * (1 + 0.002 * math.sin(i / 40) + rnd.gauss(0, 0.006))
            h, lo = max(o, c) * (1 + abs(rnd.gauss(0, 0.002))), min(o, c) * (1 - abs(rnd.gauss(0, 0.002)))
            f = lambda x, dec=dec: f"{x:.{dec}f}"  # noqa: E731
            lines.append(f"{market},{int(T0.timestamp() * 1000) + i * 3_600_000},{f(o)},{f(h)},{f(lo)},{f(c)},1")
            p = float(f(c))
    path.write_text("\n".join(lines) + "\n")


def idle_live_tick_ms(work: Path, ticks: int) -> float:
    """Mean wall time of one live-mode tick with nothing to do, against the simulator over loopback HTTP."""
    from decimal import Decimal

    from tinybot.base import config
    from tinybot.store import db
    from tinybot.exchange import read_only
    from tinybot.trade.executor import trading_exchange
    from tinybot.store.liveness import slot_of
    from tinybot.loop import scheduler
    from tinybot.rehearse.replay.settings import scratch_config
    from tinybot.rehearse.replay.simulator import REPLAY_KEY, REPLAY_SECRET
    from tinybot.sim import SimAccount, Simulator

    sim = Simulator(
        accounts=[SimAccount(REPLAY_KEY, REPLAY_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal(25)})],
        interval="1h",
        history=200,
    )
    server = sim.serve()
    live = work / "live"
    live.mkdir()
    (live / "bot.toml").write_text(CONFIG)
    cfg = scratch_config(config.load(live / "bot.toml"), live, server.url, None)
    conn = db.open_db(cfg.db_path)
    try:
        # the loop's own pacing, not ccxt's throttle, is what live waits on: off on every key's instance
        # (the view key's and the trade key's lookups in read_only, the trade key's in trading)
        ro, trading = read_only(cfg, rate_limit=False), trading_exchange(cfg)
        trading.client.enableRateLimit = False
        sched = scheduler.Scheduler(cfg, conn, echo=lambda line: None, read_only=ro, trading=trading)
        slot = slot_of(datetime.now(timezone.utc), timedelta(minutes=1)) - timedelta(days=1)
        sched.tick(slot)  # warm-up: market table, candle cache
        started = time.perf_counter()
        for i in range(1, ticks + 1):
            sched.tick(slot + timedelta(minutes=i))
        return (time.perf_counter() - started) / ticks * 1000
    finally:
        conn.close()
        server.close()


def bench_replay(days: int = 365, live_ticks: int = 40) -> dict:
    from tinybot.analysis import candles
    from tinybot.base import config
    from tinybot.store import db
    from tinybot.rehearse.replay.plan import open_store
    from tinybot.rehearse.replay.run import replay

    with tempfile.TemporaryDirectory(prefix="tinybot-bench-replay-") as tmp:
        work = Path(tmp)
        (work / "bot.toml").write_text(CONFIG)
        write_candles(work / "c.csv", days)
        cfg = config.load(work / "bot.toml")
        conn = db.open_db(cfg.db_path)
        candles.import_csv(conn, work / "c.csv")
        conn.close()
        store = open_store(cfg.db_path)
        started = time.perf_counter()
        summary = replay(cfg, store)
        seconds = time.perf_counter() - started
        store.close()
        live_ms = idle_live_tick_ms(work, live_ticks)
    replay_ms = seconds / summary["ticks"] * 1000
    return {
        "days": days,
        "markets": 2,
        "ticks": summary["ticks"],
        "trades": len(summary["trades"]),
        "ticks_with_errors": summary["ticks_with_errors"],
        "seconds": round(seconds, 2),
        "ticks_per_second": round(summary["ticks"] / seconds, 1),
        "replay_tick_ms": round(replay_ms, 2),
        "idle_live_tick_ms": round(live_ms, 2),
        "ratio": round(replay_ms / live_ms, 3),
        "target_ratio": 1 / 20,
        "target_seconds_for_a_year": 15,
    }


def sweep_speedup(days: int = 30, combos: int = 4) -> dict:
    """A sweep of ``combos`` rules settings over ``days``, one process at a time and then --jobs at its default
    (every usable core): the wall-time ratio is what the cores buy."""
    from tinybot.analysis import candles
    from tinybot.base import config
    from tinybot.store import db
    from tinybot.rehearse.replay.sweep import expand_sets, sweep, usable_cores

    with tempfile.TemporaryDirectory(prefix="tinybot-bench-sweep-") as tmp:
        work = Path(tmp)
        (work / "bot.toml").write_text(CONFIG)
        write_candles(work / "c.csv", days)
        cfg = config.load(work / "bot.toml")
        conn = db.open_db(cfg.db_path)
        candles.import_csv(conn, work / "c.csv")
        conn.close()
        grid = expand_sets([f"rules.fast={','.join(str(f) for f in range(6, 6 + combos))}"])
        walls = {}
        for jobs in (1, None):
            started = time.perf_counter()
            runs = sweep(cfg, grid, workers=jobs)
            walls[jobs] = time.perf_counter() - started
            assert all("error" not in r for r in runs), runs
    return {
        "combos": combos,
        "days": days,
        "cores": usable_cores(),
        "one_job_s": round(walls[1], 2),
        "all_cores_s": round(walls[None], 2),
        "speedup": round(walls[1] / walls[None], 2),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--live-ticks", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = bench_replay(args.days, args.live_ticks)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"replay: {r['days']} days of hourly candles on {r['markets']} markets, {r['ticks']} ticks,"
            f" {r['trades']} trades in {r['seconds']} s ({r['ticks_per_second']} ticks/s,"
            f" {r['replay_tick_ms']} ms a tick; {r['ticks_with_errors']} ticks reported errors)"
        )
        print(
            f"idle live tick against the simulator over loopback HTTP: {r['idle_live_tick_ms']} ms;"
            f" replay tick / idle live tick = {r['ratio']} (target ≤ {r['target_ratio']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
