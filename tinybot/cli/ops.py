"""`tinybot doctor` and `tinybot backup` (loaded lazily by cli.LazyGroup)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Fail, emit, friendly, pass_state, table

MARK = {"pass": "PASS", "fail": "FAIL", "warn": "WARN", "skip": "skip", "same": "SAME", "differs": "DIFF"}


@click.command(name="doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--send-test-alert", is_flag=True, help="Also deliver one test alert to every configured URL.")
@click.option(
    "--live-probe",
    is_flag=True,
    help="Live mode: also ask Bitvavo, read-only and placing no order, where it differs from the"
    " simulator's model (key rights, market table, fee tier, 24h windows, clientOrderId lookups).",
)
@click.option(
    "--save",
    "save_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --live-probe: also write what it observed to this JSON file, keys and ids redacted, to share.",
)
@pass_state
@friendly
def doctor_command(state, as_json, send_test_alert, live_probe, save_to):
    """Go/no-go checklist before (and while) trading live; exit code 1 if any check fails.

    \b
    WARN items do not stop `tinybot run`; a FAIL marked "blocks start" does.
    Examples:
        tinybot doctor --send-test-alert
        tinybot doctor --live-probe
        tinybot doctor --live-probe --save first-day.json
    """
    from ..ops.doctor.checklist import run_checks
    from ..ops.doctor.probe import live_probe as probe_exchange

    cfg = state.cfg
    if live_probe and cfg.mode != "live":
        raise Fail(f'--live-probe asks the real exchange with your keys: set mode = "live" in {cfg.path} first')
    if save_to is not None and not live_probe:
        raise Fail("--save writes what --live-probe observed: add --live-probe")
    try:  # first: the checks read what it recorded (read_key)
        probes = probe_exchange(cfg, save_to=save_to) if live_probe else []
    except OSError as e:
        raise Fail(f"cannot write {e.filename}: {e.strerror}; choose a --save path in a folder you can write") from None
    checks = run_checks(cfg, send_test_alert=send_test_alert)
    ok = all(c.ok for c in checks)
    data = {"ok": ok, "mode": cfg.mode, "checks": [c.as_dict() for c in checks]}
    if live_probe:
        data["probe"] = [p.as_dict() for p in probes]
        data["differences"] = sum(1 for p in probes if p.status == "differs")

    def human(d):
        for c in checks:
            click.echo(f"{MARK[c.status]}  {c.name:<16} {c.detail}" + ("  [blocks start]" if c.blocks_start else ""))
            if c.status in ("fail", "warn"):
                click.echo(f"      {'fix:':<16} {c.fix}")
        failed = sum(1 for c in checks if c.status == "fail")
        warnings = sum(1 for c in checks if c.status == "warn")
        blocking = [c.name for c in checks if c.blocks_start]
        if ok:
            click.echo("GO: every check passed." if not warnings else f"GO, with {warnings} warning(s).")
        elif blocking:
            click.echo(f"NO-GO: {failed} check(s) failed; `tinybot run` refuses to start ({', '.join(blocking)}).")
        else:
            click.echo(f"NO-GO: {failed} check(s) failed (`tinybot run` would start, warning about them).")
        if live_probe:
            click.echo("")
            click.echo("Live probe (read-only, no order placed): Bitvavo against the simulator's model")
            for p in probes:
                click.echo(f"{MARK[p.status]}  {p.name:<16} {p.detail}")
            n = d["differences"]
            click.echo(
                "No difference found."
                if not n
                else f"{n} difference(s): tinybot's guarantees are tested against the simulator; report them"
                " (docs/OPERATIONS.md, First day live)."
            )

    emit(data, as_json, human)
    if not ok:
        raise SystemExit(1)


@click.command(name="backup")
@click.option("--list", "list_", is_flag=True, help="List backups, newest first.")
@click.option(
    "--restore",
    "restore_from",
    metavar="FILE",
    help="Put this backup back as the database (stop `tinybot run` first; the current DB is backed up;"
    " trading stays off until `tinybot resume`).",
)
@click.option("--label", default="manual", show_default=True, help="Word added to the backup's file name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
@friendly
def backup_command(state, list_, restore_from, label, as_json):
    """Copy the database consistently (SQLite online backup) into backups/ next to it.

    \b
    Examples:
        tinybot backup
        tinybot backup --list
        tinybot backup --restore tinybot-20260301T120000.000000Z-manual.db
    """
    from ..store import backup

    cfg = state.cfg
    try:
        if list_:
            rows = [b.as_dict() for b in backup.listing(cfg)]
            emit(rows, as_json, lambda rs: table(rs, ["at", "label", "size", "path"]))
            return
        if restore_from:
            from ..ops.restore import restore

            emit(restore(cfg, restore_from).as_dict(), as_json, _print_restored)
            return
        b = backup.make(cfg, label=label)
    except backup.BackupError as e:
        raise Fail(str(e), e.exit_code) from None  # 75: `tinybot run` holds the lock (restore)
    emit(b.as_dict(), as_json, lambda d: click.echo(f"Backup: {d['path']} ({d['size']} bytes)"))


def _print_restored(d: dict) -> None:
    """What `backup --restore` did, and what the owner does next."""
    click.echo(f"Restored {d['restored']} (taken {d['backup_taken_at']}) into {d['db']}.")
    if d["previous_db_saved_as"]:
        click.echo(f"The database it replaced is saved as {d['previous_db_saved_as']}.")
    if d["migrated"]:
        click.echo(f"Migrated it to the current schema: {', '.join(d['migrated'])}.")
    ids = d["ids_continue_after"]
    click.echo(
        f"Carried forward: {d['llm_rows_carried']} LLM spend row(s) made after the backup; new proposals are"
        f" numbered after #{ids['proposals']}, executions after #{ids['trade_executions']}."
    )
    if d["in_doubt_executions"] or d["rejected_proposals"]:
        click.echo(
            f"In doubt until reconcile asks the exchange: executions {d['in_doubt_executions'] or 'none'};"
            f" proposals rejected (they may have been executed after the backup): {d['rejected_proposals'] or 'none'}."
        )
    click.echo(
        f"The next reconcile (`tinybot reconcile`, or `tinybot run` as it starts) books every order made since"
        f" {d['scan_orders_since']}, and repeats until it has read every market."
    )
    for w in d["warnings"]:
        click.echo(f"WARNING: {w}", err=True)
    click.echo("Trading is DISABLED until you check (`tinybot status`, `tinybot doctor`) and run `tinybot resume`.")
