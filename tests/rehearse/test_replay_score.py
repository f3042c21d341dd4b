"""`tinybot replay --score --advisors ...`: advisors head to head in one pass, each on its own book; look-ahead."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from click.testing import CliRunner

from helpers.configs import RISK_TOML

from tinybot.analysis import candles
from tinybot.base import config
from tinybot.cli import cli
from tinybot.rehearse.replay.plan import ReplayError, open_store
from tinybot.rehearse.replay.run import replay
from tinybot.store import db

T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
HOUR = 3_600_000

CONFIG = (
    'mode = "paper"\nadvisors = ["rules", "dca"]\n'
    + RISK_TOML.replace('cooldown = "1h"', 'cooldown = "0s"')
    + """[scheduler]
interval = "1h"
[rules]
candle_interval = "1h"
fast = 3
slow = 8
buy_eur = 6
[dca]
market = "BTC-EUR"
buy_eur = 6
every = "1d"
"""
)


@pytest.fixture
def setup(tmp_path):
    """200 hourly BTC and ETH candles, a wave: rules crosses several times, DCA buys daily."""
    import math

    rows = ["market,timestamp,open,high,low,close,volume"]
    for market, p0 in (("BTC-EUR", 60000), ("ETH-EUR", 3000)):
        for i in range(200):
            o = p0 * (1 + 0.03 * math.sin(i / 9))
            c = p0 * (1 + 0.03 * math.sin((i + 1) / 9))
            rows.append(f"{market},{T0 + i * HOUR},{o:.1f},{max(o, c) * 1.001:.1f},{min(o, c) * 0.999:.1f},{c:.1f},1")
    (tmp_path / "candles.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "bot.toml").write_text(CONFIG)
    cfg = config.load(tmp_path / "bot.toml")
    conn = db.open_db(cfg.db_path)
    candles.import_csv(conn, tmp_path / "candles.csv")
    conn.close()
    return cfg


def _run(cfg, **kw):
    store = open_store(cfg.db_path)
    try:
        return replay(cfg, store, **kw)
    finally:
        store.close()


def test_rules_and_dca_head_to_head_each_on_its_own_book_with_the_same_money(setup):
    """One pass: each advisor a shadow with the replay's €25 and the caps to itself; nothing trades live."""
    s = _run(setup, score_advisors=("rules", "dca"), eur=Decimal("25"))
    board = s["score"]
    rows = {r["advisor"]: r for r in board["rows"]}
    assert set(rows) == {"shadow:rules", "shadow:dca", "benchmark:holding", "benchmark:dca"}
    assert rows["shadow:rules"]["trades"] >= 4 and rows["shadow:dca"]["trades"] >= 3
    assert rows["shadow:rules"]["capital_eur"] == rows["shadow:dca"]["capital_eur"] == "25.00"
    assert s["trades"] == [] and s["proposals"] == 0  # no advisor traded live
    assert board["look_ahead"] is False and set(rows["shadow:rules"]["versus"]) == {"holding", "dca"}
    # each book is the shadow's own: DCA bought only BTC, daily
    assert rows["shadow:dca"]["fees_eur"] != rows["shadow:rules"]["fees_eur"]


def test_llm_needs_its_knowledge_cutoff_and_a_period_before_it_is_refused_or_marked(setup, tmp_path):
    cfg = setup
    with pytest.raises(ReplayError, match=r"\[llm\] knowledge_cutoff is required"):
        _run(cfg, score_advisors=("rules", "llm"))
    (tmp_path / "bot.toml").write_text(CONFIG + '[llm]\nknowledge_cutoff = "2025-06-01"\n')
    cfg = config.load(tmp_path / "bot.toml")
    with pytest.raises(ReplayError, match="before \\[llm\\] knowledge_cutoff 2025-06-01.*--allow-look-ahead"):
        _run(cfg, score_advisors=("rules", "llm"))
    s = _run(cfg, score_advisors=("rules", "llm"), allow_look_ahead=True)
    rows = {r["advisor"]: r for r in s["score"]["rows"]}
    assert s["score"]["look_ahead"] is True
    assert rows["shadow:llm"]["look_ahead"] is True and rows["shadow:rules"]["look_ahead"] is False
    r = CliRunner().invoke(
        cli,
        [
            "replay",
            "--no-progress",
            "--score",
            "--advisors",
            "rules,llm",
            "--allow-look-ahead",
            "--report",
            str(tmp_path / "p.html"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith("LOOK-AHEAD") and "shadow:llm (look-ahead)" in r.output
    page = (tmp_path / "p.html").read_text()
    assert "LOOK-AHEAD: the model may have seen this period." in page and "shadow:llm (look-ahead)" in page
    (tmp_path / "bot.toml").write_text(CONFIG + '[llm]\nknowledge_cutoff = "2024-06-01"\n')
    after = _run(config.load(tmp_path / "bot.toml"), score_advisors=("llm",))
    assert after["score"]["look_ahead"] is False


def test_replay_score_json_gives_the_rows_of_tinybot_score(setup):
    r = CliRunner().invoke(cli, ["replay", "--no-progress", "--score", "--advisors", "rules,dca", "--json"])
    assert r.exit_code == 0, r.output
    board = json.loads(r.output)
    rules = next(x for x in board["rows"] if x["advisor"] == "shadow:rules")
    for key in ("net_eur", "return_pct", "max_drawdown_pct", "trades", "fees_eur", "llm_cost_eur", "versus"):
        assert key in rules
    assert rules["versus"]["dca"]["ci95"] is None or len(rules["versus"]["dca"]["ci95"]) == 2
    assert board["replay"]["from"].startswith("2025-01-0") and board["rows"][0]["from"] == board["replay"]["from"]
    text = CliRunner().invoke(cli, ["replay", "--no-progress", "--score", "--advisors", "rules,dca"])
    assert text.exit_code == 0 and "shadow:rules vs holding" in text.output
    look = CliRunner().invoke(
        cli, ["replay", "--no-progress", "--score", "--advisors", "rules,llm", "--allow-look-ahead"]
    )
    assert look.exit_code != 0 and "knowledge_cutoff is required" in look.output
    bad = CliRunner().invoke(cli, ["replay", "--no-progress", "--advisors", "rules"])
    assert bad.exit_code != 0 and "--advisors and --allow-look-ahead go with --score" in bad.output


def test_a_replay_never_calls_the_provider_for_an_llm_shadow_without_the_stand_in(setup):
    """--llm off: the llm shadow is left out of the scratch config (a replay never calls the provider itself)."""
    from tinybot.rehearse.replay.settings import scratch_config

    cfg = config.load(setup.path)
    import dataclasses

    cfg = dataclasses.replace(cfg, scoreboard=dataclasses.replace(cfg.scoreboard, shadow=("llm", "rules")))
    rcfg = scratch_config(cfg, setup.path.parent, "http://127.0.0.1:1", None, None)
    assert rcfg.scoreboard.shadow == ("rules",)
    assert datetime(2025, 1, 1, tzinfo=timezone.utc)  # the period of the candles above
