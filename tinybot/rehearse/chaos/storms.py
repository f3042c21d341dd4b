"""The retry storm (many processes, one proposal) and the cap race (many processes, one daily cap)."""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from tinybot.trade.proposals import Draft

from .bench import Bench
from .processes import env
from .settings import MARKETS, TRADE_KEY, Settings


# Many processes on few CPUs: a request can wait its turn for a second or
# more, so these two use Bitvavo's default window and a relaxed timeout.
STORM_SETTINGS = Settings(window="10s", timeout="5s", grace="4500ms")  # the grace floor at a 10 s window


def storm(root: Path, n: int, seed: int = 0) -> dict:
    """`n` processes execute ONE proposal at the same instant: exactly one order, exactly one `sent`."""
    bench = Bench(root, f"storm-{n}", seed, STORM_SETTINGS)
    try:
        pid = bench.propose(Draft("BTC-EUR", "buy", Decimal("6"), None))
        t0 = time.monotonic()
        results = bench.spawn([("execute", env(bench.cfg_path), {"proposal_id": pid})] * n)
        seconds = time.monotonic() - t0
        bench.wait_out_windows()
        bench.reconcile_here()
        f = bench.findings()
        sent = sum(1 for _, r in results if r and r["sent"])
        orders = len(bench.sim.orders(TRADE_KEY))
        return {
            "processes": n,
            "orders": orders,
            "sent": sent,
            "seconds": round(seconds, 2),
            "returned": dict(Counter(r["state"] if r else "no answer" for _, r in results)),
            "violations": f.violations + bench.jobs.errors,
            "ok": orders == 1 and sent == 1 and not f.violations and not bench.jobs.errors,
        }
    finally:
        bench.close()


def cap_race(root: Path, n: int, seed: int = 0, cap: str = "24", eur: str = "6") -> dict:
    """`n` processes each execute a DIFFERENT €`eur` buy at once under a daily cap of €`cap`.

    Cooldown and anti-flip are off and the account holds plenty, so only the
    daily cap stands between 50 buys and the exchange: at most cap / eur
    orders (buys by amountQuote: the cap counts exactly that, fee included).
    """
    settings = Settings(
        max_daily=cap,
        max_exposure="100000",
        max_trade="100",
        cooldown="0s",
        anti_flip="0s",
        window="10s",
        timeout="5s",
        grace="4500ms",
    )
    bench = Bench(root, f"cap-race-{n}", seed, settings, start={"EUR": Decimal("100000")})
    try:
        pids = [bench.propose(Draft(MARKETS[i % 2], "buy", Decimal(eur), None)) for i in range(n)]
        t0 = time.monotonic()
        results = bench.spawn([("execute", env(bench.cfg_path), {"proposal_id": p}) for p in pids])
        seconds = time.monotonic() - t0
        bench.wait_out_windows()
        bench.reconcile_here()
        f = bench.findings()
        orders = bench.sim.orders(TRADE_KEY)
        spent = sum((Decimal(o["amountQuote"]) for o in orders), Decimal(0))
        allowed = int(Decimal(cap) // Decimal(eur))
        return {
            "processes": n,
            "cap_eur": cap,
            "eur_each": eur,
            "allowed": allowed,
            "orders": len(orders),
            "spent_eur": str(spent),
            "seconds": round(seconds, 2),
            "returned": dict(Counter(r["state"] if r else "no answer" for _, r in results)),
            "violations": f.violations + bench.jobs.errors,
            "ok": len(orders) <= allowed and spent <= Decimal(cap) and not f.violations and not bench.jobs.errors,
        }
    finally:
        bench.close()
