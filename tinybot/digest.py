"""The daily digest: once a day, at ``[alerts] digest_at`` local time, what the day brought.

One alert with the day's result (realised during the day, unrealised now),
its fills, fees and LLM cost, the net since the start against holding, and a
PNG chart attached (the day's P/L against holding, by tinybot.report; needs
matplotlib: `pip install 'tinybot[report]'`, else the text goes alone).  The
scheduler calls ``maybe_send`` after every tick; the day it was sent is kept
in ``ops_state``, so a restart or a missed tick never sends it twice, and a
tick after the time (the Pi was off at 21:00) still sends it that day.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from . import clock, db, money, pnl

log = logging.getLogger("tinybot.digest")
STATE = "digest.last_day"


def due(conn: sqlite3.Connection, cfg, now: datetime | None = None) -> str | None:
    """The local day to send the digest for, if it is due now; else None."""
    if not cfg.alerts.digest_at:
        return None
    now = now or clock.now()
    local = now.astimezone(cfg.tz)
    hour, minute = (int(x) for x in cfg.alerts.digest_at.split(":"))
    if (local.hour, local.minute) < (hour, minute):
        return None
    day = local.strftime("%Y-%m-%d")
    last = db.get_state(conn, STATE)
    return None if last is not None and last >= day else day


def text(conn: sqlite3.Connection, cfg, now: datetime | None = None) -> str:
    now = now or clock.now()
    start = clock.day_start(now, cfg.tz)
    lo, hi = clock.to_iso(start), clock.to_iso(now)

    fills = conn.execute(
        "SELECT * FROM trade_history WHERE executed_at >= ? AND executed_at <= ? AND external = 0", (lo, hi)
    ).fetchall()
    fees = sum((Decimal(f["fee"]) for f in fills if f["fee_currency"] == "EUR"), Decimal(0))
    llm = sum(
        (
            Decimal(r["cost_eur"])
            for r in conn.execute(
                "SELECT cost_eur FROM gpt_usage_log WHERE cost_eur IS NOT NULL AND COALESCE(settled_at, reserved_at) >= ?",
                (lo,),
            )
        ),
        Decimal(0),
    )
    total = pnl.report(conn, cfg)
    buys = sum(1 for f in fills if f["side"] == "buy")
    return (
        f"{start.astimezone(cfg.tz):%A %d %B}: realised {money.eur(pnl.realised_between(conn, lo, hi))},"
        f" {len(fills)} fill(s) ({buys} buy, {len(fills) - buys} sell), fees {money.eur(fees)},"
        f" LLM {money.eur(llm)}.\n"
        f"Since the start: net {money.eur(Decimal(total['net_eur']))} (unrealised"
        f" {money.eur(Decimal(total['unrealised_eur']))}) against holding {money.eur(Decimal(total['hold_eur']))}."
    )


def maybe_send(conn: sqlite3.Connection, cfg, notifier, now: datetime | None = None) -> bool:
    """Send today's digest if it is due; True if an alert went out (or was attempted)."""
    now = now or clock.now()
    day = due(conn, cfg, now)
    if day is None:
        return False
    body = text(conn, cfg, now)
    attach: list[str] = []
    tmp = None
    try:
        from .report import ReportError, digest_png

        try:
            png = digest_png(conn, cfg, clock.day_start(now, cfg.tz), now)
            tmp = tempfile.NamedTemporaryFile(prefix="tinybot-digest-", suffix=".png", delete=False)
            tmp.write(png)
            tmp.close()
            attach.append(tmp.name)
        except ReportError:
            body += "\n(For a chart: pip install 'tinybot[report]'.)"
        db.set_state(conn, STATE, day)  # claimed before sending: a crash mid-send never sends it twice
        notifier.alert("digest", body, key=f"digest:{day}", severity="info", attach=attach)
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    return True
