"""The loop's own writes on an idle day (SD-card wear, issue 27): fsynced commits counted in-process, not timed."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

from freezegun import freeze_time

from helpers.configs import PAPER_TOML

from tinybot import exchange
from tinybot.base import clock
from tinybot.exchange.static import StaticMarketData
from tinybot.loop import beat, scheduler
from tinybot.store import db

UTC = timezone.utc


def counting_commits(monkeypatch, conn) -> list[tuple[str, str]]:
    """(time, caller) of every db.transaction() that wrote something: each is one fsynced WAL commit."""
    commits: list[tuple[str, str]] = []
    real = db.transaction

    @contextlib.contextmanager
    def counted(c, caller):
        before = c.total_changes
        with real(c) as x:
            yield x
        if c.total_changes != before:
            commits.append((clock.now().strftime("%H:%M:%S"), caller))

    def transaction(c):
        return counted(c, sys._getframe(1).f_code.co_name)

    monkeypatch.setattr(db, "transaction", transaction)
    return commits


def test_an_idle_loop_whose_prices_move_every_tick_commits_once_a_beat(write_config, monkeypatch):
    """A market's prices move every minute.  The loop writes what it read with its next heartbeat: over 45 idle
    ticks, 3 fsynced commits (the beats at 14:10, 14:25, 14:40), not one a tick; the hourly price log keeps the first
    reading of each hour, and the last prices read are written with the time they were read."""
    cfg = write_config("advisors = []\n" + PAPER_TOML + '[scheduler]\ninterval = "1m"\n')
    conn = db.open_db(cfg.db_path)
    market = StaticMarketData({"BTC-EUR": "60000", "ETH-EUR": "3000"})

    def move_prices(slot: datetime) -> None:
        market.set_price("BTC-EUR", 60000 + slot.hour * 60 + slot.minute)

    read_only = exchange.read_only(cfg, market)  # the paper account over prices that move
    commits = counting_commits(monkeypatch, conn)
    with freeze_time("2026-11-27 13:55:05") as frozen:
        scheduler.Scheduler(cfg, conn, echo=lambda s: None, read_only=read_only, before_tick=move_prices).run(
            until=datetime(2026, 11, 27, 14, 40, 30, tzinfo=UTC), sleep=lambda s: frozen.tick(timedelta(seconds=s))
        )
    idle = [c for c in commits if "13:56" <= c[0] < "14:40:30"]  # 45 idle ticks after the first; not the stop
    assert idle == [("14:10:00", "heartbeat"), ("14:25:00", "heartbeat"), ("14:40:00", "heartbeat")], idle
    log = dict(conn.execute("SELECT hour, last FROM price_log WHERE market = 'BTC-EUR'").fetchall())
    assert log == {"2026-11-27T13:00:00.000000Z": "60835", "2026-11-27T14:00:00.000000Z": "60840"}
    last = conn.execute("SELECT last, at FROM market_prices WHERE market = 'BTC-EUR'").fetchone()
    assert last["last"] == "60880" and last["at"].startswith("2026-11-27T14:40:00")
    slots = [r[0][11:16] for r in conn.execute("SELECT slot FROM ticks ORDER BY slot")]
    assert slots == [f"{13 + (55 + m) // 60}:{(55 + m) % 60:02d}" for m in range(46)]  # every tick has its row


def reading(minute: int, balances: bool) -> beat.Reading:
    at = datetime(2026, 11, 27, 20, 0, tzinfo=UTC) + timedelta(minutes=minute)
    bal = {"EUR": SimpleNamespace(available=Decimal(minute), in_order=Decimal(0))} if balances else None
    return beat.Reading({}, bal, at)


def test_readings_waiting_for_the_beat_keep_the_first_of_each_hour_and_the_last_balances_read():
    waiting: list[beat.Reading] = []
    for minute, ok in ((55, True), (58, True), (61, False), (62, False), (64, False)):
        waiting = reading(minute, ok).after(waiting)
    kept = [(int((r.at - waiting[0].at).total_seconds() // 60) + 55, r.balances is not None) for r in waiting]
    # 20:55 first of its hour; 20:58 the last balances read; 21:01 first of its hour; 21:04 the newest
    assert kept == [(55, True), (58, True), (61, False), (64, False)]
