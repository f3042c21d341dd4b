"""`tinybot replay`: the real tick over stored candles, on a simulated clock, in a scratch database."""
from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from tinybot import candles, clock, config, db, replay
from tinybot.cli import cli

HOUR = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
N = 300  # hourly candles per market: a fast test, still a dozen crossings

CONFIG = """\
mode = "paper"
advisors = ["rules"]

[risk]
allowlist = ["BTC-EUR", "ETH-EUR"]
max_trade_eur = 10
max_daily_eur = 20
max_exposure_eur = 25
cooldown = "1h"
anti_flip = "6h"
proposal_ttl = "30m"

[scheduler]
interval = "1h"

[rules]
candle_interval = "1h"
fast = 3
slow = 8
buy_eur = 6
"""


def csv_rows(n=N, seed=3, gaps=True, start_ms=T0):
    """Two markets of a wavy random walk; every 97th candle missing (an hour without trades)."""
    rnd = random.Random(seed)
    rows = []
    for market, p0, dec in (("BTC-EUR", 60000, 0), ("ETH-EUR", 3000, 1)):
        p = p0
        for i in range(n):
            o = p
            c = o * (1 + 0.002 * math.sin(i / 15) + rnd.gauss(0, 0.004))
            h = max(o, c) * (1 + abs(rnd.gauss(0, 0.002)))
            lo = min(o, c) * (1 - abs(rnd.gauss(0, 0.002)))
            f = lambda x: f"{x:.{dec}f}"  # noqa: E731
            p = float(f(c))
            if gaps and i % 97 == 50:
                continue
            rows.append(f"{market},{start_ms + i * HOUR},{f(o)},{f(h)},{f(lo)},{f(c)},{rnd.uniform(0.1, 5):.4f}")
    return rows


@pytest.fixture
def setup(tmp_path):
    """bot.toml + the live database holding the candles; returns (cfg, path of the csv)."""
    (tmp_path / "bot.toml").write_text(CONFIG)
    path = tmp_path / "candles.csv"
    path.write_text("\n".join(["market,timestamp,open,high,low,close,volume", *csv_rows()]) + "\n")
    cfg = config.load(tmp_path / "bot.toml")
    conn = db.open_db(cfg.db_path)
    candles.import_csv(conn, path)
    conn.close()
    return cfg, path


def run(cfg, **kw):
    store = replay.open_store(cfg.db_path)
    try:
        return replay.replay(cfg, store, **kw)
    finally:
        store.close()


def to_tick(x: Decimal, tick: Decimal, rounding) -> Decimal:
    return (x / tick).to_integral_value(rounding=rounding) * tick


def test_orders_fill_at_the_open_of_the_next_candle_with_fee_minimum_and_slippage(setup):
    cfg, _ = setup
    slip = Decimal("0.0005")
    s = run(cfg, slippage=slip)
    assert len(s["trades"]) >= 10 and {t["side"] for t in s["trades"]} == {"buy", "sell"}
    store = replay.open_store(cfg.db_path)
    ticks = {"BTC-EUR": Decimal(1), "ETH-EUR": Decimal("0.1")}  # the CSV's precision
    for t in s["trades"]:
        at = clock.to_ms(clock.from_iso(t["time"]))
        assert at % HOUR == 0  # filled at a tick
        # the decision saw candles closed by `at`; the order fills at the open of the candle opening then
        row = store.execute("SELECT open FROM candles WHERE market = ? AND ts_ms = ?", (t["market"], at)).fetchone()
        ref = Decimal(row[0]) if row else Decimal(store.execute(
            "SELECT close FROM candles WHERE market = ? AND ts_ms < ? ORDER BY ts_ms DESC LIMIT 1",
            (t["market"], at)).fetchone()[0])  # a gap: the last trade price
        tick = ticks[t["market"]]
        half = max(tick, to_tick(ref * Decimal("0.0001"), tick, ROUND_CEILING))  # the simulator's spread
        price, amount, fee = Decimal(t["price"]), Decimal(t["amount"]), Decimal(t["fee"])
        if t["side"] == "buy":
            assert price == to_tick((ref + half) * (1 + slip), tick, ROUND_CEILING)
            assert fee == Decimal("0.015")  # 0.25 % of the €6 bought, out of the €6
            assert amount == ((Decimal(6) - fee) / price).quantize(Decimal("1e-8"), rounding=ROUND_FLOOR)
        else:
            assert price == to_tick((ref - half) * (1 - slip), tick, ROUND_FLOOR)
            assert fee == (amount * price * Decimal("0.0025")).quantize(Decimal("1e-8"), rounding=ROUND_CEILING)
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
    tight = replay.apply_sets(cfg, ["safety.max_daily_loss_eur=0.05"])
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
    for name in config.SECRET_NAMES:
        monkeypatch.setenv(name, "real-value-must-not-be-used")
    monkeypatch.setenv("TINYBOT_ALERT_URLS", "json://127.0.0.1:9/")
    s = run(cfg, keep=Path(cfg.base_dir) / "scratch")
    assert len(s["trades"]) >= 10  # the simulator would refuse any key but its own throwaway one
    scratch = sqlite3.connect(Path(s["scratch_dir"]) / "replay.db")
    statuses = {r[0] for r in scratch.execute("SELECT status FROM alert_log")}
    assert statuses <= {"unconfigured", "suppressed"}  # no alert went anywhere


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


