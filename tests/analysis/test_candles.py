"""The candle store: `tinybot data fetch` through ccxt against `tinybot sim` on loopback, CSV import, list."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tinybot.analysis import candles
from tinybot.base import config
from tinybot.store import db
from tinybot.cli import cli
from tinybot.sim.faults import make_fault

NOW = datetime(2025, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
HOUR = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z


@pytest.fixture
def store(tmp_path):
    conn = db.open_db(tmp_path / "tinybot.db")
    yield conn
    conn.close()


def client_for(tmp_path, url):
    from tinybot.exchange.bitvavo.clients import read_only_client

    path = tmp_path / "fetch.toml"
    path.write_text(f'[exchange]\nurl = "{url}"\n')
    return read_only_client(config.load(path), rate_limit=False)


def count(conn, sql="SELECT COUNT(*) FROM candles", args=()):
    return conn.execute(sql, args).fetchone()[0]


def sim_rows(sim, market="BTC-EUR"):
    """The simulator's closed 1m candles as the store should hold them."""
    newest = sim.now_ms() // 60_000 * 60_000
    return [r for r in sim.candles(market) if r[0] < newest]


@pytest.mark.parametrize("candle_end", ["inclusive", "exclusive"])
def test_fetch_pages_aligned_windows_and_resumes_after_a_failure(tmp_path, store, sim_factory, candle_end):
    """Bitvavo refuses bounds off the interval's grid (the simulator too); whether `end` brings back the
    candle that starts there is not documented: every candle is stored once under either reading."""
    running = sim_factory(interval="1m", history=3000, markets=("BTC-EUR",), clock=NOW.timestamp, candle_end=candle_end)
    sim = running.sim
    client = client_for(tmp_path, running.url)
    closed = sim_rows(sim)
    assert len(closed) == 2999
    since = datetime.fromtimestamp(closed[0][0] / 1000, timezone.utc)
    # the first request answers, the second gets a 502: the fetch stops and keeps the first page
    sim.arm(make_fault("delay", on="candles", count=1, delay=0))
    sim.arm(make_fault("html_5xx", on="candles", count=1))
    with pytest.raises(candles.CandleError) as e:
        candles.fetch(store, client, ["BTC-EUR"], "1m", since)
    assert "run the same command again" in str(e.value)
    assert count(store) == candles.PER_WINDOW
    assert count(store, "SELECT COUNT(*) FROM candle_coverage") == 1

    counter = sim.arm(make_fault("delay", on="candles", count=None, delay=0))
    report = candles.fetch(store, client, ["BTC-EUR"], "1m", since)
    assert counter.fired == 2 == report.markets["BTC-EUR"]["requests"]  # only what was missing
    stored = store.execute("SELECT ts_ms, open, high, low, close, volume FROM candles ORDER BY ts_ms").fetchall()
    assert [tuple(r) for r in stored] == [(r[0], *(format(x, "f") for x in r[1:])) for r in closed]
    assert candles.coverage(store, "BTC-EUR", "1m") == [(closed[0][0], closed[-1][0] + 60_000)]

    again = candles.fetch(store, client, ["BTC-EUR"], "1m", since)
    assert again.markets["BTC-EUR"]["requests"] == 0 and counter.fired == 2


def test_fetch_never_stores_the_candle_still_open(tmp_path, store, sim_factory):
    running = sim_factory(interval="1m", history=100, markets=("BTC-EUR",), clock=NOW.timestamp)
    client = client_for(tmp_path, running.url)
    candles.fetch(store, client, ["BTC-EUR"], "1m", NOW - timedelta(minutes=30), NOW + timedelta(hours=1))
    newest_open = int(NOW.timestamp() * 1000) // 60_000 * 60_000
    assert store.execute("SELECT MAX(ts_ms) FROM candles").fetchone()[0] == newest_open - 60_000
    assert count(store) == 30


def test_the_trading_client_serves_candle_rows_too(tmp_path, store, sim_factory):
    """candle_rows is on both Bitvavo clients; BitvavoTrading's once read an endpoint it does not have."""
    from tinybot.exchange.bitvavo.clients import BitvavoTrading

    running = sim_factory(interval="1m", history=100, markets=("BTC-EUR",), clock=NOW.timestamp)
    path = tmp_path / "trade.toml"
    path.write_text(f'mode = "live"\n[exchange]\nurl = "{running.url}"\noperator_id = 1\n')
    trading = BitvavoTrading(config.load(path), "k", "s", rate_limit=False)
    report = candles.fetch(store, trading, ["BTC-EUR"], "1m", NOW - timedelta(minutes=30))
    assert report.markets["BTC-EUR"]["candles"] == 30 == count(store)


