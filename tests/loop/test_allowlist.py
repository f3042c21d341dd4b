"""An allowlisted market the exchange does not list (issue 23 item 12): `run` refuses to start in one line
naming it; `execute` says why once.  Real things: the simulator on loopback (it lists BTC-EUR and ETH-EUR),
the real `tinybot` entry point."""

from __future__ import annotations

from click.testing import CliRunner

from helpers.configs import PAPER_TOML

from tinybot.base import exitcodes
from tinybot.cli import cli


def on_the_simulator(tmp_path, url: str) -> None:
    """Paper mode on the simulator's market data, FOOBAR-EUR allowlisted (a name the config accepts)."""
    text = PAPER_TOML.replace('prices = { "BTC-EUR" = "60000", "ETH-EUR" = "3000" }\n', "").replace(
        'allowlist = ["BTC-EUR", "ETH-EUR"]', 'allowlist = ["BTC-EUR", "FOOBAR-EUR"]'
    )
    (tmp_path / "bot.toml").write_text(text + f'[exchange]\nurl = "{url}"\ntimeout = "2s"\n')
    assert CliRunner().invoke(cli, ["init"]).exit_code == 0


def test_run_refuses_to_start_in_one_line_naming_the_unlisted_market(tmp_path, sim):
    on_the_simulator(tmp_path, sim.url)
    for args in (["run", "--once"], ["run"]):
        r = CliRunner().invoke(cli, args)
        assert r.exit_code == exitcodes.REFUSED_START, r.output
        errors = [line for line in r.output.splitlines() if line.startswith("Error")]
        assert errors == [
            f"Error: refusing to start: risk.allowlist in {tmp_path / 'bot.toml'}: FOOBAR-EUR is not listed by the"
            " exchange: remove it from the allowlist (or fix the spelling, e.g. BTC-EUR)"
        ], r.output


def test_run_starts_when_every_allowlisted_market_is_listed(tmp_path, sim):
    on_the_simulator(tmp_path, sim.url)
    toml = tmp_path / "bot.toml"
    toml.write_text(toml.read_text().replace('"FOOBAR-EUR"', '"ETH-EUR"'))
    assert CliRunner().invoke(cli, ["run", "--once"]).exit_code == exitcodes.OK


def test_execute_says_an_unlisted_market_once(tmp_path, sim):
    on_the_simulator(tmp_path, sim.url)
    assert CliRunner().invoke(cli, ["propose", "FOOBAR-EUR", "buy", "--eur", "6", "--approve"]).exit_code == 0
    r = CliRunner().invoke(cli, ["execute", "1"])
    assert r.exit_code == exitcodes.BLOCKED, r.output
    assert r.output.count("the exchange does not list FOOBAR-EUR") == 1, r.output
