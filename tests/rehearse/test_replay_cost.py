"""What a replay tick costs, counted (never timed), and that making it cheaper changed no trade."""

from __future__ import annotations

import json

import pytest

from helpers import FIXTURES
from helpers.replay_data import candle_store, csv_rows
from tinybot.rehearse.replay.plan import open_store
from tinybot.rehearse.replay.run import replay

# tests/fixtures/replay_trades_main.json: what main's replay (0494bee, before issue 26's replay cuts) gave for these
# fixtures; the figures a replay's summary reports beside its trades, compared as the exact strings it prints.
GOLDEN = json.loads((FIXTURES / "replay_trades_main.json").read_text())
FIXTURE_ROWS = {"300_hours_seed_3": lambda: csv_rows(), "40_days_seed_11": lambda: csv_rows(n=24 * 40, seed=11)}


def replayed(cfg, **kw) -> dict:
    store = open_store(cfg.db_path)
    try:
        return replay(cfg, store, **kw)
    finally:
        store.close()


@pytest.mark.parametrize("name", sorted(FIXTURE_ROWS))
def test_a_replays_trades_and_figures_are_exactly_mains(tmp_path, name):
    cfg, _ = candle_store(tmp_path, FIXTURE_ROWS[name]())
    s = replayed(cfg)
    want = GOLDEN[name]
    assert s["trades"] == want["trades"]  # every trade: time, market, side, amount, price, fee, proposal, reason
    assert {k: s[k] for k in want if k != "trades"} == {k: v for k, v in want.items() if k != "trades"}