@pytest.mark.parametrize("args, message", [
    (["--markets", "XRP-EUR"], "XRP-EUR: no candles stored; run `tinybot data fetch XRP-EUR --interval 1h"),
    (["--markets", "BTC-USD"], "--markets: 'BTC-USD' is not a Bitvavo EUR market name"),
    (["--from", "2026-01-01"], "empty range: no 1h tick between 2026-01-01T00:00Z and"),
    (["--from", "2025-01-05", "--to", "2025-01-04"], "empty range: --to 2025-01-04 is not after --from"),
    (["--set", "rules.fsat=8"], "--set: "),
    (["--set", "rules.fast=30"], "rules.fast: must be smaller than rules.slow (8)"),
    (["--set", "rules"], "--set 'rules': write it as key=value"),
    (["--set", "rules.candle_interval=4h", "--set", "rules.fast=2", "--set", "rules.slow=3"], None),
    (["--eur", "-3"], "--eur must be a number above 0"),
])
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
        "proposals": q("SELECT id, source, market, side, amount_quote, amount, reason, status, created_at,"
                       " expires_at FROM proposals ORDER BY id"),
        "verdicts": q("SELECT proposal_id, stage, guard, verdict, reason_code, decided_at FROM guard_decisions"
                      " ORDER BY id"),
        # not filled_quote: for a buy by EUR the paper exchange reports EUR minus fee, the simulator
        # amount × price (Bitvavo: filledAmountQuote + feePaid == amountQuote); the fills below agree
        "executions": q("SELECT proposal_id, market, side, state, notional_eur, filled_amount, fee_paid"
                        " FROM trade_executions ORDER BY id"),
        "trades": [(r[0], r[1], r[2], str(Decimal(r[3])), str(Decimal(r[4])), str(Decimal(r[5]))) for r in conn.execute(
            "SELECT executed_at, market, side, amount, price, fee FROM trade_history ORDER BY id")],
    }


