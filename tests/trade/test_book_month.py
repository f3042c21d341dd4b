"""The books add up (issue 21, its proof): a simulated month of live trading on one market with the rules, DCA and
exits advisors, a partial fill and a fee paid in the coin; then an independent average-cost loop over
`tinybot export --csv` gives `tinybot pnl --json`'s realised P/L per advisor and per market, to the cent."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from tinybot.base import clock, fees
from tinybot.store import db
from tinybot.trade import proposals
from tinybot.store.liveness import slot_of
from tinybot.loop import scheduler
from tinybot.trade.book import holdings, steps
from tinybot.exchange import read_only
from tinybot.exchange.bitvavo.clients import BitvavoTrading
from tinybot.trade.proposals import Draft
from tinybot.sim import SimAccount, Simulator
from tinybot.sim.engine import Matcher

from helpers.configs import run_cli
from helpers.sim import OPERATOR_ID, READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, use_keys

START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)
TICK = timedelta(hours=6)
TICKS = 4 * 30  # a month of six-hourly ticks
CENT = Decimal("0.01")

CONFIG = """\
mode = "live"
advisors = ["rules", "dca"]
[risk]
allowlist = ["BTC-EUR"]
max_trade_eur = 10
max_daily_eur = 50
max_exposure_eur = 300
cooldown = "0s"
anti_flip = "0s"
proposal_ttl = "1h"
[rules]
candle_interval = "6h"
fast = 2
slow = 4
buy_eur = 6
[dca]
market = "BTC-EUR"
buy_eur = 6
every = "2d"
[exits]
take_profit = 0.05
[scheduler]
interval = "6h"
[alerts]
digest_at = ""
[safety]
max_daily_loss_eur = 100
[exchange]
operator_id = {op}
url = "{url}"
timeout = "2s"
access_window = "10s"
reconcile_grace = "5s"
"""


class CoinFeeMatcher(Matcher):
    """Bitvavo may take a buy's fee in the coin bought; this matcher does so for the buy after ``coin_fee_next``."""

    coin_fee_next = False

    def record_fill(self, o, m, qty, price, fee, taker):
        if not (self.coin_fee_next and o["side"] == "buy"):
            return super().record_fill(o, m, qty, price, fee, taker)
        self.coin_fee_next = False
        coin = fees.truncate(fee / price, m.quantity_decimals)
        self.accounts.move(o["key"], m.quote, fee)  # not taken in EUR …
        self.accounts.move(o["key"], m.base, -coin)  # … but in the coin
        super().record_fill(o, m, qty, price, Decimal(0), taker)
        self.trades[-1]["fee"], self.trades[-1]["feeCurrency"] = coin, m.base


@pytest.fixture
def sim():
    accounts = [
        SimAccount(TRADE_KEY, TRADE_SECRET, frozenset({"view", "trade"}), {"EUR": Decimal("200")}, account="me"),
        SimAccount(READ_KEY, READ_SECRET, frozenset({"view"}), {}, account="me"),
    ]
    with freeze_time(START):
        s = Simulator(accounts=accounts, markets=("BTC-EUR",), seed=7, interval="6h")
    s.engine.matcher = CoinFeeMatcher(s.accounts, s.clock, s.engine.ids, s.mode, s.taker_fee, s.maker_fee)
    server = s.serve()
    yield s, server.url
    s.close()


