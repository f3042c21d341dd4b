"""What a chaos run found, in numbers: the Report, as text and as JSON."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from tinybot.base import crash

from .invariants import RESTORED, RESTORED_CLAIMED, Findings
from .settings import AGED_MOMENTS, BACKUP_MOMENTS, SCENARIOS


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
    text = violation.split(": ", 1)[-1] if violation.startswith("batch ") else violation
    kind = text.split(":")[0] if text.startswith("(") else text[:40]
    kind = "(4) the daily cap's count" if kind.startswith("(4) the daily cap counts") else kind
    kind = kind[:3] + re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|€?\b\d+(\.\d+)?\b", "#", kind[3:])  # ids, amounts
    if violation.endswith(RESTORED):
        kind += ", the earlier order booked after a restore"
    elif violation.endswith(RESTORED_CLAIMED):
        kind += ", short by orders found for rows restored as claimed"
    return kind
