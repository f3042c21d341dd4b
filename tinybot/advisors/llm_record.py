"""The LLM record: every answered LLM call, as asked and as answered, so a replay can answer at €0.

The llm advisor writes one row per call that got an answer, right after
``llm_budget.settle`` (paper and live alike): the prompt (the request's
messages as canonical JSON), the answer (the response body as received),
the model, the tokens and the settled cost.  `tinybot replay` reads the
record from the live database (read-only) and answers a prompt it has seen
with the recorded answer; see docs/REPLAY.md, "LLM".

A prompt matches only when it is the same text: the same snapshot (time,
prices, candles, caps, balance, positions) and the same rules.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal

from ..base import clock
from ..store import db


def canonical_prompt(messages: list[dict]) -> str:
    """The messages as one text: sorted keys, no spaces, unicode kept (what is stored and matched)."""
    return json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_sha256(messages: list[dict]) -> str:
    return hashlib.sha256(canonical_prompt(messages).encode()).hexdigest()


def record(
    conn: sqlite3.Connection,
    *,
    usage_id: int,
    model: str,
    messages: list[dict],
    answer: str,
    input_tokens: int | None,
    output_tokens: int | None,
    cost_eur: Decimal,
) -> int:
    """Store one answered call; returns its row id."""
    prompt = canonical_prompt(messages)
    with db.transaction(conn):
        cur = conn.execute(
            "INSERT INTO llm_calls (usage_id, at, model, prompt_sha256, prompt, answer, input_tokens,"
            " output_tokens, cost_eur) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                usage_id,
                clock.now_iso(),
                model,
                hashlib.sha256(prompt.encode()).hexdigest(),
                prompt,
                answer,
                input_tokens,
                output_tokens,
                str(cost_eur),
            ),
        )
    return cur.lastrowid


@dataclass(frozen=True)
class Recorded:
    """One recorded answer."""

    model: str
    answer: str
    input_tokens: int | None
    output_tokens: int | None
    cost_eur: Decimal


def load(conn: sqlite3.Connection) -> dict[str, Recorded]:
    """The whole record as {canonical prompt: the newest answer to it}; empty for a database without one.

    Read once at the start of a replay (a few rows a day: one per llm.every at most).
    """
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llm_calls'").fetchone():
        return {}
    out: dict[str, Recorded] = {}
    for prompt, model, answer, tin, tout, cost in conn.execute(
        "SELECT prompt, model, answer, input_tokens, output_tokens, cost_eur FROM llm_calls ORDER BY id"
    ):
        out[prompt] = Recorded(model, answer, tin, tout, Decimal(cost))
    return out
