"""`tinybot export --csv`: every fill, generic and Koinly layouts, the local year (issue 16)."""

from __future__ import annotations

import csv
from datetime import timedelta
from decimal import Decimal

from freezegun import freeze_time

from tinybot.trade import executor, proposals
from tinybot.analysis import export
from tinybot.trade.proposals import Draft

from helpers.configs import run_cli
from helpers.configs import paper_setup


def setup(write_config):
    cfg, conn, ex = paper_setup(
        lambda t: write_config('timezone = "Europe/Amsterdam"\n' + t), cooldown='"0s"', anti_flip='"0s"'
    )
    for when, side, kw in (
        ("2026-12-31 22:30:00", "buy", {"amount_quote": Decimal("8")}),  # 23:30 local: 2026
        ("2026-12-31 23:30:00", "sell", {"amount": None}),
    ):  # 00:30 local: 2027
        with freeze_time(when):
            if kw.get("amount", 1) is None:
                kw = {"amount": Decimal(conn.execute("SELECT base FROM positions").fetchone()[0])}
            pid = proposals.create(
                conn, Draft("BTC-EUR", side, **kw), source="t", ttl=timedelta(minutes=30), approve=True
            )
            assert executor.execute(conn, cfg, ex, pid).state == "filled"
    return cfg, conn


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_generic_layout_has_every_field_exactly_and_the_local_year(write_config, tmp_path):
    cfg, conn = setup(write_config)
    out = export.write(conn, cfg, tmp_path / "2026.csv", year=2026)
    assert out["fills"] == 1
    [row] = read(tmp_path / "2026.csv")
    fill = conn.execute("SELECT * FROM trade_history ORDER BY id LIMIT 1").fetchone()
    assert row["time_utc"] == "2026-12-31T22:30:00.000000Z" and row["time_local"] == "2026-12-31T23:30:00+01:00"
    assert (row["market"], row["side"], row["amount"], row["fee"], row["fee_currency"]) == (
        "BTC-EUR",
        "buy",
        str(Decimal(fill["amount"]).normalize()),
        fill["fee"],
        "EUR",
    )
    assert Decimal(row["eur_value"]) == Decimal(fill["amount"]) * Decimal(fill["price"])
    assert "E" not in row["amount"] + row["eur_value"]  # never scientific notation
    assert list(row)[-1] == "advisor" and row["advisor"] == "t"  # the book the fill belongs to (its proposal's)
    assert [r["side"] for r in read(export.write(conn, cfg, tmp_path / "2027.csv", year=2027)["path"])] == ["sell"]


def test_koinly_layout_sends_and_receives_the_right_way_round(write_config, tmp_path):
    cfg, conn = setup(write_config)
    export.write(conn, cfg, tmp_path / "k.csv", layout="koinly")
    buy, sell = read(tmp_path / "k.csv")
    assert list(buy) == export.KOINLY
    assert (buy["Sent Currency"], buy["Received Currency"]) == ("EUR", "BTC")
    assert (sell["Sent Currency"], sell["Received Currency"]) == ("BTC", "EUR")
    assert buy["Date"] == "2026-12-31 22:30:00 UTC" and buy["TxHash"].startswith("BTC-EUR:")
    assert buy["Received Amount"] == sell["Sent Amount"]


def test_export_command_and_bad_input_write_nothing(tmp_path):
    assert run_cli("init").returncode == 0
    ok = run_cli("export", "--csv", str(tmp_path / "a.csv"), "--json")
    assert ok.returncode == 0 and '"fills": 0' in ok.stdout
    assert read(tmp_path / "a.csv") == []
    bad = run_cli("export", "--csv", str(tmp_path / "b.csv"), "--year", "1999")
    assert bad.returncode == 1 and bad.stderr.strip() == "Error: --year: 1999 is not a year between 2000 and 2100"
    assert not (tmp_path / "b.csv").exists()
