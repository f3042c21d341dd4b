"""Retention: old ticks, audit rows and events go; money rows, the newest rows and looked-up events stay."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tinybot.base import clock
from tinybot.store import db
from tinybot.loop import retention

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
OLD = NOW - timedelta(days=31)
RECENT = NOW - timedelta(days=29)


def iso(dt):
    return clock.to_iso(dt)


@pytest.fixture
def conn(tmp_path):
    c = db.open_db(tmp_path / "r.db")
    yield c
    c.close()


def proposal(conn, at, state="filled"):
    with db.transaction(conn):
        pid = conn.execute(
            "INSERT INTO proposals (market, side, amount_quote, source, status, created_at, expires_at)"
            " VALUES ('BTC-EUR', 'buy', '5', 'test', 'approved', ?, ?)",
            (iso(at), iso(at + timedelta(minutes=30))),
        ).lastrowid
        eid = conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, amount_quote, state,"
            " claimed_at, submitting_at, updated_at) VALUES (?, ?, 'paper', 'BTC-EUR', 'buy', '5', ?, ?, ?, ?)",
            (pid, f"cid-{pid}", state, iso(at), iso(at), iso(at)),
        ).lastrowid
        conn.execute(
            "INSERT INTO trade_history (execution_id, exchange, trade_id, order_id, market, side, amount, price, fee,"
            " fee_currency, executed_at, recorded_at) VALUES (?, 'paper', ?, 'o', 'BTC-EUR', 'buy', '0.0001',"
            " '50000', '0.01', 'EUR', ?, ?)",
            (eid, f"t-{pid}", iso(at), iso(at)),
        )
        conn.executemany(
            "INSERT INTO guard_decisions (proposal_id, execution_id, stage, guard, verdict, reason_code, decided_at)"
            " VALUES (?, ?, 'commit', ?, 'pass', 'ok', ?)",
            [(pid, eid, g, iso(at)) for g in ("cooldown", "daily_cap")],
        )
    return pid, eid


def tick(conn, at, status="ok"):
    with db.transaction(conn):
        conn.execute(
            "INSERT INTO ticks (slot, started_at, status, pid) VALUES (?, ?, ?, 1)", (iso(at), iso(at), status)
        )


def event(conn, at, kind="tick_failed"):
    with db.transaction(conn):
        conn.execute("INSERT INTO events (at, kind, detail) VALUES (?, ?, '')", (iso(at), kind))


def count(conn, table, where="1"):
    return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}").fetchone()[0]


def test_old_ticks_audit_and_events_go_money_rows_stay(conn):
    for i in range(3):
        proposal(conn, OLD - timedelta(hours=i))
        tick(conn, OLD - timedelta(minutes=i))
        event(conn, OLD - timedelta(minutes=i))
    proposal(conn, RECENT)
    tick(conn, RECENT)
    event(conn, RECENT)

    pruned = retention.prune(conn, NOW)

    assert pruned.counts["guard_decisions"] == 6 and pruned.counts["ticks"] == 3 and pruned.counts["events"] == 3
    assert count(conn, "guard_decisions") == 2 and count(conn, "ticks") == 1 and count(conn, "events") == 1
    # the record of money is never pruned
    assert count(conn, "proposals") == 4 and count(conn, "trade_executions") == 4 and count(conn, "trade_history") == 4
    assert retention.prune(conn, NOW).total == 0  # nothing left to do: idempotent


def test_a_row_exactly_keep_days_old_stays(conn):
    tick(conn, NOW - timedelta(days=30))
    tick(conn, NOW)
    assert retention.prune(conn, NOW).counts["ticks"] == 0


def test_the_newest_row_stays_so_ids_keep_rising(conn):
    """Without AUTOINCREMENT an emptied table hands out id 1 again; the alert cursors (id > cursor) would go blind."""
    event(conn, OLD)
    event(conn, OLD)
    newest = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
    retention.prune(conn, NOW)
    assert [r[0] for r in conn.execute("SELECT id FROM events")] == [newest]
    event(conn, NOW)
    assert conn.execute("SELECT MAX(id) FROM events").fetchone()[0] == newest + 1


def test_events_other_code_looks_up_by_kind_are_kept(conn):
    for kind in retention.KEEP_EVENT_KINDS:
        event(conn, OLD, kind)
    event(conn, OLD, "tick_failed")
    event(conn, NOW, "tick_failed")
    retention.prune(conn, NOW)
    kinds = sorted(r[0] for r in conn.execute("SELECT kind FROM events"))
    assert kinds == sorted([*retention.KEEP_EVENT_KINDS, "tick_failed"])


def test_audit_of_an_unresolved_execution_is_kept(conn):
    """`tinybot why` must still explain an order that is unknown for weeks."""
    _, eid = proposal(conn, OLD, state="unknown")
    proposal(conn, RECENT)
    retention.prune(conn, NOW)
    assert count(conn, "guard_decisions", f"execution_id = {eid}") == 2


def test_a_running_tick_is_never_pruned(conn):
    tick(conn, OLD, status="running")
    tick(conn, NOW)
    retention.prune(conn, NOW)
    assert count(conn, "ticks", "status = 'running'") == 1


def test_batches_keep_each_transaction_short(conn):
    for i in range(7):
        tick(conn, OLD - timedelta(minutes=i))
    tick(conn, NOW)
    first = retention.prune(conn, NOW, batch=3)
    assert first.counts["ticks"] == 3 and first.more
    assert first.total == sum(first.counts.values()) == 3  # rows deleted; "call again" is not a row
    total = retention.prune_all(conn, NOW, batch=3)
    assert total.counts["ticks"] == 4 and count(conn, "ticks") == 1


def test_prune_writes_nothing_inside_an_outer_transaction_it_does_not_own(conn):
    conn.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(RuntimeError):
            retention.prune(conn, NOW)
    finally:
        conn.execute("ROLLBACK")


def test_keep_days_must_be_positive(conn):
    with pytest.raises(ValueError, match="keep_days must be at least 1"):
        retention.prune(conn, NOW, keep_days=0)


def test_freezegun_moves_the_cutoff(conn):
    """No SQL clock: the default `now` is tinybot's one clock."""
    from freezegun import freeze_time

    tick(conn, OLD)
    tick(conn, NOW)
    with freeze_time(OLD + timedelta(days=1)):
        assert retention.prune(conn).counts["ticks"] == 0
    with freeze_time(NOW):
        assert retention.prune(conn).counts["ticks"] == 1
