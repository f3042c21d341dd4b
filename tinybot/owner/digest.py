"""The daily digest: once a day, at ``[alerts] digest_at`` local time, what the day brought.

One alert with the day's result (realised during the day, unrealised now),
its fills, fees (a fee in the coin valued at its fill's price) and LLM cost,
the net since the start against the benchmarks as tinybot.trade.book names them,
and a PNG chart attached: the day's net P/L and benchmarks over time, drawn
by tinybot.analysis.report from ``figures.series``, whose last point is the same
``figures.summary`` the text quotes (needs matplotlib: `pip install
'tinybot[report]'`, else the text goes alone; a bot younger than an hour
sends the text alone).  Every figure comes from tinybot.trade.book.  The
scheduler calls ``maybe_send`` after every tick; the day it was sent is kept
in ``ops_state``, so a restart or a missed tick never sends it twice, and a
tick after the time (the Pi was off at 21:00) still sends it that day.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..base import clock, money
from ..store import db
from ..trade.book import figures, steps, valuation

log = logging.getLogger("tinybot.digest")
STATE = "digest.last_day"
SCORE_WEEKDAY = 7  # Sunday's digest (local) carries the scoreboard's line (tinybot.analysis.score)


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


@dataclass
class Digest:
    """One day's digest: the text and the chart's data, from the same book figures at the same prices."""

    day: datetime  # the local day's start (UTC)
    text: str
    chart: dict  # tinybot.analysis.report's chart data: its lines end at the text's figures


def _benchmark(b, value) -> str:
    return f"{b.title}: {money.eur_text(value)}" if b is not None else ""


def _fill_lines(walk, since: str, until: str, tz) -> str:
    """The day's fills, one line each, for ``[alerts] fills = "digest"`` (they were not alerted one by one)."""
    chosen = [st.fill for st in walk.steps if not st.fill.external and since < st.fill.at <= until]
    return ("\nFills:" if chosen else "") + "".join(
        f"\n{clock.human_time(f.at, tz)} {f.side} {f.market} {money.plain(f.amount)} @ {money.plain(f.price)}"
        f" = {money.eur_text(f.quote)}"
        for f in chosen
    )


def compose(conn: sqlite3.Connection, cfg, now: datetime | None = None, *, with_fills: bool = False) -> Digest:
    """The day so far, and since the start at the last tick's prices; the chart is ``figures.series`` of the day,
    its last point the same ``figures.summary`` the text quotes.  ``with_fills``: list the day's fills (the
    phone's /daily; the digest does when ``[alerts] fills = "digest"``)."""
    from ..analysis import report

    now = now or clock.now()
    start = clock.day_start(now, cfg.tz)
    lo, hi = clock.to_iso(start), clock.to_iso(now)
    prices = valuation.last_prices(conn, cfg)
    s = figures.summary(conn, cfg, prices=prices, until=now)
    day = s.walk.period(lo, hi)
    llm = steps.llm_cost(conn, since=lo, until=hi)
    t = s.total
    benchmarks = "; ".join(x for x in (_benchmark(s.holding, s.holding_eur), _benchmark(s.dca, s.dca_eur)) if x)
    text = (
        f"{start.astimezone(cfg.tz):%A %d %B}: realised {money.eur_text(day.realised_eur)},"
        f" {day.fills} fill(s) ({day.buys} buy, {day.sells} sell), fees {money.eur_text(day.fees_eur)},"
        f" LLM {money.eur_text(llm)}.\n"
        f"Since the start: net {money.eur_text(t.net_eur)} (unrealised {money.eur_text(t.unrealised_eur)})."
        + (f"\nAgainst {benchmarks}." if benchmarks else "")
        + (_fill_lines(s.walk, lo, hi, cfg.tz) if with_fills or cfg.alerts.fills == "digest" else "")
    )
    if start.astimezone(cfg.tz).isoweekday() == SCORE_WEEKDAY:  # once a week, the scoreboard in one line
        from ..analysis import score

        text += "\n" + score.one_line(score.scoreboard(conn, cfg, prices=prices, until=now))
    ser = figures.series(conn, cfg, since=start, until=now, prices=prices)
    title = f"Net P/L, {report.local_time(start, cfg.tz)[:10]} ({cfg.timezone})"
    chart = report.equity_chart(ser, cfg.tz, report.young_sentence(s.start, now, cfg.tz), title=title)
    return Digest(start, text, chart)


def text(conn: sqlite3.Connection, cfg, now: datetime | None = None) -> str:
    return compose(conn, cfg, now).text


def maybe_send(conn: sqlite3.Connection, cfg, notifier, now: datetime | None = None) -> bool:
    """Send today's digest if it is due; True if an alert went out (or was attempted)."""
    now = now or clock.now()
    day = due(conn, cfg, now)
    if day is None:
        return False
    d = compose(conn, cfg, now)
    body = d.text
    attach: list[str] = []
    tmp = None
    try:
        from ..analysis.charts import ChartError, figure, png

        try:
            if d.chart["drawn"]:
                picture = png(figure(d.chart, cfg.tz))
                tmp = tempfile.NamedTemporaryFile(prefix="tinybot-digest-", suffix=".png", delete=False)
                tmp.write(picture)
                tmp.close()
                attach.append(tmp.name)
            else:
                body += f"\n({d.chart['sentence']})"
        except ChartError:
            body += "\n(For a chart: pip install 'tinybot[report]'.)"
        db.set_state(conn, STATE, day)  # claimed before sending: a crash mid-send never sends it twice
        notifier.alert("digest", body, key=f"digest:{day}", severity="info", attach=attach)
    finally:
        if tmp is not None:
            Path(tmp.name).unlink(missing_ok=True)
    return True
