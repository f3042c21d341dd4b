"""Fills and positions: what the exchange says happened, written once.

``apply_order`` is called by the executor (right after an accepted send) and
by reconcile (later lookups) inside their own transaction.  A fill is keyed
by the exchange, its market and its trade id (Bitvavo's ids are unique per
market) under a UNIQUE constraint; only a fill that was actually inserted
moves the position, so seeing the same order twice changes nothing.  Two
exceptions, both loud rather than silent:

* a fill first seen unsettled (Bitvavo sends ``fee`` only once ``settled``)
  is corrected when it is seen settled: the fee, and the position with it;
* a fill whose key is already taken by a *different* fill (other order,
  side, amount or price) is never ignored quietly: it is an ``error`` event.

Each fill is stored in its book (``trade_history.book``: its proposal's,
tinybot.trade.book) and moves that book's position (``book_positions``) and the
market's total (``positions``, the sum of its books) with tinybot.trade.book's
average-cost step, EUR at 8 decimals.  A fill of an ``external`` execution
(coins tinybot did not buy, sold on purpose with ``propose ... --external``)
is stored, flagged, and moves no position: it is not tinybot's profit or
loss.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from typing import TYPE_CHECKING

from ..base import clock, money
from ..base.config import EXTERNAL
from .book import steps
from ..store.db import event

if TYPE_CHECKING:  # `tinybot status` reads book_positions here and never loads the exchange contract
    from ..exchange.base import Fill, Order

# Execution states no process moves again (retention may prune their guard decisions).
FINAL_STATES = ("filled", "canceled", "failed", "blocked")


def state_for(order: Order) -> str:
    from ..exchange.base import FINAL_STATUSES

    if order.status == "filled":
        return "filled"
    if order.status in FINAL_STATUSES:
        # canceled / expired / rejected: final either way; a partly filled
        # canceled order keeps its fills.
        return "canceled"
    return "submitted"


def apply_order(
    conn: sqlite3.Connection, execution: sqlite3.Row, exchange: str, order: Order, *, from_states: tuple[str, ...]
) -> bool:
    """Move the execution to the order's state and record its fills.

    Only moves the row if it is still in one of ``from_states`` (compare-and-
    set: a racing reconcile or executor that got there first wins, and this
    call still records any fills it has not seen).  Returns True if the row
    changed state.
    """
    external = bool(execution["external"]) if "external" in execution.keys() else False
    for f in order.fills:
        record_fill(conn, execution["id"], exchange, f, execution["client_order_id"], external=external)
    new_state = state_for(order)
    now = clock.now_iso()
    created = clock.to_iso(clock.from_ms(order.created_ms))
    cur = conn.execute(
        "UPDATE trade_executions SET state = ?, exchange_order_id = COALESCE(exchange_order_id, ?),"
        " filled_amount = ?, filled_quote = ?, fee_paid = ?, fee_currency = COALESCE(?, fee_currency),"
        " updated_at = ?, resolved_at = CASE WHEN ? IN ('filled', 'canceled') THEN ? ELSE resolved_at END,"
        " reason = CASE WHEN state = 'unknown' THEN reason || ' → found on the exchange' ELSE reason END,"
        # an execution that never reached `submitting` here (found by the surprise scan), or one a restore put
        # in doubt (its submitting_at is only the claim: the order may have been sent later), takes its order's
        # creation time, so the daily cap, cooldown and anti-flip count it from when it really traded
        " submitting_at = CASE WHEN submitting_at IS NULL THEN ?"
        "   WHEN in_doubt_at IS NOT NULL AND submitting_at < ? THEN ? ELSE submitting_at END"
        " WHERE id = ? AND state IN (%s)" % ",".join("?" * len(from_states)),
        (
            new_state,
            order.order_id,
            f"{order.filled_amount:f}",
            f"{order.filled_amount_quote:f}",
            f"{order.fee_paid:f}",
            order.fee_currency,
            now,
            new_state,
            now,
            created,
            created,
            created,
            execution["id"],
            *from_states,
        ),
    )
    return cur.rowcount == 1


def record_fill(
    conn: sqlite3.Connection,
    execution_id: int | None,
    exchange: str,
    f: Fill,
    client_order_id: str | None,
    *,
    external: bool = False,
) -> bool:
    """Store a fill once, in its book; True if it was new.  A settlement corrects the stored fee (and the books)."""
    cur = conn.execute(
        "INSERT INTO trade_history (execution_id, exchange, trade_id, order_id, client_order_id, market,"
        " side, amount, price, fee, fee_currency, executed_at, recorded_at, settled, external, book)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (exchange, market, trade_id) DO NOTHING",
        (
            execution_id,
            exchange,
            f.trade_id,
            f.order_id,
            client_order_id,
            f.market,
            f.side,
            str(f.amount),
            str(f.price),
            str(f.fee),
            f.fee_currency,
            clock.to_iso(clock.from_ms(f.timestamp_ms)),
            clock.now_iso(),
            int(f.settled),
            int(external),
            book_of(conn, execution_id, f.order_id, external),
        ),
    )
    if cur.rowcount == 1:
        if not external:
            _book(conn, cur.lastrowid)
        return True
    stored = conn.execute(
        "SELECT * FROM trade_history WHERE exchange = ? AND market = ? AND trade_id = ?",
        (exchange, f.market, f.trade_id),
    ).fetchone()
    if (stored["order_id"], stored["side"], Decimal(stored["amount"]), Decimal(stored["price"])) != (
        f.order_id,
        f.side,
        f.amount,
        f.price,
    ):
        detail = (
            f"fill {f.trade_id} on {f.market} (order {f.order_id}, {f.side} {f.amount} @ {f.price}) conflicts"
            f" with the stored fill of that id (order {stored['order_id']}, {stored['side']} {stored['amount']}"
            f" @ {stored['price']}); the stored one is kept, check the exchange's trade history"
        )
        if not conn.execute("SELECT 1 FROM events WHERE kind = 'fill_conflict' AND detail = ?", (detail,)).fetchone():
            event(conn, "fill_conflict", detail, severity="error", execution_id=execution_id)
        return False
    if not stored["settled"] and f.settled:
        _settle(conn, stored, f)
    return False


def _settle(conn: sqlite3.Connection, stored: sqlite3.Row, f: Fill) -> None:
    """The fee of a fill first stored unsettled is known now: store it, and book the market again from its fills
    (a later fill's average cost depends on this one's fee)."""
    conn.execute(
        "UPDATE trade_history SET fee = ?, fee_currency = ?, settled = 1 WHERE id = ?",
        (str(f.fee), f.fee_currency, stored["id"]),
    )
    if not stored["external"]:
        rebuild_positions(conn, f.market)
    event(
        conn,
        "fill_settled",
        f"fill {f.trade_id} on {f.market} settled: fee {f.fee} {f.fee_currency}",
        execution_id=stored["execution_id"],
    )


# --- the books, as stored: one row per book and market (book_positions) and their sum per market (positions) -----
# Both are what tinybot.trade.book's walk over the fills gives, kept up to date in the transaction that records a fill so
# that the guards read a row instead of the whole history.  EUR is stored at book.steps.EUR_PLACES (8 decimals).


def book_of(conn: sqlite3.Connection, execution_id: int | None, order_id: str, external: bool = False) -> str:
    """The book a fill belongs to: its proposal's; ``external`` for an --external sell and for orders no
    execution accounts for (none, or a second order under an execution's clientOrderId)."""
    if external or execution_id is None:
        return EXTERNAL
    r = conn.execute(
        "SELECT p.book, p.source, p.external, e.exchange_order_id FROM trade_executions e"
        " JOIN proposals p ON p.id = e.proposal_id WHERE e.id = ?",
        (execution_id,),
    ).fetchone()
    if r is None or (r["exchange_order_id"] is not None and r["exchange_order_id"] != order_id):
        return EXTERNAL
    return r["book"] or steps.default_book(r["source"], bool(r["external"]))


def _stored_eur(d: Decimal) -> str:
    return f"{steps.q(d) + 0:f}"  # always 8 decimals; `+ 0` turns -0 into 0


def _read(conn: sqlite3.Connection, market: str) -> dict[str, steps.Position]:
    return {
        r["book"]: steps.Position(Decimal(r["base"]), Decimal(r["cost_eur"]), Decimal(r["realised_eur"]))
        for r in conn.execute("SELECT * FROM book_positions WHERE market = ?", (market,))
    }


def _store(conn: sqlite3.Connection, market: str, books: dict[str, steps.Position], only=None) -> None:
    """Write the books named in ``only`` (None: all) and the market's total, the sum of all its books."""
    now = clock.now_iso()
    conn.executemany(
        "INSERT INTO book_positions (book, market, base, cost_eur, realised_eur, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (book, market) DO UPDATE SET base = excluded.base, cost_eur = excluded.cost_eur,"
        " realised_eur = excluded.realised_eur, updated_at = excluded.updated_at",
        [
            (b, market, money.plain(p.base), _stored_eur(p.cost_eur), _stored_eur(p.realised_eur), now)
            for b, p in books.items()
            if only is None or b in only
        ],
    )
    total = sum(books.values(), steps.EMPTY)
    conn.execute(
        "INSERT INTO positions (market, base, cost_eur, realised_eur, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (market) DO UPDATE SET base = excluded.base, cost_eur = excluded.cost_eur,"
        " realised_eur = excluded.realised_eur, updated_at = excluded.updated_at",
        (market, money.plain(total.base), _stored_eur(total.cost_eur), _stored_eur(total.realised_eur), now),
    )


def _book(conn: sqlite3.Connection, fill_id: int) -> None:
    """A new fill moves its market's books: one step when it is the market's newest fill, else (found late, older
    than fills already booked) the market is booked again from its fills, in order."""
    row = conn.execute("SELECT * FROM trade_history WHERE id = ?", (fill_id,)).fetchone()
    later = conn.execute(
        "SELECT 1 FROM trade_history WHERE market = ? AND external = 0 AND id != ?"
        " AND (executed_at > ? OR (executed_at = ? AND id > ?)) LIMIT 1",
        (row["market"], fill_id, row["executed_at"], row["executed_at"], fill_id),
    ).fetchone()
    if later is not None:
        rebuild_positions(conn, row["market"])
        return
    books = _read(conn, row["market"])
    before = dict(books)
    steps.apply(books, steps.Fill.from_row(row))
    _store(conn, row["market"], books, only={b for b, p in books.items() if before.get(b) != p})


def after_migration(conn: sqlite3.Connection, name: str) -> None:
    """db.migrate's step in Python: 0010_books fills the books from the fills, in that migration's transaction."""
    if name == "0010_books":
        rebuild_positions(conn)


def rebuild_positions(conn: sqlite3.Connection, market: str | None = None) -> None:
    """Book one market (or all) again from its fills; the caller owns the transaction (migration 0010_books)."""
    w = steps.walk(conn, market=market)
    markets = [market] if market else sorted({r[0] for r in conn.execute("SELECT market FROM trade_history")})
    for m in markets:
        conn.execute("DELETE FROM book_positions WHERE market = ?", (m,))
        _store(conn, m, dict(w.books.get(m, {})))


def position_base(conn: sqlite3.Connection, market: str, book_name: str | None = None) -> Decimal:
    """What tinybot itself holds of a market's base asset: in one book, or (None) in all of them."""
    if book_name is None:
        row = conn.execute("SELECT base FROM positions WHERE market = ?", (market,)).fetchone()
    else:
        row = conn.execute(
            "SELECT base FROM book_positions WHERE market = ? AND book = ?", (market, book_name)
        ).fetchone()
    return Decimal(row["base"]) if row else Decimal(0)


def book_positions(conn: sqlite3.Connection, market: str | None = None) -> list[sqlite3.Row]:
    """The stored books (book, market, base, cost_eur, realised_eur), by book then market."""
    sql, args = "SELECT * FROM book_positions", []
    if market is not None:
        sql += " WHERE market = ?"
        args.append(market)
    return conn.execute(sql + " ORDER BY book, market", args).fetchall()