def price(i: int) -> Decimal:
    """Three-day waves, every other one wide enough for the take-profit."""
    amplitude = 0.08 if (i // 12) % 2 else 0.03
    return Decimal(round(60000 * (1 + amplitude * math.sin(2 * math.pi * i / 12))))


def average_cost(rows: list[dict]) -> dict[tuple[str, str], Decimal]:
    """Realised P/L per (advisor, market), recomputed from the CSV: this test's own loop, not tinybot's."""
    held: dict[tuple[str, str], list[Decimal]] = {}  # key -> [base, cost]
    realised: dict[tuple[str, str], Decimal] = {}
    for r in rows:
        if r["external"] == "true":
            continue
        key, coin = (r["advisor"], r["market"]), r["market"].split("-")[0]
        amount, value, fee = Decimal(r["amount"]), Decimal(r["eur_value"]), Decimal(r["fee"])
        fee_eur = fee if r["fee_currency"] == "EUR" else Decimal(0)
        fee_coin = fee if r["fee_currency"] == coin else Decimal(0)
        base, cost = held.setdefault(key, [Decimal(0), Decimal(0)])
        realised.setdefault(key, Decimal(0))
        if r["side"] == "buy":
            held[key] = [base + amount - fee_coin, cost + value + fee_eur]
        else:
            out = amount + fee_coin
            taken = cost * out / base
            realised[key] += value - fee_eur - taken
            held[key] = [base - out, cost - taken]
    return realised


def test_a_month_of_rules_dca_and_exits_adds_up_per_advisor_from_the_export(sim, write_config, monkeypatch, tmp_path):
    s, url = sim
    use_keys(monkeypatch)
    cfg = write_config(CONFIG.format(op=OPERATOR_ID, url=url))
    conn = db.open_db(cfg.db_path)
    drift = []
    with freeze_time(START, tick=True) as frozen:  # time moves: the tick reads the balances before it trades
        # the real clients over HTTP to the simulator, without ccxt's client-side throttle (it only sleeps here)
        ro = read_only(cfg, rate_limit=False)
        trading = BitvavoTrading(cfg, TRADE_KEY, TRADE_SECRET, rate_limit=False)
        sched = scheduler.Scheduler(cfg, conn, echo=lambda line: None, read_only=ro, trading=trading)
        for i in range(TICKS):
            frozen.tick(TICK)
            s.advance(1)
            s.set_price("BTC-EUR", price(i))
            if i == 20:
                s.add_outcome("partiallyFilled", fraction="0.5")  # half now, the rest at the next advance
            if i == 40:
                s.engine.matcher.coin_fee_next = True
            if i == 80:  # the owner sells part of what DCA bought, naming its book
                sell = Draft("BTC-EUR", "sell", amount=Decimal("0.0003"), reason="cash out", book="dca")
                proposals.create(conn, sell, source="cli", ttl=timedelta(hours=1), approve=True)
            sched.tick(slot_of(clock.now(), TICK))
            drift.append(holdings.drift(conn, cfg)["assets"])
    assert all(set(d.values()) <= {"0", "0.00"} for d in drift), [d for d in drift if set(d.values()) - {"0", "0.00"}]

    # the month had what the proof asks for
    sources = {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT p.source, COUNT(*) FROM trade_history h JOIN trade_executions e ON e.id = h.execution_id"
            " JOIN proposals p ON p.id = e.proposal_id GROUP BY p.source"
        )
    }
    assert {"rules", "dca", "exits", "cli"} <= set(sources), sources
    rules_sells = conn.execute(
        "SELECT COUNT(*) FROM proposals p JOIN trade_executions e ON e.proposal_id = p.id"
        " WHERE p.source = 'rules' AND p.side = 'sell' AND e.state = 'filled'"
    ).fetchone()[0]
    assert rules_sells >= 1
    assert conn.execute("SELECT COUNT(*) FROM trade_history WHERE fee_currency = 'BTC'").fetchone()[0] == 1
    split = conn.execute(
        "SELECT COUNT(*) FROM (SELECT order_id FROM trade_history GROUP BY order_id HAVING COUNT(DISTINCT executed_at) > 1)"
    ).fetchone()[0]
    assert split == 1  # the partial fill completed a tick later

    out = run_cli("export", "--csv", str(tmp_path / "fills.csv"))
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "fills.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: r["time_utc"])  # stable: the file's order within one moment
    mine = average_cost(rows)
    rep = run_cli("pnl", "--json")
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    theirs = {(a["advisor"], m["market"]): Decimal(m["realised_eur"]) for a in data["advisors"] for m in a["markets"]}
    assert set(theirs) == set(mine) == {("rules", "BTC-EUR"), ("dca", "BTC-EUR")}
    for key, value in mine.items():
        assert value.quantize(CENT) == theirs[key], key
    assert all(v != 0 for v in mine.values()), mine  # both books sold something: nothing trivially zero
    per_market = {m["market"]: Decimal(m["realised_eur"]) for m in data["markets"]}
    assert per_market["BTC-EUR"] == sum(mine.values()).quantize(CENT)
    assert Decimal(data["realised_eur"]) == sum(mine.values()).quantize(CENT)
    assert set(data["drift"]["assets"].values()) <= {"0", "0.00"}
    # and the stored books are the walk's, digit for digit
    stored = {
        (r["book"], r["market"]): Decimal(r["realised_eur"]) for r in conn.execute("SELECT * FROM book_positions")
    }
    walked = {(b, m): p.realised_eur for b, m, p in steps.walk(conn).lines()}
    assert stored == walked
