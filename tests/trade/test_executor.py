"""The hardened executor in paper mode: each test breaks if its mechanism is removed."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from decimal import Decimal

import pytest
from freezegun import freeze_time

from tinybot.store import db
from tinybot.trade import executor, killswitch, proposals, reconcile
from tinybot.trade.proposals import Draft

T0 = "2026-11-27 12:00:00"


def propose(conn, market="BTC-EUR", side="buy", eur="6", amount=None, ttl=timedelta(minutes=30), approve=True):
    return proposals.create(
        conn,
        Draft(market, side, None if amount else Decimal(eur), Decimal(amount) if amount else None, "test"),
        source="test",
        ttl=ttl,
        approve=approve,
    )


def paper_orders(conn) -> int:
    return conn.execute("SELECT COUNT(*) FROM paper_orders").fetchone()[0]


def decisions(conn, pid):
    return {
        r["guard"]: r["reason_code"]
        for r in conn.execute(
            "SELECT guard, reason_code FROM guard_decisions WHERE proposal_id = ? AND verdict = 'block'", (pid,)
        )
    }


@freeze_time(T0)
def test_execute_fills_and_records_everything(paper):
    cfg, conn, ex, _ = paper
    pid = propose(conn, eur="6")
    r = executor.execute(conn, cfg, ex, pid)
    assert (r.state, r.sent) == ("filled", True)
    row = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (r.execution_id,)).fetchone()
    assert row["client_order_id"] == r.client_order_id and row["exchange_order_id"] == r.exchange_order_id
    fill = conn.execute("SELECT * FROM trade_history").fetchone()
    # a €6 buy by amountQuote costs exactly €6: 0.25 % plus the base truncation remainder (tinybot/base/fees.py)
    assert Decimal(fill["fee"]) == Decimal("6") - Decimal(fill["amount"]) * Decimal(fill["price"]) >= Decimal("0.0149")
    assert ex.balances()["EUR"].available == Decimal("19")
    pos = conn.execute("SELECT * FROM positions WHERE market = 'BTC-EUR'").fetchone()
    assert Decimal(pos["base"]) == Decimal(fill["amount"]) > 0


@freeze_time(T0)
def test_every_guard_is_evaluated_and_recorded_in_its_order(paper):
    """The first block is the reason shown, so the order is part of the behaviour: the executor records every
    commit guard, in this order; auto-approval and Telegram's pre-check ask these, in this order."""
    from tinybot.trade import guards

    cfg, conn, ex, _ = paper
    r = executor.execute(conn, cfg, ex, propose(conn, eur="6"))
    rows = conn.execute(
        "SELECT guard, verdict, reason_code FROM guard_decisions WHERE execution_id = ? AND stage = 'commit'"
        " ORDER BY id",
        (r.execution_id,),
    ).fetchall()
    assert [row["guard"] for row in rows] == [
        "kill_switch",
        "approval",
        "expiry",
        "allowlist",
        "market_open",
        "cooldown",
        "anti_flip",
        "max_trade",
        "daily_cap",
        "exposure_cap",
        "exchange_minimum",
        "precision",
        "balance",
        "book",
        "own_position",
        "sellable_after",
        "no_dust",
    ]
    assert {(row["verdict"], row["reason_code"]) for row in rows} == {("pass", "ok")}
    assert [g.__name__ for g in guards.AUTO_APPROVAL_GUARDS] == ["allowlist", "max_trade", "daily_cap", "exposure_cap"]
    assert [g.__name__ for g in guards.PRECHECK_GUARDS + guards.PRICED_PRECHECK_GUARDS] == [
        "kill_switch",
        "expiry",
        "allowlist",
        "cooldown",
        "anti_flip",
        "max_trade",
        "daily_cap",
        "exposure_cap",
        "own_position",
        "sellable_after",
        "no_dust",
    ]


@freeze_time(T0)
def test_second_execute_returns_the_same_execution_and_sends_nothing(paper):
    """(1) Idempotency: the UNIQUE claim stops a second execution of one proposal."""
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    first = executor.execute(conn, cfg, ex, pid)
    again = executor.execute(conn, cfg, ex, pid)
    assert again.execution_id == first.execution_id and again.sent is False
    assert paper_orders(conn) == 1
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE.*proposal_id"):
        conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, state,"
            " claimed_at, updated_at) VALUES (?, 'other', 'paper', 'BTC-EUR', 'buy', 'claimed', 'x', 'x')",
            (pid,),
        )


