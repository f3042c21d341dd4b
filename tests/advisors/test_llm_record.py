"""The LLM record: every answered LLM call (prompt, answer, model, tokens, cost), for replay at €0."""

from __future__ import annotations

import json
from decimal import Decimal

from freezegun import freeze_time

from tinybot.advisors import llm_record
from tinybot.advisors import llm

from helpers.llm import NOW, T0, buy, snapshot


def records(conn):
    return conn.execute("SELECT * FROM llm_calls ORDER BY id").fetchall()


@freeze_time(T0)
def test_every_answered_call_is_recorded_as_asked_and_answered(setup, fake):  # noqa: F811  (fixtures)
    cfg, conn = setup()
    fake.reply(buy(eur="5.00"), prompt_tokens=812, completion_tokens=95)
    fake.reply("not json at all", prompt_tokens=700, completion_tokens=5)  # rejected, but answered and billed
    first = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    second = llm.run(snapshot(daily_left="7"), cfg, conn=conn, min_interval=NOW)
    assert first.drafts and second.rejected
    rows = records(conn)
    assert [r["usage_id"] for r in rows] == [first.call_id, second.call_id]
    for row, req in zip(rows, fake.requests):
        messages = req["body"]["messages"]  # what reached the model
        assert row["prompt"] == llm_record.canonical_prompt(messages)
        assert row["prompt_sha256"] == llm_record.prompt_sha256(messages)
        assert json.loads(row["prompt"]) == messages
        assert row["model"] == "fake-mini" and row["at"] == "2026-11-27T12:00:00.000000Z"
    answer = json.loads(rows[0]["answer"])
    assert json.loads(answer["choices"][0]["message"]["content"]) == buy(eur="5.00")
    assert (rows[0]["input_tokens"], rows[0]["output_tokens"], rows[0]["cost_eur"]) == (812, 95, "0.0001788")
    usage = {r["id"]: r["cost_eur"] for r in conn.execute("SELECT id, cost_eur FROM gpt_usage_log")}
    assert [r["cost_eur"] for r in rows] == [usage[first.call_id], usage[second.call_id]]
    loaded = llm_record.load(conn)
    assert loaded[rows[0]["prompt"]] == llm_record.Recorded(
        "fake-mini", rows[0]["answer"], 812, 95, Decimal("0.0001788")
    )


@freeze_time(T0)
def test_a_call_without_an_answer_is_not_recorded(setup, fake):  # noqa: F811  (fixtures)
    cfg, conn = setup()
    fake.reply_status(401)  # refused: nothing generated, nothing billed
    r = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "call_failed" and records(conn) == []
    assert llm_record.load(conn) == {}


def test_a_database_without_the_record_table_has_an_empty_record(tmp_path):
    import sqlite3

    conn = sqlite3.connect(tmp_path / "old.db")
    assert llm_record.load(conn) == {}
