"""The local day (`timezone`): daily cap and LLM budgets follow it, DST days of 23 and 25 hours included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from tinybot.base import clock
from tinybot.trade import committed, executor, proposals
from tinybot.advisors import llm_budget
from tinybot.base.errors import ConfigError
from tinybot.trade.proposals import Draft

from helpers.configs import paper_config_text, paper_setup

AMS = ZoneInfo("Europe/Amsterdam")
UTC = timezone.utc


@pytest.mark.parametrize("day, hours", [("2026-03-29", 23), ("2026-10-25", 25), ("2026-06-01", 24)])
def test_a_local_day_is_23_24_or_25_hours(day, hours):
    noon = datetime.fromisoformat(f"{day}T12:00:00+00:00")
    start = clock.day_start(noon, AMS)
    end = clock.day_start(start + timedelta(hours=hours, minutes=30), AMS)
    assert start.astimezone(AMS).strftime("%Y-%m-%d %H:%M") == f"{day} 00:00"
    assert end - start == timedelta(hours=hours)
    assert clock.local_day(end - timedelta(microseconds=1), AMS) == day


def local_cfg(write_config, **risk):
    return paper_setup(lambda text: write_config('timezone = "Europe/Amsterdam"\n' + text), **risk)


@pytest.mark.parametrize(
    "first_utc, fresh_utc",
    [
        ("2026-03-28 23:30:00", "2026-03-29 22:00:00"),  # 00:30 local on the 23-hour day; its end is 22:00 UTC
        ("2026-10-24 22:30:00", "2026-10-25 23:00:00"),  # 00:30 local on the 25-hour day; its end is 23:00 UTC
    ],
)
def test_the_daily_cap_resets_at_local_midnight_on_dst_days(write_config, first_utc, fresh_utc):
    cfg, conn, ex = local_cfg(write_config, max_daily_eur="10", cooldown='"0s"', anti_flip='"0s"')

    def buy(market):
        pid = proposals.create(
            conn, Draft(market, "buy", Decimal("6")), source="t", ttl=timedelta(minutes=30), approve=True
        )
        return executor.execute(conn, cfg, ex, pid).state

    with freeze_time(first_utc):
        assert buy("BTC-EUR") == "filled"
    with freeze_time(datetime.fromisoformat(fresh_utc) - timedelta(seconds=1)):  # 23:59:59 local, same day
        assert buy("ETH-EUR") == "blocked"
        assert committed.spent_today(conn, clock.now(), tz=cfg.tz) == Decimal("6")
    with freeze_time(fresh_utc):  # local midnight: a new day
        assert committed.spent_today(conn, clock.now(), tz=cfg.tz) == 0
        assert buy("ETH-EUR") == "filled"


def test_utc_is_the_day_when_no_timezone_is_set(write_config):
    cfg, conn, ex = paper_setup(write_config)
    assert cfg.timezone == "UTC"
    assert clock.day_start(datetime(2026, 10, 25, 23, 30, tzinfo=UTC), cfg.tz) == datetime(2026, 10, 25, tzinfo=UTC)


def test_llm_budget_days_and_months_are_local(write_config):
    cfg, conn, ex = local_cfg(write_config)
    # 23:30 local on 31 October (UTC+1 after the switch) is 22:30 UTC: still October's budget
    assert llm_budget.period_keys(datetime(2026, 10, 31, 22, 30, tzinfo=UTC), cfg.tz) == ("2026-10-31", "2026-10")
    assert llm_budget.period_keys(datetime(2026, 10, 31, 23, 0, tzinfo=UTC), cfg.tz) == ("2026-11-01", "2026-11")
    with freeze_time("2026-10-31 23:30:00"):
        r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10, tz=cfg.tz)
    row = conn.execute("SELECT day, month FROM gpt_usage_log WHERE id = ?", (r.id,)).fetchone()
    assert (row["day"], row["month"]) == ("2026-11-01", "2026-11")


def test_a_bad_timezone_is_a_config_error(write_config):
    with pytest.raises(ConfigError) as e:
        write_config('timezone = "Mars/Olympus"\n' + paper_config_text())
    assert str(e.value).endswith('timezone: \'Mars/Olympus\' is not a time zone name like "Europe/Amsterdam" or "UTC"')
