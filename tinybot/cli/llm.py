"""`tinybot usage`: the LLM advisor's spend, reservations, calls and tokens.

Registered lazily in cli.py; imports no exchange code and no HTTP client.
"""

from __future__ import annotations

from decimal import Decimal

import click

from .common import echo_json, friendly, json_option, pass_state


def _small_eur_text(d: Decimal) -> str:
    """Small amounts stay readable: €0.000179, not €0.00."""
    return f"€{d.quantize(Decimal('0.000001')).normalize():f}" if d else "€0"


def advisor_state(cfg) -> str:
    if "llm" not in cfg.advisors:
        return f'not enabled (add "llm" to advisors in {cfg.path.name})'
    from ..advisors.llm import disabled_reason

    return disabled_reason(cfg) or f"enabled: {cfg.llm.model} at {cfg.llm.base_url}"


@click.command(name="usage")
@click.option("--days", default=7, show_default=True, type=click.IntRange(1, 366), help="Days of history to show.")
@json_option("Print JSON (amounts as decimal strings).")
@pass_state
@friendly
def usage_command(state, days, as_json):
    """Show LLM spend per day and month against the budgets, open reservations, calls and tokens.

    \b
    Spent counts settled calls at their real cost and expired reservations
    at their worst case; reserved is calls in flight (or not settled yet).
    \b
    Example:
        tinybot usage
        tinybot usage --json
    """
    from ..advisors import llm_budget
    from ..analysis.status import local

    cfg = state.cfg
    data = llm_budget.usage(state.conn, cfg.llm, days=days, tz=cfg.tz)
    data["advisor"] = advisor_state(cfg)
    if as_json:
        echo_json(data)
        return
    click.echo(f"LLM advisor: {data['advisor']}")
    for label, p in (("Today", data["today"]), ("Month", data["month"])):
        click.echo(
            f"{label} {p['period']}: {_small_eur_text(p['spent_eur'])} spent + {_small_eur_text(p['reserved_eur'])} reserved"
            f" of {_small_eur_text(p['budget_eur'])} ({_small_eur_text(p['left_eur'])} left); {p['calls']} call(s),"
            f" {p['input_tokens']} input / {p['output_tokens']} output tokens"
        )
    if data["exhausted"]:
        click.echo(f"Budget exhausted: {data['exhausted']}")
    if data["spend_unknown"]:
        click.echo(f"No LLM call this month: {data['spend_unknown']}")
    if data["open_reservations"]:
        click.echo("Open reservations (each counts at its worst case until settled; expired ones keep counting):")
        for r in data["open_reservations"]:
            click.echo(
                f"  #{r['id']} {r['model']} reserved {_small_eur_text(r['reserved_eur'])} at"
                f" {local(r['reserved_at'], cfg)}, expires {local(r['expires_at'], cfg)}"
            )
    if data["days"]:
        click.echo("Per day:")
        for d in data["days"]:
            extra = ", ".join(f"{d[k]} {k}" for k in ("reserved", "expired", "failed") if d[k])
            click.echo(
                f"  {d['period']}  {d['calls']:>4} call(s)  {d['input_tokens']:>8} in  {d['output_tokens']:>7} out"
                f"  {_small_eur_text(d['spent_eur'])}" + (f"  ({extra})" if extra else "")
            )
    else:
        click.echo("No LLM calls yet.")
