"""Crash-consistency and fault-injection harness: numbers, not promises.

``run(runs, seed)`` drives tinybot, in live mode, against the Bitvavo
simulator through a seeded random sequence of *runs*.  One run is one
proposal and everything that can go wrong around it:

* 1–3 OS processes executing the proposal at the same instant (a barrier),
  sometimes with a reconcile loop racing them;
* a crash point armed in one of them (``TINYBOT_CRASH_AT``: the process
  dies with ``os._exit`` on the spot), and sometimes one armed in the
  reconcile that follows;
* a simulator fault (timeouts before/after accept, resets, 5xx, 101, 109,
  110, garbage 200, delays) on the order request or on one of the reads
  around it;
* then a restart (a clean ``execute`` of the same proposal) when something
  crashed or stopped early, and a reconcile;
* sometimes a backup (``tinybot.backup.make``) taken at some moment of the
  run — before the proposal, before its execution, or right after the first
  attempt (often while its execution is ``claimed`` or ``submitting``) — and,
  once the run has sent and filled what it would, that backup restored
  (``tinybot.restore.restore``: kill switch off, in-flight rows quarantined),
  trading resumed, the proposal executed again and reconciled, as a person
  running the README's rollback drill would.

Each batch's simulator finds closed orders by clientOrderId or not
(``find_closed_by_client_id``; Bitvavo documents neither): by default the
batches alternate, the tour runs without it (the hard case).

A restore rolls back the database, never the world.  Each batch's database
is first made as a tinybot of an older schema made it (the batches go
through every shipped schema in turn), and that first backup is one of the
backups a run may restore; some runs are a DCA advisor's tick on a market of
its own, some make an LLM call; after every restore the DCA advisor is asked
again.  Two *aged* batches (closed-order lookup on, then off) run in this
process on a clock freezegun moves, so backups are restored one and two days
after they were taken, a backup of every shipped schema among them.

Runs are grouped in *batches*: one simulator account and one fresh bot
database per batch.  At the end of a batch the harness waits until every
request's access window has passed, reconciles once more, and checks the
invariants of ``tinybot.chaos.invariants`` against the simulator's own
record.  Every batch has its own seed (derived from the run's seed and the
batch number), so ``--seed S --only-batch B`` replays one batch.

The processes are forked from a forkserver that has already imported
ccxt and tinybot: ``import ccxt`` costs ~0.8 s of CPU, which per process
would turn the 2000-run soak into hours.  They are real processes all the
same: separate memory, separate SQLite connections, killed without cleanup.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import re
import shutil
import sqlite3
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from tinybot import backup, clock, config, crash, db, killswitch, ledger, proposals, reconcile, restore
from tinybot.proposals import Draft

from .invariants import Findings, check

TRADE_KEY, TRADE_SECRET = "chaos-trade-key", "chaos-trade-secret"
READ_KEY, READ_SECRET = "chaos-read-key", "chaos-read-secret"
MARKETS = ("BTC-EUR", "ETH-EUR")  # the random runs' markets
# DCA's own market: a buy of the random runs on its market would count as its period's buy (a buy on its
# market in any other book does), and it would hardly ever buy
DCA_MARKET = "SOL-EUR"
SIM_MARKETS = MARKETS + (DCA_MARKET,)
SCHEMAS = tuple(m.name for m in db.migrations())  # every shipped schema, a new migration included by itself
START = {"EUR": Decimal("100")}
EXEC_POINTS = ("after_claim", "after_submitting_commit", "after_send_before_reply", "after_reply_before_record")
RECONCILE_POINTS = ("mid_reconcile", "mid_fill_sync")
FAULT_KINDS = (
    "delay",
    "timeout_after_accept",
    "timeout_before_accept",
    "html_5xx",
    "error_101",
    "error_109",
    "rate_limit_110",
    "garbage_200",
    "reset",
)
# Not a simulator fault but a pair of them: the reads send_order makes after
# the `submitting` commit (ccxt's load_markets: /markets and /assets) answer
# slowly but within the client timeout, so the order is signed — and can
# land — well after submitting_at.  Always with a reconcile racing it.
SLOW_PREPARE = "slow_prepare"
SCENARIOS = FAULT_KINDS + (SLOW_PREPARE,)
ACCEPT_CHOOSABLE = ("error_101", "error_109", "garbage_200", "reset")
# where a fault lands: mostly the order itself, else a read before or after it
FAULT_ON = ("create_order",) * 6 + ("get_order", "orders", "balance", "markets", "ticker")
CRASH_EXIT = 137
# The moments a backup is taken at; it is restored at the end of the same run.  "batch_start": the backup
# taken when the batch's database was made, at an older schema (restored at the end of the run that drew it).
BACKUP_MOMENTS = ("before_propose", "before_execute", "after_first_attempt", "batch_start")
# The aged batches' restores, of backups taken a day or more before (docs/CHAOS.md).
AGED_MOMENTS = ("aged_two_days", "aged_claimed", "aged_dca", "aged_schema")
RESTORE_SHARE = 0.12  # of the random runs
DCA_SHARE = 0.1  # of the random runs: a DCA advisor's tick instead of a random proposal
DCA_RESTORE_SHARE = 0.5  # of those: with a backup and a restore
LLM_SHARE = 0.3  # of the random runs: an LLM call (spend a restore must not forget)
IN_DOUBT = ("claimed", "submitting", "unknown")
# Buy sizes: at least the smallest sellable buy (sizing.min_sellable_buy_eur: €5.52 at a 0.25 % fee and a
# 10 % margin); €12 is over max_trade_eur, so the caps still get buys to refuse.
BUY_EUR = ("6", "6", "7", "7.50", "10", "12")

# Small windows keep a batch short: a request older than access_window is
# refused by the exchange (304), so reconcile may call an absent order failed
# after access_window + reconcile_grace.  The client timeout must be shorter
# than the hanging faults (TIMEOUT_FAULT_DELAY) so those are real timeouts.
CONFIG = """\
mode = "live"
[risk]
allowlist = ["BTC-EUR", "ETH-EUR", "SOL-EUR"]
max_trade_eur = {max_trade}
max_daily_eur = {max_daily}
max_exposure_eur = {max_exposure}
cooldown = "{cooldown}"
anti_flip = "{anti_flip}"
proposal_ttl = "30m"
[exchange]
operator_id = 1
url = "{url}"
timeout = "{timeout}"
access_window = "{window}"
reconcile_grace = "{grace}"
[dca]
market = "SOL-EUR"
buy_eur = 6
every = "{dca_every}"
[llm]
daily_budget_eur = 10
monthly_budget_eur = 100
"""
TIMEOUT_FAULT_DELAY = 1.3


@dataclass(frozen=True)
class Settings:
    max_trade: str = "10"
    max_daily: str = "80"
    max_exposure: str = "60"
    cooldown: str = "300ms"
    anti_flip: str = "600ms"
    window: str = "1s"
    # Since B1's fix an order is signed by submitting_at + window at the latest
    # and reconcile waits 2 × window + grace; the grace covers the moment
    # between the send-deadline check and ccxt's signature.  Since issue 11 it
    # may not be shorter than a quarter window + 2 s (config refuses it):
    # 2.25 s at the 1 s window, so an unresolved request waits 4.25 s.
    grace: str = "2250ms"
    timeout: str = "1s"
    dca_every: str = "1h"  # longer than a batch: DCA buys once per batch, and never twice (invariant 8)


@dataclass
class Report:
    seed: int
    runs: int = 0
    batches: int = 0
    proposals: int = 0
    processes: int = 0
    crashes: Counter = field(default_factory=Counter)  # point -> processes it killed
    crashes_armed: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)  # kind -> requests it hit
    faults_armed: Counter = field(default_factory=Counter)
    states: Counter = field(default_factory=Counter)  # final execution states
    orders: int = 0
    fills: int = 0
    duplicates: int = 0
    lost: int = 0
    late: int = 0
    surprises: int = 0  # orders a restore made the DB forget, booked by reconcile's surprise scan
    restores: Counter = field(default_factory=Counter)  # backup moment -> restores done
    schemas: Counter = field(default_factory=Counter)  # schema of the backup restored -> restores (older ones)
    dca_buys: int = 0  # DCA orders on the exchange (at most one per period: invariant 8)
    dca_ticks: int = 0  # times the DCA advisor was asked (in DCA runs and after every restore)
    llm_calls: int = 0  # LLM calls recorded (each restore compares the spend before and after it)
    quarantined: Counter = field(default_factory=Counter)  # state in the backup -> rows the restore made unknown
    lookup: Counter = field(default_factory=Counter)  # "on"/"off" -> batches with the closed-order lookup so
    violations: list[str] = field(default_factory=list)
    child_errors: list[str] = field(default_factory=list)
    failed_batches: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.violations or self.child_errors)

    def add(self, batch: int, f: Findings) -> None:
        self.orders += f.orders
        self.fills += f.fills
        self.duplicates += f.duplicates
        self.lost += f.lost
        self.late += f.late
        self.surprises += f.surprises
        self.dca_buys += f.dca_buys
        self.violations += [f"batch {batch}: {v}" for v in f.violations]
        if f.violations or f.duplicates or f.lost:
            self.failed_batches.append(batch)

    def as_dict(self) -> dict:
        return {
            "seed": self.seed,
            "runs": self.runs,
            "batches": self.batches,
            "proposals": self.proposals,
            "processes": self.processes,
            "crashes": dict(self.crashes),
            "crashes_armed": dict(self.crashes_armed),
            "faults": dict(self.faults),
            "faults_armed": dict(self.faults_armed),
            "states": dict(self.states),
            "orders": self.orders,
            "fills": self.fills,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "violation_kinds": dict(Counter(_kind(v) for v in self.violations)),
            "late_orders": self.late,
            "surprises_booked": self.surprises,
            "restores": dict(self.restores),
            "restored_schemas": dict(self.schemas),
            "dca_buys": self.dca_buys,
            "dca_ticks": self.dca_ticks,
            "llm_calls": self.llm_calls,
            "quarantined": dict(self.quarantined),
            "closed_lookup_batches": dict(self.lookup),
            "violations": self.violations,
            "child_errors": self.child_errors,
            "failed_batches": self.failed_batches,
            "wall_seconds": round(self.wall_seconds, 1),
            "ok": self.ok,
        }

    def text(self, replay: str) -> str:
        def counts(c: Counter, armed: Counter, names) -> str:
            return "\n".join(f"  {n:<27} {c.get(n, 0):>6} of {armed.get(n, 0):>6} armed" for n in names)

        lines = [
            f"runs {self.runs} in {self.batches} batches, {self.proposals} proposals, {self.processes} processes,"
            f" {self.wall_seconds:.0f}s",
            "crashes per point (processes killed):",
            counts(self.crashes, self.crashes_armed, crash.POINTS),
            "faults per kind (runs where it fired):",
            counts(self.faults, self.faults_armed, SCENARIOS),
            "backup and restore (restores per backup moment):",
            "\n".join(f"  {n:<27} {self.restores.get(n, 0):>6}" for n in BACKUP_MOMENTS + AGED_MOMENTS),
            "backups of an older schema restored: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.schemas.items())) or "none"),
            f"DCA: asked {self.dca_ticks} times, {self.dca_buys} buys; LLM calls recorded: {self.llm_calls}",
            "rows in flight in the backups, made unknown by restore: "
            + (", ".join(f"{k} {v}" for k, v in sorted(self.quarantined.items())) or "none"),
            "batches by the simulator's closed-order lookup: "
            + ", ".join(f"{k} {self.lookup.get(k, 0)}" for k in ("on", "off")),
            "final execution states: " + ", ".join(f"{k} {v}" for k, v in sorted(self.states.items())),
            f"exchange orders {self.orders}, fills {self.fills}",
            f"orders made after a backup, booked by reconcile after the restore: {self.surprises}",
            f"orders that landed after reconcile could have called them absent: {self.late}",
            f"duplicates {self.duplicates}",
            f"lost {self.lost}",
            f"invariant violations {len(self.violations)}",
            f"child errors {len(self.child_errors)}",
        ]
        kinds = Counter(_kind(v) for v in self.violations)
        for kind, n in kinds.most_common():
            lines.append(f"  {n:>6} × {kind}")
        for v in (self.violations + self.child_errors)[:20]:
            lines.append(f"  ! {v}")
        if not self.ok:
            lines.append(f"databases kept in {self.workdir}")
        lines.append(
            ("OK" if self.ok else "FAILED")
            + f" — replay: {replay}"
            + (
                f" (failing batches: {', '.join(map(str, self.failed_batches[:10]))}; add --only-batch B)"
                if self.failed_batches
                else ""
            )
        )
        return "\n".join(lines)


def _kind(violation: str) -> str:
    """'batch 3: (4) cooldown: order …' → '(4) cooldown' (+ ', after a restore' when the note says so)."""
    from .invariants import RESTORED, RESTORED_CLAIMED

    text = violation.split(": ", 1)[-1] if violation.startswith("batch ") else violation
    kind = text.split(":")[0] if text.startswith("(") else text[:40]
    kind = "(4) the daily cap's count" if kind.startswith("(4) the daily cap counts") else kind
    kind = kind[:3] + re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|€?\b\d+(\.\d+)?\b", "#", kind[3:])  # ids, amounts
    if violation.endswith(RESTORED):
        kind += ", the earlier order booked after a restore"
    elif violation.endswith(RESTORED_CLAIMED):
        kind += ", short by orders found for rows restored as claimed"
    return kind


_ctx = None


def processes():
    """The forkserver context; its server imports ccxt and tinybot once."""
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(["tinybot.chaos.worker"])
    return _ctx


def env(cfg_path: Path, crash_at: str | None = None, crash_after: int = 0) -> dict:
    e = {
        "TINYBOT_CONFIG": str(cfg_path),
        "TINYBOT_TRADE_KEY": TRADE_KEY,
        "TINYBOT_TRADE_SECRET": TRADE_SECRET,
        "TINYBOT_READ_KEY": READ_KEY,
        "TINYBOT_READ_SECRET": READ_SECRET,
    }
    if crash_at:
        e |= {"TINYBOT_CRASH_AT": crash_at, "TINYBOT_CRASH_AFTER": str(crash_after)}
    return e


class Bench:
    """One simulator account and one bot database: the world a batch (or a storm) runs in."""

    def __init__(
        self,
        root: Path,
        name: str,
        seed: int,
        settings: Settings = Settings(),
        start: dict[str, Decimal] = START,
        closed_lookup: bool = True,
        schema: str | None = None,
        in_process: bool = False,
        pause=time.sleep,
    ):
        """``schema``: make the database as a tinybot of that schema did, and back it up first
        (``start_backup``).  ``in_process``: run every job in this process (the aged batches, whose
        clock freezegun moves; ``pause`` then moves it instead of sleeping)."""
        from tinybot.sim import SimAccount, Simulator

        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.start = dict(start)
        self.closed_lookup = closed_lookup
        self.sim = Simulator(
            accounts=[
                SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), dict(start), account="me"),
                SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {}, account="me"),
            ],
            markets=SIM_MARKETS,
            seed=seed,
            rate_limit=10**9,
            find_closed_by_client_id=closed_lookup,
        )
        self.server = self.sim.serve()
        self.cfg_path = self.dir / "bot.toml"
        self.cfg_path.write_text(CONFIG.format(url=self.server.url, **settings.__dict__), encoding="utf-8")
        # the simulator's throwaway keys, where tinybot reads secrets from (the children also get them in env())
        secrets = self.dir / "secrets.env"
        secrets.write_text("".join(f"{k}={v}\n" for k, v in env(self.cfg_path).items() if k != "TINYBOT_CONFIG"))
        secrets.chmod(0o600)
        self.cfg = config.load(self.cfg_path)
        self.in_process, self.pause = in_process, pause
        self.start_backup = self.schema_backup(schema) if schema else None
        self.conn = db.open_db(self.cfg.db_path)
        self._ro = self._trading = None
        self._n = 0
        self.processes = 0
        self.errors: list[str] = []
        self.problems: list[str] = []  # invariant violations seen during the batch (after a restore)
        # A restore makes the DB forget rows and proposals, and proposal ids are reused after it: the
        # harness numbers proposals itself and keeps every execution row as it was before each restore.
        self.keys: dict[int, int] = {}  # DB proposal id -> the harness's proposal number
        self.history: dict[str, dict] = {}  # clientOrderId -> execution row (+ proposal_key) before a restore
        self._proposals = 0
        self.shown: dict[int, int] = {}  # every proposal id ever handed out -> the harness's number (never pruned)
        self.dca_ticks = self.llm_calls = 0

    def read_only(self):
        """The reconcile client in this process, as `read_only(cfg)` builds it: the read key for data,
        the trade key (GET only) for order lookups."""
        from tinybot.exchange.bitvavo import clients, endpoint

        endpoint._backoff_until.clear()  # a 110 seen by a crashed run must not outlive it (a restart forgets it too)
        if self._ro is None:
            self._ro = clients.BitvavoReadOnly(
                self.cfg, READ_KEY, READ_SECRET, lookup_key=TRADE_KEY, lookup_secret=TRADE_SECRET, rate_limit=False
            )
        return self._ro

    def propose(self, draft: Draft, source: str = "chaos") -> int:
        pid = proposals.create(self.conn, draft, source=source, ttl=timedelta(minutes=30), approve=True)
        self._proposals += 1
        self.keys[pid] = self._proposals
        if pid in self.shown:  # invariant 6: an id the owner saw (a Telegram button) now names another proposal
            self.problems.append(
                f"(6) proposal id {pid} was handed out again: it named the harness's proposal"
                f" #{self.shown[pid]} and now names #{self._proposals}"
            )
        self.shown[pid] = self._proposals
        return pid

    def take_backup(self, label: str) -> backup.Backup:
        return backup.make(self.cfg, label=label, keep=1000)

    def schema_backup(self, schema: str) -> backup.Backup:
        """A backup of a database as a tinybot of ``schema`` made it, when it was new (tinybot.db.migrate upto)."""
        older = replace(self.cfg, db=f"schema-{schema}.db")
        conn = db.connect(older.db_path)
        try:
            db.migrate(conn, upto=schema)
        finally:
            conn.close()
        try:
            return backup.make(older, label=f"chaos-schema-{schema}", keep=1000)
        finally:
            for side in ("", "-wal", "-shm"):
                Path(f"{older.db_path}{side}").unlink(missing_ok=True)

    def llm_call(self) -> None:
        """What the llm advisor's call leaves in the budget: a reservation settled to its usage."""
        from tinybot import llm_budget

        r = llm_budget.reserve(self.conn, self.cfg.llm, prompt_tokens_est=2000, tz=self.cfg.tz)
        llm_budget.settle(self.conn, r.id, self.cfg.llm, input_tokens=1500, output_tokens=200)
        self.llm_calls += 1

    def llm_spend(self) -> tuple[Decimal, Decimal]:
        from tinybot import llm_budget

        day, month = llm_budget.period_keys(clock.now(), self.cfg.tz)
        return llm_budget.committed_eur(self.conn, day=day), llm_budget.committed_eur(self.conn, month=month)

    def dca_draft(self) -> Draft | None:
        """What the DCA advisor proposes now, from a snapshot as a tick builds it (None: its period is bought)."""
        from tinybot.advisors import build_snapshot, dca

        drafts = dca.advise(build_snapshot(self.conn, self.cfg, self.read_only(), sources=("dca",)), self.cfg)
        return drafts[0] if drafts else None

    def dca_tick(self) -> int | None:
        """The DCA advisor's turn in a tick: its draft proposed and executed when it has one; → the proposal."""
        self.dca_ticks += 1
        draft = self.dca_draft()
        if draft is None:
            return None
        pid = self.propose(draft, source="dca")
        self.spawn([("execute", env(self.cfg_path), {"proposal_id": pid})])
        return pid

    def restore(self, saved: backup.Backup) -> Counter:
        """`tinybot backup --restore`: → the states of the rows the backup had in flight."""
        for r in self.conn.execute(
            "SELECT e.*, p.source AS source FROM trade_executions e JOIN proposals p ON p.id = e.proposal_id"
        ):
            row = dict(r) | {"proposal_key": self.keys[r["proposal_id"]]}
            # what an earlier restore erased (a submitting_at the backup never had) stays known
            for k, v in self.history.get(r["client_order_id"], {}).items():
                if row.get(k) is None:
                    row[k] = v
            self.history[r["client_order_id"]] = row
        src = sqlite3.connect(f"file:{saved.path}?mode=ro", uri=True)
        try:
            in_doubt = Counter(
                r[0]
                for r in src.execute(
                    "SELECT state FROM trade_executions WHERE state IN (%s)" % ",".join("?" * len(IN_DOUBT)), IN_DOUBT
                )
            )
            kept = {r[0] for r in src.execute("SELECT id FROM proposals")}
        finally:
            src.close()
        spent = self.llm_spend()
        self.conn.close()
        restore.restore(self.cfg, str(saved.path))
        self.conn = db.open_db(self.cfg.db_path)
        after = self.llm_spend()
        if after[0] < spent[0] or after[1] < spent[1]:  # invariant 7: the provider billed those calls
            self.problems.append(
                f"(7) LLM spend went down across a restore: €{after[0]} today and €{after[1]} this month after"
                f" restoring {saved.path.name}, €{spent[0]} and €{spent[1]} before it"
            )
        self.keys = {p: k for p, k in self.keys.items() if p in kept}  # proposed after the backup: gone
        left = self.conn.execute(
            "SELECT id, state FROM trade_executions WHERE state IN ('claimed', 'submitting')"
        ).fetchall()
        if left:
            self.problems.append(
                "(1) after the restore, executions "
                + ", ".join(f"{r['id']} ({r['state']})" for r in left)
                + " may still be sent: not quarantined"
            )
        if killswitch.state(self.conn)["trading_enabled"]:
            self.problems.append("(1) the restored database trades on its own: the kill switch is not on")
        return in_doubt

    def resume(self) -> None:
        killswitch.set_enabled(self.conn, True, "chaos: checked after the restore", by="chaos")

    def spawn(self, jobs: list[tuple[str, dict, dict]], timeout: float = 120) -> list[tuple[int, dict | None]]:
        """Start one process per job, released together by a barrier; → [(exit code, result)].

        Reconcile jobs loop until every execute job has ended (at most their
        ``seconds``), so they race the executors for the whole of their run.
        """
        if self.in_process:
            return [self._here(kind, extra) for kind, _, extra in jobs]
        from . import worker

        ctx = processes()
        bar = ctx.Barrier(len(jobs)) if len(jobs) > 1 else None
        stop = ctx.Event()
        started = []
        for kind, e, extra in jobs:
            self._n += 1
            out = str(self.dir / f"p{self._n}.json")
            if kind == "execute":
                p = ctx.Process(target=worker.execute, args=(str(self.cfg_path), extra["proposal_id"], e, bar, out))
            else:
                p = ctx.Process(
                    target=worker.reconcile_loop, args=(str(self.cfg_path), e, bar, out, extra.get("seconds", 0), stop)
                )
            p.start()
            started.append((kind, p, out))
        self.processes += len(started)
        codes = {}
        for kind in ("execute", "reconcile"):
            for k, p, _ in started:
                if k == kind:
                    p.join(timeout)
                    if p.exitcode is None:
                        p.kill()
                        p.join()
                        self.errors.append(f"{k} process {p.pid} hung for {timeout}s and was killed")
                    codes[p.pid] = p.exitcode
            stop.set()
        results = []
        for kind, p, out in started:
            path = Path(out)
            data = json.loads(path.read_text()) if path.exists() else None
            if p.exitcode not in (0, CRASH_EXIT):
                self.errors.append(f"{kind} process {p.pid} exited {p.exitcode} (its traceback is on stderr)")
            results.append((p.exitcode, data))
        return results

    def _here(self, kind: str, extra: dict) -> tuple[int, dict]:
        """One job in this process (an aged batch: no crash point, no racer)."""
        from tinybot import executor

        if kind != "execute":
            self.reconcile_here()
            return 0, {}
        if self._trading is None:  # the one factory, as `tinybot execute` builds it (its keys: the bench's file)
            self._trading = executor.trading_exchange(self.cfg)
            self._trading.client.enableRateLimit = False  # its throttle waits for a clock freezegun holds still
        try:
            return 0, executor.execute(self.conn, self.cfg, self._trading, extra["proposal_id"]).as_dict()
        except executor.NotExecutable as e:  # as worker.execute answers it
            return 0, {"state": "not_executable", "reason": str(e), "sent": False, "client_order_id": None}

    def reconcile_here(self):
        return reconcile.reconcile(self.conn, self.cfg, self.read_only())

    def wait_out_windows(self) -> None:
        """Sleep until reconcile may call every unresolved request absent (``reconcile.absent_after``)."""
        rows = self.conn.execute("SELECT * FROM trade_executions WHERE state IN ('submitting', 'unknown')").fetchall()
        if rows:
            deadline = max(reconcile.absent_after(r, self.cfg.exchange.reconcile_grace) for r in rows)
            pause = (deadline - clock.now()).total_seconds() + 0.05
            if pause > 0:
                self.pause(pause)

    def findings(self) -> Findings:
        bal = self.sim.balance(TRADE_KEY)
        held = self.sim.balance(TRADE_KEY, in_order=True)
        total = {a: bal.get(a, Decimal(0)) + held.get(a, Decimal(0)) for a in set(bal) | set(held)}
        return check(
            self.conn,
            self.cfg,
            self.sim.orders(TRADE_KEY),
            self.sim.trades(TRADE_KEY),
            total,
            self.start,
            history=self.history,
            keys=self.keys,
            dca=(DCA_MARKET, self.cfg.dca.every, self.dca_orders()),
        )

    def dca_orders(self) -> set[str]:
        """The clientOrderIds of the DCA advisor's executions, those a restore made the database forget too."""
        now = {
            r[0]
            for r in self.conn.execute(
                "SELECT e.client_order_id FROM trade_executions e JOIN proposals p ON p.id = e.proposal_id"
                " WHERE p.source = 'dca'"
            )
        }
        return now | {cid for cid, h in self.history.items() if h.get("source") == "dca"}

    def close(self) -> None:
        self.conn.close()
        self.sim.close()