@freeze_time(T0)
def test_claim_race_between_two_connections(paper):
    """(3) Two connections claiming one proposal: the second INSERT fails on UNIQUE, whatever the order."""
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    other = db.connect(cfg.db_path)
    with db.transaction(other):
        other.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side,"
            " amount_quote, state, claimed_at, updated_at)"
            " VALUES (?, 'cid-other', 'paper', 'BTC-EUR', 'buy', '5', 'claimed', ?, ?)",
            (pid, "2026-11-27T12:00:00.000000Z", "2026-11-27T12:00:00.000000Z"),
        )
    # our execute finds the other connection's claim and resumes *that* execution (its client id), once
    r = executor.execute(conn, cfg, ex, pid)
    assert r.client_order_id == "cid-other"
    assert conn.execute("SELECT COUNT(*) FROM trade_executions").fetchone()[0] == 1
    assert paper_orders(conn) == 1


@freeze_time(T0)
def test_kill_switch_blocks_even_an_already_claimed_execution(paper, monkeypatch):
    """(4) The switch is read inside the send transaction: a kill between claim and commit still stops the order."""
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    real_balances = ex.balances

    def kill_during_preflight():
        killswitch.set_enabled(db.connect(cfg.db_path), False, "test kill", by="test")
        return real_balances()

    monkeypatch.setattr(ex, "balances", kill_during_preflight)
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and "kill_switch_on" in r.reason
    assert paper_orders(conn) == 0
    # and everything after it too
    pid2 = propose(conn, market="ETH-EUR")
    monkeypatch.setattr(ex, "balances", real_balances)
    assert executor.execute(conn, cfg, ex, pid2).state == "blocked"
    killswitch.set_enabled(conn, True, "resume", by="test")
    pid3 = propose(conn, market="ETH-EUR")
    assert executor.execute(conn, cfg, ex, pid3).state == "filled"


@freeze_time(T0)
def test_empty_allowlist_blocks_everything(write_config):
    """(5) Deny by default."""
    from helpers.configs import paper_setup

    cfg, conn, ex = paper_setup(write_config, allowlist="[]")
    pid = propose(conn)
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and "allowlist_empty" in r.reason
    assert paper_orders(conn) == 0


@freeze_time(T0)
def test_market_outside_allowlist_is_blocked(write_config):
    from helpers.configs import paper_setup

    cfg, conn, ex = paper_setup(write_config, allowlist='["ETH-EUR"]')
    pid = propose(conn, market="BTC-EUR")
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and decisions(conn, pid) == {"allowlist": "not_allowlisted"}


@pytest.mark.parametrize("offset, expected", [(-1, "filled"), (0, "blocked"), (1, "blocked")])
def test_expiry_boundary(paper, offset, expected):
    """(6) Expired at exactly expires_at; one second before it still goes."""
    cfg, conn, ex, _ = paper
    with freeze_time(T0) as frozen:
        pid = propose(conn, ttl=timedelta(minutes=10))
        frozen.tick(timedelta(minutes=10, seconds=offset))
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == expected
    if expected == "blocked":
        assert decisions(conn, pid) == {"expiry": "proposal_expired"}


@freeze_time(T0)
def test_timeout_after_accept_is_unknown_then_reconciled_without_a_second_order(paper):
    """(7) The paper exchange accepts, the reply is lost: unknown, never re-sent, reconcile finds it."""
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    ex.faults.append("timeout_after_accept")
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "unknown" and "timeout" in r.reason
    assert executor.execute(conn, cfg, ex, pid).state == "unknown"  # retry: still one order
    assert paper_orders(conn) == 1
    report = reconcile.reconcile(conn, cfg, ex)
    assert [(c.before, c.after) for c in report.changes] == [("unknown", "filled")]
    assert conn.execute("SELECT COUNT(*) FROM trade_history").fetchone()[0] == 1
    reconcile.reconcile(conn, cfg, ex)  # twice: nothing doubles
    assert conn.execute("SELECT COUNT(*) FROM trade_history").fetchone()[0] == 1
    assert paper_orders(conn) == 1


