"""The bench: one simulator account and one bot database, the world a batch (or a storm) runs in.

A ``Bench`` holds its collaborators and asks them: the simulator
(``sim``, account.py), the bot on its database (``bot``, bot.py), what the
harness remembers across restores (``memory``, memory.py), the backups and
restores (``backups``, backups.py), and where its jobs run (``jobs``,
processes.py: forked processes, or this one).  Its own work is what needs
more than one of them: a proposal numbered, the DCA advisor's turn, and the
invariants checked against the simulator's record.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

from tinybot.store import backup
from tinybot.base import config
from tinybot.trade.proposals import Draft

from .account import holdings, open_account
from .backups import Backups, schema_backup
from .bot import Bot
from .invariants import Findings, check
from .memory import Memory
from .processes import InProcess, Spawner, env
from .settings import DCA_MARKET, DEFAULTS, START, TRADE_KEY, Settings, write_files


class Bench:
    """One simulator account and one bot database: the world a batch (or a storm) runs in."""

    def __init__(
        self,
        root: Path,
        name: str,
        seed: int,
        settings: Settings = DEFAULTS,
        start: dict[str, Decimal] = START,
        closed_lookup: bool = True,
        schema: str | None = None,
        in_process: bool = False,
        pause=time.sleep,
    ):
        """``schema``: make the database as a tinybot of that schema did, and back it up first
        (``start_backup``).  ``in_process``: run every job in this process (the aged batches, whose
        clock freezegun moves; ``pause`` then moves it instead of sleeping)."""
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.start = dict(start)
        self.closed_lookup = closed_lookup
        self.sim = open_account(seed, start, closed_lookup)
        self.server = self.sim.serve()
        self.cfg_path = write_files(self.dir, self.server.url, settings)
        self.cfg = config.load(self.cfg_path)
        self.start_backup = schema_backup(self.cfg, schema) if schema else None
        self.bot = Bot(self.cfg, pause)
        self.memory = Memory()
        self.backups = Backups(self.bot, self.memory)
        self.jobs = InProcess(self.bot) if in_process else Spawner(self.dir, self.cfg_path)

    @property
    def conn(self):
        """The bot's database connection (a restore replaces it)."""
        return self.bot.conn

    @property
    def problems(self) -> list[str]:
        """Invariant violations seen during the batch, as they happened (ids handed out twice, restores)."""
        return self.memory.problems

    def read_only(self):
        return self.bot.read_only()

    def propose(self, draft: Draft, source: str = "chaos") -> int:
        pid = self.bot.propose(draft, source)
        self.memory.number(pid)
        return pid

    def take_backup(self, label: str) -> backup.Backup:
        return self.backups.take(label)

    def restore(self, saved: backup.Backup) -> Counter:
        """`tinybot backup --restore`: → the states of the rows the backup had in flight."""
        return self.backups.restore(saved)

    def resume(self) -> None:
        self.bot.resume()

    def llm_call(self) -> None:
        self.bot.llm_call()

    def dca_tick(self) -> int | None:
        """The DCA advisor's turn in a tick: its draft proposed and executed when it has one; → the proposal."""
        draft = self.bot.dca_draft()
        if draft is None:
            return None
        pid = self.propose(draft, source="dca")
        self.spawn([("execute", env(self.cfg_path), {"proposal_id": pid})])
        return pid

    def spawn(self, jobs: list[tuple[str, dict, dict]], timeout: float = 120) -> list[tuple[int, dict | None]]:
        """Run the jobs, released together; → [(exit code, result)] (processes.py)."""
        return self.jobs.run(jobs, timeout)

    def reconcile_here(self):
        return self.bot.reconcile()

    def wait_out_windows(self) -> None:
        self.bot.wait_out_windows()

    def findings(self) -> Findings:
        """The invariants, checked against the simulator's own record of orders, fills and balances."""
        total = holdings(self.sim)
        return check(
            self.conn,
            self.cfg,
            self.sim.orders(TRADE_KEY),
            self.sim.trades(TRADE_KEY),
            total,
            self.start,
            history=self.memory.history,
            keys=self.memory.keys,
            dca=(DCA_MARKET, self.cfg.dca.every, self.memory.dca_orders(self.conn)),
        )

    def close(self) -> None:
        self.bot.close()
        self.sim.close()
