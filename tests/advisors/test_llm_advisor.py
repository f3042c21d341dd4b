"""The llm advisor against a fake OpenAI-compatible server on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal

import pytest
from freezegun import freeze_time

from tinybot.advisors import llm_budget
from tinybot.advisors import run_advisor
from tinybot.advisors import llm
from tinybot.trade.proposals import Draft

from helpers import ROOT, TESTS
from helpers.llm import INJECTION, NOW, T0, buy, snapshot


def usage_rows(conn):
    return conn.execute("SELECT * FROM gpt_usage_log ORDER BY id").fetchall()


def events(conn, kind):
    return [r["detail"] for r in conn.execute("SELECT detail FROM events WHERE kind = ? ORDER BY id", (kind,))]


# --- the happy path and the money ---------------------------------------------------


@freeze_time(T0)
def test_a_valid_answer_becomes_drafts_and_costs_exactly_its_usage(setup, fake, monkeypatch):
    monkeypatch.setenv("TINYBOT_LLM_KEY", "sk-llm-secret-123")
    monkeypatch.setenv("TINYBOT_TRADE_KEY", "trade-key-secret-456")
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", "trade-secret-789")
    cfg, conn = setup()
    fake.reply(buy(eur="5.00"), prompt_tokens=812, completion_tokens=95)
    r = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert r.drafts == [Draft("BTC-EUR", "buy", Decimal("5.00"), None, "llm (0.6): trend up")]
    assert r.cost_eur == Decimal("0.0001788")
    row = usage_rows(conn)[0]
    assert (row["state"], row["cost_eur"], row["input_tokens"], row["output_tokens"]) == (
        "settled",
        "0.0001788",
        812,
        95,
    )
    assert Decimal(row["cost_eur"]).quantize(Decimal("0.01")) == Decimal("0.00")
    assert fake.count == 1
    req = fake.requests[0]
    assert req["headers"]["Authorization"] == "Bearer sk-llm-secret-123"
    body = json.dumps(req["body"])
    for secret in ("sk-llm-secret-123", "trade-key-secret-456", "trade-secret-789"):
        assert secret not in body
    assert req["body"]["max_tokens"] == 400 and req["body"]["model"] == "fake-mini"
    assert req["body"]["response_format"]["type"] == "json_schema"
    prompt = req["body"]["messages"][1]["content"]
    assert '"allowlist":["BTC-EUR","ETH-EUR"]' in prompt and '"max_buy_eur":"10"' in prompt
    assert INJECTION not in body  # free text from elsewhere never reaches the model


@freeze_time(T0)
def test_the_advisor_plugs_into_the_interface(setup, fake):
    cfg, conn = setup()
    fake.reply(buy(market="ETH-EUR", eur=None, amount="0.001"))
    out = run_advisor("llm", snapshot(), cfg)
    assert out.errors == [] and [(d.market, d.amount) for d in out.drafts] == [("ETH-EUR", Decimal("0.001"))]


@freeze_time(T0)
def test_advise_calls_at_most_once_per_llm_every(setup, fake):
    cfg, conn = setup()
    assert llm.advise(snapshot(), cfg) == []
    assert llm.advise(snapshot(), cfg) == []  # same instant: too soon (default every = 1h)
    assert fake.count == 1


# --- the budget, end to end -------------------------------------------------------------


def worst_case(cfg, snap):
    est = llm.prompt_tokens_estimate(llm.request_body(cfg, llm.build_messages(snap)))
    return llm_budget.worst_case_eur(est, cfg.llm)


@freeze_time(T0)
def test_budget_boundary_the_call_that_would_cross_never_reaches_the_server(setup, fake, write_config):
    cfg, conn = setup()
    snap = snapshot()
    first = llm_budget.cost_eur(100, 10, cfg.llm)  # the fake's default usage
    daily = worst_case(cfg, snap) + first  # after one settled call, exactly one worst case fits
    cfg, conn = setup(daily=str(daily))
    assert llm.run(snap, cfg, conn=conn, min_interval=NOW).skipped is None
    assert llm.run(snap, cfg, conn=conn, min_interval=NOW).skipped is None  # spent + worst == budget: made
    r = llm.run(snap, cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "budget_exhausted" and "LLM daily budget 2026-11-27 used up" in r.message
    assert llm.run(snap, cfg, conn=conn, min_interval=NOW).skipped == "budget_exhausted"
    assert fake.count == 2
    assert len(events(conn, "budget_exhausted")) == 1
    assert llm_budget.committed_eur(conn, day="2026-11-27") <= daily


CHILD = r"""
import json, sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from tinybot.base import config; from tinybot.advisors import llm_budget
from tinybot.advisors import llm
from datetime import timedelta
from helpers.llm import snapshot
cfg = config.load({config!r})
llm_budget._between_check_and_insert = lambda: time.sleep(0.5)
while time.time() < {start}:
    time.sleep(0.001)
