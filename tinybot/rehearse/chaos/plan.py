"""The plan of one run: what it proposes, how many processes race, where they crash, which fault, which backup.

``plan_run`` draws a random run from a seeded generator (and the bench's
prices and positions); ``tour`` lists the runs that go once through every
crash point, fault kind and backup moment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from tinybot.trade import ledger
from tinybot.trade.proposals import Draft

from .bench import Bench
from .settings import (
    ACCEPT_CHOOSABLE,
    BACKUP_MOMENTS,
    BUY_EUR,
    DCA_RESTORE_SHARE,
    DCA_SHARE,
    EXEC_POINTS,
    FAULT_ON,
    LLM_SHARE,
    MARKETS,
    RECONCILE_POINTS,
    RESTORE_SHARE,
    SCENARIOS,
    SLOW_PREPARE,
    TIMEOUT_FAULT_DELAY,
)


@dataclass
class Plan:
    """One run, drawn before it starts (the same seed draws the same plans)."""

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
    """A random run: a DCA advisor's tick, or a buy or a sell within tinybot's position on ``bench``, with its
    racers, crash points, fault and backup moment."""
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