# --- one run ---------------------------------------------------------------------


@dataclass
class Plan:
    draft: Draft | None  # None: the DCA advisor's draft, asked for when the run starts (``dca``)
    racers: int
    exec_crash: str | None
    reconcile_crash: str | None
    reconcile_crash_after: int
    fault: dict | None
    racing_reconcile: bool
    backup_at: str | None = None  # one of BACKUP_MOMENTS: back up then, restore at the end of the run
    dca: bool = False  # a DCA advisor's tick: its draft, if it has one, is the run's proposal
    llm: bool = False  # an LLM call is billed after the backup (the restore must not forget it)


SELLABLE = Decimal("5.5")  # what a sell leaves behind must stay worth the €5 minimum (no_dust), with room


def plan_run(rng: random.Random, bench: Bench) -> Plan:
    if rng.random() < DCA_SHARE:
        return Plan(
            None,
            rng.choice((1, 1, 2)),
            rng.choice(EXEC_POINTS) if rng.random() < 0.3 else None,
            None,
            0,
            None,
            rng.random() < 0.3,
            backup_at=rng.choice(BACKUP_MOMENTS) if rng.random() < DCA_RESTORE_SHARE else None,
            dca=True,
            llm=rng.random() < LLM_SHARE,
        )
    market = rng.choice(MARKETS)
    price = bench.sim.price(market)
    if rng.random() < 0.7:
        eur = Decimal(rng.choice(BUY_EUR))
        if rng.random() < 0.15:
            draft = Draft(market, "buy", None, (eur * Decimal("1.01") / price).quantize(Decimal("1e-8"), ROUND_DOWN))
        else:
            draft = Draft(market, "buy", eur, None)
    else:
        # sells within what tinybot bought (its own position, as the DB has it): part of it, leaving a
        # sellable rest, or all of it; with nothing sellable, a €6 sell that the guards must refuse
        held = ledger.position_base(bench.conn, market)
        if held * price >= 5 and rng.random() < 0.6:
            amount = (held * Decimal(str(rng.uniform(0.3, 1.0)))).quantize(Decimal("1e-8"), ROUND_DOWN)
            if amount * price < Decimal("5.1") or (held - amount) * price < SELLABLE:
                amount = held
            draft = Draft(market, "sell", None, amount)
        elif held * price >= 6 + SELLABLE and rng.random() < 0.6:
            eur = Decimal(rng.choice(("6", "8")))
            draft = Draft(
                market, "sell", min(eur, (held * price - SELLABLE).quantize(Decimal("0.01"), ROUND_DOWN)), None
            )
        else:
            draft = Draft(market, "sell", Decimal("6"), None)
    fault = None
    racing = rng.random() < 0.3
    if rng.random() < 0.5:
        kind = rng.choice(SCENARIOS)
        fault = {"kind": kind, "on": rng.choice(FAULT_ON)}
        if kind == SLOW_PREPARE:
            fault = {"kind": kind, "delay": rng.choice((0.45, 0.9))}
            racing = True
        if kind in ACCEPT_CHOOSABLE:
            fault["accept"] = rng.random() < 0.6
        if kind in ("timeout_after_accept", "timeout_before_accept"):
            fault["delay"] = TIMEOUT_FAULT_DELAY
        elif kind == "delay":
            fault["delay"] = rng.choice((0.2, 0.6, 1.2))  # 1.2 s: past the client's timeout and the window
    return Plan(
        draft=draft,
        racers=rng.choice((1, 1, 2, 3)),
        exec_crash=rng.choice(EXEC_POINTS) if rng.random() < 0.55 else None,
        reconcile_crash=rng.choice(RECONCILE_POINTS) if rng.random() < 0.35 else None,
        reconcile_crash_after=rng.choice((0, 0, 1)),
        fault=fault,
        racing_reconcile=racing,
        backup_at=rng.choice(BACKUP_MOMENTS) if rng.random() < RESTORE_SHARE else None,
        llm=rng.random() < LLM_SHARE,
    )


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
        bench.dca_ticks += 1
        draft = bench.dca_draft()
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


