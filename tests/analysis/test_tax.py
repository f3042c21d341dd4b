"""`tinybot tax YEAR`: the Box 3 peildatum values at Bitvavo's prices, and the counter-evidence figures (issue 16)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from freezegun import freeze_time

from tinybot.analysis import candles, pnl, tax
from tinybot.store import db
from tinybot.trade import executor, proposals
from tinybot.exchange.base import Balance
from tinybot.trade.proposals import Draft

from helpers.configs import run_cli
from helpers.configs import paper_setup

PEIL_2026 = datetime(2025, 12, 31, 23, 0, tzinfo=timezone.utc)  # 1 January 2026 00:00 in Amsterdam (CET)
PEIL_2027 = datetime(2026, 12, 31, 23, 0, tzinfo=timezone.utc)


def minute_candles(path, market, around: datetime, first_price: int, *, skip_at: bool = False):
    """1-minute candles from 5 minutes before to 5 after ``around``; each opens one euro above the last."""
    lines = ["market,timestamp,open,high,low,close,volume"]
    for i in range(-5, 6):
        ts = int((around + timedelta(minutes=i)).timestamp() * 1000)
        if skip_at and i == 0:
            continue  # nothing traded in that minute: a gap
        o = first_price + i
        lines.append(f"{market},{ts},{o},{o + 1},{o - 1},{o}.5,0.1")
    path.write_text("\n".join(lines) + "\n")


def test_peildatum_is_new_year_in_amsterdam():
    assert tax.peildatum(2026) == PEIL_2026
    assert tax.peildatum(2027) == PEIL_2027


def test_worksheet_values_the_account_at_both_peildatums(write_config, tmp_path):
    cfg, conn, ex = paper_setup(write_config, cooldown='"0s"', anti_flip='"0s"')
    with freeze_time("2025-12-20 12:00:00"):  # tinybot ran before the peildatum: it knows the account then
        pnl.record_snapshot(conn, {}, {"EUR": Balance(Decimal("25"), Decimal(0))})
    with freeze_time("2026-03-01 12:00:00"):  # during 2026: buy €10 of BTC
        pid = proposals.create(
            conn, Draft("BTC-EUR", "buy", Decimal("10")), source="t", ttl=timedelta(minutes=30), approve=True
        )
        assert executor.execute(conn, cfg, ex, pid).state == "filled"
    held = Decimal(conn.execute("SELECT base FROM positions").fetchone()[0])
    minute_candles(tmp_path / "a.csv", "BTC-EUR", PEIL_2026, 50000)
    minute_candles(tmp_path / "b.csv", "BTC-EUR", PEIL_2027, 70000, skip_at=True)
    candles.import_csv(conn, tmp_path / "a.csv")
    candles.import_csv(conn, tmp_path / "b.csv")
    with freeze_time("2027-02-01 12:00:00"):
        w = tax.worksheet(conn, cfg, 2026)
    start, end = w["peildatum"], w["next_peildatum"]
    assert start["known"] is True and start["source"] == "ledger" and end["known"] is True
    assert start["savings_eur"] == "25.00" and start["other_assets_eur"] == "0.00" and start["crypto"] == []
    eur_end = Decimal(conn.execute("SELECT available FROM paper_balances WHERE asset = 'EUR'").fetchone()[0])
    assert end["savings_eur"] == f"{eur_end:.2f}"
    [btc] = end["crypto"]
    # no trade in the minute of the peildatum: the close of the minute before it (69999.5)
    assert btc["price_eur"] == "69999.5" and "close of the last 1m candle before" in btc["price_source"]
    assert Decimal(end["other_assets_eur"]) == (held * Decimal("69999.5")).quantize(Decimal("0.01"))
    assert w["fills"]["count"] == 1 and w["fills"]["bought_eur"] != "0.00"
    ce = w["counter_evidence"]
    assert ce["value_start_eur"] == "25.00" and ce["value_end_eur"] == end["total_eur"]
    assert ce["realised_eur"] == "0.00"
    assert Decimal(ce["unrealised_end_eur"]) == (held * Decimal("69999.5") - Decimal("10")).quantize(Decimal("0.01"))
    assert "not tax advice" in w["disclaimer"]


def test_a_price_at_the_exact_minute_is_its_open_and_a_missing_one_is_a_clear_error(write_config, tmp_path):
    cfg, conn, ex = paper_setup(write_config)
    minute_candles(tmp_path / "a.csv", "BTC-EUR", PEIL_2026, 50000)
    candles.import_csv(conn, tmp_path / "a.csv")
    p = tax.price_at(conn, "BTC-EUR", PEIL_2026)
    assert p.price == Decimal("50000") and p.how == "open of the 1m candle at the moment"
    with pytest.raises(tax.TaxError) as e:
        tax.price_at(conn, "ETH-EUR", PEIL_2026)
    assert str(e.value).startswith("no Bitvavo price for ETH-EUR at 2025-12-31T23:00:00.000000Z: fetch candles")


def live_account_first_seen(write_config, when: str):
    """A live account tinybot first saw at ``when`` (its first balance snapshot): €20 and some BTC."""
    cfg = write_config(
        write_config().path.read_text().replace('mode = "paper"', 'mode = "live"') + "[exchange]\noperator_id = 1\n"
    )
    conn = db.open_db(cfg.db_path)
    with freeze_time(when):
        pnl.record_snapshot(
            conn, {}, {"EUR": Balance(Decimal("20"), Decimal(0)), "BTC": Balance(Decimal("0.0002"), Decimal(0))}
        )
    return cfg, conn


def test_a_peildatum_before_tinybot_first_saw_the_account_is_unknown_not_invented(write_config, tmp_path):
    """First seen on 4 December 2026: 1 January 2026 is unknown (null values, said so); 1 January 2027 is known."""
    cfg, conn = live_account_first_seen(write_config, "2026-12-04 19:30:00")
    minute_candles(tmp_path / "b.csv", "BTC-EUR", PEIL_2027, 70000)
    candles.import_csv(conn, tmp_path / "b.csv")
    with freeze_time("2027-02-01 12:00:00"):
        w = tax.worksheet(conn, cfg, 2026)
    start, end = w["peildatum"], w["next_peildatum"]
    assert start["known"] is False and start["source"] is None
    assert (start["savings_eur"], start["other_assets_eur"], start["total_eur"], start["crypto"]) == (None,) * 4
    assert (
        "it first saw the account 4 December 2026 20:30" in start["note"] and "--opening ASSET=AMOUNT" in start["note"]
    )
    assert w["counter_evidence"]["value_start_eur"] is None
    assert end["known"] is True and end["source"] == "ledger" and end["savings_eur"] == "20.00"
    assert end["crypto"][0]["amount"] == "0.0002" and end["crypto"][0]["price_eur"] == "70000"
    assert "not tax advice" in w["disclaimer"]


def test_the_owner_supplies_an_unknown_peildatum_and_only_an_unknown_one(write_config, tmp_path):
    cfg, conn = live_account_first_seen(write_config, "2026-12-04 19:30:00")
    minute_candles(tmp_path / "a.csv", "BTC-EUR", PEIL_2026, 50000)
    candles.import_csv(conn, tmp_path / "a.csv")
    given = tax.parse_held(["EUR=12.50", "btc=0.0001"], "--opening")
    assert given == {"EUR": Decimal("12.50"), "BTC": Decimal("0.0001")}
    with freeze_time("2026-12-05 12:00:00"):
        w = tax.worksheet(conn, cfg, 2026, opening=given)
        start = w["peildatum"]
        assert start["known"] is True and start["source"] == "owner" and "--opening" in start["note"]
        assert (start["savings_eur"], start["other_assets_eur"], start["total_eur"]) == ("12.50", "5.00", "17.50")
        assert w["counter_evidence"]["value_start_eur"] == "17.50" and w["next_peildatum"] is None
        with pytest.raises(tax.TaxError) as known:
            tax.worksheet(conn, cfg, 2027, opening=given)
    assert str(known.value) == "--opening: 1 January 2027 00:00 has not come yet; leave --opening out"
    with freeze_time("2027-01-05 12:00:00"), pytest.raises(tax.TaxError) as known:
        tax.worksheet(conn, cfg, 2027, opening=given)
    assert str(known.value) == (
        "--opening: tinybot knows what the account held on 1 January 2027 00:00 from its own records (it first saw"
        " the account 4 December 2026 20:30); leave --opening out"
    )
    for bad in ("EUR", "EUR=-1", "EUR=abc", "=5", "EUR=NaN"):
        with pytest.raises(tax.TaxError) as e:
            tax.parse_held([bad], "--opening")
        assert str(e.value) == f"--opening: {bad!r} is not ASSET=AMOUNT like EUR=20 or BTC=0.0003 (repeat it per asset)"


def test_tax_command_says_unknown_takes_the_owners_value_and_refuses_bad_years(tmp_path):
    """A fresh install: this year's peildatum was before tinybot existed."""
    import json

    assert run_cli("init").returncode == 0
    year = str(datetime.now(timezone.utc).year)
    r = run_cli("tax", year, "--no-fetch", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["peildatum"]["known"] is False and data["peildatum"]["total_eur"] is None
    assert data["next_peildatum"] is None
    human = run_cli("tax", year, "--no-fetch")
    assert "not tax advice" in human.stdout and "Next peildatum: not reached yet" in human.stdout
    assert f"Peildatum {year}-01-01T00:00:00+01:00: UNKNOWN — unknown to tinybot" in human.stdout
    given = run_cli("tax", year, "--no-fetch", "--json", "--opening", "EUR=25")
    assert given.returncode == 0, given.stderr
    start = json.loads(given.stdout)["peildatum"]
    assert (start["known"], start["source"], start["total_eur"]) == (True, "owner", "25.00")
    wrong = run_cli("tax", year, "--no-fetch", "--opening", "EUR")
    assert wrong.returncode == 1 and wrong.stderr.strip() == (
        "Error: --opening: 'EUR' is not ASSET=AMOUNT like EUR=20 or BTC=0.0003 (repeat it per asset)"
    )
    assert "--opening ASSET=AMOUNT" in run_cli("tax", "--help").stdout
    bad = run_cli("tax", "1999", "--no-fetch")
    assert bad.returncode == 1 and bad.stderr.strip() == (
        "Error: YEAR: 1999 is not a year tinybot can make a worksheet for (2009–2100)"
    )


def test_missing_prices_are_fetched_from_bitvavos_candles(write_config, tmp_path, sim_factory):
    from tinybot.base import config
    from tinybot.exchange.bitvavo.clients import read_only_client

    cfg, conn, ex = paper_setup(write_config)
    with freeze_time(PEIL_2026 + timedelta(minutes=30), tick=True):
        running = sim_factory(interval="1m", history=200, markets=("BTC-EUR",))
        (tmp_path / "fetch.toml").write_text(f'[exchange]\nurl = "{running.url}"\n')
        client = read_only_client(config.load(tmp_path / "fetch.toml"), rate_limit=False)
        p = tax.price_at(conn, "BTC-EUR", PEIL_2026, client)
    [stored] = candles.load(
        conn, "BTC-EUR", "1m", int(PEIL_2026.timestamp() * 1000), int(PEIL_2026.timestamp() * 1000) + 60_000
    )
    assert p.price == stored.open and p.candle_open_ms == stored.timestamp_ms
