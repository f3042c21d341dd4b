"""`tinybot doctor` and `tinybot backup` (loaded lazily by cli.LazyGroup)."""
from __future__ import annotations

import click

from .cli import Fail, emit, friendly, pass_state, table

MARK = {"pass": "PASS", "fail": "FAIL", "skip": "skip"}


@click.command(name="doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--send-test-alert", is_flag=True, help="Also deliver one test alert to every configured URL.")
@pass_state
@friendly
def doctor_command(state, as_json, send_test_alert):
    """Go/no-go checklist before (and while) trading live; exit code 1 if any check fails.

    \b
    Example:
        tinybot doctor --send-test-alert
    """
    from . import doctor

    checks = doctor.run_checks(state.cfg, send_test_alert=send_test_alert)
    ok = all(c.ok for c in checks)
    data = {"ok": ok, "mode": state.cfg.mode, "checks": [c.as_dict() for c in checks]}

    def human(d):
        for c in checks:
            click.echo(f"{MARK[c.status]}  {c.name:<16} {c.detail}")
            if c.status == "fail":
                click.echo(f"      {'fix:':<16} {c.fix}")
        failed = sum(1 for c in checks if c.status == "fail")
        click.echo("GO: every check passed." if ok else f"NO-GO: {failed} check(s) failed.")

    emit(data, as_json, human)
    if not ok:
        raise SystemExit(1)


@click.command(name="backup")
@click.option("--list", "list_", is_flag=True, help="List backups, newest first.")
@click.option("--restore", "restore_from", metavar="FILE",
              help="Put this backup back as the database (stop `tinybot run` first; the current DB is backed up).")
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
    from . import backup

    cfg = state.cfg
    try:
        if list_:
            rows = [b.as_dict() for b in backup.listing(cfg)]
            emit(rows, as_json, lambda rs: table(rs, ["at", "label", "size", "path"]))
            return
        if restore_from:
            before = backup.restore(cfg, restore_from)
            data = {"restored": str(backup.resolve(cfg, restore_from)), "db": str(cfg.db_path),
                    "previous_db_saved_as": str(before.path) if before else None}
            emit(data, as_json, lambda d: click.echo(
                f"Restored {d['restored']} into {d['db']}."
                + (f"\nThe database it replaced is saved as {d['previous_db_saved_as']}." if before else "")
                + "\nTrading is DISABLED until you check (`tinybot status`, `tinybot doctor`) and run `tinybot resume`."))
            return
        b = backup.make(cfg, label=label)
    except backup.BackupError as e:
        raise Fail(str(e)) from None
    emit(b.as_dict(), as_json, lambda d: click.echo(f"Backup: {d['path']} ({d['size']} bytes)"))
