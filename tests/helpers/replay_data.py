"""The candles and config replay tests share: two markets of a wavy random walk, the rules advisor, hourly ticks."""

from __future__ import annotations

import math
import random
from pathlib import Path

from tinybot.analysis import candles
from tinybot.base import config
from tinybot.store import db

from .configs import RISK_TOML

HOUR = 3_600_000
T0 = 1_735_689_600_000  # 2025-01-01T00:00Z
N = 300  # hourly candles per market: a fast test, still a dozen crossings

CONFIG = (
    'mode = "paper"\nadvisors = ["rules"]\n\n'
    + RISK_TOML
    + """
[scheduler]
interval = "1h"

[rules]
candle_interval = "1h"
fast = 3
slow = 8
buy_eur = 6
"""
)


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
            f = lambda x, dec=dec: f"{x:.{dec}f}"  # noqa: E731
            p = float(f(c))
            if gaps and i % 97 == 50:
                continue
            rows.append(f"{market},{start_ms + i * HOUR},{f(o)},{f(h)},{f(lo)},{f(c)},{rnd.uniform(0.1, 5):.4f}")
    return rows


def candle_store(folder: Path, rows: list[str], config_text: str = CONFIG) -> tuple[config.Config, Path]:
    """bot.toml in ``folder`` + the live database holding these candle rows; returns (cfg, path of the csv)."""
    (folder / "bot.toml").write_text(config_text)
    path = folder / "candles.csv"
    path.write_text("\n".join(["market,timestamp,open,high,low,close,volume", *rows]) + "\n")
    cfg = config.load(folder / "bot.toml")
    conn = db.open_db(cfg.db_path)
    candles.import_csv(conn, path)
    conn.close()
    return cfg, path
