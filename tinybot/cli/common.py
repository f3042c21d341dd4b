"""The one home of what every command module shares: `Fail`, `friendly`, `State`, `emit`, `table`, `--json`.

Imports nothing heavy (no ccxt, no sqlite_utils, no matplotlib): `kill` and
`status` load this module too.  docs/JSON.md is the contract `emit` keeps:
amounts as exact decimal strings, booleans as true/false, times ISO-8601 UTC,
and under ``--json`` a failure prints ``{"error": {"message", "exit_code"}}``
on stdout as well as ``Error: ...`` on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import re
from datetime import datetime
from decimal import Decimal

import click

from ..base import exitcodes
from ..base.errors import TinybotError


class Fail(click.ClickException):
    """An error a person can act on; exit code ERROR (or the one given, from tinybot.base.exitcodes)."""

    def __init__(self, message: str, code: int = exitcodes.ERROR):
        super().__init__(message)
        self.exit_code = code


# ctx.meta keys: the argv the group parsed, and whether the running command was given --json
_ARGV = "tinybot.argv"
_JSON = "tinybot.json"


def json_option(help: str = "Print JSON (docs/JSON.md)."):
    """The `--json` flag, the same on every command: parameter `as_json`."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def friendly(fn):
    """Turn our known exceptions into `Error: ...` lines; TINYBOT_RAISE_ERRORS=1 re-raises (tests, debugging).

    A database fault (locked, corrupt, not a database, read-only filesystem)
    becomes one line naming the file and the fix, whichever command met it.
    Records whether the command was given --json, so a failure can answer in JSON.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context(silent=True)
        if ctx is not None:
            ctx.meta[_JSON] = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if os.environ.get("TINYBOT_RAISE_ERRORS"):
                raise
            fault = _database_fault(e, args)
            if fault is not None:
                raise Fail(str(fault), fault.exit_code) from None
            if not isinstance(e, TinybotError):
                raise  # a bug: let it show
            raise Fail(str(e), e.exit_code) from None

    return wrapper


def wants_json(ctx: click.Context) -> bool:
    """Was the failing command asked for JSON?  Its own --json flag once it ran; before that (a usage
    error while parsing its options) whether --json was on the command line at all."""
    if _JSON in ctx.meta:
        return ctx.meta[_JSON]
    argv = ctx.meta.get(_ARGV) or []
    return "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv


def error_object(e: click.ClickException) -> dict:
    """The JSON a failing command prints on stdout under --json (docs/JSON.md, "Errors")."""
    return {"error": {"message": e.format_message(), "exit_code": e.exit_code}}


def echo_error_json(e: click.ClickException) -> None:
    click.echo(json.dumps(error_object(e), indent=2))


def _database_fault(e: Exception, args):
    """A DatabaseFault as it is, or an SQLite error about the configured database turned into one."""
    from ..store import db

    if isinstance(e, db.DatabaseFault):
        return e
    import sqlite3

    if not isinstance(e, sqlite3.Error):
        return None
    state = next((a for a in args if isinstance(a, State)), None)
    path = state.db_path_or_none() if state is not None else None
    return db.fault(e, path if path is not None else "the database")


def migrate_books(conn, name: str) -> None:
    """db.migrate's step in Python (tinybot.trade.ledger.after_migration), loaded only when a migration runs:
    `kill` and `status` stay light."""
    from ..trade import ledger

    ledger.after_migration(conn, name)


class State:
    """What every command shares: the config (loaded on first use) and the database (opened on first use)."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path
        self._cfg = None
        self._conn = None

    @property
    def cfg(self):
        if self._cfg is None:
            from ..base import config

            self._cfg = config.load(self.config_path)
        return self._cfg

    @property
    def conn(self):
        """The existing database (only `tinybot init` creates one), migrated unless its filesystem is read-only."""
        if self._conn is None:
            from ..store import db

            # migrations of an existing database take a backup first
            self._conn = db.open_existing(
                self.cfg.db_path,
                before_migration=_backup_first(self.cfg),
                after_migration=migrate_books,
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def db_path_or_none(self):
        return self._cfg.db_path if self._cfg is not None else None


def _backup_first(cfg):
    """store.backup's ``before_migration``, loaded only when a migration is pending (rarely: not on a status)."""

    def take(pending: list[str]) -> None:
        from ..store import backup

        backup.before_migration(cfg)(pending)

    return take


pass_state = click.make_pass_decorator(State)


def emit(data, as_json: bool, human) -> None:
    """Print `data` as JSON (the API: docs/JSON.md) or hand it to `human` to print for people."""
    if as_json:
        echo_json(data)
    else:
        human(plain(data))


def echo_json(data) -> None:
    click.echo(json.dumps(plain(data), indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, datetime):
        from ..base.clock import to_iso

        return to_iso(value)
    return str(value)  # a Path


_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?E[+-]?\d+")


def plain(value):
    """Amounts as people write them: Decimal's str() gives "1E-7" and "0E-8"; print 0.0000001 and 0.00000000."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value):
        return format(Decimal(value), "f")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def shown(text) -> str:
    """Text from a user or an advisor as it is safe to print: control characters escaped (no terminal tricks)."""
    from ..base.text import escape_controls

    return escape_controls("" if text is None else str(text))


class JsonErrorGroup(click.Group):
    """A group whose failing commands answer in JSON too when asked for --json (one place for all of them)."""

    def parse_args(self, ctx, args):
        ctx.meta.setdefault(_ARGV, list(args))
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.ClickException as e:
            if wants_json(ctx):
                echo_error_json(e)
            raise
