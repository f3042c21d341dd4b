"""Storage: the connection settings, the schema's constraints, migrations, and transaction ownership."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from tinybot.store import db

from helpers import ROOT


@pytest.fixture
def conn(tmp_path):
    c = db.open_db(tmp_path / "t.db")
    yield c
    c.close()


def test_connection_settings(conn):
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS
    assert conn.isolation_level is None


def test_migrations_are_recorded_and_idempotent(conn):
    names = [m.name for m in db.migrations()]
    assert names[0] == "0001_core" and len(names) == len(set(names))
    assert db.applied_migrations(conn) == names
    assert db.migrate(conn) == []


def _unique_sets(table: sqlite_utils.db.Table) -> set[tuple[str, ...]]:
    out = set()
    for idx in table.xindexes:
        if idx.unique if hasattr(idx, "unique") else False:
            out.add(tuple(c.name for c in idx.columns if c.name))
    for row in table.db.execute(f"PRAGMA index_list('{table.name}')").fetchall():
        if row[2]:  # unique
            cols = tuple(r[2] for r in table.db.execute(f"PRAGMA index_info('{row[1]}')").fetchall())
            out.add(cols)
    return out


def test_schema_has_the_constraints_the_guarantees_rest_on(conn):
    """Introspect the live schema: UNIQUE claims, CHECK on states, one-row kill switch."""
    d = sqlite_utils.Database(conn)
    assert ("proposal_id",) in _unique_sets(d["trade_executions"])
    assert ("client_order_id",) in _unique_sets(d["trade_executions"])
    assert ("exchange", "market", "trade_id") in _unique_sets(d["trade_history"])
    assert ("slot",) in _unique_sets(d["ticks"])
    sql = d["trade_executions"].schema
    states = re.search(r"state\s+TEXT NOT NULL\s+CHECK \(state IN \(([^)]*)\)\)", sql).group(1)
    assert {s.strip(" '\n") for s in states.split(",")} == {
        "claimed",
        "blocked",
        "submitting",
        "submitted",
        "filled",
        "canceled",
        "failed",
        "unknown",
    }
    assert "CHECK (id = 1)" in d["kill_switch"].schema
    for table, columns in {
        "proposals": {"id", "market", "side", "amount_quote", "amount", "status", "expires_at", "approval_hash"},
        "trade_executions": {"proposal_id", "client_order_id", "state", "submitting_at", "exchange_order_id"},
        "trade_history": {"trade_id", "execution_id", "amount", "price", "fee"},
        "kill_switch": {"trading_enabled", "reason", "changed_at"},
        "guard_decisions": {"proposal_id", "guard", "verdict", "reason_code", "detail", "decided_at"},
        "gpt_usage_log": {"state", "reserved_eur", "cost_eur"},
        "ticks": {"slot", "status"},
        "paper_balances": {"asset", "available"},
        "paper_orders": {"order_id", "client_order_id", "status"},
    }.items():
        assert columns <= set(d[table].columns_dict), table


def test_constraints_really_refuse(conn):
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("INSERT INTO kill_switch (id, trading_enabled, changed_at) VALUES (2, 1, 'x')")
    conn.execute(
        "INSERT INTO proposals (market, side, amount_quote, source, created_at, expires_at)"
        " VALUES ('BTC-EUR', 'buy', '5', 't', 'x', 'y')"
    )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, state,"
            " claimed_at, updated_at) VALUES (1, 'c', 'paper', 'BTC-EUR', 'buy', 'sent', 'x', 'x')"
        )
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # both amounts
        conn.execute(
            "INSERT INTO proposals (market, side, amount_quote, amount, source, created_at, expires_at)"
            " VALUES ('BTC-EUR', 'buy', '5', '1', 't', 'x', 'y')"
        )
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute(
            "INSERT INTO trade_executions (proposal_id, client_order_id, exchange, market, side, state,"
            " claimed_at, updated_at) VALUES (99, 'c', 'paper', 'BTC-EUR', 'buy', 'claimed', 'x', 'x')"
        )


def test_transaction_rolls_back_on_error_and_refuses_to_nest(conn, tmp_path):
    with pytest.raises(ZeroDivisionError):
        with db.transaction(conn):
            conn.execute("UPDATE kill_switch SET reason = 'half-written'")
            raise ZeroDivisionError("a bug in the middle of a transaction")
    other = db.connect(tmp_path / "t.db")
    assert other.execute("SELECT reason FROM kill_switch").fetchone()[0] == "initial"
    with db.transaction(conn):
        with pytest.raises(RuntimeError, match="inside an open transaction"):
            with db.transaction(conn):
                pass


def test_sqlite_utils_writer_inside_outer_transaction_leaks_nothing(conn, tmp_path):
    """The sqlite-utils 3.x regression: its mutators committed an outer transaction.

    With sqlite-utils >= 4 and isolation_level=None, a ROLLBACK of our outer
    BEGIN IMMEDIATE undoes what its writers did; a second connection sees nothing.
    """
    d = sqlite_utils.Database(conn)
    conn.execute("BEGIN IMMEDIATE")
    d["events"].insert({"at": "2026-01-01T00:00:00.000000Z", "kind": "leak", "detail": "x"})
    d["paper_balances"].upsert({"asset": "EUR", "available": "999"}, pk="asset")
    d["kill_switch"].update(1, {"trading_enabled": 0})
    assert conn.in_transaction
    conn.execute("ROLLBACK")
    other = db.connect(tmp_path / "t.db")
    assert other.execute("SELECT COUNT(*) FROM events WHERE kind = 'leak'").fetchone()[0] == 0
    assert other.execute("SELECT COUNT(*) FROM paper_balances").fetchone()[0] == 0
    assert other.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0] == 1


def test_our_writers_inside_an_outer_transaction_leak_nothing(conn, tmp_path):
    """Every tinybot writer owns its transaction: called inside someone else's, it refuses (and writes nothing)."""
    from datetime import timedelta
    from decimal import Decimal

    from tinybot.trade import killswitch, proposals

    writers = [
        lambda: killswitch.set_enabled(conn, False, "x", by="t"),
        lambda: proposals.create(
            conn, proposals.Draft("BTC-EUR", "buy", Decimal("5")), source="t", ttl=timedelta(minutes=1)
        ),
        lambda: proposals.expire_stale(conn),
    ]
    for writer in writers:
        conn.execute("BEGIN IMMEDIATE")
        with pytest.raises(RuntimeError):
            writer()
        conn.execute("ROLLBACK")
    other = db.connect(tmp_path / "t.db")
    assert other.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 0
    assert other.execute("SELECT trading_enabled FROM kill_switch").fetchone()[0] == 1


