"""The LLM spend budget: reserve worst case, settle to real usage, never pass the budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from freezegun import freeze_time

from helpers import ROOT
from tinybot.store import db
from tinybot.advisors import llm_budget
from tinybot.advisors.llm_budget import BudgetRefused

T0 = "2026-11-27 12:00:00"

LLM_TOML = """\
mode = "paper"
advisors = ["llm"]
[risk]
allowlist = ["BTC-EUR"]
[llm]
base_url = "http://127.0.0.1:9/v1"
model = "fake-mini"
max_tokens = 400
price_in_per_mtok_eur = 0.15
price_out_per_mtok_eur = 0.60
daily_budget_eur = {daily}
monthly_budget_eur = {monthly}
reservation_expiry = "1h"
"""


@pytest.fixture
def setup(write_config):
    def make(daily="0.05", monthly="1.00"):
        cfg = write_config(LLM_TOML.format(daily=daily, monthly=monthly))
        return cfg, db.open_db(cfg.db_path)

    return make


def rows(conn):
    return conn.execute("SELECT * FROM gpt_usage_log ORDER BY id").fetchall()


def events(conn, kind="budget_exhausted"):
    return conn.execute("SELECT * FROM events WHERE kind = ? ORDER BY id", (kind,)).fetchall()


def test_costs_are_exact_decimals():
    class P:
        price_in_per_mtok_eur = Decimal("0.15")
        price_out_per_mtok_eur = Decimal("0.60")
        max_tokens = 400

    assert llm_budget.cost_eur(1234, 321, P) == Decimal("0.0003777")
    assert llm_budget.worst_case_eur(1000, P) == Decimal("0.00039")  # 1000 in + 400 out
    assert llm_budget.cost_eur(1_000_000, 1_000_000, P) == Decimal("0.75")


def test_token_estimate_is_an_upper_bound_in_bytes():
    msgs = [{"role": "system", "content": "abc"}, {"role": "user", "content": "é€"}]
    # 16 priming + 2 x 16 framing + bytes of every string (roles included)
    assert llm_budget.estimate_tokens(msgs) == 16 + 32 + len("system") + 3 + len("user") + 2 + 3


@freeze_time(T0)
def test_reserve_then_settle_records_real_cost_to_the_cent(setup):
    cfg, conn = setup()
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    assert r.reserved_eur == Decimal("0.00039")
    row = rows(conn)[0]
    assert (row["state"], row["day"], row["month"], row["reserved_eur"]) == (
        "reserved",
        "2026-11-27",
        "2026-11",
        "0.00039",
    )
    assert llm_budget.committed_eur(conn, day="2026-11-27") == Decimal("0.00039")
    cost = llm_budget.settle(conn, r.id, cfg.llm, input_tokens=812, output_tokens=95)
    assert cost == Decimal("0.0001788")  # 812*0.15/1e6 + 95*0.60/1e6
    row = rows(conn)[0]
    assert (row["state"], row["cost_eur"], row["input_tokens"], row["output_tokens"]) == (
        "settled",
        "0.0001788",
        812,
        95,
    )
    assert llm_budget.committed_eur(conn, day="2026-11-27") == Decimal("0.0001788")
    assert llm_budget.committed_eur(conn, month="2026-11") == Decimal("0.0001788")


@freeze_time(T0)
def test_settle_without_usage_counts_the_worst_case(setup):
    cfg, conn = setup()
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    assert llm_budget.settle(conn, r.id, cfg.llm, input_tokens=None, output_tokens=None) == Decimal("0.00039")
    assert "no usage" in rows(conn)[0]["detail"]


@freeze_time(T0)
def test_cost_over_reservation_is_recorded_as_it_is_with_a_warning(setup):
    cfg, conn = setup()
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=100)
    cost = llm_budget.settle(conn, r.id, cfg.llm, input_tokens=100, output_tokens=5000)
    assert rows(conn)[0]["cost_eur"] == str(cost) and cost > r.reserved_eur
    assert len(events(conn, "llm_cost_over_reservation")) == 1


@freeze_time(T0)
def test_budget_boundary_the_call_that_fits_is_reserved_the_one_that_would_cross_is_not(setup):
    # worst case of one call at 1000 prompt tokens: 0.00039; the day fits exactly two.
    cfg, conn = setup(daily="0.00078")
    llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)  # == budget: fits
    with pytest.raises(BudgetRefused) as e:
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    assert e.value.code == "budget_exhausted" and e.value.period == "day"
    assert len(rows(conn)) == 2
    assert llm_budget.committed_eur(conn, day="2026-11-27") == Decimal("0.00078")
    [ev] = events(conn)
    assert ev["severity"] == "warning"
    assert ev["detail"].startswith("LLM daily budget 2026-11-27 used up: €0.00078 spent or reserved of €0.00078")
    assert "skipped until 2026-11-28 00:00 UTC" in ev["detail"]


@freeze_time(T0)
def test_exhausted_is_told_once_and_skips_the_rest_of_the_day_even_after_cheap_settles(setup):
    cfg, conn = setup(daily="0.00078")
    a = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    with pytest.raises(BudgetRefused):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    llm_budget.settle(conn, a.id, cfg.llm, input_tokens=10, output_tokens=10)  # room again, but:
    for _ in range(3):
        with pytest.raises(BudgetRefused) as e:
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10)
        assert e.value.code == "budget_exhausted"
    assert len(events(conn)) == 1
    assert llm_budget.exhausted_notice(conn) is not None


def test_a_new_day_opens_the_daily_budget_but_not_an_exhausted_month(setup):
    cfg, conn = setup(daily="0.0005", monthly="0.001")  # one call a day, two a month
    with freeze_time("2026-11-27 23:59:00"):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
        with pytest.raises(BudgetRefused) as e:
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
        assert e.value.period == "day"
    with freeze_time("2026-11-28 00:00:01"):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    with freeze_time("2026-11-29 00:00:01"):
        with pytest.raises(BudgetRefused) as e:  # 0.00078 + 0.00039 > 0.001 for the month
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
        assert e.value.period == "month"
        assert "skipped until 2026-12-01 00:00 UTC" in str(e.value)
    with freeze_time("2026-11-30 00:00:01"):
        with pytest.raises(BudgetRefused):  # told once: no second event
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    with freeze_time("2026-12-01 00:00:01"):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    assert len(events(conn)) == 2


def test_expired_reservation_keeps_counting_at_worst_case(setup):
    cfg, conn = setup(daily="0.00078")
    with freeze_time(T0):
        r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)  # call times out: never settled
    with freeze_time("2026-11-27 12:59:59"):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
        assert rows(conn)[0]["state"] == "reserved"  # not yet expired
    with freeze_time("2026-11-27 13:00:01"):
        with pytest.raises(BudgetRefused):  # expiry frees nothing
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
        row = rows(conn)[0]
        assert (row["state"], row["cost_eur"], row["settled_at"]) == (
            "expired",
            "0.00039",
            "2026-11-27T13:00:01.000000Z",
        )
        assert llm_budget.committed_eur(conn, day="2026-11-27") == Decimal("0.00078")
        # a late answer may still settle it to the real cost
        llm_budget.settle(conn, r.id, cfg.llm, input_tokens=1000, output_tokens=0)
        assert rows(conn)[0]["cost_eur"] == "0.00015"


@freeze_time(T0)
def test_failed_call_releases_its_reservation(setup):
    cfg, conn = setup(daily="0.00039")
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    llm_budget.fail(conn, r.id, "connection refused: nothing was sent")
    assert llm_budget.committed_eur(conn, day="2026-11-27") == 0
    llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)


def test_min_interval_refuses_a_call_too_soon(setup):
    cfg, conn = setup()
    with freeze_time(T0):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10, min_interval=timedelta(hours=1))
    with freeze_time("2026-11-27 12:59:00"):
        with pytest.raises(BudgetRefused) as e:
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10, min_interval=timedelta(hours=1))
        assert e.value.code == "too_soon"
    with freeze_time("2026-11-27 13:00:01"):
        llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10, min_interval=timedelta(hours=1))
    assert events(conn) == []


@freeze_time(T0)
def test_a_refusal_inside_someone_elses_transaction_is_impossible(setup):
    cfg, conn = setup()
    with db.transaction(conn):
        with pytest.raises(RuntimeError):
            llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=10)


@freeze_time(T0)
def test_usage_report(setup):
    cfg, conn = setup()
    a = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    llm_budget.settle(conn, a.id, cfg.llm, input_tokens=812, output_tokens=95)
    llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    u = llm_budget.usage(conn, cfg.llm)
    assert u["today"]["calls"] == 2 and u["today"]["spent_eur"] == Decimal("0.0001788")
    assert u["today"]["reserved_eur"] == Decimal("0.00039")
    assert u["today"]["left_eur"] == Decimal("0.05") - Decimal("0.0005688")
    assert u["month"]["input_tokens"] == 812 and u["month"]["output_tokens"] == 95
    assert [r["expires_at"] for r in u["open_reservations"]] == ["2026-11-27T13:00:00.000000Z"]
    assert u["exhausted"] is None


# --- two OS processes, one reservation left -----------------------------------

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from tinybot.base import config; from tinybot.store import db; from tinybot.advisors import llm_budget
cfg = config.load({config!r})
conn = db.connect(cfg.db_path)
# Widen the window between the budget check and the insert: without
# BEGIN IMMEDIATE both processes would see the same room left.
llm_budget._between_check_and_insert = lambda: time.sleep(0.5)
while time.time() < {start}:
    time.sleep(0.001)
try:
    r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=1000)
    print(json.dumps({{"ok": r.id}}))
except llm_budget.BudgetRefused as e:
    print(json.dumps({{"refused": e.code}}))
"""


def test_two_processes_racing_for_the_last_reservation_only_one_gets_it(setup):
    cfg, conn = setup(daily="0.0005")  # room for one worst case (0.00039), not two
    start = time.time() + 1.5
    code = CHILD.format(root=str(ROOT), config=str(cfg.path), start=start)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert sorted(next(iter(o)) for o in outs) == ["ok", "refused"]
    assert len(rows(conn)) == 1
    assert llm_budget.committed_eur(conn, day=rows(conn)[0]["day"]) <= Decimal("0.0005")
