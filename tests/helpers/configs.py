"""The bot.toml texts the tests write, and the real `tinybot` entry point in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers.sim import OPERATOR_ID

RISK_TOML = """\
[risk]
allowlist = ["BTC-EUR", "ETH-EUR"]
max_trade_eur = 10
max_daily_eur = 20
max_exposure_eur = 25
cooldown = "1h"
anti_flip = "6h"
proposal_ttl = "30m"
"""

PAPER_TOML = (
    'mode = "paper"\n'
    + RISK_TOML
    + """\
[paper]
starting_eur = 25
prices = { "BTC-EUR" = "60000", "ETH-EUR" = "3000" }
"""
)


def paper_config_text(**risk) -> str:
    """PAPER_TOML with some [risk] values replaced, e.g. allowlist='[]', max_daily_eur='10'."""
    lines = []
    for line in PAPER_TOML.splitlines():
        key = line.split("=", 1)[0].strip()
        if key in risk and not line.startswith("["):
            line = f"{key} = {risk.pop(key)}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    if risk:
        text = text.replace("[risk]\n", "[risk]\n" + "".join(f"{k} = {v}\n" for k, v in risk.items()), 1)
    return text


def paper_exchange(cfg):
    """The paper exchange of a paper config, over its fixed prices (close it after use)."""
    from tinybot.exchange.paper import PaperExchange
    from tinybot.exchange.static import StaticMarketData

    return PaperExchange(cfg.db_path, StaticMarketData(cfg.paper.prices), starting_eur=cfg.paper.starting_eur)


def paper_setup(write_config, **risk):
    from tinybot.store import db

    cfg = write_config(paper_config_text(**risk))
    return cfg, db.open_db(cfg.db_path), paper_exchange(cfg)


def run_cli(*args, env=None, timeout=60):
    """Run the real `tinybot` entry point in a fresh OS process."""
    full_env = {k: v for k, v in os.environ.items()}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tinybot", *args], capture_output=True, text=True, env=full_env, timeout=timeout
    )


def live_text(url: str, operator_id: int | None = OPERATOR_ID) -> str:
    op = f"operator_id = {operator_id}\n" if operator_id is not None else ""
    return (
        'mode = "live"\n'
        + RISK_TOML
        + f"""\
[exchange]
{op}url = "{url}"
timeout = "700ms"
access_window = "10s"
reconcile_grace = "5s"
"""
    )