r = llm.run(snapshot(), cfg, min_interval=timedelta(0))
print(json.dumps({{"skipped": r.skipped, "call": r.call_id}}))
"""


def test_two_processes_racing_for_the_last_reservation_make_one_call(setup, fake):
    cfg, conn = setup()
    with freeze_time(T0):
        one = worst_case(cfg, snapshot())
    cfg, conn = setup(daily=str(one + one / 2))  # room for one worst case, not two
    # The winner's call is slow and costs its worst case, so the loser cannot
    # sneak in after a cheap settle either: only the lock decides.
    est = int((one - llm_budget.cost_eur(0, 400, cfg.llm)) / cfg.llm.price_in_per_mtok_eur * 1_000_000)
    for _ in range(2):
        fake.reply(buy(), prompt_tokens=est, completion_tokens=400, delay=1.0)
    code = CHILD.format(root=str(ROOT), tests=str(TESTS), config=str(cfg.path), start=time.time() + 3)
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(str(o["skipped"]) for o in outs) == ["None", "budget_exhausted"]
    assert fake.count == 1
    assert len(usage_rows(conn)) == 1


def test_timeout_keeps_the_reservation_until_it_expires_at_worst_case(setup, fake):
    cfg, conn = setup(timeout="1s")
    fake.reply(buy(), delay=2.0)
    with freeze_time(T0):
        snap = snapshot()
        r = llm.run(snap, cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "call_unknown" and "timed out after 1s" in r.message
    assert fake.count == 1
    row = usage_rows(conn)[0]
    assert row["state"] == "reserved" and row["cost_eur"] is None and "outcome unknown" in row["detail"]
    worst = Decimal(row["reserved_eur"])
    with freeze_time("2026-11-27 12:59:00"):
        u = llm_budget.usage(conn, cfg.llm)
        assert u["today"]["reserved_eur"] == worst and u["open_reservations"][0]["id"] == row["id"]
    with freeze_time("2026-11-27 13:00:01"):
        u = llm_budget.usage(conn, cfg.llm)
        assert u["open_reservations"] == []
        assert u["today"]["spent_eur"] == worst and u["today"]["expired"] == 1  # still counted, at worst case
        row = usage_rows(conn)[0]
        assert (row["state"], row["cost_eur"]) == ("expired", str(worst))
        assert llm.run(snapshot(), cfg, conn=conn, min_interval=NOW).skipped is None  # budget left: goes on
    assert llm_budget.committed_eur(conn, day="2026-11-27") == worst + llm_budget.cost_eur(100, 10, cfg.llm)


@freeze_time(T0)
def test_a_refused_request_releases_its_reservation(setup, fake):
    cfg, conn = setup()
    fake.reply_status(401, "Incorrect API key provided")
    r = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "call_failed" and "HTTP 401" in r.message and "Incorrect API key" in r.message
    row = usage_rows(conn)[0]
    assert (row["state"], row["cost_eur"]) == ("failed", "0")


@freeze_time(T0)
def test_a_server_that_is_not_there_releases_its_reservation(setup, fake):
    fake.stop()
    cfg, conn = setup()
    r = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "call_failed" and "cannot reach" in r.message
    assert usage_rows(conn)[0]["state"] == "failed"


@freeze_time(T0)
def test_a_5xx_is_ambiguous_and_keeps_the_reservation(setup, fake):
    cfg, conn = setup()
    fake.reply_status(502)
    assert llm.run(snapshot(), cfg, conn=conn, min_interval=NOW).skipped == "call_unknown"
    assert usage_rows(conn)[0]["state"] == "reserved"


# --- bad answers: nothing proposed, the reason recorded ------------------------------------

BAD = [
    ("garbage body", lambda f: f.reply_raw(b"<html>502 Bad Gateway</html>"), "response body is not JSON"),
    ("not json", lambda f: f.reply("Sure! I think you should buy BTC."), "not JSON"),
    ("fenced json", lambda f: f.reply("```json\n" + json.dumps(buy()) + "\n```"), "not JSON"),
    ("refusal", lambda f: f.reply(None, refusal="I can't help with trading."), "the model refused"),
    ("cut off", lambda f: f.reply('{"proposals": [{"market"', finish_reason="length"), "cut off"),
    ("no choices", lambda f: f.reply_raw(b'{"usage": {"prompt_tokens": 1, "completion_tokens": 1}}'), "no choices"),
    ("top-level list", lambda f: f.reply([buy()]), "top level must be an object"),
    ("extra top field", lambda f: f.reply({**buy(), "note": "hi"}), "unexpected field(s) note"),
    (
        "missing field",
        lambda f: f.reply({"proposals": [{k: v for k, v in buy()["proposals"][0].items() if k != "confidence"}]}),
        "missing field(s) confidence",
    ),
    ("extra field", lambda f: f.reply(buy(leverage=10)), "unexpected field(s) leverage"),
    ("both amounts", lambda f: f.reply(buy(eur="5", amount="0.1")), "exactly one of eur or amount"),
    ("neither amount", lambda f: f.reply(buy(eur=None)), "exactly one of eur or amount"),
    ("bad side", lambda f: f.reply(buy(side="short")), "side: must be 'buy' or 'sell'"),
    (
        "NaN literal",
        lambda f: f.reply(
            '{"proposals": [{"market": "BTC-EUR", "side": "buy", "eur": NaN, "amount": null,'
            ' "reason": "r", "confidence": 0.5}]}'
        ),
        "NaN is not a number",
    ),
    ("NaN string", lambda f: f.reply(buy(eur="NaN")), "must be a finite number"),
    ("Infinity", lambda f: f.reply(buy(eur="Infinity")), "must be a finite number"),
    ("negative", lambda f: f.reply(buy(eur="-5")), "greater than zero"),
    ("sub-cent", lambda f: f.reply(buy(eur="5.001")), "more than 2 decimals"),
    ("bool amount", lambda f: f.reply(buy(eur=True)), "not bool"),
    ("confidence 2", lambda f: f.reply(buy(confidence=2)), "confidence: must be a number from 0 to 1"),
    ("too many", lambda f: f.reply({"proposals": buy()["proposals"] * 4}), "4 items, at most 3"),
    ("empty reason", lambda f: f.reply(buy(reason=" ")), "reason: must be a non-empty string"),
    # what a model obeying injected text would answer:
    (
        "market off the allowlist",
        lambda f: f.reply(buy(market="DOGE-EUR", eur="1000")),
        "'DOGE-EUR' is not in risk.allowlist",
    ),
    ("over max trade", lambda f: f.reply(buy(eur="1000")), "pass the caps"),
    ("base amount over the caps", lambda f: f.reply(buy(eur=None, amount="1")), "pass the caps"),
    ("two buys over the caps", lambda f: f.reply({"proposals": buy(eur="6")["proposals"] * 2}), "pass the caps"),
    ("sell more than held", lambda f: f.reply(buy(side="sell", eur=None, amount="5")), "the llm book holds 0.0001"),
    ("sell eur more than held", lambda f: f.reply(buy(side="sell", eur="9")), "more than the llm book's position"),
]


@pytest.mark.parametrize("script,reason", [(s, r) for _, s, r in BAD], ids=[n for n, _, _ in BAD])
@freeze_time(T0)
def test_bad_answers_propose_nothing_and_say_why(setup, fake, script, reason):
    cfg, conn = setup()
    script(fake)
    r = llm.run(snapshot(reason=INJECTION), cfg, conn=conn, min_interval=NOW)
    assert r.drafts == [] and reason in r.rejected
    [detail] = events(conn, "llm_rejected")
    assert reason in detail and detail.startswith(f"gpt_usage_log {r.call_id}: answer rejected, nothing proposed:")
    row = usage_rows(conn)[0]
    assert row["state"] == "settled" and "rejected: " in row["detail"]  # paid for, and why it was useless
    assert conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0] == 0
    assert fake.count == 1


@freeze_time(T0)
def test_caps_left_not_the_static_max_bound_a_buy(setup, fake):
    cfg, conn = setup()
    fake.reply(buy(eur="5.00"))
    r = llm.run(snapshot(daily_left="4"), cfg, conn=conn, min_interval=NOW)
    assert r.drafts == [] and "at most €4 now" in r.rejected


@freeze_time(T0)
def test_garbage_without_usage_is_settled_at_the_worst_case(setup, fake):
    cfg, conn = setup()
    fake.reply_raw(b"not json at all")
    llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    row = usage_rows(conn)[0]
    assert row["cost_eur"] == row["reserved_eur"] and "no usage" in row["detail"]


# --- disabled ----------------------------------------------------------------------------------


@freeze_time(T0)
def test_no_key_disables_the_advisor_with_a_clear_message_told_once(setup, fake):
    cfg, conn = setup(base_url="https://api.openai.com/v1")
    r = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "disabled"
    assert r.message == (
        "llm advisor disabled: TINYBOT_LLM_KEY is not set (environment or secrets.env); set it,"
        ' or point llm.base_url at a local Ollama ("http://127.0.0.1:11434/v1"), which needs no key'
    )
    assert llm.advise(snapshot(), cfg) == []
    assert events(conn, "llm_disabled") == [r.message]
    assert usage_rows(conn) == [] and fake.count == 0


@freeze_time(T0)
def test_plain_http_to_another_machine_is_refused(setup, monkeypatch):
    monkeypatch.setenv("TINYBOT_LLM_KEY", "sk-x")
    cfg, conn = setup(base_url="http://example.com/v1")
    r = llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert r.skipped == "disabled" and "plain http to another machine" in r.message


@freeze_time(T0)
def test_a_loopback_server_needs_no_key(setup, fake):
    cfg, conn = setup()
    assert llm.disabled_reason(cfg) is None
    llm.run(snapshot(), cfg, conn=conn, min_interval=NOW)
    assert "Authorization" not in fake.requests[0]["headers"]


def test_the_advisor_module_is_not_imported_by_the_budget_or_the_cli():
    code = (
        "import sys, tinybot.cli, tinybot.advisors.llm_budget, tinybot.cli.llm;"
        "print('tinybot.advisors.llm' in sys.modules, 'urllib.request' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_the_llm_never_sells_coins_another_advisor_bought(setup, fake):
    """Issue 21: an advisor's sell is bounded by its own book; the model is shown, and held to, the llm book."""
    cfg, conn = setup()
    fake.reply(buy(side="sell", eur=None, amount="0.0001"))
    snap = snapshot(book="dca")  # the market holds 0.0001 BTC, all of it DCA's
    assert llm.snapshot_view(snap)["markets"]["BTC-EUR"]["position_base"] == "0"
    r = llm.run(snap, cfg, conn=conn, min_interval=NOW)
    assert r.drafts == [] and "the llm book holds 0 in BTC-EUR" in r.rejected