def attempt(bench: Bench, plan: Plan, pid: int, report: Report) -> backup.Backup | None:  # noqa: C901
    """The run's processes on its proposal: racers, crash points, a fault, the restart; → a backup taken
    before the execute or after the first attempt, when the plan says so."""
    saved = None
    if plan.backup_at == "before_execute":
        saved = bench.take_backup("chaos-before-execute")
    armed = arm(bench, plan.fault)
    if armed:
        report.faults_armed[plan.fault["kind"]] += 1
    jobs = []
    for i in range(plan.racers):
        crash_at = plan.exec_crash if i == 0 else None
        jobs.append(("execute", env(bench.cfg_path, crash_at), {"proposal_id": pid}))
    if plan.exec_crash:
        report.crashes_armed[plan.exec_crash] += 1
    reconcile_crash = plan.reconcile_crash
    if plan.racing_reconcile:
        # it stops when the executors have ended; the bound only matters if one hangs
        jobs.append(("reconcile", env(bench.cfg_path, reconcile_crash, plan.reconcile_crash_after), {"seconds": 6}))
        if reconcile_crash:
            report.crashes_armed[reconcile_crash] += 1
            reconcile_crash = None
    results = bench.spawn(jobs)
    crashed = False
    for (kind, e, _), (code, data) in zip(jobs, results):
        if code == CRASH_EXIT:
            report.crashes[e["TINYBOT_CRASH_AT"]] += 1
            crashed = True
        if kind == "execute" and data is not None and data["state"] == "claimed":
            crashed = True  # a preflight read failed: nothing was sent; the next attempt resumes it
    if plan.backup_at == "after_first_attempt":  # often while the execution is claimed or submitting
        saved = bench.take_backup("chaos-after-first-attempt")
    for _ in range(3 if crashed else 0):  # the restart: execute again; an existing execution is returned, never resent
        ((_, data),) = bench.spawn([("execute", env(bench.cfg_path), {"proposal_id": pid})])
        if data is None or data["state"] != "claimed":  # claimed: a read failed (the fault again); retry
            break
    if armed:
        bench.sim.clear_faults()
        if armed[-1].fired:
            report.faults[plan.fault["kind"]] += 1
    if reconcile_crash:
        report.crashes_armed[reconcile_crash] += 1
        ((code, _),) = bench.spawn(
            [("reconcile", env(bench.cfg_path, reconcile_crash, plan.reconcile_crash_after), {"seconds": 0})]
        )
        if code == CRASH_EXIT:
            report.crashes[reconcile_crash] += 1
    return saved


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


