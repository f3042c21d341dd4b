"""tinybot's command line: parse, call one core function, print.

Commands that never talk to the exchange (kill, resume, proposals, approve,
reject, why, executions, history, status) import nothing heavy: ccxt is only
imported inside the Bitvavo adapter, when a command builds a client.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import click

from . import clock
from .config import ConfigError


class Fail(click.ClickException):
    """An error a person can act on; exit code 1 (or the one given)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.exit_code = code


def friendly(fn):
    """Turn our known exceptions into `Error: ...` lines; TINYBOT_RAISE_ERRORS=1 re-raises (tests, debugging)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not _known_error(e) or os.environ.get("TINYBOT_RAISE_ERRORS"):
                raise
            raise Fail(str(e)) from None

    return wrapper


# (module, class): an error of a module nobody imported cannot have been raised,
# so checking sys.modules keeps kill/status from importing the executor.
KNOWN_ERRORS = (("tinybot.config", "ConfigError"), ("tinybot.proposals", "ProposalError"),
                ("tinybot.executor", "NotExecutable"), ("tinybot.exchange.base", "ExchangeError"))


def _known_error(e: Exception) -> bool:
    return any(isinstance(e, getattr(sys.modules[m], c)) for m, c in KNOWN_ERRORS if m in sys.modules)


class LazyGroup(click.Group):
    """Commands defined in other modules, imported only when invoked (or for --help)."""

    lazy = {
        "sim": ("tinybot.sim.cli", "sim_command"),
        "run": ("tinybot.cli_run", "run_command"),
        "demo": ("tinybot.cli_run", "demo_command"),
        "advise": ("tinybot.cli_run", "advise_command"),
        "usage": ("tinybot.cli_llm", "usage_command"),
        "doctor": ("tinybot.cli_ops", "doctor_command"),
        "backup": ("tinybot.cli_ops", "backup_command"),
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            try:
                return getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
                return None
        return super().get_command(ctx, name)


class State:
    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._cfg = None
        self._conn = None

    @property
    def cfg(self):
        if self._cfg is None:
            from . import config

            self._cfg = config.load(self.config_path)
        return self._cfg

    @property
    def conn(self):
        if self._conn is None:
            from . import backup, db

            path = self.cfg.db_path
            path.parent.mkdir(parents=True, exist_ok=True)
            # migrations of an existing database take a backup first
            self._conn = db.open_db(path, before_migration=backup.before_migration(self.cfg))
        return self._conn


pass_state = click.make_pass_decorator(State)


@click.group(cls=LazyGroup)
@click.version_option(package_name="tinybot")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="TINYBOT_CONFIG",
              help="Path to bot.toml (default: $TINYBOT_CONFIG, else ~/.tinybot/bot.toml). "
                   "The database and lock file live next to it.")
@click.pass_context
def cli(ctx, config_path):
    """tinybot: a small, hardened Bitvavo trading bot.

    \b
    Quick start (paper mode, nothing real is traded):
        tinybot init
        tinybot propose BTC-EUR buy --eur 5 --approve
        tinybot execute 1
        tinybot status
    """
    ctx.obj = State(config_path)


def emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        human(data)


def table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


# --- setup ---------------------------------------------------------------------

@cli.command()
@click.option("--force", is_flag=True, help="Overwrite an existing bot.toml with the example.")
@pass_state
@friendly
def init(state, force):
    """Write a commented bot.toml (if absent) and create or migrate the database."""
    from . import config, db

    path = config.config_path(state.config_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not force:
        click.echo(f"Config: {path} (kept as it is)")
    else:
        path.write_text(example_config(), encoding="utf-8")
        click.echo(f"Config: {path} (written; edit risk.allowlist before trading)")
    from . import backup

    cfg = config.load(path)
    conn = db.connect(cfg.db_path)
    applied = db.migrate(conn, before_migration=backup.before_migration(cfg))
    click.echo(f"Database: {cfg.db_path} ({'migrations applied: ' + ', '.join(applied) if applied else 'up to date'})")
    click.echo(f"Mode: {cfg.mode}")


def example_config() -> str:
    from importlib import resources

    # package data (in a checkout tinybot/bot.toml links to the top-level file)
    return resources.files("tinybot").joinpath("bot.toml").read_text(encoding="utf-8")


# --- proposals -----------------------------------------------------------------

@cli.command()
@click.argument("market")
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.option("--eur", help="Amount in EUR (buy €X worth, or sell €X worth).")
@click.option("--amount", help="Amount in the base asset (e.g. BTC).")
@click.option("--expires-in", default=None, help="How long the proposal stays valid, e.g. 10m (default: risk.proposal_ttl).")
@click.option("--reason", default="", help="Why; shown in listings and `tinybot why`.")
@click.option("--approve", "approve_now", is_flag=True, help="Approve it at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the new proposal as JSON.")
@pass_state
@friendly
def propose(state, market, side, eur, amount, expires_in, reason, approve_now, as_json):
    """Propose a trade.  Markets are Bitvavo names: BTC-EUR (BTC/EUR works too).

    \b
    Example:
        tinybot propose BTC-EUR buy --eur 5 --reason "weekly DCA" --approve
    """
    from . import proposals
    from .clock import parse_duration

    if (eur is None) == (amount is None):
        raise Fail("give exactly one of --eur or --amount")
    try:
        ttl = parse_duration(expires_in) if expires_in else state.cfg.risk.proposal_ttl
    except ValueError as e:
        raise Fail(f"--expires-in: {e}") from None
    draft = proposals.Draft(market, side, eur, amount, reason)
    try:
        pid = proposals.create(state.conn, draft, source="cli", ttl=ttl, approve=approve_now)
    except proposals.ProposalError as e:
        field = str(e).split(":", 1)[0]
        flag = {"eur": "--eur", "amount": "--amount", "market": "MARKET", "side": "SIDE"}.get(field)
        raise Fail(str(e).replace(f"{field}:", f"{flag}:", 1) if flag else str(e)) from None
    row = dict(proposals.get(state.conn, pid))
    if row["market"] not in state.cfg.risk.allowlist:
        click.echo(f"Warning: {row['market']} is not in risk.allowlist in {state.cfg.path}; the executor will block it.",
                   err=True)
    emit(row, as_json, lambda r: click.echo(
        f"Proposal {r['id']}: {r['side']} {r['market']} "
        f"{'€' + r['amount_quote'] if r['amount_quote'] else r['amount']} — {r['status']}, expires {r['expires_at']}"))


@cli.command(name="proposals")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "expired"]), help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def proposals_cmd(state, status, limit, as_json):
    """List proposals, newest first, with their execution state."""
    from . import proposals

    rows = proposals.listing(state.conn, status, limit)
    emit(rows, as_json, lambda rs: table(rs, ["id", "market", "side", "amount_quote", "amount", "status",
                                               "execution_state", "source", "expires_at", "reason"]))


@cli.command()
@click.argument("proposal_id", type=int)
@pass_state
@friendly
def approve(state, proposal_id):
    """Approve a pending proposal (its parameters are fixed from now on)."""
    from . import proposals

    proposals.approve(state.conn, proposal_id, by="cli")
    click.echo(f"Proposal {proposal_id} approved.")


@cli.command()
@click.argument("proposal_id", type=int)
@pass_state
@friendly
def reject(state, proposal_id):
    """Reject a pending or approved proposal that has not been executed."""
    from . import proposals

    proposals.reject(state.conn, proposal_id, by="cli")
    click.echo(f"Proposal {proposal_id} rejected.")


# --- execution -----------------------------------------------------------------

@cli.command()
@click.argument("proposal_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the execution as JSON.")
@pass_state
@friendly
def execute(state, proposal_id, as_json):
    """Run the hardened executor once for an approved proposal.

    Safe to repeat: a proposal that already has an execution returns it and
    nothing is sent again.
    """
    from . import executor

    exchange = executor.trading_exchange(state.cfg)
    result = executor.execute(state.conn, state.cfg, exchange, proposal_id)
    emit(result.as_dict(), as_json, lambda r: click.echo(
        f"Proposal {r['proposal_id']}: {r['state']}"
        + (f" — {r['reason']}" if r["reason"] else "")
        + (f" (order {r['exchange_order_id']})" if r["exchange_order_id"] else "")
        + ("" if r["sent"] else " [nothing sent by this call]")))
    if result.state in ("blocked", "failed"):
        sys.exit(3)


@cli.command()
@click.option("--state", "state_filter", help="Only executions in this state.",
              type=click.Choice(["claimed", "blocked", "submitting", "submitted", "filled", "canceled", "failed",
                                 "unknown"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def executions(state, state_filter, limit, as_json):
    """List executions (one per executed proposal), newest first."""
    from .status import executions as rows_of

    rows = rows_of(state.conn, state_filter, limit)
    emit(rows, as_json, lambda rs: table(rs, ["id", "proposal_id", "market", "side", "state", "notional_eur",
                                               "filled_amount", "fee_paid", "submitting_at", "reason"]))


@cli.command()
@click.option("--market", help="Only this market.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def history(state, market, limit, as_json):
    """List fills as the exchange reported them, newest first."""
    from .status import fills

    rows = fills(state.conn, market, limit)
    emit(rows, as_json, lambda rs: table(rs, ["id", "execution_id", "market", "side", "amount", "price", "fee",
                                               "fee_currency", "executed_at", "trade_id"]))


@cli.command()
@click.argument("proposal_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def why(state, proposal_id, as_json):
    """Explain what happened to a proposal: every guard decision, and the execution."""
    from .status import why as explain

    data = explain(state.conn, proposal_id)

    def human(d):
        pr = d["proposal"]
        click.echo(f"Proposal {pr['id']}: {pr['side']} {pr['market']} "
                   f"{'€' + pr['amount_quote'] if pr['amount_quote'] else pr['amount']} from {pr['source']}"
                   f" — {pr['status']}" + (f" ({pr['reason']})" if pr["reason"] else ""))
        e = d["execution"]
        if e:
            click.echo(f"Execution {e['id']}: {e['state']}" + (f" — {e['reason']}" if e["reason"] else "")
                       + f" [clientOrderId {e['client_order_id']}]")
        else:
            click.echo("Not executed." + (" Approve it with `tinybot approve %d`." % pr["id"]
                                          if pr["status"] == "pending" else ""))
        for dec in d["decisions"]:
            mark = "ok   " if dec["verdict"] == "pass" else "BLOCK"
            click.echo(f"  {mark} {dec['stage']:<7} {dec['guard']:<17} {dec['reason_code']:<24} {dec['detail']}")

    emit(data, as_json, human)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
@pass_state
@friendly
def reconcile(state, as_json):
    """Resolve submitting/unknown executions against the exchange and sync fills; print what changed."""
    from . import reconcile as rec
    from .exchange import read_only

    report = rec.reconcile(state.conn, state.cfg, read_only(state.cfg))

    def human(r):
        for c in r["changes"]:
            click.echo(f"Execution {c['execution_id']}: {c['before']} → {c['after']} — {c['detail']}")
        for i in r["still_unknown"]:
            click.echo(f"Execution {i}: still unresolved (not found yet; its window has not passed)")
        for s in r["surprises"]:
            click.echo(f"SURPRISE: {s}", err=True)
        for e in r["errors"]:
            click.echo(f"Error: {e}", err=True)
        if not any(r.values()):
            click.echo("Nothing to reconcile.")

    emit(report.as_dict(), as_json, human)


# --- status and the kill switch ------------------------------------------------

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def status(state, as_json):
    """Mode, kill switch, balances, positions, caps used today, pending and unresolved work (from the DB)."""
    from .status import status as build

    data = build(state.conn, state.cfg)

    def human(d):
        ks = d["kill_switch"]
        click.echo(f"Mode: {d['mode']}    Config: {d['config']}")
        click.echo("Trading: " + ("ENABLED" if ks["trading_enabled"] else f"DISABLED (kill switch: {ks['reason']})")
                   + f" since {ks['changed_at']}")
        click.echo(f"Allowlist: {', '.join(d['allowlist']) or '(empty: every market is blocked)'}")
        if d["paper_balances"] is not None:
            click.echo("Paper balances: " + (", ".join(f"{a} {b['available']}" for a, b in d["paper_balances"].items())
                                             or "(none yet)"))
        click.echo("Positions: " + (", ".join(f"{p['market']} {p['base']} (cost €{Decimal(p['cost_eur']):.2f})"
                                              for p in d["positions"]) or "(none)"))
        c = d["caps"]
        click.echo(f"Today: €{c['daily']['used_eur']} of €{c['daily']['cap_eur']} spent (€{c['daily']['left_eur']} left);"
                   f" exposure €{c['exposure']['used_eur']} of €{c['exposure']['cap_eur']};"
                   f" max per trade €{c['max_trade_eur']}")
        click.echo(f"Pending proposals: {d['pending_proposals']}")
        un = d["unresolved_executions"]
        click.echo(f"Unresolved executions: {len(un)}" + "".join(
            f"\n  {u['id']}: {u['market']} {u['side']} {u['state']} {u['reason'] or ''}" for u in un))
        sch = d["scheduler"]
        t = sch["last_tick"]
        click.echo(f"Scheduler: {sch['state']}" + (f" (PID {sch['pid']})" if sch["pid"] else "")
                   + (" — STALE: no sign of life for over two intervals" if sch["stale"] else "")
                   + (f"; next tick {sch['next_tick_at']}" if sch["next_tick_at"] else ""))
        click.echo(f"Last tick: {t['slot']} ({t['status']})" if t else "Last tick: never")

    emit(data, as_json, human)


@cli.command()
@click.option("--reason", default="manual kill", show_default=True, help="Recorded with the switch.")
@click.option("--cancel-open", is_flag=True,
              help="Also cancel tinybot's open orders on the exchange (by clientOrderId; needs the trade key).")
@pass_state
@friendly
def kill(state, reason, cancel_open):
    """Stop all trading now: nothing not yet sent will be sent.  `tinybot resume` undoes it.

    \b
    Example (before a rollback):
        tinybot kill --cancel-open --reason "rolling back"
    """
    from . import killswitch

    if killswitch.set_enabled(state.conn, False, reason, by="cli"):
        click.echo(f"Trading DISABLED: {reason}")
    else:
        ks = killswitch.state(state.conn)
        click.echo(f"Trading was already DISABLED since {ks['changed_at']} ({ks['changed_by']}: {ks['reason']})")
    if not cancel_open:
        return
    from . import executor, safety  # the switch is already off: a slow or failing exchange cannot undo that

    results = safety.cancel_open(state.conn, state.cfg, executor.trading_exchange(state.cfg))
    for r in results:
        click.echo(f"{r.outcome:<9} execution {r.execution_id} {r.market} {r.client_order_id}"
                   + (f" — {r.detail}" if r.detail else ""))
    if not results:
        click.echo("No open tinybot orders.")
    if any(r.outcome == "error" for r in results):
        raise Fail("some orders could not be cancelled; check them on the exchange and run `tinybot reconcile`")


@cli.command()
@pass_state
@friendly
def resume(state):
    """Re-enable trading after `tinybot kill` (or an automatic kill)."""
    from . import killswitch

    if killswitch.set_enabled(state.conn, True, "resumed", by="cli"):
        click.echo("Trading ENABLED.")
    else:
        click.echo("Trading was already enabled.")
