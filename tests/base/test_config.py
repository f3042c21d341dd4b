"""Strict config: every mistake names the file and the key, and nothing starts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from tinybot.base import config, secrets
from tinybot.base.errors import ConfigError

from helpers.configs import PAPER_TOML, run_cli


def load_text(tmp_path, text):
    p = tmp_path / "bot.toml"
    p.write_text(text, encoding="utf-8")
    return config.load(p), p


def test_example_bot_toml_loads_and_every_key_is_commented():
    from helpers import ROOT

    cfg = config.load(ROOT / "bot.toml")
    assert cfg.mode == "paper" and cfg.risk.allowlist == ("BTC-EUR",)
    lines = (ROOT / "bot.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"bot.toml line {i + 1} has no comment above it: {line}"


def test_defaults_are_sized_for_25_eur(tmp_path):
    cfg, _ = load_text(tmp_path, "")
    assert cfg.mode == "paper"
    assert cfg.risk.allowlist == ()  # missing = block everything
    assert cfg.risk.max_trade_eur <= cfg.risk.max_daily_eur <= cfg.risk.max_exposure_eur == Decimal("25")
    assert cfg.risk.cooldown == timedelta(hours=1) and cfg.risk.proposal_ttl == timedelta(minutes=30)
    assert cfg.db_path == (tmp_path / "tinybot.db").resolve()
    assert cfg.lock_path.name == "tinybot.db.lock" and cfg.lock_path.parent == tmp_path.resolve()


@pytest.mark.parametrize(
    "text, message",
    [
        ('moed = "paper"', "moed: unknown key (did you mean 'mode'?)"),
        ('mode = "yolo"', "mode: must be one of 'paper', 'live', not 'yolo'"),
        ("[risk]\nmax_trade = 5", "risk.max_trade: unknown key (did you mean 'max_trade_eur'?)"),
        ("[risk]\nmax_trade_eur = -1", "risk.max_trade_eur: must not be negative"),
        ("[risk]\nmax_trade_eur = nan", "risk.max_trade_eur: must be a finite amount"),
        ("[risk]\nmax_daily_eur = inf", "risk.max_daily_eur: must be a finite amount"),
        ('[risk]\nmax_trade_eur = "ten"', "risk.max_trade_eur: 'ten' is not a number"),
        ("[risk]\nmax_trade_eur = true", 'risk.max_trade_eur: must be an amount in EUR like 10 or "10.50", not bool'),
        ('[risk]\ncooldown = "soon"', "risk.cooldown: 'soon' is not a duration (use e.g. '30s', '10m', '2h', '1d')"),
        ("[risk]\ncooldown = 60", 'risk.cooldown: must be a duration string like "30m", not int'),
        (
            '[risk]\nallowlist = ["BTC-USD"]',
            "risk.allowlist: 'BTC-USD' is not a Bitvavo EUR market name (like \"BTC-EUR\")",
        ),
        ('[risk]\nallowlist = "BTC-EUR"', "risk.allowlist: must be a list of strings"),
        ("risk = 5", "risk: must be a table ([risk])"),
        ("[paper]\nstarting_eur = -25", "paper.starting_eur: must not be negative"),
        ('[exchange]\noperator_id = "abc"', "exchange.operator_id: must be a whole number, not str"),
        ('[exchange]\naccess_window = "2m"', "exchange.access_window: must be between 100ms and 60s (Bitvavo's range)"),
        (
            'advisors = ["oracle"]',
            "advisors: 'oracle' is not a built-in advisor (rules, dca, llm, top_up, exits) or a 'module:function' path",
        ),
        ("[rules]\nfast = 30\nslow = 10", "rules.fast: must be smaller than rules.slow (10)"),
        ('[paper]\nprices = { "BTC-EUR" = 0 }', "paper.prices.BTC-EUR: must be greater than zero"),
        # every number and duration has a range (issue 14, item 8)
        ('[risk]\ncooldown = "999999999999d"', "risk.cooldown: '999999999999d' is too long (at most 3650d)"),
        ('[risk]\ncooldown = "31d"', "risk.cooldown: must be at most 30d"),
        ('[risk]\nproposal_ttl = "0s"', "risk.proposal_ttl: must be at least 1s"),
        (
            "[paper]\ntaker_fee = 2.5",
            "paper.taker_fee: must be a fraction like 0.0025 (= 0.25 %), at most 0.05; 2.5 would be 250.0 %",
        ),
        ("[paper]\ntaker_fee = -0.01", "paper.taker_fee: must not be negative"),
        ("[exchange]\noperator_id = 9223372036854775808", "exchange.operator_id: must be at most 9223372036854775807"),
        ("[exchange]\noperator_id = 0", "exchange.operator_id: must be at least 1"),
        ('[exchange]\ntimeout = "0s"', "exchange.timeout: must be at least 100ms"),
        ('[exchange]\nreconcile_grace = "2d"', "exchange.reconcile_grace: must be at most 1d"),
        ('[dca]\nevery = "0s"', "dca.every: must be at least 1s"),
        (
            '[risk]\nallowlist = ["BTC-EUR"]\n[dca]\nmarket = "ETH-EUR"',
            "dca.market: ETH-EUR is not in risk.allowlist (BTC-EUR); add it there or pick an allowed market",
        ),
        (
            '[dca]\nmarket = "BTC-EUR"',
            "dca.market: BTC-EUR is not in risk.allowlist (empty); add it there or pick an allowed market",
        ),
        ('[scheduler]\ninterval = "500ms"', "scheduler.interval: must be at least 1s"),
        ('[llm]\ntimeout = "0s"', "llm.timeout: must be at least 100ms"),
        ("[risk]\nmax_trade_eur = 1e12", "risk.max_trade_eur: must be at most 1000000000"),
        ('[paper]\nprices = { "BTC-EUR" = "1e30" }', "paper.prices.BTC-EUR: must be at most 1000000000"),
        ("[scheduler]\nlog_backups = 100000", "scheduler.log_backups: must be at most 1000"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    assert str(e.value) == f"{tmp_path / 'bot.toml'}: {message}"


def test_amounts_from_config_never_print_in_scientific_notation(tmp_path):
    cfg, _ = load_text(tmp_path, "[risk]\nmax_trade_eur = 1e1\n[llm]\nprice_in_per_mtok_eur = 0.0000001")
    d = config.describe(cfg)
    assert d["risk"]["max_trade_eur"] == "10.0" and d["llm"]["price_in_per_mtok_eur"] == "0.0000001"


def test_not_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"bot.toml: not valid TOML"):
        load_text(tmp_path, "mode = ")


def test_missing_config_says_run_init(tmp_path):
    with pytest.raises(ConfigError, match=r"no config file at .*bot.toml; run `tinybot init`"):
        config.load(tmp_path / "bot.toml")


def test_market_names_accept_slash_form(tmp_path):
    cfg, _ = load_text(tmp_path, '[risk]\nallowlist = ["btc/eur", "ETH-EUR", "BTC-EUR"]')
    assert cfg.risk.allowlist == ("BTC-EUR", "ETH-EUR")


def test_dca_market_is_stored_as_bitvavo_spells_it(tmp_path):
    """Every reader of dca.market (the dca advisor, status, describe) sees one spelling: "BTC-EUR"."""
    cfg, _ = load_text(tmp_path, '[risk]\nallowlist = ["BTC-EUR"]\n[dca]\nmarket = " btc/eur"')
    assert cfg.dca.market == "BTC-EUR" and config.describe(cfg)["dca"]["market"] == "BTC-EUR"
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, '[risk]\nallowlist = ["BTC-EUR"]\n[dca]\nmarket = "BTC-USD"')
    assert str(e.value) == (
        f"{tmp_path / 'bot.toml'}: dca.market: 'BTC-USD' is not a Bitvavo EUR market name (like \"BTC-EUR\")"
    )


def test_market_names_need_no_exchange_package():
    """normalise_market has one home (tinybot.base.markets), importable without tinybot.exchange."""
    import subprocess
    import sys

    probe = (
        "import sys; from tinybot.base.markets import normalise_market; from tinybot.base import config\n"
        "assert normalise_market(' btc/eur') == 'BTC-EUR'\n"
        "print(sorted(m for m in sys.modules if m.startswith('tinybot.exchange')))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr


def test_cli_refuses_to_start_on_bad_config(tmp_path):
    (tmp_path / "bot.toml").write_text("[risk]\nmax_trade_eur = -1\n")
    r = run_cli("status")
    assert r.returncode == 1
    assert r.stderr.strip() == f"Error: {tmp_path / 'bot.toml'}: risk.max_trade_eur: must not be negative"
    assert not (tmp_path / "tinybot.db").exists()  # nothing started, nothing written


# --- secrets -------------------------------------------------------------------


def test_secrets_from_env_first_then_file(tmp_path, monkeypatch):
    cfg, _ = load_text(tmp_path, PAPER_TOML)
    f = tmp_path / "secrets.env"
    f.write_text("# mine\nTINYBOT_READ_KEY=file-key\nexport TINYBOT_READ_SECRET='file-secret'\n")
    f.chmod(0o600)
    s = cfg.secrets()
    assert s.pair("TINYBOT_READ_KEY", "TINYBOT_READ_SECRET") == ("file-key", "file-secret")
    monkeypatch.setenv("TINYBOT_READ_KEY", "env-key")
    assert cfg.secrets().get("TINYBOT_READ_KEY") == "env-key"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_secrets_file_readable_by_others_is_refused(tmp_path, mode):
    cfg, _ = load_text(tmp_path, PAPER_TOML)
    f = tmp_path / "secrets.env"
    f.write_text("TINYBOT_READ_KEY=k\n")
    f.chmod(mode)
    with pytest.raises(ConfigError) as e:
        cfg.secrets().get("TINYBOT_READ_KEY")
    assert str(e.value) == (f"{f}: secrets file is readable by others (mode {mode:o}); run `chmod 600 {f}`")


def test_secrets_file_unknown_name_and_bad_line(tmp_path):
    cfg, _ = load_text(tmp_path, PAPER_TOML)
    f = tmp_path / "secrets.env"
    f.write_text("TINYBOT_TRADE_KYE=x\n")
    f.chmod(0o600)
    with pytest.raises(ConfigError, match="line 1: unknown secret 'TINYBOT_TRADE_KYE'"):
        cfg.secrets().get("TINYBOT_READ_KEY")
    f.write_text("just a line\n")
    with pytest.raises(ConfigError, match="line 1: expected NAME=value"):
        secrets.Secrets(f).get("TINYBOT_READ_KEY")


def test_a_refused_secrets_file_stays_refused(tmp_path):
    """The lines read before the bad one are not kept: asking again is refused again, not half-answered."""
    f = tmp_path / "secrets.env"
    f.write_text("TINYBOT_READ_KEY=read-key-1\nTINYBOT_READ_SECRT=typo\n")
    f.chmod(0o600)
    s = secrets.Secrets(f)
    for _ in range(2):
        with pytest.raises(ConfigError, match="line 2: unknown secret 'TINYBOT_READ_SECRT'"):
            s.get("TINYBOT_READ_KEY")


def test_half_a_key_pair_is_an_error(tmp_path, monkeypatch):
    cfg, _ = load_text(tmp_path, PAPER_TOML)
    monkeypatch.setenv("TINYBOT_TRADE_KEY", "k")
    with pytest.raises(ConfigError, match="TINYBOT_TRADE_SECRET is not set but TINYBOT_TRADE_KEY is"):
        cfg.secrets().pair("TINYBOT_TRADE_KEY", "TINYBOT_TRADE_SECRET")


def test_paper_mode_never_reads_the_trade_key(tmp_path, monkeypatch):
    """Paper execution builds its exchange without asking for TINYBOT_TRADE_* at all."""
    from tinybot.store import db
    from tinybot.trade import executor, proposals
    from tinybot.trade.proposals import Draft

    monkeypatch.setenv("TINYBOT_TRADE_KEY", "must-not-be-read")
    monkeypatch.setenv("TINYBOT_TRADE_SECRET", "must-not-be-read")
    asked: list[str] = []
    real_get = secrets.Secrets.get
    monkeypatch.setattr(secrets.Secrets, "get", lambda self, name: asked.append(name) or real_get(self, name))
    cfg, _ = load_text(tmp_path, PAPER_TOML)
    conn = db.open_db(cfg.db_path)
    pid = proposals.create(
        conn, Draft("BTC-EUR", "buy", Decimal("6")), source="t", ttl=timedelta(minutes=5), approve=True
    )
    ex = executor.trading_exchange(cfg)
    assert executor.execute(conn, cfg, ex, pid).state == "filled"
    assert not [n for n in asked if n.startswith("TINYBOT_TRADE")]