def test_timeout_before_accept_fails_only_after_window_and_grace(paper):
    cfg, conn, ex, _ = paper
    with freeze_time(T0) as frozen:
        pid = propose(conn)
        ex.faults.append("timeout_before_accept")
        assert executor.execute(conn, cfg, ex, pid).state == "unknown"
        window = 2 * cfg.exchange.access_window + cfg.exchange.reconcile_grace  # signed by +1 window, valid +1
        frozen.tick(window - timedelta(seconds=1))
        assert reconcile.reconcile(conn, cfg, ex).still_unknown == [1]
        frozen.tick(timedelta(seconds=1))
        report = reconcile.reconcile(conn, cfg, ex)
    assert [(c.before, c.after) for c in report.changes] == [("unknown", "failed")]
    assert "never reached the exchange" in report.changes[0].detail
    assert paper_orders(conn) == 0


@freeze_time(T0)
def test_balance_changed_between_approval_and_send_blocks(paper):
    """(8) The fresh balance read right before sending decides, not the one at approval."""
    cfg, conn, ex, _ = paper
    pid = propose(conn, eur="10")
    with db.transaction(conn):
        conn.execute("UPDATE paper_balances SET available = '6' WHERE asset = 'EUR'")
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and decisions(conn, pid) == {"balance": "insufficient_balance"}
    assert paper_orders(conn) == 0


@freeze_time(T0)
def test_refused_send_is_failed_with_the_reason(paper):
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    ex.faults.append("refuse")
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "failed" and "refused" in r.reason


@freeze_time(T0)
def test_changed_after_approval_is_refused(paper):
    cfg, conn, ex, _ = paper
    pid = propose(conn, eur="5")
    with db.transaction(conn):
        conn.execute("UPDATE proposals SET amount_quote = '10' WHERE id = ?", (pid,))
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and decisions(conn, pid) == {"approval": "changed_after_approval"}


@freeze_time(T0)
def test_pending_proposal_is_not_executed_and_the_refusal_is_recorded(paper):
    cfg, conn, ex, _ = paper
    pid = propose(conn, approve=False)
    with pytest.raises(executor.NotExecutable, match=f"proposal {pid} is pending, not approved; approve it first"):
        executor.execute(conn, cfg, ex, pid)
    assert conn.execute("SELECT COUNT(*) FROM trade_executions").fetchone()[0] == 0
    assert decisions(conn, pid) == {"approval": "not_approved"}


@pytest.mark.parametrize("offset, expected", [(-1, "blocked"), (0, "filled")])
def test_cooldown_boundary(paper, offset, expected):
    cfg, conn, ex, _ = paper
    with freeze_time(T0) as frozen:
        assert executor.execute(conn, cfg, ex, propose(conn)).state == "filled"
        frozen.tick(cfg.risk.cooldown + timedelta(seconds=offset))
        pid = propose(conn)
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == expected
    if expected == "blocked":
        assert decisions(conn, pid) == {"cooldown": "cooldown_active"}


@pytest.mark.parametrize("offset, expected", [(-1, "blocked"), (0, "filled")])
def test_anti_flip_boundary(paper, offset, expected):
    cfg, conn, ex, _ = paper
    with freeze_time(T0) as frozen:
        assert executor.execute(conn, cfg, ex, propose(conn, eur="10")).state == "filled"
        frozen.tick(cfg.risk.anti_flip + timedelta(seconds=offset))  # cooldown (1h) long over
        held = conn.execute("SELECT base FROM positions WHERE market = 'BTC-EUR'").fetchone()[0]
        pid = propose(conn, side="sell", amount=held)
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == expected
    if expected == "blocked":
        assert decisions(conn, pid) == {"anti_flip": "anti_flip"}


@freeze_time(T0)
def test_caps_count_in_flight_executions(paper):
    """An unknown (maybe-sent) buy counts against the daily and exposure caps like a fill."""
    cfg, conn, ex, _ = paper
    ex.faults.append("timeout_before_accept")
    assert executor.execute(conn, cfg, ex, propose(conn, market="BTC-EUR", eur="10")).state == "unknown"
    assert executor.execute(conn, cfg, ex, propose(conn, market="ETH-EUR", eur="10")).state == "filled"
    pid = propose(conn, market="ETH-EUR", eur="5")
    with freeze_time("2026-11-27 14:00:00"):  # ETH cooldown over; still the same UTC day
        r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "blocked" and decisions(conn, pid)["daily_cap"] == "over_daily_cap"


