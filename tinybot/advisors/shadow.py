"""The shadow step of a tick: fill the shadows' waiting proposals at this tick's prices, then ask each shadow.

Each shadow advisor sees the tick's snapshot with its own virtual book in
place of the live one (balances, positions, its book, what is left under
the caps, its own past proposals), so it decides as it would have had it
traded.  Its drafts are recorded as shadow proposals (tinybot.trade.shadow):
never approved, executed, counted in the live caps or sent to the phone.
The llm shadow's call goes through the same budget as the live one
(``llm_budget.reserve``) and is charged to ``shadow:llm``.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

from ..base import clock
from ..base.config import Config
from ..exchange.base import Balance
from ..trade import shadow
from ..trade.book.benchmarks import start
from . import Caps, PastProposal, Position, Snapshot, run_advisor

log = logging.getLogger("tinybot.advisors.shadow")


@dataclass
class ShadowReport:
    filled: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    proposed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def view(snap: Snapshot, cfg: Config, book: shadow.VirtualBook, history: tuple[PastProposal, ...]) -> Snapshot:
    """The snapshot as the shadow would have seen it: its own money, coins, caps and past proposals."""
    held = {m: _position(m, p, book.advisor) for m, p in book.positions().items()}
    zero = Decimal(0)
    flight = sum((_spend(cfg, p, snap) for p in book.pending if p.side == "buy"), zero)
    exposed = sum((p.cost_eur for p in book.positions().values()), zero) + flight
    today = book.spent_since(clock.day_start(snap.now, cfg.tz)) + flight
    return replace(
        snap,
        balances=MappingProxyType({a: Balance(v, zero) for a, v in book.held().items()}),
        positions=MappingProxyType(held),
        books=MappingProxyType({book.advisor: MappingProxyType(held)}),
        caps=Caps(
            cfg.risk.max_trade_eur,
            max(cfg.risk.max_daily_eur - today, zero),
            max(cfg.risk.max_exposure_eur - exposed, zero),
        ),
        history=MappingProxyType({book.advisor: history}),
    )


def _spend(cfg: Config, p: shadow.Pending, snap: Snapshot) -> Decimal:
    t = snap.tickers.get(p.market)
    return Decimal(0) if t is None else shadow.spend(cfg, p, t.ask)


def _position(market: str, p, advisor: str) -> Position:
    last = clock.from_iso(p.last_buy_at) if p.last_buy_at else None
    return Position(market, p.base, p.cost_eur, p.realised_eur, last, advisor)


def history(conn: sqlite3.Connection, advisor: str, limit: int = 50) -> tuple[PastProposal, ...]:
    """The shadow's recent proposals as an advisor reads its own: filled ones as filled executions."""
    rows = conn.execute(
        "SELECT * FROM shadow_proposals WHERE advisor = ? ORDER BY id DESC LIMIT ?", (advisor, limit)
    ).fetchall()
    state = {"filled": "filled", "blocked": "blocked", "pending": None}
    return tuple(
        PastProposal(
            r["id"],
            advisor,
            r["market"],
            r["side"],
            None if r["amount_quote"] is None else Decimal(r["amount_quote"]),
            None if r["amount"] is None else Decimal(r["amount"]),
            "pending" if r["state"] == "pending" else "approved",
            clock.from_iso(r["created_at"]),
            state[r["state"]],
            r["reason"],
            advisor,
        )
        for r in rows
    )


def _advisor_fn(name: str, conn: sqlite3.Connection):
    """The llm shadow calls through the one budget on this connection, charged to ``shadow:llm``."""
    if name != "llm":
        return None
    from . import llm

    return lambda snap, cfg: llm.run(snap, cfg, conn=conn, book=shadow.SHADOW_LLM).drafts


def step(conn: sqlite3.Connection, cfg: Config, snap: Snapshot) -> ShadowReport:
    """Fill what the shadows proposed last tick at this tick's prices, then ask each shadow for this tick."""
    out = ShadowReport()
    for o in shadow.fill_pending(conn, cfg, snap.tickers, snap.markets, snap.now):
        line = f"{o.proposal.advisor} {o.proposal.side} {o.proposal.market}: {o.detail}"
        (out.filled if o.state == "filled" else out.blocked).append(line)
    capital = start(conn, cfg).capital_eur
    for name in cfg.scoreboard.shadow:
        if capital is None:
            out.errors.append(f"shadow {name}: waiting for the first balance snapshot (its starting money)")
            continue
        shadow.open_book(conn, name, capital, snap.now)
        book = shadow.load(conn, name)
        outcome = run_advisor(name, view(snap, cfg, book, history(conn, name)), cfg, _advisor_fn(name, conn))
        out.errors += [f"shadow {name}: {e}" for e in outcome.errors]
        for pid, d in zip(shadow.record(conn, name, outcome.drafts, snap.now), outcome.drafts):
            out.proposed.append(f"shadow #{pid} {name} {d.side} {d.market}")
    return out