def test_fetch_waits_out_a_rate_limit(tmp_path, store, sim_factory):
    with freeze_time(NOW, tick=True) as frozen:
        running = sim_factory(interval="1m", history=200, markets=("BTC-EUR",))
        client = client_for(tmp_path, running.url)
        running.sim.add_fault("rate_limit_110", on="candles", count=1)
        waits = []

        def sleep(seconds):
            waits.append(seconds)
            frozen.tick(timedelta(seconds=seconds))

        report = candles.fetch(store, client, ["BTC-EUR"], "1m", NOW - timedelta(minutes=100), sleep=sleep)
    # Bitvavo blocks a key that went over until the end of the *next* minute; the fetch waits that out (+1 s)
    next_minute_end = NOW.replace(second=0, microsecond=0) + timedelta(minutes=2)
    assert len(waits) == 1 and abs(waits[0] - ((next_minute_end - NOW).total_seconds() + 1)) < 2, waits
    assert report.markets["BTC-EUR"]["candles"] == 100 == count(store)


def test_fetch_of_an_unknown_market_names_it_and_stores_nothing(tmp_path, store, sim):
    client = client_for(tmp_path, sim.url)
    with pytest.raises(candles.CandleError, match="XRP-EUR: Bitvavo does not list this market"):
        candles.fetch(store, client, ["BTC-EUR", "XRP-EUR"], "1h", NOW)
    assert count(store) == 0 and count(store, "SELECT COUNT(*) FROM candle_markets") == 0


def test_fetch_stores_the_market_limits_for_replay(tmp_path, store, sim):
    client = client_for(tmp_path, sim.url)
    candles.fetch(store, client, ["ETH-EUR"], "1m", datetime.now(timezone.utc) - timedelta(minutes=5))
    m = candles.market_info(store, "ETH-EUR")
    assert (m.tick_size, m.quantity_decimals, m.min_quote, m.min_base) == (
        Decimal("0.1"),
        8,
        Decimal("5.00"),
        Decimal("0.0001"),
    )


# --- CSV import ------------------------------------------------------------------------------


def write_csv(path, rows, header="market,timestamp,open,high,low,close,volume"):
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def hourly(market="BTC-EUR", n=5, skip=(), price=100):
    return [
        f"{market},{T0 + i * HOUR},{price + i},{price + i + 2},{price + i - 1},{price + i + 1},1.5"
        for i in range(n)
        if i not in skip
    ]


def test_import_infers_the_interval_keeps_gaps_and_is_idempotent(tmp_path, store):
    path = write_csv(tmp_path / "c.csv", hourly(n=10, skip=(3, 4)) + hourly("ETH-EUR", n=3))
    report = candles.import_csv(store, path)
    assert report.markets["BTC-EUR"] == {
        "interval": "1h",
        "candles": 8,
        "first": "2025-01-01T00:00Z",
        "last": "2025-01-01T09:00Z",
        "gaps": 2,
    }
    candles.import_csv(store, path)
    assert count(store) == 11
    listed = {r["market"]: r for r in candles.listing(store)}
    assert listed["BTC-EUR"]["gaps"] == 2 and listed["BTC-EUR"]["not_fetched"] == []
    assert [c.timestamp_ms for c in candles.load(store, "BTC-EUR", "1h")] == [
        T0 + i * HOUR for i in range(10) if i not in (3, 4)
    ]
    assert candles.load(store, "BTC-EUR", "1h")[0].close == Decimal("101")


@pytest.mark.parametrize(
    "rows, message",
    [
        (["BTC-EUR,1735693200000,100,99,98,99,1"], "line 3: high/low do not hold open and close"),
        (["BTC-EUR,1735693200000,abc,102,98,99,1"], "line 3: open 'abc' is not a positive number"),
        (["BTC-EUR,2025-01-01,100,102,98,99,1"], "line 3: timestamp '2025-01-01' is not milliseconds"),
        (["BTC-USD,1735693200000,100,102,98,99,1"], "line 3: 'BTC-USD' is not a Bitvavo EUR market name"),
        (["BTC-EUR,1735689600000,100,102,98,99,1"], "line 3: BTC-EUR at 1735689600000 is already on line 2"),
        (
            ["BTC-EUR,1735691400000,100,102,98,99,1", "BTC-EUR,1735693200000,100,102,98,99,1"],
            "line 3: BTC-EUR timestamp 1735691400000 is not the start of a 1h candle",
        ),
    ],
)
def test_a_bad_csv_row_names_file_and_line_and_nothing_is_imported(tmp_path, store, rows, message):
    path = write_csv(tmp_path / "bad.csv", ["BTC-EUR,1735689600000,100,102,98,99,1", *rows])
    with pytest.raises(candles.CandleError) as e:
        candles.import_csv(store, path, "1h" if "1h candle" in message else None)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)
    assert count(store) == 0 and count(store, "SELECT COUNT(*) FROM candle_coverage") == 0


