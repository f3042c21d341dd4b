"""The trade path's commands: init, propose, proposals, approve, reject, execute, executions, history, why,
reconcile, status, kill and resume (registered lazily in cli.py).

`kill`, `resume`, `status`, `proposals`, `approve`, `reject`, `why`, `executions` and `history` never talk
to the exchange and import nothing heavy: ccxt is only imported inside the Bitvavo adapter, when a command
builds a client.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from decimal import Decimal

import click

from ..base import clock, exitcodes
from .common import Fail, emit, friendly, json_option, migrate_books, pass_state, shown, table


# --- setup ---------------------------------------------------------------------


@click.command(name="init")
@click.option("--force", is_flag=True, help="Overwrite an existing bot.toml with the example.")
@json_option("Print what was set up as JSON.")
@pass_state
@friendly
def init_command(state, force, as_json):
    """Write a commented bot.toml (if absent) and create or migrate the database."""
    from ..base import config
    from ..store import db

    path = config.config_path(state.config_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = force or not path.exists()
    if written:
        path.write_text(example_config(), encoding="utf-8")
    from ..store import backup

    cfg = state._cfg = config.load(path)
    cfg.db_path.parent.mkdir(parents=True, exist_ok=True)  # init, and only init, creates the database
    conn = db.connect(cfg.db_path)
    try:
        applied = db.migrate(conn, before_migration=backup.before_migration(cfg), after_migration=migrate_books)
    finally:
        conn.close()
    emit(
        {
            "config": str(path),
            "config_written": written,
            "database": str(cfg.db_path),
            "migrations_applied": list(applied),
            "mode": cfg.mode,
        },
        as_json,
        _print_init,
    )


def _print_init(d) -> None:
    click.echo(
        f"Config: {d['config']} "
        + ("(written; edit risk.allowlist before trading)" if d["config_written"] else "(kept as it is)")
    )
    applied = d["migrations_applied"]
    click.echo(
        f"Database: {d['database']} ({'migrations applied: ' + ', '.join(applied) if applied else 'up to date'})"
    )
    click.echo(f"Mode: {d['mode']}")


def example_config() -> str:
    from importlib import resources

    # package data (in a checkout tinybot/bot.toml links to the top-level file)
    return resources.files("tinybot").joinpath("bot.toml").read_text(encoding="utf-8")


# --- proposals -----------------------------------------------------------------


@click.command(name="propose")
@click.argument("market")
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.option("--eur", help="Amount in EUR (buy €X worth, or sell €X worth).")
@click.option("--amount", help="Amount in the base asset (e.g. BTC).")
@click.option(
    "--expires-in", default=None, help="How long the proposal stays valid, e.g. 10m (default: risk.proposal_ttl)."
)
@click.option("--reason", default="", help="Why; shown in listings and `tinybot why`.")
@click.option("--approve", "approve_now", is_flag=True, help="Approve it at once.")
@click.option(
    "--external",
    is_flag=True,
    help="A sell of coins tinybot did not buy: bounded by what the account holds outside its books; booked apart"
    " from its P/L.",
)
@click.option(
    "--book",
    "book_name",
    default=None,
    help="The book (docs/PNL.md) it trades: a sell sells from it, a buy goes into it. Default: manual, your own"
    " (rules, dca, llm, external: an advisor's).",
)
@json_option("Print the new proposal as JSON.")
@pass_state
@friendly
def propose_command(state, market, side, eur, amount, expires_in, reason, approve_now, external, book_name, as_json):
    """Propose a trade.  Markets are Bitvavo names: BTC-EUR (BTC/EUR works too).

    \b
    Examples:
        tinybot propose BTC-EUR buy --eur 5 --reason "weekly DCA" --approve
        tinybot propose BTC-EUR sell --amount 0.0001 --book dca
    """
    from ..trade import proposals
    from ..base.config import MAX_TTL, bounded_duration
    from ..analysis.status import local, proposal

    if (eur is None) == (amount is None):
        raise Fail("give exactly one of --eur or --amount")
    try:
        ttl = (
            bounded_duration(expires_in, minimum=timedelta(seconds=1), maximum=MAX_TTL)
            if expires_in
            else state.cfg.risk.proposal_ttl
        )
    except ValueError as e:
        raise Fail(f"--expires-in: {e}") from None
    draft = proposals.Draft(market, side, eur, amount, reason, book_name)
    try:
        pid = proposals.create(state.conn, draft, source="cli", ttl=ttl, approve=approve_now, external=external)
    except proposals.ProposalError as e:
        field = str(e).split(":", 1)[0]
        flag = {
            "eur": "--eur",
            "amount": "--amount",
            "market": "MARKET",
            "side": "SIDE",
            "reason": "--reason",
            "expires-in": "--expires-in",
            "external": "--external",
            "book": "--book",
        }.get(field)
        raise Fail(str(e).replace(f"{field}:", f"{flag}:", 1) if flag else str(e)) from None
    row = proposal(proposals.get(state.conn, pid))
    for warning in proposals.warnings(state.conn, state.cfg, row):
        click.echo(f"Warning: {warning}", err=True)
    emit(
        row,
        as_json,
        lambda r: click.echo(
            f"Proposal {r['id']}: {r['side']} {r['market']} "
            f"{'€' + r['amount_quote'] if r['amount_quote'] else r['amount']} — {r['status']},"
            f" expires {local(r['expires_at'], state.cfg)}"
        ),
    )


@click.command(name="proposals")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "expired"]), help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@json_option()
@pass_state
@friendly
def proposals_command(state, status, limit, as_json):
    """List proposals, newest first, with their execution state."""
    from ..trade import proposals
    from ..analysis.status import localised, proposal

    rows = [proposal(r) for r in proposals.listing(state.conn, status, limit)]
    emit(
        rows,
        as_json,
        lambda rs: table(
            [{**r, "reason": shown(r["reason"])} for r in localised(rs, state.cfg, "expires_at")],
            [
                "id",
                "market",
                "side",
                "amount_quote",
                "amount",
                "status",
                "execution_state",
                "source",
                "expires_at",
                "reason",
            ],
        ),
    )


@click.command(name="approve")
@click.argument("proposal_id", type=int)
@json_option("Print the approved proposal as JSON.")
@pass_state
@friendly
def approve_command(state, proposal_id, as_json):
    """Approve a pending proposal (its parameters are fixed from now on)."""
    from ..trade import proposals
    from ..analysis.status import proposal

    proposals.approve(state.conn, proposal_id, by="cli")
    emit(
        proposal(proposals.get(state.conn, proposal_id)), as_json, lambda r: click.echo(f"Proposal {r['id']} approved.")
    )


@click.command(name="reject")
@click.argument("proposal_id", type=int)
@json_option("Print the rejected proposal as JSON.")
@pass_state
@friendly
def reject_command(state, proposal_id, as_json):
    """Reject a pending or approved proposal that has not been executed."""
    from ..trade import proposals
    from ..analysis.status import proposal

    proposals.reject(state.conn, proposal_id, by="cli")
    emit(
        proposal(proposals.get(state.conn, proposal_id)), as_json, lambda r: click.echo(f"Proposal {r['id']} rejected.")
    )


# --- execution -----------------------------------------------------------------


@click.command(name="execute")
@click.argument("proposal_id", type=int)
@json_option("Print the execution as JSON.")
@pass_state
@friendly
def execute_command(state, proposal_id, as_json):
    """Run the hardened executor once for an approved proposal.

    Safe to repeat: a proposal that already has an execution returns it and
    nothing is sent again.
    """
    from ..trade import executor

    conn = state.conn  # first: the paper exchange would otherwise create a missing database
    exchange = executor.trading_exchange(state.cfg)
    try:
        result = executor.execute(conn, state.cfg, exchange, proposal_id)
    finally:
        getattr(exchange, "close", lambda: None)()
    emit(
        result.as_dict(),
        as_json,
        lambda r: click.echo(
            f"Proposal {r['proposal_id']}: {r['state']}"
            + (f" — {shown(r['reason'])}" if r["reason"] else "")
            + (f" (order {r['exchange_order_id']})" if r["exchange_order_id"] else "")
            + ("" if r["sent"] else " [nothing sent by this call]")
            + final_note(r["state"], r["proposal_id"])
        ),
    )
    sys.exit(execute_exit_code(result.state, result.reason))


def final_note(state: str, proposal_id: int) -> str:
    """What a final state means for the person reading it."""
    if state in ("blocked", "failed"):
        return (
            f"\nThis is final: proposal {proposal_id} will not be tried again (`tinybot why {proposal_id}` says why)."
            " To trade anyway, propose again: `tinybot propose MARKET buy|sell --eur X --approve`."
        )
    if state in ("unknown", "submitting"):
        return "\nThe order may or may not be on the exchange: `tinybot reconcile` finds out (nothing is re-sent)."
    return ""


def execute_exit_code(state: str, reason: str) -> int:
    """0 only when the order is on the exchange; see the README's "Exit codes"."""
    if state in ("filled", "submitted"):
        return exitcodes.OK
    if state in ("blocked", "failed", "canceled"):
        return exitcodes.BLOCKED
    if state == "claimed" and reason.startswith("preflight_failed"):
        return exitcodes.UNREACHABLE  # nothing was sent; `tinybot execute` again resumes it
    return exitcodes.UNKNOWN  # unknown/submitting (reconcile decides), or claimed by another process right now