def _sql_texts():
    """Every piece of SQL tinybot runs: schema.sql without comments, and SQL string literals in the code."""
    import io
    import tokenize

    yield "schema.sql", "\n".join(line.split("--")[0] for line in (ROOT / "schema.sql").read_text().splitlines())
    for f in Path(ROOT / "tinybot").rglob("*.py"):
        for tok in tokenize.generate_tokens(io.StringIO(f.read_text()).readline):
            if tok.type == tokenize.STRING and re.search(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE)\b", tok.string):
                yield str(f), tok.string


def test_no_sql_clock_anywhere():
    """One clock: SQL never makes a timestamp (freezegun could not move it)."""
    pattern = re.compile(
        r"CURRENT_(TIMESTAMP|DATE|TIME)|\b(datetime|date|time|julianday|strftime|unixepoch)\([^)]*'now'", re.IGNORECASE
    )
    texts = list(_sql_texts())
    assert len(texts) > 50  # the scan really sees the code's SQL
    assert [name for name, text in texts if pattern.search(text)] == []


def test_the_books_migration_refuses_a_database_with_fills_unless_given_the_ledgers_step(tmp_path):
    """The store does not import the trade layer: migration 0010_books gets its Python step (the books walked
    from the fills) from whoever opens the database.  Without it, a database holding fills is refused before
    anything changes, rather than left with empty books; the CLI's way of opening it books them."""
    from tinybot.trade import ledger

    path = tmp_path / "old.db"
    conn = db.connect(path)
    db.migrate(conn, upto="0009_restore")
    conn.execute(
        "INSERT INTO trade_history (exchange, market, trade_id, order_id, side, amount, price, fee, fee_currency,"
        " executed_at, recorded_at, external) VALUES ('paper', 'BTC-EUR', 't1', 'o1', 'buy', '0.0001', '60000',"
        " '0.015', 'EUR', '2026-12-01T10:00:00.000000Z', '2026-12-01T10:00:00.000000Z', 0)"
    )
    with pytest.raises(db.DatabaseFault, match="0010_books books this database's fills"):
        db.migrate(conn)
    assert "0010_books" not in db.applied_migrations(conn)
    db.migrate(conn, after_migration=ledger.after_migration)
    row = conn.execute("SELECT book, base, cost_eur FROM book_positions WHERE market = 'BTC-EUR'").fetchone()
    assert (row["book"], row["base"], row["cost_eur"]) == ("external", "0.0001", "6.01500000")
