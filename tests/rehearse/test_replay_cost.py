"""What a replay tick costs, counted (never timed), and that making it cheaper changed no trade."""

from __future__ import annotations

import decimal
import json
from decimal import Decimal

import pytest

from helpers import FIXTURES
from helpers.replay_data import HOUR, T0, candle_store, csv_rows
from tinybot.analysis import candles
from tinybot.base import clock, config
from tinybot.exchange.bitvavo.clients import BitvavoReadOnly
from tinybot.rehearse.replay.plan import open_store
from tinybot.rehearse.replay.run import replay
from tinybot.rehearse.replay.simulator import REPLAY_KEY, REPLAY_SECRET, make_simulator
from tinybot.sim.transport import InProcessSession

# tests/fixtures/replay_trades_main.json: what main's replay (0494bee, before issue 26's replay cuts) gave for these
# fixtures; the figures a replay's summary reports beside its trades, compared as the exact strings it prints.
GOLDEN = json.loads((FIXTURES / "replay_trades_main.json").read_text())
FIXTURE_ROWS = {"300_hours_seed_3": lambda: csv_rows(), "40_days_seed_11": lambda: csv_rows(n=24 * 40, seed=11)}


def replayed(cfg, **kw) -> dict:
    """A replay in Python's default decimal context: ccxt's rounding helpers set ROUND_HALF_UP on the thread they run
    in, so a replay after another test's ccxt call wrote its advisors' reasons rounded the other way (…345.63 for
    …345.62), on main too."""
    store = open_store(cfg.db_path)
    try:
        with decimal.localcontext(decimal.DefaultContext):
            return replay(cfg, store, **kw)
    finally:
        store.close()


@pytest.mark.parametrize("name", sorted(FIXTURE_ROWS))
def test_a_replays_trades_and_figures_are_exactly_mains(tmp_path, name):
    cfg, _ = candle_store(tmp_path, FIXTURE_ROWS[name]())
    s = replayed(cfg)
    want = GOLDEN[name]
    # every trade: time, market, side, amount, price, fee, proposal, reason (the first that differs, field by field)
    for got, was in zip(s["trades"], want["trades"]):
        assert {k: got.get(k) for k in was if got.get(k) != was[k]} == {k: was[k] for k in was if got.get(k) != was[k]}
    assert len(s["trades"]) == len(want["trades"])
    assert {k: s[k] for k in want if k != "trades"} == {k: v for k, v in want.items() if k != "trades"}


class CountedDecimal(Decimal):
    """A candle price that counts how often it is written out as text (the simulator's wire work)."""

    formatted = 0

    def __format__(self, spec):
        CountedDecimal.formatted += 1
        return super().__format__(spec)


def routed_reader(tmp_path, sim, at):
    (tmp_path / "bot.toml").write_text('mode = "live"\n[exchange]\nurl = "http://127.0.0.1:9"\noperator_id = 1\n')
    ro = BitvavoReadOnly(config.load(tmp_path / "bot.toml"), REPLAY_KEY, REPLAY_SECRET)
    ro.route_requests(InProcessSession(sim), milliseconds=at.ms)
    return ro


def test_a_candle_read_formats_only_the_candles_it_has_not_sent_before(tmp_path):
    """The advisors read the newest 60 closed candles every tick, and each tick one more has closed: the simulator
    writes each closed candle as text once per replay, not 60 times (main: 300 Decimal formats a read)."""
    at = clock.Simulated(clock.from_ms(T0 + 100 * HOUR))
    c = lambda i: CountedDecimal(60000 + i)  # noqa: E731
    series = {"BTC-EUR": [candles.Candle(T0 + i * HOUR, c(i), c(i + 9), c(i - 9), c(i + 1), c(1)) for i in range(200)]}
    sim = make_simulator(series, {"BTC-EUR": "1h"}, {}, Decimal(25), at, Decimal(0))
    ro = routed_reader(tmp_path, sim, at)
    per_read, seen = [], []
    with clock.simulated(at):
        for hour in range(100, 110):
            at.t = clock.from_ms(T0 + hour * HOUR)
            sim.move_to(T0 + hour * HOUR)
            before = CountedDecimal.formatted
            got = ro.candles("BTC-EUR", "1h", 60)
            per_read.append(CountedDecimal.formatted - before)
            seen.append(got)
    sim.close()
    # what was sent is what the stored candles say: the newest 60, the one opening now only as its open
    assert [x.timestamp_ms for x in seen[-1]] == [T0 + h * HOUR for h in range(50, 110)]
    assert seen[-1][-2] == series["BTC-EUR"][108] and seen[-1][-1].close == series["BTC-EUR"][109].open
    assert per_read[0] <= 60 * 5  # the first read writes out everything it sends
    # later reads: the candle that closed since (5 numbers) and the one opening now (its open, 4 times)
    assert max(per_read[1:]) <= 5 + 4, per_read