TOUR_RISK = {"max_daily": "1000", "max_exposure": "1000", "cooldown": "0s", "anti_flip": "0s"}


def tour() -> list[Plan]:
    """One run per crash point and per fault kind on the order request, so a short run covers them all.

    It runs in its own batch without cooldown, anti-flip or tight caps, or
    most of its buys would be (rightly) blocked before reaching the points.
    """
    plans = []

    def buy(i):
        return Draft(MARKETS[i % 2], "buy", Decimal("6"), None)

    for i, p in enumerate(EXEC_POINTS):  # alone, then with a racer that may get there first
        plans.append(Plan(buy(i), 1, p, None, 0, None, False))
        plans.append(Plan(buy(i + 1), 2, p, None, 0, None, True))
    for i, p in enumerate(RECONCILE_POINTS):  # leave an order to find: crash right after it was accepted
        plans.append(Plan(buy(i), 1, "after_send_before_reply", p, 0, None, False))
    for i, kind in enumerate(SCENARIOS):
        fault = {"kind": kind, "on": "create_order"} if kind != SLOW_PREPARE else {"kind": kind, "delay": 0.45}
        if kind in ("timeout_after_accept", "timeout_before_accept"):
            fault["delay"] = TIMEOUT_FAULT_DELAY
        plans.append(Plan(buy(i), 2, None, None, 0, fault, i % 2 == 0))
    # backup and restore: the backup sees the execution claimed (killed, or its preflight read failed: the
    # defect of issue 11), submitting (nothing sent / sent), not yet claimed, and the proposal not yet made
    first = "after_first_attempt"
    plans += [
        Plan(buy(0), 1, "after_claim", None, 0, None, False, first),
        Plan(buy(1), 1, None, None, 0, {"kind": "html_5xx", "on": "balance"}, False, first),
        Plan(buy(0), 1, "after_submitting_commit", None, 0, None, True, first),
        Plan(buy(1), 2, "after_send_before_reply", None, 0, None, False, first),
        Plan(buy(0), 1, None, None, 0, None, False, "before_execute", llm=True),
        Plan(buy(1), 2, None, None, 0, None, True, "before_propose", llm=True),
        # the DCA advisor buys after the backup; after the restore it must not buy that period again
        Plan(None, 1, None, None, 0, None, False, "before_propose", dca=True, llm=True),
        # everything since the tour's database was made, by a tinybot of the oldest schema, is rolled back
        Plan(buy(0), 1, None, None, 0, None, False, "batch_start", llm=True),
        Plan(None, 1, None, None, 0, None, False, dca=True),  # asked again later: still not due
    ]
    return plans


