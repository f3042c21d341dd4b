"""LLM spend budget: reserve the worst case before a call, settle to real usage after.

Every row of ``gpt_usage_log`` counts against the day and the month it was
reserved in, at this amount:

=========  =============================================  ==========================
state      meaning                                        counts as
=========  =============================================  ==========================
reserved   call in flight, or outcome not known yet       ``reserved_eur`` (worst case)
settled    the response's ``usage`` was read              ``cost_eur`` (real cost)
expired    never settled within ``llm.reservation_expiry``  ``cost_eur`` = ``reserved_eur``
failed     provably never billed (connection refused,      ``cost_eur`` = 0
           an HTTP 4xx refusal)
=========  =============================================  ==========================

The expiry rule: a reservation that nobody settled (the call timed out, the
process crashed) may still have been billed by the provider, and we will never
learn for how much.  So expiry does **not** give the money back: it only marks
the row as "given up on" and fixes its cost at the worst case it reserved.
Spent + reserved therefore never goes down because time passed, and it can
only go down when a real ``usage`` says so.

The check and the insert happen inside one ``BEGIN IMMEDIATE`` transaction, so
two processes cannot both see the same room left in the budget: the second
waits for the lock and then sees the first one's reservation.

Money is ``Decimal`` throughout and stored as decimal strings, exact (no
rounding: 1 token of gpt-4o-mini output is €0.0000006).

A restore rolls back the database, never the world: the provider billed
every call made after the backup.  A restore carries the spend rows newer
than the backup forward from the database it replaces (``carry_forward``);
when that database cannot be read, the spend since the backup is unknown, and
today's and this month's budgets count as spent until the month ends
(``mark_spend_unknown``; ``reserve`` refuses, ``usage`` and doctor say why).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from ..base import clock
from ..store import db

MTOK = Decimal(1_000_000)
# Per-message framing the chat template adds (role markers, separators); a
# generous bound for OpenAI's and Ollama's templates.
MESSAGE_OVERHEAD_TOKENS = 16
REPLY_PRIMING_TOKENS = 16

UNKNOWN_SPEND = "llm_spend_unknown"  # ops_state: JSON {day, month, why}, set by a restore (module docstring)

# Test hook: called between the budget check and the insert, inside the lock.
# The race test sleeps here; removing BEGIN IMMEDIATE makes that test fail.
_between_check_and_insert = None


class BudgetRefused(Exception):
    """No call may be made now; ``code`` says why ('budget_exhausted', 'too_soon')."""

    def __init__(self, code: str, message: str, *, period: str | None = None, key: str | None = None):
        super().__init__(message)
        self.code = code
        self.period = period
        self.key = key


@dataclass(frozen=True)
class Reservation:
    id: int
    reserved_eur: Decimal
    prompt_tokens_est: int
    max_tokens: int
    day: str
    month: str


# --- arithmetic -------------------------------------------------------------


def estimate_tokens(messages: list[dict]) -> int:
    """An upper bound on the prompt's tokens: one per UTF-8 byte, plus framing.

    Byte-level BPE tokenizers (OpenAI's, and the SentencePiece ones Ollama
    models use with byte fallback) never make a token from less than one byte,
    so this over-estimates, typically by 3-4x for English text.  Over is the
    safe direction: the reservation is the worst case.
    """
    total = REPLY_PRIMING_TOKENS
    for m in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        for value in m.values():
            if isinstance(value, str):
                total += len(value.encode("utf-8"))
    return total


def cost_eur(input_tokens: int, output_tokens: int, llm_cfg) -> Decimal:
    return (
        Decimal(input_tokens) * llm_cfg.price_in_per_mtok_eur + Decimal(output_tokens) * llm_cfg.price_out_per_mtok_eur
    ) / MTOK


def worst_case_eur(prompt_tokens_est: int, llm_cfg) -> Decimal:
    return cost_eur(prompt_tokens_est, llm_cfg.max_tokens, llm_cfg)


def period_keys(now: datetime, tz=None) -> tuple[str, str]:
    """The day and month (in ``tz``, the config's timezone; None = UTC) a call made at ``now`` counts in."""
    now = now.astimezone(tz or timezone.utc)
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


def _next_period_start(period: str, key: str, tz=None) -> str:
    zone = getattr(tz, "key", None) or "UTC"
    if period == "day":
        start = datetime.strptime(key, "%Y-%m-%d") + timedelta(days=1)
        return start.strftime(f"%Y-%m-%d 00:00 {zone}")
    year, month = (int(x) for x in key.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01 00:00 {zone}"


# --- reads ------------------------------------------------------------------

# What a row counts as: real or fixed cost once known, else the worst case.
_COUNTED = "COALESCE(cost_eur, reserved_eur)"


def committed_eur(conn: sqlite3.Connection, *, day: str | None = None, month: str | None = None) -> Decimal:
    """Spent + reserved in a day or a month (summed in Python: Decimal, not REAL)."""
    if (day is None) == (month is None):
        raise ValueError("give exactly one of day or month")
    column, key = ("day", day) if day is not None else ("month", month)
    rows = conn.execute(f"SELECT {_COUNTED} AS c FROM gpt_usage_log WHERE {column} = ?", (key,))
    return sum((Decimal(r["c"]) for r in rows), Decimal(0))


def exhausted_notice(conn: sqlite3.Connection, now: datetime | None = None, tz=None) -> sqlite3.Row | None:
    """The budget_exhausted event for the current day or month, if there is one."""
    day, month = period_keys(now or clock.now(), tz)
    return conn.execute(
        "SELECT * FROM events WHERE kind = 'budget_exhausted' AND (detail LIKE ? OR detail LIKE ?) ORDER BY id LIMIT 1",
        (_notice_prefix("day", day) + "%", _notice_prefix("month", month) + "%"),
    ).fetchone()


def _notice_prefix(period: str, key: str) -> str:
    return f"LLM {'daily' if period == 'day' else 'monthly'} budget {key} "


# --- writes -----------------------------------------------------------------


def expire_stale(conn: sqlite3.Connection, expiry: timedelta, now: datetime | None = None) -> int:
    """Mark reservations older than ``expiry`` expired, at their worst-case cost.

    Call inside a transaction (``reserve`` does) or on its own (it opens one).
    """
    now = now or clock.now()
    cutoff = clock.to_iso(now - expiry)

    def run() -> int:
        cur = conn.execute(
            "UPDATE gpt_usage_log SET state = 'expired', settled_at = ?, cost_eur = reserved_eur,"
            " detail = CASE WHEN detail = '' THEN ? ELSE detail || '; ' || ? END"
            " WHERE state = 'reserved' AND reserved_at < ?",
            (
                clock.to_iso(now),
                "expired unsettled: counted at worst case",
                "expired unsettled: counted at worst case",
                cutoff,
            ),
        )
        return cur.rowcount

    if conn.in_transaction:
        return run()
    with db.transaction(conn):
        return run()


def reserve(
    conn: sqlite3.Connection,
    llm_cfg,
    *,
    prompt_tokens_est: int,
    min_interval: timedelta | None = None,
    tz=None,
    book: str = "llm",
) -> Reservation:
    """Reserve the worst case of one call, or raise ``BudgetRefused``.

    Inside one ``BEGIN IMMEDIATE``: expire stale reservations, refuse if this
    period was already declared exhausted, refuse if ``min_interval`` has not
    passed since the last call, refuse if spent + reserved + this worst case
    would pass the daily or the monthly budget (and record a
    ``budget_exhausted`` event, once per period), else insert the row, charged to ``book`` (the live
    ``llm`` advisor, or a shadow's ``shadow:llm``: one budget, each call on its own score).
    """
    if prompt_tokens_est < 0:
        raise ValueError("prompt_tokens_est must not be negative")
    now = clock.now()
    day, month = period_keys(now, tz)
    need = worst_case_eur(prompt_tokens_est, llm_cfg)
    refused: BudgetRefused | None = None
    with db.transaction(conn):
        expire_stale(conn, llm_cfg.reservation_expiry, now)
        notice = exhausted_notice(conn, now, tz)
        if notice is not None:
            raise BudgetRefused("budget_exhausted", notice["detail"])
        unknown = unknown_spend(conn, now, tz)
        if unknown is not None:
            raise BudgetRefused("budget_exhausted", unknown, period="month", key=month)
        if min_interval:
            last = conn.execute(
                "SELECT reserved_at FROM gpt_usage_log WHERE state != 'failed' AND reserved_at > ? AND book = ?"
                " ORDER BY reserved_at DESC LIMIT 1",
                (clock.to_iso(now - min_interval), book),
            ).fetchone()
            if last is not None:
                raise BudgetRefused(
                    "too_soon",
                    f"last LLM call at {last['reserved_at']}; llm.every is {clock.format_duration(min_interval)}",
                )
        for period, key, budget in (
            ("month", month, llm_cfg.monthly_budget_eur),
            ("day", day, llm_cfg.daily_budget_eur),
        ):
            committed = committed_eur(conn, **{period: key})
            if committed + need > budget:
                message = (
                    f"{_notice_prefix(period, key)}used up: €{committed} spent or reserved of €{budget},"
                    f" a call may cost up to €{need}; the llm advisor is skipped until"
                    f" {_next_period_start(period, key, tz)} (llm.{'daily' if period == 'day' else 'monthly'}_budget_eur in bot.toml)"
                )
                conn.execute(
                    "INSERT INTO events (at, kind, severity, detail) VALUES (?, 'budget_exhausted', 'warning', ?)",
                    (clock.to_iso(now), message),
                )
                refused = BudgetRefused("budget_exhausted", message, period=period, key=key)
                break
        if refused is None:
            if _between_check_and_insert is not None:
                _between_check_and_insert()
            cur = conn.execute(
                "INSERT INTO gpt_usage_log (state, model, reserved_at, day, month, prompt_tokens_est,"
                " max_tokens, reserved_eur, book) VALUES ('reserved', ?, ?, ?, ?, ?, ?, ?, ?)",
                (llm_cfg.model, clock.to_iso(now), day, month, prompt_tokens_est, llm_cfg.max_tokens, str(need), book),
            )
            rid = cur.lastrowid
    # Raised after COMMIT: the event must persist; the refusal itself writes no usage row.
    if refused is not None:
        raise refused
    return Reservation(rid, need, prompt_tokens_est, llm_cfg.max_tokens, day, month)


def settle(
    conn: sqlite3.Connection,
    reservation_id: int,
    llm_cfg,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    detail: str = "",
) -> Decimal:
    """Replace the reservation with the real cost from the response's ``usage``.

    No usage in a response that did arrive (the provider billed us, but did
    not say for how much) settles at the reserved worst case.  A real cost
    above the reservation (a provider that ignored max_tokens) is recorded as
    it is, with a warning event: the books must stay true, and the next
    reservation then has that much less room.
    """
    with db.transaction(conn):
        row = conn.execute("SELECT * FROM gpt_usage_log WHERE id = ?", (reservation_id,)).fetchone()
        if row is None:
            raise ValueError(f"no gpt_usage_log row {reservation_id}")
        if row["state"] not in ("reserved", "expired"):
            raise ValueError(f"gpt_usage_log row {reservation_id} is {row['state']}; it cannot be settled")
        reserved = Decimal(row["reserved_eur"])
        if input_tokens is None or output_tokens is None:
            cost = reserved
            detail = (detail + "; " if detail else "") + "no usage in the response: settled at worst case"
        else:
            cost = cost_eur(input_tokens, output_tokens, llm_cfg)
            if cost > reserved:
                conn.execute(
                    "INSERT INTO events (at, kind, severity, detail) VALUES (?, 'llm_cost_over_reservation', 'warning', ?)",
                    (
                        clock.now_iso(),
                        f"gpt_usage_log {reservation_id}: real cost €{cost} > reserved €{reserved}"
                        f" ({input_tokens} in, {output_tokens} out; max_tokens {row['max_tokens']})",
                    ),
                )
        conn.execute(
            "UPDATE gpt_usage_log SET state = 'settled', settled_at = ?, input_tokens = ?, output_tokens = ?,"
            " cost_eur = ?, detail = ? WHERE id = ?",
            (clock.now_iso(), input_tokens, output_tokens, str(cost), detail, reservation_id),
        )
    return cost


def fail(conn: sqlite3.Connection, reservation_id: int, detail: str) -> None:
    """Release a reservation whose call provably was not billed (nothing sent, or a 4xx refusal)."""
    with db.transaction(conn):
        conn.execute(
            "UPDATE gpt_usage_log SET state = 'failed', settled_at = ?, cost_eur = '0', detail = ?"
            " WHERE id = ? AND state = 'reserved'",
            (clock.now_iso(), detail, reservation_id),
        )


def note(conn: sqlite3.Connection, reservation_id: int, detail: str) -> None:
    """Add to a row's detail without touching its money (e.g. why its output was rejected)."""
    with db.transaction(conn):
        conn.execute(
            "UPDATE gpt_usage_log SET detail = CASE WHEN detail = '' THEN ? ELSE detail || '; ' || ? END WHERE id = ?",
            (detail, detail, reservation_id),
        )


# --- report -----------------------------------------------------------------


def usage(conn: sqlite3.Connection, llm_cfg, *, days: int = 7, now: datetime | None = None, tz=None) -> dict:
    """What ``tinybot usage`` shows: spend per day and month, reservations, calls, tokens."""
    now = now or clock.now()
    expire_stale(conn, llm_cfg.reservation_expiry, now)
    day, month = period_keys(now, tz)

    def summary(column: str, key: str) -> dict:
        rows = conn.execute(f"SELECT * FROM gpt_usage_log WHERE {column} = ?", (key,)).fetchall()
        out = {
            "calls": len(rows),
            "settled": 0,
            "reserved": 0,
            "expired": 0,
            "failed": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "spent_eur": Decimal(0),
            "reserved_eur": Decimal(0),
        }
        for r in rows:
            out[r["state"]] += 1
            out["input_tokens"] += r["input_tokens"] or 0
            out["output_tokens"] += r["output_tokens"] or 0
            if r["state"] == "reserved":
                out["reserved_eur"] += Decimal(r["reserved_eur"])
            else:
                out["spent_eur"] += Decimal(r["cost_eur"] or "0")
        out["committed_eur"] = out["spent_eur"] + out["reserved_eur"]
        return out

    today = summary("day", day)
    today.update(
        period=day,
        budget_eur=llm_cfg.daily_budget_eur,
        left_eur=max(llm_cfg.daily_budget_eur - today["committed_eur"], Decimal(0)),
    )
    this_month = summary("month", month)
    this_month.update(
        period=month,
        budget_eur=llm_cfg.monthly_budget_eur,
        left_eur=max(llm_cfg.monthly_budget_eur - this_month["committed_eur"], Decimal(0)),
    )
    history = []
    for r in conn.execute("SELECT DISTINCT day FROM gpt_usage_log ORDER BY day DESC LIMIT ?", (days,)):
        s = summary("day", r["day"])
        s["period"] = r["day"]
        history.append(s)
    open_rows = conn.execute(
        "SELECT id, model, reserved_at, reserved_eur, prompt_tokens_est, max_tokens FROM gpt_usage_log"
        " WHERE state = 'reserved' ORDER BY id"
    ).fetchall()
    notices = conn.execute(
        "SELECT at, detail FROM events WHERE kind = 'budget_exhausted' ORDER BY id DESC LIMIT 5"
    ).fetchall()
    current = exhausted_notice(conn, now)
    return {
        "model": llm_cfg.model,
        "today": today,
        "month": this_month,
        "days": history,
        "open_reservations": [
            {
                "id": r["id"],
                "model": r["model"],
                "reserved_at": r["reserved_at"],
                "reserved_eur": Decimal(r["reserved_eur"]),
                "prompt_tokens_est": r["prompt_tokens_est"],
                "max_tokens": r["max_tokens"],
                "expires_at": clock.to_iso(clock.from_iso(r["reserved_at"]) + llm_cfg.reservation_expiry),
            }
            for r in open_rows
        ],
        "exhausted": current["detail"] if current is not None else None,
        "spend_unknown": unknown_spend(conn, now, tz),
        "budget_events": [{"at": r["at"], "detail": r["detail"]} for r in notices],
    }


# --- after a restore --------------------------------------------------------

# What identifies a call's row whichever database it sits in (ids differ between a backup and the database
# that replaced it): a row of the backup is never carried in twice.
_SAME_CALL = ("reserved_at", "model", "prompt_tokens_est", "max_tokens", "reserved_eur")


def rows_since(replaced: sqlite3.Connection, since: datetime) -> list[dict]:
    """The spend rows of ``replaced`` (the database a restore replaces) from ``since`` on, as dicts."""
    return [
        {k: r[k] for k in r.keys() if k != "id"}
        for r in replaced.execute(
            "SELECT * FROM gpt_usage_log WHERE reserved_at >= ? ORDER BY id", (clock.to_iso(since),)
        )
    ]


def carry_forward(conn: sqlite3.Connection, rows: list[dict]) -> int:
    """Add ``rows`` (``rows_since`` of the replaced database) to ``conn`` (the restored one), skipping those it
    already has; → how many were added.  Columns ``conn`` does not know (a newer schema's) are left out.
    The caller owns the transaction."""
    known = {r[1] for r in conn.execute("PRAGMA table_info(gpt_usage_log)")}
    have = {tuple(r) for r in conn.execute(f"SELECT {', '.join(_SAME_CALL)} FROM gpt_usage_log")}
    added = 0
    for row in rows:
        if tuple(row[c] for c in _SAME_CALL) in have:
            continue
        columns = [c for c in row if c in known]
        conn.execute(
            f"INSERT INTO gpt_usage_log ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [row[c] for c in columns],
        )
        added += 1
    return added


def mark_spend_unknown(conn: sqlite3.Connection, why: str, now: datetime | None = None, tz=None) -> str:
    """The spend since the backup cannot be known (``why``): count this day's and this month's budgets as
    spent until the month ends.  Returns the line ``usage``, doctor and the restore print."""
    day, month = period_keys(now or clock.now(), tz)
    db.set_state(conn, UNKNOWN_SPEND, json.dumps({"day": day, "month": month, "why": why}))
    return unknown_spend(conn, now, tz)


def unknown_spend(conn: sqlite3.Connection, now: datetime | None = None, tz=None) -> str | None:
    """Why no LLM call may be made this month (a restore could not read the spend it would carry), or None.

    The one function doctor calls (tinybot.ops.doctor): a line it can show as it is."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'ops_state'").fetchone():
        return None
    text = db.get_state(conn, UNKNOWN_SPEND)
    if not text:
        return None
    mark = json.loads(text)
    _, month = period_keys(now or clock.now(), tz)
    if month != mark["month"]:
        return None  # the period whose spend was unknown is over
    return (
        f"LLM spend unknown since a restore ({mark['why']}): the day's and the month's budgets count as spent"
        f" until {_next_period_start('month', month, tz)} (llm.monthly_budget_eur in bot.toml)"
    )
