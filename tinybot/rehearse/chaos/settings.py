"""What the chaos harness runs with: its keys, markets, crash points, faults, shares, and the bot.toml it writes."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tinybot.store import db

TRADE_KEY, TRADE_SECRET = "chaos-trade-key", "chaos-trade-secret"
READ_KEY, READ_SECRET = "chaos-read-key", "chaos-read-secret"
MARKETS = ("BTC-EUR", "ETH-EUR")  # the random runs' markets
# DCA's own market: a buy of the random runs on its market would count as its period's buy (a buy on its
# market in any other book does), and it would hardly ever buy
DCA_MARKET = "SOL-EUR"
SIM_MARKETS = MARKETS + (DCA_MARKET,)
SCHEMAS = tuple(m.name for m in db.migrations())  # every shipped schema, a new migration included by itself
START = {"EUR": Decimal("100")}
EXEC_POINTS = ("after_claim", "after_submitting_commit", "after_send_before_reply", "after_reply_before_record")
RECONCILE_POINTS = ("mid_reconcile", "mid_fill_sync")
FAULT_KINDS = (
    "delay",
    "timeout_after_accept",
    "timeout_before_accept",
    "html_5xx",
    "error_101",
    "error_109",
    "rate_limit_110",
    "garbage_200",
    "reset",
)
# Not a simulator fault but a pair of them: the reads send_order makes after
# the `submitting` commit (ccxt's load_markets: /markets and /assets) answer
# slowly but within the client timeout, so the order is signed — and can
# land — well after submitting_at.  Always with a reconcile racing it.
SLOW_PREPARE = "slow_prepare"
SCENARIOS = FAULT_KINDS + (SLOW_PREPARE,)
ACCEPT_CHOOSABLE = ("error_101", "error_109", "garbage_200", "reset")
# where a fault lands: mostly the order itself, else a read before or after it
FAULT_ON = ("create_order",) * 6 + ("get_order", "orders", "balance", "markets", "ticker")
# The moments a backup is taken at; it is restored at the end of the same run.  "batch_start": the backup
# taken when the batch's database was made, at an older schema (restored at the end of the run that drew it).
BACKUP_MOMENTS = ("before_propose", "before_execute", "after_first_attempt", "batch_start")
# The aged batches' restores, of backups taken a day or more before (docs/CHAOS.md).
AGED_MOMENTS = ("aged_two_days", "aged_claimed", "aged_dca", "aged_schema")
RESTORE_SHARE = 0.12  # of the random runs
DCA_SHARE = 0.1  # of the random runs: a DCA advisor's tick instead of a random proposal
DCA_RESTORE_SHARE = 0.5  # of those: with a backup and a restore
LLM_SHARE = 0.3  # of the random runs: an LLM call (spend a restore must not forget)
# Buy sizes: at least the smallest sellable buy (sizing.min_sellable_buy_eur: €5.52 at a 0.25 % fee and a
# 10 % margin); €12 is over max_trade_eur, so the caps still get buys to refuse.
BUY_EUR = ("6", "6", "7", "7.50", "10", "12")

# Small windows keep a batch short: a request older than access_window is
# refused by the exchange (304), so reconcile may call an absent order failed
# after access_window + reconcile_grace.  The client timeout must be shorter
# than the hanging faults (TIMEOUT_FAULT_DELAY) so those are real timeouts.
CONFIG = """\
mode = "live"
[risk]
allowlist = ["BTC-EUR", "ETH-EUR", "SOL-EUR"]
max_trade_eur = {max_trade}
max_daily_eur = {max_daily}
max_exposure_eur = {max_exposure}
cooldown = "{cooldown}"
anti_flip = "{anti_flip}"
proposal_ttl = "30m"
[exchange]
operator_id = 1
url = "{url}"
timeout = "{timeout}"
access_window = "{window}"
reconcile_grace = "{grace}"
[dca]
market = "SOL-EUR"
buy_eur = 6
every = "{dca_every}"
[llm]
daily_budget_eur = 10
monthly_budget_eur = 100
"""
TIMEOUT_FAULT_DELAY = 1.3


@dataclass(frozen=True)
class Settings:
    """The figures a bench's bot.toml gets (docs/CHAOS.md, "Settings the runs use")."""

    max_trade: str = "10"
    max_daily: str = "80"
    max_exposure: str = "60"
    cooldown: str = "300ms"
    anti_flip: str = "600ms"
    window: str = "1s"
    # Since B1's fix an order is signed by submitting_at + window at the latest
    # and reconcile waits 2 × window + grace; the grace covers the moment
    # between the send-deadline check and ccxt's signature.  Since issue 11 it
    # may not be shorter than a quarter window + 2 s (config refuses it):
    # 2.25 s at the 1 s window, so an unresolved request waits 4.25 s.
    grace: str = "2250ms"
    timeout: str = "1s"
    dca_every: str = "1h"  # longer than a batch: DCA buys once per batch, and never twice (invariant 8)


DEFAULTS = Settings()


# the simulator's throwaway keys, where tinybot reads them: the bench's secrets file and each child's environment
KEYS_ENV = {
    "TINYBOT_TRADE_KEY": TRADE_KEY,
    "TINYBOT_TRADE_SECRET": TRADE_SECRET,
    "TINYBOT_READ_KEY": READ_KEY,
    "TINYBOT_READ_SECRET": READ_SECRET,
}

# The tour and the aged batches run without cooldown, anti-flip or tight caps, or most of their buys would be
# (rightly) blocked before reaching the points they are there for.
TOUR_RISK = {"max_daily": "1000", "max_exposure": "1000", "cooldown": "0s", "anti_flip": "0s"}
AGED_RISK = TOUR_RISK | {"dca_every": "2d"}


def write_files(directory: Path, url: str, settings: Settings) -> Path:
    """A bench's bot.toml (pointed at the simulator's ``url``) and secrets file; → the bot.toml."""
    cfg_path = directory / "bot.toml"
    cfg_path.write_text(CONFIG.format(url=url, **settings.__dict__), encoding="utf-8")
    secrets = directory / "secrets.env"
    secrets.write_text("".join(f"{k}={v}\n" for k, v in KEYS_ENV.items()))
    secrets.chmod(0o600)
    return cfg_path
