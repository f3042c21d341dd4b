"""`tinybot score`: the scoreboard of advisors (tinybot.analysis.score), as a table or JSON.  Reads the database
only: no exchange, no ccxt."""

from __future__ import annotations

import click

from .common import echo_json, friendly, json_option, pass_state
from .report import _date


@click.command(name="score")
@click.option("--since", help="Score from this moment on, local time (the config's timezone), e.g. 2026-11-01.")
@json_option("Print every figure as JSON (shape in docs/JSON.md; amounts as exact decimal strings).")
@pass_state
@friendly
def score_command(state, since, as_json):
    """Is each advisor worth it?  Net after fees and LLM cost, return, drawdown, trades, time in the market, and
    for each benchmark (holding, DCA) the mean daily difference with a 95 % interval and a verdict.

    \b
    One row per live book, per shadow advisor ([scoreboard] shadow in
    bot.toml) and per benchmark; every figure comes from the book, the same
    as `tinybot pnl`.  The interval is a block bootstrap over days (seeded:
    the same database gives the same answer); docs/SCORE.md defines each
    metric.
    \b
    Examples:
        tinybot score
        tinybot score --since 2026-11-01 --json
    """
    from ..analysis import score

    board = score.scoreboard(state.conn, state.cfg, since=_date(since, "--since", state.cfg.tz))
    if as_json:
        echo_json(board)
    else:
        click.echo(score.render(board))
