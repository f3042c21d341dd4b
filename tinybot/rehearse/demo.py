"""`tinybot demo`: the whole bot, live mode, against the Bitvavo simulator on loopback.

Nothing leaves the machine and no real key is involved:

* the simulator (``tinybot.sim``) runs in this process on a free loopback port,
  with a €25 account and two throwaway keys (view-only and trade) on it;
* a fresh temporary data dir gets its own bot.toml (``mode = "live"``,
  ``[exchange] url`` = the simulator, an ``operator_id``) and database;
* the real scheduler runs with short ticks, and before every tick the
  simulator's price path moves ``CANDLES_PER_TICK`` one-minute candles on,
  so an hour of market happens in under a minute;
* bot and simulator share a simulated clock (``tinybot.base.clock.Simulated``)
  that moves only when the loop sleeps between ticks, and the requests are
  signed on it: a tick's decisions (cooldown, anti-flip, expiry) do not
  depend on how busy the machine is, so the same seed prints the same
  summary.  The loop still waits in real time, so the show takes as long as
  it says;
* advisors: ``rules`` (SMA 3/8 crossover on 1m candles, €6 buys) on both
  markets and ``dca`` (€5 of BTC every 8 s); guards with short windows so
  cooldown, anti-flip and the caps all get to say no;
* at the end, a summary computed from the database: proposals, orders,
  fills, fees, P/L, and guard blocks by reason.

The keys are put in this process's environment for the run (and the previous
values restored after), so a real key you may have exported is never sent,
not even to the simulator.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Callable

from ..base import clock

CANDLES_PER_TICK = 2
TICK = "2s"
MARKETS = ("BTC-EUR", "ETH-EUR")
READ_KEY, READ_SECRET = "demo-read-key", "demo-read-secret"
TRADE_KEY, TRADE_SECRET = "demo-trade-key", "demo-trade-secret"
OPERATOR_ID = 1001
STARTING_EUR = Decimal("25")

DEMO_TOML = """\
# Written by `tinybot demo`: live mode against the local Bitvavo simulator.
mode = "live"
advisors = ["rules", "dca"]

[risk]
allowlist = ["BTC-EUR", "ETH-EUR"]
max_trade_eur = 10
max_daily_eur = 25
max_exposure_eur = 20
cooldown = "6s"
anti_flip = "12s"
proposal_ttl = "10s"

[exchange]
url = "{url}"
operator_id = {operator_id}
access_window = "10s"
timeout = "3s"
reconcile_grace = "5s"

[scheduler]
interval = "{tick}"
approval = "auto"
log_file = "tinybot.log"

[rules]
markets = ["BTC-EUR", "ETH-EUR"]
candle_interval = "1m"
fast = 2
slow = 5
buy_eur = 6

