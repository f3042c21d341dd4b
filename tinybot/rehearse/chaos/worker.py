"""What runs inside each chaos subprocess: one `execute`, or a reconcile loop.

These functions are the targets of processes started from a *forkserver*
that has already imported ccxt and tinybot (``import ccxt`` costs ~0.8 s of
CPU here; paying it per process would make a 2000-run soak take hours).
Each one is a real OS process: a crash point armed in its environment ends
it with ``os._exit`` on the spot, exactly as it would end ``tinybot execute``.
The parent learns what happened from the exit code and a small JSON file
written (atomically) only on a normal return.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# Preloaded by the forkserver, so every child starts with them imported.
import ccxt  # noqa: F401

from tinybot.base import config
from tinybot.store import db
from tinybot.trade import executor, reconcile
from tinybot.exchange import read_only
import tinybot.exchange.bitvavo.clients  # noqa: F401  (the adapter, preloaded)


def _write(out: str | None, data: dict) -> None:
    if out:
        tmp = Path(out + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, out)


def _setup(env: dict, config_path: str):
    os.environ.update(env)
    for name in ("TINYBOT_CRASH_AT", "TINYBOT_CRASH_AFTER"):
        if name not in env:
            os.environ.pop(name, None)
    cfg = config.load(config_path)
    return cfg, db.open_db(cfg.db_path)


def execute(config_path: str, proposal_id: int, env: dict, barrier, out: str | None) -> None:
    """`tinybot execute ID`, after waiting at the barrier with the other racers."""
    cfg, conn = _setup(env, config_path)
    exchange = executor.trading_exchange(cfg)  # the real factory: trade key, operatorId
    # ccxt's client-side throttle sleeps ~60 ms per request (~0.6 s per
    # execute); the simulator has no real limit to protect, the soak has runs.
    exchange.client.enableRateLimit = False
    if barrier is not None:
        barrier.wait(timeout=60)
    try:
        r = executor.execute(conn, cfg, exchange, proposal_id)
    except executor.NotExecutable as e:
        # after a restore the proposal may be rejected (quarantine) or gone (proposed after the backup):
        # `tinybot execute` says so and sends nothing
        _write(
            out,
            {
                "proposal_id": proposal_id,
                "state": "not_executable",
                "reason": str(e),
                "sent": False,
                "client_order_id": None,
            },
        )
        return
    _write(out, r.as_dict())


def reconcile_loop(config_path: str, env: dict, barrier, out: str | None, seconds: float, stop=None) -> None:
    """`tinybot reconcile`, repeated until `stop` is set or `seconds` pass (0: once), racing the executors."""
    cfg, conn = _setup(env, config_path)
    exchange = read_only(cfg, rate_limit=False)  # no client-side throttle on either key (see execute)
    if barrier is not None:
        barrier.wait(timeout=60)
    deadline = time.monotonic() + seconds
    passes, changes, errors = 0, 0, []
    while True:
        report = reconcile.reconcile(conn, cfg, exchange)
        passes += 1
        changes += len(report.changes)
        errors += report.errors
        if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            break
        time.sleep(0.05)
    _write(out, {"passes": passes, "changes": changes, "errors": errors[:5]})
