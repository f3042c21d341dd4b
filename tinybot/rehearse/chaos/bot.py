"""The bot under test as the harness's own process sees it: its config, its database and clients, and its calls.

What a tick or a command does, done here: propose, execute (aged batches),
reconcile, bill an LLM call, ask the DCA advisor, resume trading, restore a
backup (the connection is closed while the file is swapped, then reopened).
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

from tinybot.base import clock
from tinybot.store import db
from tinybot.trade import killswitch, proposals, reconcile
from tinybot.ops import restore
from tinybot.base.config import Config
from tinybot.trade.proposals import Draft

from .settings import READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET


class Bot:
    """tinybot on one bench's database; ``pause(seconds)`` waits (a frozen clock's bench moves it instead)."""

    def __init__(self, cfg: Config, pause=time.sleep):
        self.cfg, self.pause = cfg, pause
        self.conn = db.open_db(cfg.db_path)
        self._ro = self._trading = None
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

    def propose(self, draft: Draft, source: str) -> int:
        """An approved proposal, as an advisor's tick with auto-approval makes it; → its id."""
        return proposals.create(self.conn, draft, source=source, ttl=timedelta(minutes=30), approve=True)

    def execute(self, proposal_id: int) -> dict:
        """`tinybot execute ID` in this process; → what worker.execute would write."""
        from tinybot.trade import executor

        if self._trading is None:  # the one factory, as `tinybot execute` builds it (its keys: the bench's file)
            self._trading = executor.trading_exchange(self.cfg)
            self._trading.client.enableRateLimit = False  # its throttle waits for a clock freezegun holds still
        try:
            return executor.execute(self.conn, self.cfg, self._trading, proposal_id).as_dict()
        except executor.NotExecutable as e:  # as worker.execute answers it
            return {"state": "not_executable", "reason": str(e), "sent": False, "client_order_id": None}

    def reconcile(self):
        return reconcile.reconcile(self.conn, self.cfg, self.read_only())

    def wait_out_windows(self) -> None:
        """Wait until reconcile may call every unresolved request absent (``reconcile.absent_after``)."""
        rows = self.conn.execute("SELECT * FROM trade_executions WHERE state IN ('submitting', 'unknown')").fetchall()
        if rows:
            deadline = max(reconcile.absent_after(r, self.cfg.exchange.reconcile_grace) for r in rows)
            pause = (deadline - clock.now()).total_seconds() + 0.05
            if pause > 0:
                self.pause(pause)

    def llm_call(self) -> None:
        """What the llm advisor's call leaves in the budget: a reservation settled to its usage."""
        from tinybot.advisors import llm_budget

        r = llm_budget.reserve(self.conn, self.cfg.llm, prompt_tokens_est=2000, tz=self.cfg.tz)
        llm_budget.settle(self.conn, r.id, self.cfg.llm, input_tokens=1500, output_tokens=200)
        self.llm_calls += 1

    def llm_spend(self) -> tuple[Decimal, Decimal]:
        """The LLM spend committed today and this month."""
        from tinybot.advisors import llm_budget

        day, month = llm_budget.period_keys(clock.now(), self.cfg.tz)
        return llm_budget.committed_eur(self.conn, day=day), llm_budget.committed_eur(self.conn, month=month)

    def dca_draft(self) -> Draft | None:
        """What the DCA advisor proposes now, from a snapshot as a tick builds it (None: its period is bought)."""
        from tinybot.advisors import build_snapshot, dca

        self.dca_ticks += 1
        drafts = dca.advise(build_snapshot(self.conn, self.cfg, self.read_only(), sources=("dca",)), self.cfg)
        return drafts[0] if drafts else None

    def resume(self) -> None:
        killswitch.set_enabled(self.conn, True, "chaos: checked after the restore", by="chaos")

    def trading_enabled(self) -> bool:
        return bool(killswitch.state(self.conn)["trading_enabled"])

    def restore(self, path: str) -> None:
        """`tinybot backup --restore PATH`: the file swapped while this connection is closed, then reopened."""
        self.conn.close()
        restore.restore(self.cfg, path)
        self.conn = db.open_db(self.cfg.db_path)

    def close(self) -> None:
        self.conn.close()