def test_import_needs_the_header_and_an_interval_it_can_tell(tmp_path, store):
    with pytest.raises(
        candles.CandleError, match="line 1: the header must be market,timestamp,open,high,low,close,volume"
    ):
        candles.import_csv(store, write_csv(tmp_path / "h.csv", hourly(n=2), header="market,ts,o,h,l,c,v"))
    with pytest.raises(candles.CandleError, match="single candle; give its interval with --interval"):
        candles.import_csv(store, write_csv(tmp_path / "one.csv", hourly(n=1)))
    assert candles.import_csv(store, tmp_path / "one.csv", "1h").markets["BTC-EUR"]["interval"] == "1h"


def test_import_rolls_back_completely_when_a_write_fails(tmp_path, store):
    """All or nothing: a failure after some rows were upserted leaves no candle and no coverage."""
    path = write_csv(tmp_path / "c.csv", hourly(n=5) + hourly("ETH-EUR", n=5))
    store.execute(
        "CREATE TRIGGER no_eth BEFORE INSERT ON candle_coverage WHEN NEW.market = 'ETH-EUR'"
        " BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
    )
    with pytest.raises(Exception, match="disk full"):
        candles.import_csv(store, path)
    assert not store.in_transaction
    assert count(store) == 0 and count(store, "SELECT COUNT(*) FROM candle_coverage") == 0


# --- the commands -----------------------------------------------------------------------------


def test_data_commands_import_list_and_fetch(tmp_path, sim):
    (tmp_path / "bot.toml").write_text(f'[exchange]\nurl = "{sim.url}"\n')
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0  # only init creates the database
    write_csv(tmp_path / "c.csv", hourly(n=6, skip=(2,)))
    runner = CliRunner()
    r = runner.invoke(cli, ["data", "import", str(tmp_path / "c.csv")])
    assert r.exit_code == 0, r.output
    assert r.output == "BTC-EUR: 5 1h candles, 2025-01-01T00:00Z to 2025-01-01T05:00Z, 1 gap(s)\n"
    r = runner.invoke(
        cli,
        [
            "data",
            "fetch",
            "ETH-EUR",
            "--interval",
            "1m",
            "--since",
            (datetime.now(timezone.utc) - timedelta(minutes=10)).isoformat(),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["markets"]["ETH-EUR"]["candles"] in (9, 10)
    r = runner.invoke(cli, ["data", "list", "--json"])
    listed = json.loads(r.output)
    assert [(x["market"], x["interval"], x["gaps"]) for x in listed] == [("BTC-EUR", "1h", 1), ("ETH-EUR", "1m", 0)]
    r = runner.invoke(cli, ["data", "list"])
    assert r.output.splitlines()[0].split() == ["market", "interval", "candles", "first", "last", "gaps", "not_fetched"]


def test_data_command_errors_are_one_line_and_exit_1(tmp_path, sim):
    (tmp_path / "bot.toml").write_text(f'[exchange]\nurl = "{sim.url}"\n')
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0  # only init creates the database
    write_csv(tmp_path / "bad.csv", ["BTC-EUR,1735689600000,1,2,0.5,x,1"])
    runner = CliRunner()
    r = runner.invoke(cli, ["data", "import", str(tmp_path / "bad.csv")])
    assert r.exit_code == 1
    assert r.output == f"Error: {tmp_path / 'bad.csv'}: line 2: close 'x' is not a positive number\n"
    r = runner.invoke(cli, ["data", "fetch", "DOGE-EUR", "--since", "2025-01-01"])
    assert (r.exit_code, r.output) == (
        1,
        "Error: DOGE-EUR: Bitvavo does not list this market; check the name (like BTC-EUR)\n",
    )
    r = runner.invoke(cli, ["data", "fetch", "BTC-EUR", "--since", "yesterday"])
    assert r.exit_code == 1 and "--since 'yesterday' is not a date like 2025-01-01" in r.output
    r = runner.invoke(cli, ["data", "fetch", "BTC-EUR", "--since", "2025-01-01", "--interval", "3h"])
    assert r.exit_code == 1 and "interval '3h' is not one of Bitvavo's" in r.output


@pytest.mark.parametrize("command", [["kill"], ["status"], ["--help"]])
def test_fast_commands_never_import_the_candle_store(tmp_path, command):
    from helpers.configs import PAPER_TOML

    (tmp_path / "bot.toml").write_text(PAPER_TOML)
    probe = (
        "import sys; from tinybot.cli import cli\n"
        "try:\n    cli.main(sys.argv[1:], prog_name='tinybot')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('sqlite_utils', 'tinybot.analysis.candles', 'tinybot.rehearse.replay') if m in sys.modules),"
        " file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr


def test_fetch_of_an_empty_range_says_so_and_writes_nothing(tmp_path, store, sim):
    client = client_for(tmp_path, sim.url)
    with pytest.raises(candles.CandleError, match="empty range: from .* holds no closed 1h candle"):
        candles.fetch(store, client, ["BTC-EUR"], "1h", datetime.now(timezone.utc) + timedelta(days=1))
    assert count(store, "SELECT COUNT(*) FROM candle_markets") == 0 and count(store) == 0