@freeze_time(T0)
def test_per_trade_cap_and_exchange_minimum(paper):
    cfg, conn, ex, _ = paper
    big = propose(conn, eur="10.01")
    assert executor.execute(conn, cfg, ex, big).state == "blocked"
    assert decisions(conn, big) == {"max_trade": "over_max_trade"}
    small = propose(conn, market="ETH-EUR", eur="4.99")
    assert executor.execute(conn, cfg, ex, small).state == "blocked"
    # under the minimum, and (after the fee) a position nobody could sell again
    assert decisions(conn, small) == {"exchange_minimum": "below_exchange_minimum", "sellable_after": "would_strand"}


def test_daily_cap_resets_at_utc_midnight(paper):
    cfg, conn, ex, _ = paper
    with freeze_time("2026-11-27 21:00:00") as frozen:
        assert executor.execute(conn, cfg, ex, propose(conn, "BTC-EUR", eur="10")).state == "filled"
        assert executor.execute(conn, cfg, ex, propose(conn, "ETH-EUR", eur="10")).state == "filled"
        frozen.move_to("2026-11-27 23:59:59")
        with db.transaction(conn):  # make room under exposure so only the daily cap speaks
            conn.execute("UPDATE positions SET cost_eur = '0'")
        late = propose(conn, "ETH-EUR", eur="5")
        assert executor.execute(conn, cfg, ex, late).state == "blocked"
        assert decisions(conn, late) == {"daily_cap": "over_daily_cap"}
        frozen.move_to("2026-11-28 00:00:00")
        assert executor.execute(conn, cfg, ex, propose(conn, "ETH-EUR", eur="5")).state == "filled"


@freeze_time(T0)
def test_preflight_failure_leaves_claimed_and_retry_resumes_once(paper):
    cfg, conn, ex, prices = paper
    pid = propose(conn)
    prices.fail_next = "exchange down"
    r = executor.execute(conn, cfg, ex, pid)
    assert r.state == "claimed" and "preflight_failed" in r.reason and not r.sent
    r2 = executor.execute(conn, cfg, ex, pid)
    assert r2.state == "filled" and r2.client_order_id == r.client_order_id
    assert paper_orders(conn) == 1


@freeze_time(T0)
def test_an_order_found_for_a_failed_execution_corrects_the_record_loudly(paper):
    """Should never happen (the send deadline prevents it); if the exchange has it anyway, the record follows."""
    cfg, conn, ex, _ = paper
    pid = propose(conn)
    ex.faults.append("timeout_before_accept")
    r = executor.execute(conn, cfg, ex, pid)
    with db.transaction(conn):  # as if reconcile had (wrongly) proved it absent
        conn.execute("UPDATE trade_executions SET state = 'failed' WHERE id = ?", (r.execution_id,))
    from decimal import Decimal as D

    assert ex.send_order("BTC-EUR", "buy", client_order_id=r.client_order_id, amount_quote=D("5")).kind == "accepted"
    report = reconcile.reconcile(conn, cfg, ex)
    assert [(c.before, c.after) for c in report.changes] == [("failed", "filled")]
    assert report.surprises and "recorded as failed" in report.surprises[0]
    assert conn.execute("SELECT COUNT(*) FROM trade_history").fetchone()[0] == 1
    assert conn.execute("SELECT severity FROM events WHERE kind = 'surprise_order'").fetchone()[0] == "error"


def test_time_window_guards_read_through_the_time_indexes(paper):
    """Guards stay flat as history grows: the cooldown, anti-flip and daily-cap queries are planned on the
    (market, submitting_at) / (submitting_at) indexes, never on the state index that holds every fill ever."""
    from tinybot.trade import guards

    cfg, conn, ex, _ = paper
    pid = propose(conn)
    row = conn.execute("SELECT * FROM proposals WHERE id = ?", (pid,)).fetchone()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    with freeze_time(T0):
        ctx = guards.Context(
            conn, cfg, guards.clock.now(), row, None, ex.markets()["BTC-EUR"], ex.ticker("BTC-EUR"), ex.balances()
        )
        guards.evaluate(ctx)
    conn.set_trace_callback(None)
    windowed = [s for s in seen if "FROM trade_executions" in s and "submitting_at" in s]
    assert len(windowed) >= 3  # cooldown, anti-flip, daily cap
    for sql in windowed:
        plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "trade_executions_state" not in plan and "USING INDEX trade_executions_" in plan, (sql, plan)