[dca]
market = "BTC-EUR"
buy_eur = 6
every = "8s"
"""


@dataclass
class Summary:
    proposals: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    orders: int = 0  # executions that reached the exchange (or may have)
    filled: int = 0
    fills: int = 0
    fees_eur: Decimal = Decimal(0)
    bought_eur: Decimal = Decimal(0)
    sold_eur: Decimal = Decimal(0)
    realised_eur: Decimal = Decimal(0)
    unrealised_eur: Decimal = Decimal(0)
    blocks: dict[str, int] = field(default_factory=dict)  # reason code → guard decisions that blocked

    @property
    def pnl_eur(self) -> Decimal:
        return self.realised_eur + self.unrealised_eur

    def lines(self) -> list[str]:
        src = ", ".join(f"{k} {v}" for k, v in sorted(self.by_source.items()))
        blocks = ", ".join(f"{k} {v}" for k, v in sorted(self.blocks.items(), key=lambda kv: (-kv[1], kv[0])))
        return [
            f"  proposals: {self.proposals}" + (f" ({src})" if src else ""),
            f"  orders sent: {self.orders} (filled {self.filled})",
            f"  fills: {self.fills}, fees €{self.fees_eur:.2f}",
            f"  bought €{self.bought_eur:.2f}, sold €{self.sold_eur:.2f}",
            f"  P/L: realised €{self.realised_eur:+.2f}, unrealised €{self.unrealised_eur:+.2f} at the last prices,"
            f" total €{self.pnl_eur:+.2f}",
            f"  guard blocks by reason: {blocks or 'none'}",
        ]


def summarize(conn: sqlite3.Connection, last_prices: dict[str, Decimal]) -> Summary:
    """Everything from the database, the money from the book (tinybot.trade.book); ``last_prices`` only marks open
    positions to market."""
    from ..trade.book import steps

    s = Summary()
    for r in conn.execute("SELECT source, COUNT(*) AS n FROM proposals GROUP BY source"):
        s.by_source[r["source"]] = r["n"]
    s.proposals = sum(s.by_source.values())
    s.orders = conn.execute("SELECT COUNT(*) FROM trade_executions WHERE submitting_at IS NOT NULL").fetchone()[0]
    s.filled = conn.execute("SELECT COUNT(*) FROM trade_executions WHERE state = 'filled'").fetchone()[0]
    w = steps.walk(conn)
    for step in w.steps:
        s.fills += 1
        if step.fill.side == "buy":
            s.bought_eur += step.fill.quote
        else:
            s.sold_eur += step.fill.quote
        s.fees_eur += step.fill.fee_eur
    for _, market, pos in w.lines():
        s.realised_eur += pos.realised_eur
        if pos.base > 0 and market in last_prices:
            s.unrealised_eur += pos.unrealised(last_prices[market])
    for r in conn.execute(
        "SELECT reason_code, COUNT(*) AS n FROM guard_decisions WHERE verdict = 'block' GROUP BY reason_code"
    ):
        s.blocks[r["reason_code"]] = r["n"]
    return s


def _sim_accounts():
    from ..sim import SimAccount

    balances = {"EUR": STARTING_EUR}
    if "account" in getattr(SimAccount, "__dataclass_fields__", {}):
        # two keys of one account, as a careful user sets Bitvavo up
        return (
            [
                SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), balances, account="demo"),
                SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {}, account="demo"),
            ],
            READ_KEY,
            READ_SECRET,
        )
    # a simulator without shared accounts: the reads use the trade key too (it is a throwaway key)
    return [SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), balances)], TRADE_KEY, TRADE_SECRET


def run_demo(*, seconds: int = 40, seed: int = 7, keep: bool = False, echo: Callable[[str], None] = print) -> Summary:
    import requests

    from ..base import config, secrets
    from ..store import db
    from ..exchange import read_only
    from ..trade.executor import trading_exchange
    from ..store.liveness import slot_of
    from ..loop import scheduler
    from ..sim import Simulator

    data_dir = Path(tempfile.mkdtemp(prefix="tinybot-demo-"))
    accounts, read_key, read_secret = _sim_accounts()
    # the demo's time starts on a tick boundary (else the first slot, and so the number of ticks, would depend
    # on when the demo was started) and moves on only by the loop's sleeps (see the module docstring)
    sim_clock = clock.Simulated(slot_of(clock.now(), clock.parse_duration(TICK)))
    sim = Simulator(accounts=accounts, markets=MARKETS, seed=seed, interval="1m", clock=sim_clock.seconds)
    server = sim.serve(host="127.0.0.1", port=0)
    saved_env = {k: os.environ.get(k) for k in secrets.SECRET_NAMES}
    conn = None
    try:
        for k in secrets.SECRET_NAMES:
            os.environ.pop(k, None)
        os.environ.update(
            {
                "TINYBOT_READ_KEY": read_key,
                "TINYBOT_READ_SECRET": read_secret,
                "TINYBOT_TRADE_KEY": TRADE_KEY,
                "TINYBOT_TRADE_SECRET": TRADE_SECRET,
            }
        )
        path = data_dir / "bot.toml"
        path.write_text(DEMO_TOML.format(url=server.url, operator_id=OPERATOR_ID, tick=TICK), encoding="utf-8")
        cfg = config.load(path)
        conn = db.open_db(cfg.db_path)

        echo(
            f"tinybot demo: Bitvavo simulator on {server.url} (seed {seed}), €{STARTING_EUR} account, "
            f"live mode with throwaway keys; data in {data_dir}"
        )
        echo(
            f"  advisors: rules (SMA{cfg.rules.fast}/{cfg.rules.slow} crossover on closed 1m candles, €"
            f"{cfg.rules.buy_eur} buys) on {', '.join(MARKETS)}; dca €{cfg.dca.buy_eur} of {cfg.dca.market}"
            f" every {clock.format_duration(cfg.dca.every)}"
        )
        echo(
            f"  guards: cooldown {clock.format_duration(cfg.risk.cooldown)}, anti-flip "
            f"{clock.format_duration(cfg.risk.anti_flip)}, max €{cfg.risk.max_trade_eur}/trade, "
            f"€{cfg.risk.max_daily_eur}/day, €{cfg.risk.max_exposure_eur} exposure"
        )
        echo(
            f"  running the scheduler for {seconds}s, a tick every {TICK}; the market moves "
            f"{CANDLES_PER_TICK} one-minute candles per tick (Ctrl-C stops early)"
        )
        echo("")

        def before_tick(slot):
            sim.advance(CANDLES_PER_TICK)

        def sleep(s: float) -> None:
            time.sleep(s)  # the show runs in real time; the bot's clock moves by exactly what the loop slept
            sim_clock.advance(s)

        started = time.monotonic()
        with clock.simulated(sim_clock):
            ro, trading = read_only(cfg), trading_exchange(cfg)
            for client in (ro, trading):  # over loopback HTTP, signed on the simulated clock
                client.route_requests(requests.Session(), milliseconds=sim_clock.ms)
            # no candle cache: the simulator rewrites "closed" candles as it fast-forwards its price path
            sched = scheduler.Scheduler(
                cfg,
                conn,
                echo=lambda line: echo("  " + line),
                before_tick=before_tick,
                cache_candles=False,
                read_only=ro,
                trading=trading,
            )
            sched.run(until=sim_clock.now() + timedelta(seconds=seconds), sleep=sleep)
        elapsed = time.monotonic() - started

        last = {m: sim.price(m) for m in MARKETS}
        summary = summarize(conn, last)
        bal = sim.balance(TRADE_KEY)
        value = bal.get("EUR", Decimal(0)) + sum(
            (bal.get(m.split("-")[0], Decimal(0)) * p for m, p in last.items()), Decimal(0)
        )
        echo("")
        echo(f"Summary after {elapsed:.0f}s (from {cfg.db_path.name}):")
        for line in summary.lines():
            echo(line)
        echo(
            f"  account on the simulator: €{value:.2f} at the last prices (started with €{STARTING_EUR});"
            f" last prices " + ", ".join(f"{m} {p}" for m, p in last.items())
        )
        if keep:
            echo(f"Kept the demo's data dir: {data_dir}")
            echo(f"  look around: tinybot --config {path} status   (proposals, executions, why N, history)")
        return summary
    finally:
        if conn is not None:
            conn.close()
        server.close()
        sim.close()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)
