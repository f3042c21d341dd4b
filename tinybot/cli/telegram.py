"""`tinybot telegram`: the owner's phone loop on its own (loaded lazily by cli.LazyGroup)."""

from __future__ import annotations

import sys

import click

from .common import Fail, emit, friendly, json_option, pass_state, table


@click.command(name="telegram")
@click.option("--chats", is_flag=True, help="List who wrote to the bot lately (to find your chat id); acts on nothing.")
@click.option("--test", "send_test", is_flag=True, help="Check the token and send a test message to every chat id.")
@json_option("With --chats or --test: print JSON.")
@pass_state
@friendly
def telegram_command(state, chats, send_test, as_json):
    """Serve the owner's phone: proposals with Approve/Reject, /status, /kill ... (until Ctrl-C).

    \b
    `tinybot run` does the same on a thread when [telegram] chat_ids is set;
    run this on its own to approve by hand without the scheduler.
    \b
    Examples:
        tinybot telegram --chats      # message your bot first, then find your chat id here
        tinybot telegram --test
        tinybot telegram
    """
    from ..owner.telegram import api, poller

    cfg = state.cfg
    try:
        if chats:
            rows = api.recent_chats(cfg)
            emit(
                rows,
                as_json,
                lambda rs: (
                    table(rs, ["chat_id", "type", "name", "allowed", "last_text"])
                    if rs
                    else click.echo("Nobody wrote to the bot lately: send it a message, then run this again.")
                ),
            )
            return
        if send_test:
            ok, detail = api.check(cfg, send_test=True)
            if not ok:  # under --json the failure is the error object (docs/JSON.md), not a second document
                raise Fail(detail)
            emit({"ok": ok, "detail": detail}, as_json, lambda d: click.echo(("OK: " if ok else "") + detail))
            return
    except api.TelegramError as e:
        raise Fail(str(e)) from None
    _log_to_stderr(cfg)
    try:
        code = poller.serve(cfg, state.conn, echo=click.echo)
    except poller.AlreadyServing as e:
        from ..base.exitcodes import LOCKED

        click.echo(f"Error: {e}", err=True)
        sys.exit(LOCKED)
    sys.exit(code)


def _log_to_stderr(cfg) -> None:
    """One line per event on stderr (journald keeps it), secrets redacted."""
    import logging

    from ..owner.notify import install_redaction

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("tinybot")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    install_redaction(cfg, root)