@click.command(name="executions")
@click.option(
    "--state",
    "state_filter",
    help="Only executions in this state.",
    type=click.Choice(["claimed", "blocked", "submitting", "submitted", "filled", "canceled", "failed", "unknown"]),
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@json_option()
@pass_state
@friendly
def executions_command(state, state_filter, limit, as_json):
    """List executions (one per executed proposal), newest first."""
    from ..analysis.status import executions as rows_of, localised

    rows = rows_of(state.conn, state_filter, limit)
    emit(
        rows,
        as_json,
        lambda rs: table(
            localised(rs, state.cfg, "submitting_at"),
            [
                "id",
                "proposal_id",
                "market",
                "side",
                "state",
                "notional_eur",
                "filled_amount",
                "fee_paid",
                "submitting_at",
                "reason",
            ],
        ),
    )


@click.command(name="history")
@click.option("--market", help="Only this market.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100000))
@json_option()
@pass_state
@friendly
def history_command(state, market, limit, as_json):
    """List fills as the exchange reported them, newest first."""
    from ..analysis.status import fills, localised

    rows = fills(state.conn, market, limit)

    def human(rs):
        from ..base.money import eur_text

        table(
            [{**r, "eur_value": eur_text(Decimal(r["eur_value"]))} for r in localised(rs, state.cfg, "executed_at")],
            [
                "executed_at",
                "market",
                "side",
                "amount",
                "price",
                "eur_value",
                "fee",
                "fee_currency",
                "execution_id",
                "trade_id",
            ],
        )
        if rs:
            bought = sum((Decimal(r["eur_value"]) for r in rs if r["side"] == "buy"), Decimal(0))
            sold = sum((Decimal(r["eur_value"]) for r in rs if r["side"] == "sell"), Decimal(0))
            fees = sum((Decimal(r["fee"]) for r in rs if r["fee_currency"] == "EUR"), Decimal(0))
            click.echo(
                f"Total of these {len(rs)} fill(s): bought {eur_text(bought)}, sold {eur_text(sold)}, fees {eur_text(fees)}"
                + (" (+ fees paid in coin)" if any(r["fee_currency"] != "EUR" for r in rs) else "")
            )

    emit(rows, as_json, human)


@click.command(name="why")
@click.argument("proposal_id", type=int)
@json_option()
@pass_state
@friendly
def why_command(state, proposal_id, as_json):
    """Explain what happened to a proposal: every guard decision, and the execution."""
    from ..analysis.status import local, why as explain

    data = explain(state.conn, proposal_id)

    def human(d):
        pr = d["proposal"]
        e = d["execution"]
        click.echo(
            f"Proposal {pr['id']}: {pr['side']} {pr['market']} "
            f"{'€' + pr['amount_quote'] if pr['amount_quote'] else pr['amount']} from {pr['source']}"
            f" — {e['state'] if e else pr['status']}" + (f" ({shown(pr['reason'])})" if pr["reason"] else "")
        )
        if e:
            click.echo(
                f"Execution {e['id']}: {e['state']}"
                + (f" — {shown(e['reason'])}" if e["reason"] else "")
                + f" [clientOrderId {e['client_order_id']}]"
                + final_note(e["state"], pr["id"])
            )
        elif pr["status"] == "expired":
            click.echo(f"Not executed: expired at {local(pr['expires_at'], state.cfg)}. Propose it again to trade.")
        else:
            click.echo(
                "Not executed."
                + (" Approve it with `tinybot approve %d`." % pr["id"] if pr["status"] == "pending" else "")
            )
        for dec in d["decisions"]:
            mark = "ok   " if dec["verdict"] == "pass" else "BLOCK"
            click.echo(f"  {mark} {dec['stage']:<7} {dec['guard']:<17} {dec['reason_code']:<24} {shown(dec['detail'])}")

    emit(data, as_json, human)


@click.command(name="reconcile")
@json_option("Print what changed as JSON.")
@pass_state
@friendly
def reconcile_command(state, as_json):
    """Resolve submitting/unknown executions against the exchange and sync fills; print what changed."""
    from ..trade import reconcile as rec
    from ..exchange import read_only

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
        for s in r["settled"]:
            click.echo(f"Fee settled: {s}")
        scan = r["restore_scan"]
        if scan:
            click.echo(
                f"After the restore from {scan['backup']}: orders since {scan['from']} "
                + ("read on every market." if scan["done_at"] else "not all read yet; the next reconcile repeats it.")
            )
        if not any(r.values()):
            click.echo("Nothing to reconcile.")

    emit(report.as_dict(), as_json, human)
    sys.exit(reconcile_exit_code(report))


def reconcile_exit_code(report) -> int:
    """Surprise orders need a person (ERROR); errors mean the exchange did not answer (UNREACHABLE);
    executions still unresolved mean "run it again later" (UNKNOWN)."""
    if report.surprises:
        return exitcodes.ERROR
    if report.errors:
        return exitcodes.UNREACHABLE
    if report.still_unknown:
        return exitcodes.UNKNOWN
    return exitcodes.OK


# --- status and the kill switch ------------------------------------------------


@click.command(name="status")
@json_option()
@pass_state
@friendly
def status_command(state, as_json):
    """Mode, kill switch, balances, positions, caps used today, pending and unresolved work (from the DB)."""
    from ..analysis.status import local, status as build

    data = build(state.conn, state.cfg)

    def human(d):
        ks = d["kill_switch"]
        click.echo(f"Mode: {d['mode']}    Config: {d['config']}")
        click.echo(
            "Trading: "
            + ("ENABLED" if ks["trading_enabled"] else f"DISABLED (kill switch: {shown(ks['reason'])})")
            + f" since {local(ks['changed_at'], state.cfg)}"
        )
        if ks.get("kill_file"):
            click.echo(f"Kill file: {ks['kill_file']['path']} (trading stays off until `tinybot resume`)")
        click.echo(f"Allowlist: {', '.join(d['allowlist']) or '(empty: every market is blocked)'}")
        if d["paper_balances"] is not None:
            click.echo(
                "Paper balances: "
                + (", ".join(f"{a} {b['available']}" for a, b in d["paper_balances"].items()) or "(none yet)")
            )
        if d["live_balances"] is not None:
            lb = d["live_balances"]
            click.echo(
                "Exchange balances: "
                + (
                    ", ".join(
                        f"{a} {b['available']}" + (f" (+{b['in_order']} in orders)" if Decimal(b["in_order"]) else "")
                        for a, b in lb["assets"].items()
                    )
                    or "(none)"
                )
                + (
                    f" — as of the last tick, {clock.spoken(timedelta(seconds=lb['age_s']))} ago"
                    if lb["at"]
                    else " — no tick has read them yet"
                )
            )
        click.echo(
            "Positions: "
            + (
                ", ".join(f"{p['market']} {p['base']} (cost €{Decimal(p['cost_eur']):.2f})" for p in d["positions"])
                or "(none)"
            )
        )
        for market in sorted({b["market"] for b in d["books"]}):
            click.echo(
                f"  {market} books: "
                + ", ".join(
                    f"{b['advisor']} {b['base']} (cost €{Decimal(b['cost_eur']):.2f})"
                    for b in d["books"]
                    if b["market"] == market
                )
            )
        for s in d["stranded"]:
            click.echo(
                f"  STRANDED: the {s['advisor']} book's {s['market']} is worth €{s['value_eur']}, under the"
                f" €{s['minimum_eur']} minimum;"
                f" a buy of €{s['top_up_eur']} makes it sellable ([risk] top_up_to_exit)"
            )
        m = d["pnl"]
        from ..base.money import eur_text

        click.echo(
            f"P/L: net {eur_text(m['net_eur'])} (realised {eur_text(m['realised_eur'])}, unrealised"
            f" {eur_text(m['unrealised_eur'])}, fees {eur_text(m['fees_eur'])}, LLM {eur_text(m['llm_cost_eur'])});"
            f" {m['hold_title'] or 'holding'}: {eur_text(m['hold_eur'])} — `tinybot pnl --by advisor` for more"
        )
        c = d["caps"]
        click.echo(
            f"Today: €{c['daily']['used_eur']} of €{c['daily']['cap_eur']} spent (€{c['daily']['left_eur']} left);"
            f" exposure €{c['exposure']['used_eur']} of €{c['exposure']['cap_eur']};"
            f" max per trade €{c['max_trade_eur']}"
        )
        click.echo(
            f"Pending proposals: {d['pending_proposals']}"
            + (
                f" ({d['expired_unmarked_proposals']} more expired: `tinybot proposals --status expired`)"
                if d["expired_unmarked_proposals"]
                else ""
            )
        )
        un = d["unresolved_executions"]
        click.echo(
            f"Unresolved executions: {len(un)}"
            + "".join(f"\n  {u['id']}: {u['market']} {u['side']} {u['state']} {shown(u['reason'] or '')}" for u in un)
        )
        sch = d["scheduler"]
        t = sch["last_tick"]
        click.echo(
            f"Scheduler: {sch['state']}"
            + (f" (PID {sch['pid']})" if sch["pid"] else "")
            + (f" — {shown(sch['detail'])}" if sch.get("detail") else "")
            + (" — STALE: no sign of life for longer than its heartbeat allows (stuck?)" if sch["stale"] else "")
            + (f"; next tick {local(sch['next_tick_at'], state.cfg)}" if sch["next_tick_at"] else "")
        )
        from ..analysis.status import last_tick_line

        click.echo(last_tick_line(t, sch, state.cfg))

    emit(data, as_json, human)


@click.command(name="kill")
@click.option("--reason", default="manual kill", show_default=True, help="Recorded with the switch.")
@click.option(
    "--cancel-open",
    is_flag=True,
    help="Also cancel tinybot's open orders on the exchange (by clientOrderId; needs the trade key).",
)
@pass_state
@friendly
def kill_command(state, reason, cancel_open):
    """Stop all trading now: nothing not yet sent will be sent.  `tinybot resume` undoes it.

    Works within about a second even while another process holds the
    database: a kill file beside the database stops the executor, and the
    switch's row is set too when the database lets us.

    \b
    Example (before a rollback):
        tinybot kill --cancel-open --reason "rolling back"
    """
    from ..store import db
    from ..trade import killswitch

    reason = check_reason(reason, "--reason")
    path = state.cfg.db_path
    db.check_exists(path)
    try:
        out = killswitch.kill(path, reason, by="cli")
    except OSError as e:
        why = (
            " — the filesystem is read-only, so the bot cannot commit an order either (each is written"
            " before it is sent)"
            if db.read_only_fs(path)
            else ""
        )
        raise Fail(
            f"could NOT write the kill file {killswitch.kill_file(path)} ({e.strerror}){why};"
            " stop the bot itself: `sudo systemctl stop tinybot` (or Ctrl-C in its tmux window)"
        ) from None
    if out.previous is not None:
        p = out.previous
        from ..analysis.status import local

        click.echo(
            f"Trading was already DISABLED since {local(p['changed_at'], state.cfg)}"
            f" ({p['changed_by']}: {shown(p['reason'])})"
        )
    else:
        click.echo(f"Trading DISABLED: {shown(reason)}")
    if out.row in ("locked", "fault"):
        click.echo(
            f"The kill file {out.file} stops the executor; the switch's row in the database was not set:"
            f" {out.row_detail}",
            err=True,
        )
    _say_which_bot(state.cfg)
    if out.row == "fault":
        raise Fail("the database has a fault (above); trading is stopped by the kill file until `tinybot resume`")
    if not cancel_open:
        return
    _cancel_open(state)


def _say_which_bot(cfg) -> None:
    """Whom the kill reached: the `tinybot run` holding this database's run lock, or a warning that none does
    (a bot started with another bot.toml reads another database's switch)."""
    from ..base.runlock import live_holder

    pid = live_holder(cfg.lock_path)
    if pid is not None:
        who = f"PID {pid}" if pid else "a process that has not written its PID yet"
        click.echo(f"Reached the running bot: `tinybot run` {who} holds {cfg.lock_path} and reads this switch.")
        return
    click.echo(
        f"WARNING: no running `tinybot run` uses this database ({cfg.db_path}): nothing holds {cfg.lock_path}."
        " A bot that is running uses another database (see its --config or TINYBOT_CONFIG, and `db =` in that"
        " bot.toml): run `tinybot --config THAT/bot.toml kill`, or stop it (`sudo systemctl stop tinybot`).",
        err=True,
    )


def _cancel_open(state) -> None:
    from ..store import db
    from ..trade import executor, safety  # the switch is already off: a slow or failing exchange cannot undo that

    conn = db.connect(state.cfg.db_path)
    report = safety.cancel_open(conn, state.cfg, executor.trading_exchange(state.cfg))
    for r in report.results:
        click.echo(
            f"{r.outcome:<9} execution {r.execution_id} {r.market} {r.client_order_id}"
            + (f" — {r.detail}" if r.detail else "")
        )
    for market, error in report.unreachable.items():
        click.echo(f"Could not ask the exchange for open orders on {market}: {error}", err=True)
    if report.unreachable:
        raise Fail(
            "could not check every market for open tinybot orders (above); trading is stopped, but orders"
            " already on the exchange may still fill: check them on Bitvavo, then run `tinybot reconcile`",
            exitcodes.UNREACHABLE,
        )
    if not report.results:
        click.echo(f"No open tinybot orders on {', '.join(report.markets) or '(no markets)'} (asked the exchange).")
    if any(r.outcome == "error" for r in report.results):
        raise Fail("some orders could not be cancelled; check them on the exchange and run `tinybot reconcile`")


@click.command(name="resume")
@json_option("Print the switch as JSON.")
@pass_state
@friendly
def resume_command(state, as_json):
    """Re-enable trading after `tinybot kill` (or an automatic kill): clears the switch's row and the kill file."""
    from ..trade import killswitch

    changed = killswitch.set_enabled(state.conn, True, "resumed", by="cli")
    emit(
        {"trading_enabled": True, "changed": bool(changed)},
        as_json,
        lambda d: click.echo("Trading ENABLED." if d["changed"] else "Trading was already enabled."),
    )


# --- shared checks -------------------------------------------------------------


def check_reason(text: str, flag: str) -> str:
    """The same limit as a proposal's reason: longer is refused, never cut."""
    from ..base.text import REASON_MAX

    if len(text) > REASON_MAX:
        raise Fail(f"{flag}: {len(text)} characters is over the limit of {REASON_MAX}; shorten it")
    return text