def test_decision_parity_with_a_paper_tinybot_run_against_the_simulator(setup, tmp_path):
    """The same candles, fed to a paper `tinybot run` (the real loop, freezegun moving time) against the
    simulator replaying them, and to `tinybot replay`: identical proposals, guard verdicts and trades."""
    from freezegun import freeze_time

    from tinybot import scheduler
    from tinybot.exchange import read_only
    from tinybot.exchange.bitvavo import read_only_client
    from tinybot.executor import trading_exchange

    cfg, _ = setup
    kept = tmp_path / "replay-scratch"
    s = run(cfg, keep=kept)
    first, last = clock.from_iso(s["from"]), clock.from_iso(s["to"])

    store = replay.open_store(cfg.db_path)
    series = {m: candles.load(store, m, "1h") for m in ("BTC-EUR", "ETH-EUR")}
    store.close()

    class TimeTime:
        @staticmethod
        def seconds():
            import time

            return time.time()

    sim = replay.make_simulator(series, {m: "1h" for m in series}, {}, Decimal(25), TimeTime,
                                replay.DEFAULT_SLIPPAGE)
    server = sim.serve()
    paper_dir = tmp_path / "paper"
    paper_dir.mkdir()
    (paper_dir / "bot.toml").write_text(CONFIG.replace('[scheduler]\n', '[scheduler]\nkeep_days = 36500\n')
                                        + f'\n[exchange]\nurl = "{server.url}"\n')
    pcfg = config.load(paper_dir / "bot.toml")
    conn = db.open_db(pcfg.db_path)
    try:
        with freeze_time(first) as frozen:
            source = read_only_client(pcfg, rate_limit=False)  # the paper run's market data: the simulator
            sched = scheduler.Scheduler(pcfg, conn, echo=lambda line: None, read_only=read_only(pcfg, source),
                                        trading=trading_exchange(pcfg, market_data=source),
                                        before_tick=lambda slot: sim.move_to(clock.to_ms(slot)))

            def sleep(_seconds):  # wake at the next slot (the loop asks for at most 0.5 s at a time)
                frozen.move_to(scheduler.next_slot(clock.now(), pcfg.scheduler.interval))

            sched.run(until=last + timedelta(minutes=1), sleep=sleep)
        paper = _decisions(conn)
    finally:
        conn.close()
        server.close()
        sim.close()
    replayed = _decisions(sqlite3.connect(kept / "replay.db"))
    assert len(paper["trades"]) >= 10 and len(paper["verdicts"]) > 100
    assert paper == replayed


