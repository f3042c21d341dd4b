"""Where a secret's value came from (issue 23 item 13): a bad key set in the environment got a fix saying to
edit secrets.env, where changing it would change nothing (the environment wins).  Real things: a chmod 600
secrets file, the process environment, doctor's key checks against the simulator on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.configs import live_text
from helpers.sim import READ_KEY, READ_SECRET, TRADE_KEY, TRADE_SECRET, shared_accounts

from tinybot.base import config, secrets
from tinybot.base.secrets import ENVIRONMENT, FILE, Secrets, where


def secrets_file(tmp_path, **values) -> Path:
    path = tmp_path / "secrets.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    path.chmod(0o600)
    return path


def test_each_value_handed_out_records_where_it_came_from(tmp_path, monkeypatch):
    path = secrets_file(tmp_path, TINYBOT_READ_KEY="from-the-file", TINYBOT_TRADE_KEY="also-in-the-file")
    monkeypatch.setenv("TINYBOT_TRADE_KEY", "from-the-environment")
    s = Secrets(path)
    assert (s.get("TINYBOT_READ_KEY"), s.get("TINYBOT_TRADE_KEY"), s.get("TINYBOT_LLM_KEY")) == (
        "from-the-file",
        "from-the-environment",
        None,
    )
    assert s.origins == {"TINYBOT_READ_KEY": FILE, "TINYBOT_TRADE_KEY": ENVIRONMENT}
    assert where(path, "TINYBOT_READ_KEY") == f"TINYBOT_READ_KEY in {path}"
    assert where(path, "TINYBOT_TRADE_KEY").startswith(
        f"the environment variable TINYBOT_TRADE_KEY (it comes from there, not from {path}"
    )


@pytest.mark.parametrize(
    "value,says",
    [("deleted-key".ljust(64, "0"), "Bitvavo knows no such key"), ("cut-short", "is not a whole Bitvavo API key")],
    ids=["unknown-key", "key-length"],
)
def test_doctor_names_the_environment_for_a_bad_key_that_came_from_there(
    tmp_path, sim_factory, monkeypatch, value, says
):
    sim = sim_factory(accounts=shared_accounts())
    (tmp_path / "bot.toml").write_text(live_text(sim.url), encoding="utf-8")
    secrets_file(
        tmp_path,
        TINYBOT_READ_KEY=READ_KEY,
        TINYBOT_READ_SECRET=READ_SECRET,
        TINYBOT_TRADE_KEY=TRADE_KEY,
        TINYBOT_TRADE_SECRET=TRADE_SECRET,
    )
    monkeypatch.setenv("TINYBOT_TRADE_KEY", value)  # left exported in the shell: it wins over the file
    from tinybot.ops.doctor import checklist
    from tinybot.store import db

    cfg = config.load(tmp_path / "bot.toml")
    db.open_db(cfg.db_path).close()
    trade_key = {c.name: c for c in checklist.run_checks(cfg)}["trade_key"]
    assert trade_key.status == "fail" and says in trade_key.detail, trade_key.detail
    assert "into the environment variable TINYBOT_TRADE_KEY (it comes from there" in trade_key.fix, trade_key.fix
    assert f"TINYBOT_TRADE_KEY in {cfg.secrets_path}" not in trade_key.fix
    assert secrets.lookup(cfg.secrets_path, "TINYBOT_TRADE_KEY") == value
