"""Small helpers shared by test modules (importable: tests/ is on sys.path)."""

from __future__ import annotations

from conftest import PAPER_TOML


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


def paper_setup(write_config, **risk):
    from tinybot.store import db
    from tinybot.exchange.paper import PaperExchange
    from tinybot.exchange.static import StaticMarketData

    cfg = write_config(paper_config_text(**risk))
    conn = db.open_db(cfg.db_path)
    ex = PaperExchange(cfg.db_path, StaticMarketData(cfg.paper.prices), starting_eur=cfg.paper.starting_eur)
    return cfg, conn, ex
