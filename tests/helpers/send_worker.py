"""One `execute` in its own OS process, for the compare-and-set test (tests/trade/test_money_path.py).

    send_worker.py CONFIG PROPOSAL_ID SENDS_LOG [--hold DIR]

Every send_order call appends the clientOrderId to SENDS_LOG *before* the
paper exchange sees it (the paper exchange would refuse a reused id by
itself; the claim under test is that the executor never even tries).  With
--hold, the preflight's balance read writes DIR/in_preflight and waits for
DIR/release.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tinybot.base import config
from tinybot.store import db
from tinybot.trade import executor
from tinybot.exchange.paper import PaperExchange
from tinybot.exchange.static import StaticMarketData


def main() -> None:
    cfg_path, pid, log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    hold = Path(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--hold" else None
    cfg = config.load(cfg_path)
    conn = db.connect(cfg.db_path)
    ex = PaperExchange(cfg.db_path, StaticMarketData(cfg.paper.prices), starting_eur=cfg.paper.starting_eur)
    real_send, real_balances = ex.send_order, ex.balances

    def logged_send(market, side, **kw):
        with open(log, "a") as f:
            f.write(kw["client_order_id"] + "\n")
        return real_send(market, side, **kw)

    def held_balances():
        (hold / "in_preflight").write_text("1")
        while not (hold / "release").exists():
            time.sleep(0.01)
        return real_balances()

    ex.send_order = logged_send
    if hold is not None:
        ex.balances = held_balances
    print(json.dumps(executor.execute(conn, cfg, ex, pid).as_dict()))


if __name__ == "__main__":
    main()
