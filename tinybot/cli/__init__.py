"""tinybot's root command group: the lazy command table that maps each command to its family's module.

A command's module is imported only when that command runs (or for --help), so `tinybot kill` and
`tinybot status` load cli.trade and nothing heavy: ccxt is only imported inside the Bitvavo adapter,
when a command builds a client.
"""

from __future__ import annotations

import click

from .common import JsonErrorGroup, State


class LazyGroup(JsonErrorGroup):
    """Commands defined in other modules, imported only when invoked (or for --help)."""

    lazy = {
        "init": ("tinybot.cli.trade", "init_command"),
        "propose": ("tinybot.cli.trade", "propose_command"),
        "proposals": ("tinybot.cli.trade", "proposals_command"),
        "approve": ("tinybot.cli.trade", "approve_command"),
        "reject": ("tinybot.cli.trade", "reject_command"),
        "execute": ("tinybot.cli.trade", "execute_command"),
        "executions": ("tinybot.cli.trade", "executions_command"),
        "history": ("tinybot.cli.trade", "history_command"),
        "why": ("tinybot.cli.trade", "why_command"),
        "reconcile": ("tinybot.cli.trade", "reconcile_command"),
        "status": ("tinybot.cli.trade", "status_command"),
        "kill": ("tinybot.cli.trade", "kill_command"),
        "resume": ("tinybot.cli.trade", "resume_command"),
        "sim": ("tinybot.cli.sim", "sim_command"),
        "run": ("tinybot.cli.run", "run_command"),
        "demo": ("tinybot.cli.run", "demo_command"),
        "advise": ("tinybot.cli.run", "advise_command"),
        "usage": ("tinybot.cli.llm", "usage_command"),
        "doctor": ("tinybot.cli.ops", "doctor_command"),
        "backup": ("tinybot.cli.ops", "backup_command"),
        "pnl": ("tinybot.cli.report", "pnl_command"),
        "report": ("tinybot.cli.report", "report_command"),
        "export": ("tinybot.cli.report", "export_command"),
        "tax": ("tinybot.cli.report", "tax_command"),
        "data": ("tinybot.cli.data", "data_group"),
        "replay": ("tinybot.cli.data", "replay_command"),
        "telegram": ("tinybot.cli.telegram", "telegram_command"),
        "score": ("tinybot.cli.score", "score_command"),
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


@click.group(cls=LazyGroup)
@click.version_option(package_name="tinybot")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="TINYBOT_CONFIG",
    help="Path to bot.toml (default: $TINYBOT_CONFIG, else ~/.tinybot/bot.toml). "
    "The database and lock file live next to it.",
)
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
    ctx.call_on_close(ctx.obj.close)
