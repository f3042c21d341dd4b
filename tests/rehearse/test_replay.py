"""`tinybot replay`: the real tick over stored candles, on a simulated clock, in a scratch database."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import ROOT
from helpers.replay_data import CONFIG, HOUR, T0, candle_store, csv_rows
from tinybot.analysis import candles
from tinybot.base import clock, config, secrets
from tinybot.store import db
from tinybot.cli import cli
from tinybot.rehearse.replay.plan import ReplayError, open_store
from tinybot.rehearse.replay.run import replay
from tinybot.rehearse.replay.settings import apply_sets
from tinybot.rehearse.replay.simulator import DEFAULT_SLIPPAGE, REPLAY_KEY, REPLAY_SECRET, make_simulator
from tinybot.rehearse.replay.sweep import expand_sets
from tinybot.sim.transport import InProcessSession


@pytest.fixture
def setup(tmp_path):
    """bot.toml + the live database holding the candles; returns (cfg, path of the csv)."""
    return candle_store(tmp_path, csv_rows())


def run(cfg, **kw):
    store = open_store(cfg.db_path)
    try:
        return replay(cfg, store, **kw)
    finally:
        store.close()


def to_tick(x: Decimal, tick: Decimal, rounding) -> Decimal:
    return (x / tick).to_integral_value(rounding=rounding) * tick


def test_orders_fill_at_the_open_of_the_next_candle_with_fee_minimum_and_slippage(setup):
    cfg, _ = setup
    slip = Decimal("0.0005")
    s = run(cfg, slippage=slip)
    assert len(s["trades"]) >= 10 and {t["side"] for t in s["trades"]} == {"buy", "sell"}
    # every key's requests run on the simulated clock: no lookup refused as outside its access window (304)
    assert (s["failed_ticks"], s["ticks_with_errors"], s["tick_errors"]) == (0, 0, [])
    store = open_store(cfg.db_path)
    ticks = {"BTC-EUR": Decimal(1), "ETH-EUR": Decimal("0.1")}  # the CSV's precision
    for t in s["trades"]:
        at = clock.to_ms(clock.from_iso(t["time"]))
        assert at % HOUR == 0  # filled at a tick
        # the decision saw candles closed by `at`; the order fills at the open of the candle opening then
        row = store.execute("SELECT open FROM candles WHERE market = ? AND ts_ms = ?", (t["market"], at)).fetchone()
        ref = (
            Decimal(row[0])
            if row
            else Decimal(
                store.execute(
                    "SELECT close FROM candles WHERE market = ? AND ts_ms < ? ORDER BY ts_ms DESC LIMIT 1",
                    (t["market"], at),
                ).fetchone()[0]
            )
        )  # a gap: the last trade price
        tick = ticks[t["market"]]
        half = max(tick, to_tick(ref * Decimal("0.0001"), tick, ROUND_CEILING))  # the simulator's spread
        price, amount, fee = Decimal(t["price"]), Decimal(t["amount"]), Decimal(t["fee"])
        if t["side"] == "buy":
            assert price == to_tick((ref + half) * (1 + slip), tick, ROUND_CEILING)
            # a buy by amountQuote costs exactly the €6: base = €6 / (price × 1.0025), truncated to
            # 8 decimals; the fee is what is left of the €6 (tinybot/base/fees.py, Bitvavo's recorded fills)
            assert amount == (Decimal(6) / (price * Decimal("1.0025"))).quantize(Decimal("1e-8"), ROUND_DOWN)
            assert fee == Decimal(6) - amount * price
            floor = Decimal(6) - Decimal(6) / Decimal("1.0025")  # 0.25 % of what was traded, no less
            assert floor <= fee < floor + price * Decimal("1e-8")  # plus at most one truncated satoshi
        else:
            assert price == to_tick((ref - half) * (1 - slip), tick, ROUND_FLOOR)
            # a sell by base receives its EUR in whole cents rounded down; the fee is the rest
            received = (amount * price * Decimal("0.9975")).quantize(Decimal("0.01"), ROUND_FLOOR)
            assert fee == amount * price - received
            assert amount * price >= 5  # the €5 minimum
    store.close()


def test_a_decision_never_sees_the_future(setup, tmp_path):
    """Change every candle after X (and all but the open of the one opening at X): nothing up to X changes."""
    cfg, path = setup
    first = run(cfg)
    cut = clock.to_ms(clock.from_iso(first["trades"][len(first["trades"]) // 2]["time"]))
    lines = path.read_text().splitlines()
    changed = [lines[0]]
    for line in lines[1:]:
        market, ts, o, h, lo, c, v = line.split(",")
        if int(ts) >= cut:
            # the future turns upside down: a crash, then a rally; the candle at `cut` keeps only its open
            k = Decimal("0.7") if int(ts) < cut + 40 * HOUR else Decimal("1.3")
            nc = (Decimal(c) * k).quantize(Decimal(o))
            h, lo, c = max(Decimal(o), nc, Decimal(h) * k), min(Decimal(o), nc, Decimal(lo) * k), nc
            line = ",".join(map(str, [market, ts, o, h.quantize(Decimal(o)), lo.quantize(Decimal(o)), c, v]))
        changed.append(line)
    other = tmp_path / "other"
    other.mkdir()
    (other / "bot.toml").write_text(CONFIG)
    (other / "c.csv").write_text("\n".join(changed) + "\n")
    cfg2 = config.load(other / "bot.toml")
    conn = db.open_db(cfg2.db_path)
    candles.import_csv(conn, other / "c.csv")
    conn.close()
    second = run(cfg2)

    def upto(s):
        return [t for t in s["trades"] if clock.to_ms(clock.from_iso(t["time"])) <= cut]

    assert upto(first) and upto(first) == upto(second)
    assert first["trades"] != second["trades"]  # the future did change what happened after X


def test_guards_and_the_automatic_kill_switch_apply_as_live(setup):
    cfg, _ = setup
    s = run(cfg)
    assert s["blocks"].get("anti_flip", 0) > 0  # the 6h anti-flip window said no
    assert s["kill_switch"]["trading_enabled"] is True
    tight = apply_sets(cfg, ["safety.max_daily_loss_eur=0.05"])
    k = run(tight)
    assert k["kill_switch"]["trading_enabled"] is False
    assert k["kill_switch"]["reason"].startswith("auto: ") and "loss" in k["kill_switch"]["reason"]
    assert k["blocks"].get("kill_switch_on", 0) > 0
    off_at = k["kill_switch"]["changed_at"]
    assert all(t["time"] <= off_at for t in k["trades"])  # nothing traded after it turned off
    assert len(k["trades"]) < len(s["trades"])


def test_summary_has_benchmarks_drawdown_and_trades_with_their_proposals(setup):
    cfg, _ = setup
    s = run(cfg, eur=Decimal("30"))
    assert s["starting_eur"] == "30.00" and s["ticks"] > 200
    assert Decimal(s["pnl_eur"]) == Decimal(s["final_equity_eur"]) - 30 - Decimal(s["llm_cost_eur"])
    fees = sum(Decimal(t["fee"]) for t in s["trades"])
    assert Decimal(s["fees_eur"]) == fees.quantize(Decimal("0.01"))
    assert Decimal(s["max_drawdown_eur"]) > 0 and Decimal(s["max_exposure_eur"]) <= 25 + 1
    assert set(s["benchmarks"]) == {"hold", "dca"} and s["benchmarks"]["dca"]["buys"] >= 2
    assert all(t["source"] == "rules" and t["reason"].startswith("SMA3") for t in s["trades"])
    for t in s["trades"]:
        datetime.strptime(t["time"], clock.ISO_FORMAT)  # ISO-8601 UTC
    assert s["proposals"] == s["proposals_by_source"]["rules"] >= len(s["trades"])


def test_real_keys_in_the_environment_are_never_used(setup, monkeypatch):
    cfg, _ = setup
    for name in secrets.SECRET_NAMES:
        monkeypatch.setenv(name, "real-value-must-not-be-used")
    monkeypatch.setenv("TINYBOT_ALERT_URLS", "json://127.0.0.1:9/")
    s = run(cfg, keep=Path(cfg.base_dir) / "scratch")
    assert len(s["trades"]) >= 10  # the simulator would refuse any key but its own throwaway one
    scratch = sqlite3.connect(Path(s["scratch_dir"]) / "replay.db")
    statuses = {r[0] for r in scratch.execute("SELECT status FROM alert_log")}
    assert statuses <= {"unconfigured", "suppressed"}  # no alert went anywhere


def test_routed_in_process_the_lookup_key_still_cannot_place_or_cancel(tmp_path):
    """route_requests gives every ccxt instance the in-process session; the trade key's lookup instance
    stays GET-only (its fetch and its new session both refuse), and the simulator sees no order."""
    import ccxt

    from tinybot.exchange.base import ReadOnlyClientError
    from tinybot.exchange.bitvavo.clients import BitvavoReadOnly

    at = clock.Simulated(clock.from_ms(T0 + 10 * HOUR))
    series = {"BTC-EUR": [candles.Candle(T0 + i * HOUR, *(Decimal(100),) * 4, Decimal(1)) for i in range(12)]}
    sim = make_simulator(series, {"BTC-EUR": "1h"}, {}, Decimal(25), at, Decimal(0))
    (tmp_path / "bot.toml").write_text('mode = "live"\n[exchange]\nurl = "http://127.0.0.1:9"\noperator_id = 1\n')
    ro = BitvavoReadOnly(
        config.load(tmp_path / "bot.toml"),
        REPLAY_KEY,
        REPLAY_SECRET,
        lookup_key=REPLAY_KEY,
        lookup_secret=REPLAY_SECRET,
    )
    ro.route_requests(InProcessSession(sim), milliseconds=at.ms)
    with clock.simulated(at):
        assert ro.balances()["EUR"].available == 25 and ro.orders_since("BTC-EUR", T0) == []
    lookup = ro._lookup_ep.ccxt  # the trade key's instance (the test looks inside; replay never does)
    assert isinstance(lookup, ccxt.bitvavo) and lookup.apiKey == REPLAY_KEY
    lookup.options["operatorId"] = 1
    for attempt in (
        lambda: lookup.create_order("BTC/EUR", "market", "buy", None, None, {"cost": 6}),
        lambda: lookup.session.request("POST", "http://127.0.0.1:9/v2/order", data="{}"),
        lambda: lookup.session.request("DELETE", "http://127.0.0.1:9/v2/order"),
    ):
        with pytest.raises(ReadOnlyClientError):
            attempt()
    assert sim.orders(REPLAY_KEY) == []
    sim.close()


def test_sending_an_order_leaves_tinybots_decimal_rounding_alone(tmp_path):
    """ccxt's decimal_to_precision sets ROUND_HALF_UP (and traps Underflow) on the calling thread's decimal
    context. Unconfined, that leaked into everything tinybot computed after the first live order (a rules
    reason's SMA 60283.125 printed .13 in a replay, .12 in a paper run: decision parity broke)."""
    import decimal
    import uuid

    from tinybot.exchange.bitvavo.clients import BitvavoTrading

    at = clock.Simulated(clock.from_ms(T0 + 10 * HOUR))
    series = {"BTC-EUR": [candles.Candle(T0 + i * HOUR, *(Decimal(60000),) * 4, Decimal(1)) for i in range(12)]}
    sim = make_simulator(series, {"BTC-EUR": "1h"}, {}, Decimal(25), at, Decimal(0))
    (tmp_path / "bot.toml").write_text('mode = "live"\n[exchange]\nurl = "http://127.0.0.1:9"\noperator_id = 1\n')
    trading = BitvavoTrading(config.load(tmp_path / "bot.toml"), REPLAY_KEY, REPLAY_SECRET)
    trading.route_requests(InProcessSession(sim), milliseconds=at.ms)
    with decimal.localcontext(decimal.Context()), clock.simulated(at):  # Python's default, whatever ran before
        bought = trading.send_order("BTC-EUR", "buy", client_order_id=str(uuid.uuid4()), amount_quote=Decimal(12))
        sold = trading.send_order("BTC-EUR", "sell", client_order_id=str(uuid.uuid4()), amount=Decimal("0.0001"))
        assert (bought.kind, sold.kind) == ("accepted", "accepted")
        after = decimal.getcontext()
        assert (after.rounding, after.traps[decimal.Underflow]) == (decimal.ROUND_HALF_EVEN, False)
        assert f"{Decimal('60283.125'):.2f}" == "60283.12"
    sim.close()


def test_the_cli_prints_json_and_never_writes_the_live_database(setup, tmp_path, monkeypatch):
    cfg, _ = setup
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    before = hashlib.sha256(cfg.db_path.read_bytes()).hexdigest()
    runner = CliRunner()
    r = runner.invoke(cli, ["replay", "--json", "--no-progress", "--report", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert json.loads((tmp_path / "r.json").read_text()) == s
    assert {"time", "market", "side", "amount", "price", "fee"} <= set(s["trades"][0])
    r = runner.invoke(cli, ["replay", "--no-progress", "--from", "2025-01-05", "--to", "2025-01-08"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("Replay 2025-01-05T00:00Z → 2025-01-07T23:00Z: 72 ticks every 1h")
    assert "benchmarks: buy and hold" in r.output
    assert hashlib.sha256(cfg.db_path.read_bytes()).hexdigest() == before
    assert list((tmp_path / "tmp").iterdir()) == []  # the scratch directory is gone
    # --report FILE.html: the report of `tinybot report`, over the replay's own history
    r = runner.invoke(
        cli,
        ["replay", "--no-progress", "--from", "2025-01-05", "--to", "2025-01-08", "--report", str(tmp_path / "r.html")],
    )
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!doctype html>") and "<title>tinybot replay</title>" in page and page.count("<svg") >= 3
    assert list((tmp_path / "tmp").iterdir()) == []
    assert hashlib.sha256(cfg.db_path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--markets", "XRP-EUR"], "XRP-EUR: no candles stored; run `tinybot data fetch XRP-EUR --interval 1h"),
        (["--markets", "BTC-USD"], "--markets: 'BTC-USD' is not a Bitvavo EUR market name"),
        (["--from", "2026-01-01"], "empty range: no 1h tick between 2026-01-01T00:00Z and"),
        (["--from", "2025-01-05", "--to", "2025-01-04"], "empty range: --to 2025-01-04 is not after --from"),
        (["--set", "rules.fsat=8"], "--set: "),
        (["--set", "rules.fast=30"], "rules.fast: must be smaller than rules.slow (8)"),
        (["--set", "rules"], "--set 'rules': write it as key=value"),
        (["--set", "rules.candle_interval=4h", "--set", "rules.fast=2", "--set", "rules.slow=3"], None),
        (["--eur", "-3"], "--eur must be a number above 0"),
    ],
)
def test_bad_input_is_one_clear_error_and_the_live_database_is_untouched(setup, args, message):
    cfg, _ = setup
    before = hashlib.sha256(cfg.db_path.read_bytes()).hexdigest()
    r = CliRunner().invoke(cli, ["replay", "--no-progress", *args])
    if message is None:  # 4h candles built from the stored 1h ones
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 1, r.output
        assert r.output.startswith("Error: ") and message in r.output and len(r.output.splitlines()) == 1
    if args[:2] == ["--set", "rules.fsat=8"]:
        assert "rules.fsat: unknown key (did you mean 'fast'?)" in r.output
    assert hashlib.sha256(cfg.db_path.read_bytes()).hexdigest() == before


def test_without_a_candle_store_replay_says_how_to_get_one(tmp_path):
    (tmp_path / "bot.toml").write_text(CONFIG)
    r = CliRunner().invoke(cli, ["replay"])
    assert r.exit_code == 1 and "run `tinybot init`, then `tinybot data fetch`" in r.output
    assert not (tmp_path / "tinybot.db").exists()


def _decisions(conn) -> dict:
    """What a run decided, without ids that differ by design (exchange order/trade ids)."""
    q = lambda sql: [tuple(r) for r in conn.execute(sql)]  # noqa: E731
    return {
        "proposals": q(
            "SELECT id, source, market, side, amount_quote, amount, reason, status, created_at,"
            " expires_at FROM proposals ORDER BY id"
        ),
        "verdicts": q(
            "SELECT proposal_id, stage, guard, verdict, reason_code, decided_at FROM guard_decisions ORDER BY id"
        ),
        # filled_quote too: the paper exchange and the simulator both settle through tinybot/base/fees.py
        # (Bitvavo: filledAmountQuote + feePaid == amountQuote)
        # numbers compared by value: the paper exchange stores "0.014988370", the simulator sends
        # "0.01498837" (Bitvavo writes no trailing zeros); both are the same exact Decimal
        "executions": [
            (*r[:4], *(None if x is None else Decimal(x) for x in r[4:]))
            for r in conn.execute(
                "SELECT proposal_id, market, side, state, notional_eur, filled_amount, fee_paid, filled_quote"
                " FROM trade_executions ORDER BY id"
            )
        ],
        "trades": [
            (r[0], r[1], r[2], Decimal(r[3]), Decimal(r[4]), Decimal(r[5]))
            for r in conn.execute("SELECT executed_at, market, side, amount, price, fee FROM trade_history ORDER BY id")
        ],
    }


def paper_run(cfg, toml_path: Path, text: str, first: datetime, last: datetime) -> dict:
    """A paper `tinybot run` (the real loop, freezegun moving time) over [first, last] with the config
    ``text`` written to ``toml_path``, its market data from the replay's simulator serving the stored
    candles of ``cfg``'s database over HTTP; returns its decisions."""
    from freezegun import freeze_time

    from tinybot.store.liveness import next_slot
    from tinybot.loop import scheduler
    from tinybot.exchange import read_only
    from tinybot.exchange.bitvavo.clients import read_only_client
    from tinybot.trade.executor import trading_exchange

    store = open_store(cfg.db_path)
    series = {m: candles.load(store, m, "1h") for m in ("BTC-EUR", "ETH-EUR")}
    store.close()

    class TimeTime:
        @staticmethod
        def seconds():
            import time

            return time.time()

    sim = make_simulator(series, {m: "1h" for m in series}, {}, Decimal(25), TimeTime, DEFAULT_SLIPPAGE)
    server = sim.serve()
    toml_path.write_text(
        text.replace("[scheduler]\n", "[scheduler]\nkeep_days = 36500\n") + f'\n[exchange]\nurl = "{server.url}"\n'
    )
    pcfg = config.load(toml_path)
    conn = db.open_db(pcfg.db_path)
    try:
        with freeze_time(first) as frozen:
            source = read_only_client(pcfg, rate_limit=False)  # the paper run's market data: the simulator
            sched = scheduler.Scheduler(
                pcfg,
                conn,
                echo=lambda line: None,
                read_only=read_only(pcfg, source),
                trading=trading_exchange(pcfg, market_data=source),
                before_tick=lambda slot: sim.move_to(clock.to_ms(slot)),
            )

            def sleep(_seconds):  # wake at the next slot (the loop asks for at most 0.5 s at a time)
                frozen.move_to(next_slot(clock.now(), pcfg.scheduler.interval))

            sched.run(until=last + timedelta(minutes=1), sleep=sleep)
        return _decisions(conn)
    finally:
        conn.close()
        server.close()
        sim.close()


def test_decision_parity_with_a_paper_tinybot_run_against_the_simulator(setup, tmp_path):
    """The same candles, fed to a paper `tinybot run` (the real loop, freezegun moving time) against the
    simulator replaying them, and to `tinybot replay`: identical proposals, guard verdicts and trades."""
    cfg, _ = setup
    kept = tmp_path / "replay-scratch"
    s = run(cfg, keep=kept)
    (tmp_path / "paper").mkdir()
    paper = paper_run(cfg, tmp_path / "paper" / "bot.toml", CONFIG, clock.from_iso(s["from"]), clock.from_iso(s["to"]))
    replayed = _decisions(sqlite3.connect(kept / "replay.db"))
    assert len(paper["trades"]) >= 10 and len(paper["verdicts"]) > 100
    for k in paper:
        assert paper[k] == replayed[k], k


LLM_CONFIG = (
    CONFIG.replace('advisors = ["rules"]', 'advisors = ["rules", "llm"]')
    + """
[llm]
base_url = "{url}"
model = "fake-mini"
every = "1h"
"""
)


def _script_llm(fake, n: int) -> None:
    """n answers: mostly "nothing to do", a few buys, one that is not JSON (rejected, still recorded)."""
    for i in range(n):
        if i in (3, 17):
            item = {
                "market": "ETH-EUR" if i == 3 else "BTC-EUR",
                "side": "buy",
                "eur": "6.00",
                "amount": None,
                "reason": "the model likes it",
                "confidence": 0.7,
            }
            fake.reply({"proposals": [item]}, prompt_tokens=900 + i, completion_tokens=40)
        elif i == 9:
            fake.reply("not json", prompt_tokens=900, completion_tokens=3)
        else:
            fake.reply({"proposals": []}, prompt_tokens=900 + i, completion_tokens=12)


def test_llm_answers_come_from_the_record_at_no_cost_with_the_same_decisions(setup, tmp_path):
    """A paper run with the llm advisor records every call in its database; a replay of the same period
    answers every prompt from that record (the model gets no request) and decides exactly as the paper
    run did. Other prompts (another starting balance) are not in the record: no LLM proposal, no call."""
    from helpers.fake_openai import FakeOpenAI

    cfg, _ = setup
    start, end = datetime(2025, 1, 6, tzinfo=timezone.utc), datetime(2025, 1, 8, tzinfo=timezone.utc)
    with FakeOpenAI() as fake:
        text = LLM_CONFIG.format(url=fake.base_url)
        (tmp_path / "bot.toml").write_text(text)  # the user's config now has the llm advisor
        cfg = config.load(tmp_path / "bot.toml")
        _script_llm(fake, 48)
        # the paper run uses the live database (where the candles are): its LLM record lands there
        paper = paper_run(cfg, tmp_path / "paper.toml", text, start, end - timedelta(hours=1))
        calls = fake.count
        assert calls == 48
        store = open_store(cfg.db_path)
        assert store.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0] == 48
        recorded_cost = sum(Decimal(r[0]) for r in store.execute("SELECT cost_eur FROM llm_calls"))
        store.close()
        assert {p[1] for p in paper["proposals"]} == {"rules", "llm"}

        kept = tmp_path / "replay-scratch"
        s = run(cfg, start=start, end=end, keep=kept)
        assert fake.count == calls  # not one request: every answer came from the record
        assert s["llm"] == {
            "mode": "record",
            "answers_from_record": 48,
            "not_in_record": 0,
            "recorded_models": ["fake-mini"],
            "recorded_prompts": 48,
            "live_calls": 0,
            "live_refused_by_budget": 0,
            "live_budget_eur": None,
            "spent_eur": "0.00",
        }
        assert s["advisors"] == ["rules", "llm"] and s["skipped_advisors"] == []
        replayed = _decisions(sqlite3.connect(kept / "replay.db"))
        for k in paper:
            assert paper[k] == replayed[k], k
        # what those answers cost when they were bought is still the strategy's cost
        assert s["llm_cost_eur"] == str(recorded_cost.quantize(Decimal("0.01")))
        assert s["proposals_by_source"]["llm"] == 2
        r = CliRunner().invoke(cli, ["replay", "--no-progress", "--from", "2025-01-06", "--to", "2025-01-08"])
        assert r.exit_code == 0, r.output
        assert (
            "  LLM (record): 48 answer(s) from the record at €0, 0 prompt(s) not in the record (no LLM proposal)\n"
        ) in r.output and fake.count == calls

        other = run(cfg, start=start, end=end, eur=Decimal(30))  # another balance: other prompts
        assert fake.count == calls
        assert (other["llm"]["answers_from_record"], other["llm"]["not_in_record"]) == (0, 48)
        assert "llm" not in other["proposals_by_source"] and other["llm"]["spent_eur"] == "0.00"

        off = run(cfg, start=start, end=end, llm="off")
        assert off["skipped_advisors"] == ["llm"] and off["advisors"] == ["rules"]
        assert off["llm"] == {"mode": "off"} and fake.count == calls


def test_llm_live_calls_only_prompts_not_in_the_record_within_the_budget_left_today(setup, tmp_path):
    from helpers.fake_openai import FakeOpenAI

    from tinybot.advisors import llm_budget

    cfg, _ = setup
    start, end = datetime(2025, 1, 6, tzinfo=timezone.utc), datetime(2025, 1, 6, 12, tzinfo=timezone.utc)
    with FakeOpenAI() as fake:
        (tmp_path / "bot.toml").write_text(
            LLM_CONFIG.format(url=fake.base_url) + 'daily_budget_eur = "0.05"\nmonthly_budget_eur = "1.00"\n'
        )
        cfg = config.load(tmp_path / "bot.toml")
        s = run(cfg, start=start, end=end, llm="live")
        assert fake.count == 12 == s["llm"]["live_calls"]  # nothing recorded: every prompt went to the model
        per_call = llm_budget.cost_eur(100, 10, cfg.llm)  # the fake's default usage
        assert s["llm"]["spent_eur"] == str((per_call * 12).quantize(Decimal("0.01")))
        assert s["llm"]["live_budget_eur"] == "0.05" and s["llm"]["live_refused_by_budget"] == 0
        assert {r["body"]["model"] for r in fake.requests} == {"fake-mini"}

        # the live bot spent today's budget: the replay may spend nothing, and asks the model nothing
        conn = db.open_db(cfg.db_path)
        r = llm_budget.reserve(conn, cfg.llm, prompt_tokens_est=100, min_interval=timedelta(0))
        llm_budget.settle(conn, r.id, cfg.llm, input_tokens=300_000, output_tokens=10_000)  # €0.051
        conn.close()
        s = run(cfg, start=start, end=end, llm="live")
        assert fake.count == 12 and s["llm"]["live_calls"] == 0
        assert s["llm"]["live_refused_by_budget"] == 12 and s["llm"]["live_budget_eur"] == "0.00"

        r = CliRunner().invoke(cli, ["replay", "--llm", "live", "--set", "rules.fast=2,4", "--no-progress"])
        assert r.exit_code == 1 and "--llm live runs one replay at a time" in r.output
        plain = apply_sets(cfg, ['llm.base_url="http://192.0.2.1/v1"'])
        with pytest.raises(ReplayError) as e:
            run(plain, start=start, end=end, llm="live")
        assert "plain http to another machine" in str(e.value) and fake.count == 12


def test_a_sweep_runs_the_grid_in_processes_sorted_by_net_pnl(setup):
    cfg, _ = setup
    assert expand_sets(["rules.fast=2,3", "rules.slow=8,13", 'risk.allowlist=["BTC-EUR","ETH-EUR"]']) == [
        ["rules.fast=2", "rules.slow=8", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
        ["rules.fast=2", "rules.slow=13", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
        ["rules.fast=3", "rules.slow=8", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
        ["rules.fast=3", "rules.slow=13", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
    ]
    r = CliRunner().invoke(
        cli,
        [
            "replay",
            "--json",
            "--no-progress",
            "--set",
            "rules.fast=2,9",
            "--set",
            "rules.slow=8",
            "--from",
            "2025-01-05",
            "--to",
            "2025-01-10",
        ],
    )
    assert r.exit_code == 0, r.output
    runs = json.loads(r.output)["runs"]
    assert runs[-1] == {
        "sets": ["rules.fast=9", "rules.slow=8"],
        "error": f"--set: {cfg.path}: rules.fast: must be smaller than rules.slow (8)",
    }
    single = run(
        apply_sets(cfg, ["rules.fast=2"]),
        start=datetime(2025, 1, 5, tzinfo=timezone.utc),
        end=datetime(2025, 1, 10, tzinfo=timezone.utc),
    )
    assert runs[0]["sets"] == ["rules.fast=2", "rules.slow=8"]
    assert (runs[0]["pnl_eur"], runs[0]["trades"]) == (single["pnl_eur"], len(single["trades"]))
    r = CliRunner().invoke(cli, ["replay", "--set", "rules.fast=2,3", "--set", "rules.fsat=1"])
    assert r.exit_code == 1 and "rules.fsat: unknown key" in r.output


def test_a_sweep_table_is_sorted_by_net_pnl_with_benchmarks_beside(setup):
    r = CliRunner().invoke(
        cli,
        [
            "replay",
            "--no-progress",
            "--set",
            "rules.fast=2,3,5",
            "--set",
            "rules.slow=13",
            "--from",
            "2025-01-05",
            "--to",
            "2025-01-09",
        ],
    )
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1].split()[:2] == ["settings", "trades"] and "hold" in lines[1] and "DCA" in lines[1]
    pnl = [Decimal(line.split()[4]) for line in lines[2:5]]
    assert pnl == sorted(pnl, reverse=True)


def test_the_config_lists_are_replayed_as_they_are_and_markets_replaces_them(setup):
    cfg, _ = setup
    narrow = apply_sets(cfg, ['risk.allowlist=["BTC-EUR"]', 'rules.markets=["BTC-EUR","ETH-EUR"]'])
    s = run(narrow)
    assert s["markets"] == ["BTC-EUR", "ETH-EUR"]  # rules watches ETH: its candles are replayed
    assert s["blocks"].get("not_allowlisted", 0) > 0  # ... and the allowlist still says no to it
    assert {t["market"] for t in s["trades"]} == {"BTC-EUR"}
    only_eth = run(narrow, markets=["eth-eur"])
    assert only_eth["markets"] == ["ETH-EUR"] and {t["market"] for t in only_eth["trades"]} == {"ETH-EUR"}
    assert "not_allowlisted" not in only_eth["blocks"]


def test_the_replay_simulator_shows_only_what_has_happened_by_now():
    def c(i, o, h, lo, cl):
        return candles.Candle(T0 + i * HOUR, Decimal(o), Decimal(h), Decimal(lo), Decimal(cl), Decimal(1))

    series = {
        "BTC-EUR": [c(0, 100, 110, 90, 105), c(1, 105, 120, 100, 115), c(2, 115, 130, 111, 112), c(4, 120, 125, 95, 99)]
    }  # no candle at 3: an hour without trades
    now = clock.Simulated(clock.from_ms(T0 + 2 * HOUR))
    sim = make_simulator(series, {"BTC-EUR": "1h"}, {}, Decimal(25), now, Decimal(0))
    assert sim.move_to(T0 + 2 * HOUR) == {"BTC-EUR": Decimal(115)}  # the open of the candle starting now
    assert [list(r[:5]) for r in sim.candles("BTC-EUR")] == [
        [T0, 100, 110, 90, 105],
        [T0 + HOUR, 105, 120, 100, 115],
        [T0 + 2 * HOUR, 115, 115, 115, 115],
    ]
    assert [list(r[:5]) for r in sim.candles("BTC-EUR", "2h")] == [
        [T0, 100, 120, 90, 115],
        [T0 + 2 * HOUR, 115, 115, 115, 115],
    ]
    now.t = clock.from_ms(T0 + 3 * HOUR)
    assert sim.move_to(T0 + 3 * HOUR) == {"BTC-EUR": Decimal(112)}  # a gap: the last close
    assert [r[0] for r in sim.candles("BTC-EUR")] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert [list(r[:5]) for r in sim.candles("BTC-EUR", "2h")] == [
        [T0, 100, 120, 90, 115],
        [T0 + 2 * HOUR, 115, 130, 111, 112],
    ]  # the open bucket: what closed so far
    ticker = sim.ticker_24h("BTC-EUR")
    assert (ticker["last"], ticker["high"]) == ("112", "130")
    sim.close()


def test_the_replay_benchmark_runs():
    """bench/replay_bench.py in a tiny size, so it cannot rot (its figures are in docs/REPLAY.md)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_bench", ROOT / "bench" / "replay_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.bench_replay(days=5, live_ticks=3)
    assert r["ticks"] > 50 and r["ticks_per_second"] > 0 and r["idle_live_tick_ms"] > 0 and r["ratio"] > 0


def test_keep_leaves_a_scratch_dir_that_tinybot_why_can_read(setup, tmp_path):
    cfg, _ = setup
    kept = tmp_path / "kept"
    r = CliRunner().invoke(
        cli, ["replay", "--no-progress", "--keep", str(kept), "--from", "2025-01-05", "--to", "2025-01-08"]
    )
    assert r.exit_code == 0, r.output
    assert f"kept in {kept}: replay.db and replay.log" in r.output
    blocked = (
        sqlite3.connect(kept / "replay.db")
        .execute("SELECT proposal_id FROM guard_decisions WHERE verdict = 'block' LIMIT 1")
        .fetchone()[0]
    )
    r = CliRunner().invoke(cli, ["--config", str(kept / "replay.toml"), "why", str(blocked), "--json"])
    assert r.exit_code == 0, r.output
    assert any(d["verdict"] == "block" for d in json.loads(r.output)["decisions"])


def test_candles_finer_than_the_store_has_are_a_clear_error(setup):
    cfg, _ = setup
    r = CliRunner().invoke(cli, ["replay", "--set", "rules.candle_interval=30m"])
    assert r.exit_code == 1
    assert (
        "BTC-EUR: the advisors read 30m candles (rules.candle_interval) but the store has only 1h; run"
        " `tinybot data fetch BTC-EUR --interval 30m --since …` or replay with --set rules.candle_interval=1h"
    ) in r.output


def test_the_replay_package_has_a_room_per_concern_and_re_exports_nothing():
    """tinybot/rehearse/replay/__init__.py is only its docstring (importers name each module: an old path fails loudly),
    every module's first line says what it is for, and the modules' imports of each other (inside functions
    too) form no cycle."""
    import ast

    package = ROOT / "tinybot" / "rehearse" / "replay"
    assert (package / "__init__.py").exists() and len(list(package.glob("*.py"))) > 2, package
    imports: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        doc = ast.get_docstring(tree, clean=False)
        assert doc and doc.splitlines()[0].strip(), f"{path.name} has no first line saying what it is for"
        if path.name == "__init__.py":
            assert [type(n) for n in tree.body] == [ast.Expr], (
                "tinybot/rehearse/replay/__init__.py holds more than its docstring"
            )
            continue
        imports[path.stem] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imports[path.stem] |= {node.module} if node.module else {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinybot.rehearse.replay."):
                imports[path.stem].add(node.module.rsplit(".", 1)[1])
    done: set[str] = set()
    while len(done) < len(imports):  # peel off the modules whose imports are all peeled off: a cycle never peels
        ready = {m for m, deps in imports.items() if m not in done and deps <= done}
        assert ready, f"an import cycle among {sorted(set(imports) - done)}"
        done |= ready


def test_a_replay_composes_no_daily_digest(setup, monkeypatch):
    """A replay delivers no alert: its digest drew a matplotlib chart every simulated day nobody saw (issue 26:
    most of a replay's time).  The days replayed here cross 21:00, the default digest time, five times."""
    from tinybot.owner import digest

    composed = []
    monkeypatch.setattr(digest, "compose", lambda *a, **k: composed.append(a) or pytest.fail("digest composed"))
    cfg, _ = setup
    s = run(cfg, start=datetime(2025, 1, 5, tzinfo=timezone.utc), end=datetime(2025, 1, 10, tzinfo=timezone.utc))
    assert s["ticks"] > 100 and composed == []


def test_a_sweep_uses_every_usable_core_unless_jobs_says_otherwise(setup, monkeypatch):
    from concurrent.futures import ProcessPoolExecutor

    from tinybot.rehearse.replay import sweep as sweep_module

    asked = []

    class Pool(ProcessPoolExecutor):
        def __init__(self, max_workers=None):
            asked.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(sweep_module, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(sweep_module, "usable_cores", lambda: 3)
    args = [
        "replay",
        "--json",
        "--no-progress",
        "--set",
        "rules.fast=2,3,4",
        "--from",
        "2025-01-05",
        "--to",
        "2025-01-07",
    ]
    every = CliRunner().invoke(cli, args)
    one = CliRunner().invoke(cli, [*args, "--jobs", "1"])
    assert every.exit_code == 0 and one.exit_code == 0, every.output + one.output
    assert asked == [3, 1]
    assert json.loads(every.output) == json.loads(one.output)
    r = CliRunner().invoke(cli, [*args, "--jobs", "0"])
    assert r.exit_code == 2 and "--jobs" in r.output