def test_the_in_process_transport_writes_and_parses_no_http_text(tmp_path, monkeypatch):
    """ccxt's request reaches the simulator's handler and its answer comes back without being written out as an HTTP
    status line and headers and parsed again (main: 6 header lines a request, each written then parsed)."""
    import http.server

    lines = []
    real = http.server.BaseHTTPRequestHandler.send_header
    monkeypatch.setattr(
        http.server.BaseHTTPRequestHandler, "send_header", lambda self, k, v: lines.append(k) or real(self, k, v)
    )
    at = clock.Simulated(clock.from_ms(T0 + 30 * HOUR))
    series = {"BTC-EUR": [candles.Candle(T0 + i * HOUR, *(Decimal(100),) * 4, Decimal(1)) for i in range(40)]}
    sim = make_simulator(series, {"BTC-EUR": "1h"}, {}, Decimal(25), at, Decimal(0))
    sim.move_to(T0 + 30 * HOUR)
    ro = routed_reader(tmp_path, sim, at)
    with clock.simulated(at):
        assert ro.balances()["EUR"].available == 25
        assert ro.ticker("BTC-EUR").last == 100
        assert len(ro.candles("BTC-EUR", "1h", 10)) == 10
        assert ro.rate_limited_until_ms() is None
    sim.close()
    assert lines == []


def test_a_replay_tick_asks_the_simulator_no_more_than_a_live_tick_did(tmp_path, monkeypatch):
    """A replay tick is a live tick: every request it makes reaches the simulator's handler, and none is added on the
    replay side (main, 300 hourly candles, 240 ticks: 1864 requests, 7.8 a tick; fewer once a live tick asks less)."""
    from tinybot.sim.server import Handler

    paths = []
    respond = Handler.respond

    def counted_respond(self, method):
        paths.append(self.path.partition("?")[0])
        return respond(self, method)

    monkeypatch.setattr(Handler, "respond", counted_respond)
    cfg, _ = candle_store(tmp_path, csv_rows())
    s = replayed(cfg)
    assert s["ticks"] == 240 and s["ticks_with_errors"] == 0
    assert 240 * 2 <= len(paths) <= 1864  # at least a ticker or candle read per market and tick


def test_only_the_replays_scratch_database_goes_without_fsync(tmp_path, monkeypatch):
    from tinybot.rehearse.replay import run
    from tinybot.store import db

    seen = []
    real = run.open_scratch_db

    def watched(path):
        conn = real(path)
        seen.append((str(path), *(conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("synchronous", "journal_mode"))))
        return conn

    monkeypatch.setattr(run, "open_scratch_db", watched)
    cfg, _ = candle_store(tmp_path, csv_rows(n=80))
    replayed(cfg)
    assert len(seen) == 1 and seen[0][0] != str(cfg.db_path) and seen[0][1:] == (0, "wal")  # 0: OFF
    live = db.connect(cfg.db_path)  # in the same process, after the replay
    assert [live.execute(f"PRAGMA {p}").fetchone()[0] for p in ("synchronous", "journal_mode")] == [2, "wal"]  # FULL
    live.close()


SWEEP_WORKER = """
import sys
from tinybot.base.config import load
from tinybot.rehearse.replay import sweep
from tinybot.rehearse.replay.plan import ReplayError

def watched(cfg, store, **kw):  # in the worker: was the Bitvavo adapter there before its replay began?
    raise ReplayError("ccxt modules at the start: %d" % sum(m.split(".")[0] == "ccxt" for m in sys.modules))

sweep.replay = watched
print(sweep.sweep(load(sys.argv[1]), [[]], workers=1)[0]["error"])
"""


def test_a_sweeps_workers_start_with_the_bitvavo_adapter_imported(tmp_path):
    """ccxt is imported once, in the sweep, before its workers fork; not once per worker (main: 0 at the start)."""
    import subprocess
    import sys

    cfg, _ = candle_store(tmp_path, csv_rows(n=80))
    out = subprocess.run(
        [sys.executable, "-c", SWEEP_WORKER, str(cfg.path)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert int(out.rsplit(":", 1)[1]) > 100, out
