"""proposals_open (migration 0011_speed): the proposals expire_stale may expire, kept by triggers.  Compared, after
every step of a proposal's life, with what it stands for: pending or approved, with no execution."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from helpers.configs import paper_setup
from tinybot.store import db
from tinybot.trade import executor, proposals
from tinybot.trade.proposals import Draft

T0 = "2026-11-27 12:00:00"


def open_ids(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM proposals_open ORDER BY id")]


def by_definition(conn) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT id FROM proposals p WHERE status IN ('pending', 'approved')"
            " AND NOT EXISTS (SELECT 1 FROM trade_executions e WHERE e.proposal_id = p.id) ORDER BY id"
        )
    ]


def propose(conn, approve=False, ttl=timedelta(minutes=30)):
    draft = Draft("BTC-EUR", "buy", Decimal("6"), None, "test")
    return proposals.create(conn, draft, source="test", ttl=ttl, approve=approve)


@freeze_time(T0)
def test_the_open_set_follows_every_step_of_a_proposals_life(write_config):
    cfg, conn, ex = paper_setup(write_config)
    pending, approved, rejected, executed = (propose(conn) for _ in range(4))
    assert open_ids(conn) == by_definition(conn) == [pending, approved, rejected, executed]
    proposals.approve(conn, approved)
    proposals.approve(conn, executed)
    proposals.reject(conn, rejected)
    assert open_ids(conn) == by_definition(conn) == [pending, approved, executed]
    assert executor.execute(conn, cfg, ex, executed).state == "filled"
    assert open_ids(conn) == by_definition(conn) == [pending, approved]
    with freeze_time("2026-11-27 13:00:00"):
        assert sorted(proposals.expire_stale(conn)) == [pending, approved]
    assert open_ids(conn) == by_definition(conn) == []
    ex.close()


def test_the_migration_fills_the_open_set_from_an_existing_database(write_config):
    """A database from before 0011_speed: its open proposals are found, its executed ones are not."""
    cfg, conn, ex = paper_setup(write_config)
    with freeze_time(T0):
        first, second = propose(conn, approve=True), propose(conn, approve=True)
        executor.execute(conn, cfg, ex, first)
    with db.transaction(conn):  # as the release before this one left it
        conn.execute("DELETE FROM proposals_open")
        conn.execute("DELETE FROM schema_migrations WHERE name = '0011_speed'")
        for name in ("proposals_source", "proposals_open_expiry"):
            conn.execute(f"DROP INDEX {name}")
        for name in ("created", "changed", "deleted", "executed", "unexecuted"):
            conn.execute(f"DROP TRIGGER proposals_open_{name}")
        conn.execute("DROP TABLE proposals_open")
    assert "0011_speed" in db.migrate(conn)
    assert open_ids(conn) == by_definition(conn) == [second]
    ex.close()