def test_a_sweep_runs_the_grid_in_processes_sorted_by_net_pnl(setup):
    cfg, _ = setup
    assert replay.expand_sets(["rules.fast=2,3", "rules.slow=8,13", 'risk.allowlist=["BTC-EUR","ETH-EUR"]']) == [
        ["rules.fast=2", "rules.slow=8", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
        ["rules.fast=2", "rules.slow=13", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
        ["rules.fast=3", "rules.slow=8", 'risk.allowlist=["BTC-EUR","ETH-EUR"]'],
        ["rules.fast=3", "rules.slow=13", 'risk.allowlist=["BTC-EUR","ETH-EUR"]']]
    r = CliRunner().invoke(cli, ["replay", "--json", "--no-progress", "--set", "rules.fast=2,9", "--set",
                                 "rules.slow=8", "--from", "2025-01-05", "--to", "2025-01-10"])
    assert r.exit_code == 0, r.output
    runs = json.loads(r.output)["runs"]
    assert runs[-1] == {"sets": ["rules.fast=9", "rules.slow=8"],
                        "error": f"--set: {cfg.path}: rules.fast: must be smaller than rules.slow (8)"}
    single = run(replay.apply_sets(cfg, ["rules.fast=2"]), start=datetime(2025, 1, 5, tzinfo=timezone.utc),
                 end=datetime(2025, 1, 10, tzinfo=timezone.utc))
    assert runs[0]["sets"] == ["rules.fast=2", "rules.slow=8"]
    assert (runs[0]["pnl_eur"], runs[0]["trades"]) == (single["pnl_eur"], len(single["trades"]))
    r = CliRunner().invoke(cli, ["replay", "--set", "rules.fast=2,3", "--set", "rules.fsat=1"])
    assert r.exit_code == 1 and "rules.fsat: unknown key" in r.output


def test_a_sweep_table_is_sorted_by_net_pnl_with_benchmarks_beside(setup):
    r = CliRunner().invoke(cli, ["replay", "--no-progress", "--set", "rules.fast=2,3,5", "--set", "rules.slow=13",
                                 "--from", "2025-01-05", "--to", "2025-01-09"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1].split()[:2] == ["settings", "trades"] and "hold" in lines[1] and "DCA" in lines[1]
    pnl = [Decimal(line.split()[4]) for line in lines[2:5]]
    assert pnl == sorted(pnl, reverse=True)


def test_the_config_lists_are_replayed_as_they_are_and_markets_replaces_them(setup):
    cfg, _ = setup
    narrow = replay.apply_sets(cfg, ['risk.allowlist=["BTC-EUR"]', 'rules.markets=["BTC-EUR","ETH-EUR"]'])
    s = run(narrow)
    assert s["markets"] == ["BTC-EUR", "ETH-EUR"]  # rules watches ETH: its candles are replayed
    assert s["blocks"].get("not_allowlisted", 0) > 0  # ... and the allowlist still says no to it
    assert {t["market"] for t in s["trades"]} == {"BTC-EUR"}
    only_eth = run(narrow, markets=["eth-eur"])
    assert only_eth["markets"] == ["ETH-EUR"] and {t["market"] for t in only_eth["trades"]} == {"ETH-EUR"}
    assert "not_allowlisted" not in only_eth["blocks"]


def test_the_replay_simulator_shows_only_what_has_happened_by_now():
    c = lambda i, o, h, lo, cl: candles.Candle(T0 + i * HOUR, Decimal(o), Decimal(h), Decimal(lo), Decimal(cl),  # noqa: E731
                                               Decimal(1))
    series = {"BTC-EUR": [c(0, 100, 110, 90, 105), c(1, 105, 120, 100, 115), c(2, 115, 130, 111, 112),
                          c(4, 120, 125, 95, 99)]}  # no candle at 3: an hour without trades
    now = replay.SimClock(clock.from_ms(T0 + 2 * HOUR))
    sim = replay.make_simulator(series, {"BTC-EUR": "1h"}, {}, Decimal(25), now, Decimal(0))
    assert sim.move_to(T0 + 2 * HOUR) == {"BTC-EUR": Decimal(115)}  # the open of the candle starting now
    assert [list(r[:5]) for r in sim.candles("BTC-EUR")] == [
        [T0, 100, 110, 90, 105], [T0 + HOUR, 105, 120, 100, 115], [T0 + 2 * HOUR, 115, 115, 115, 115]]
    assert [list(r[:5]) for r in sim.candles("BTC-EUR", "2h")] == [
        [T0, 100, 120, 90, 115], [T0 + 2 * HOUR, 115, 115, 115, 115]]
    now.t = clock.from_ms(T0 + 3 * HOUR)
    assert sim.move_to(T0 + 3 * HOUR) == {"BTC-EUR": Decimal(112)}  # a gap: the last close
    assert [r[0] for r in sim.candles("BTC-EUR")] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert [list(r[:5]) for r in sim.candles("BTC-EUR", "2h")] == [
        [T0, 100, 120, 90, 115], [T0 + 2 * HOUR, 115, 130, 111, 112]]  # the open bucket: what closed so far
    ticker = sim.ticker_24h("BTC-EUR")
    assert (ticker["last"], ticker["high"]) == ("112", "130")
    sim.close()


def test_the_replay_benchmark_runs():
    """bench/replay_bench.py in a tiny size, so it cannot rot (its figures are in docs/REPLAY.md)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_bench", Path(__file__).parent.parent / "bench" / "replay_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.bench_replay(days=5, live_ticks=3)
    assert r["ticks"] > 50 and r["ticks_per_second"] > 0 and r["idle_live_tick_ms"] > 0 and r["ratio"] > 0


def test_keep_leaves_a_scratch_dir_that_tinybot_why_can_read(setup, tmp_path):
    cfg, _ = setup
    kept = tmp_path / "kept"
    r = CliRunner().invoke(cli, ["replay", "--no-progress", "--keep", str(kept), "--from", "2025-01-05",
                                 "--to", "2025-01-08"])
    assert r.exit_code == 0, r.output
    assert f"kept in {kept}: replay.db and replay.log" in r.output
    blocked = sqlite3.connect(kept / "replay.db").execute(
        "SELECT proposal_id FROM guard_decisions WHERE verdict = 'block' LIMIT 1").fetchone()[0]
    r = CliRunner().invoke(cli, ["--config", str(kept / "bot.toml"), "why", str(blocked), "--json"])
    assert r.exit_code == 0, r.output
    assert any(d["verdict"] == "block" for d in json.loads(r.output)["decisions"])


def test_candles_finer_than_the_store_has_are_a_clear_error(setup):
    cfg, _ = setup
    r = CliRunner().invoke(cli, ["replay", "--set", "rules.candle_interval=30m"])
    assert r.exit_code == 1
    assert ("BTC-EUR: the advisors read 30m candles (rules.candle_interval) but the store has only 1h; run"
            " `tinybot data fetch BTC-EUR --interval 30m --since …` or replay with --set rules.candle_interval=1h"
            ) in r.output