def run_tour(
    root: Path, seed: int, report: Report, settings: Settings = Settings(), closed_lookup: bool = False
) -> None:
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


AGED_RISK = TOUR_RISK | {"dca_every": "2d"}
AGED_BATCHES = {True: -2, False: -3}  # closed-order lookup on / off


def run_aged(
    root: Path, seed: int, report: Report, settings: Settings = Settings(), closed_lookup: bool = True
) -> None:
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
    schemas = [bench.schema_backup(s) for s in SCHEMAS]  # all taken now, before any order

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
    report.child_errors += [f"batch {batch}: {e}" for e in bench.errors]
    report.processes += bench.processes
    report.dca_ticks += bench.dca_ticks
    report.llm_calls += bench.llm_calls
    report.states.update(r[0] for r in bench.conn.execute("SELECT state FROM trade_executions"))
    report.batches += 1


def batch_seed(seed: int, batch: int) -> int:
    return seed * 1_000_003 + batch


LOOKUP_MODES = ("alternate", "on", "off")


def closed_lookup_for(mode: str, batch: int) -> bool:
    """Whether the simulator finds closed orders by clientOrderId in this batch (the tour is -1: off)."""
    return {"on": True, "off": False}.get(mode, batch % 2 == 0)


def run_batch(
    root: Path,
    seed: int,
    batch: int,
    runs: int,
    report: Report,
    settings: Settings = Settings(),
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
    settings: Settings = Settings(),
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


# --- the retry storm and the cap race ---------------------------------------------

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
            "violations": f.violations + bench.errors,
            "ok": orders == 1 and sent == 1 and not f.violations and not bench.errors,
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
            "violations": f.violations + bench.errors,
            "ok": len(orders) <= allowed and spent <= Decimal(cap) and not f.violations and not bench.errors,
        }
    finally:
        bench.close()
