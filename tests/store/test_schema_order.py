"""schema.sql reads in the order its migrations apply (issue 13, item 6)."""

from __future__ import annotations

from tinybot.store import db


def test_migrations_are_in_the_file_in_the_order_they_apply():
    names = [m.name for m in db.migrations()]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert names[:3] == ["0001_core", "0002_scheduler", "0004_ops"]


def test_a_database_migrated_in_the_old_file_order_is_up_to_date(tmp_path):
    """Before the reorder, 0004_ops came before 0002_scheduler in the file (and in existing databases)."""
    conn = db.connect(tmp_path / "t.db")
    old_order = {m.name: m for m in db.migrations()}
    for name in ("0001_core", "0004_ops", "0002_scheduler"):
        m = old_order[name]
        with db.transaction(conn):
            db.applied_migrations(conn)
            for statement in db._statements(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, '2026-01-01T00:00:00.000000Z')", (name,)
            )
    assert [m.name for m in db.pending_migrations(conn)] == [n for n in old_order if n > "0004_ops"]
    db.migrate(conn)
    assert db.pending_migrations(conn) == []
