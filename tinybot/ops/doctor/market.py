"""Doctor's checks through the market-data client: exchange reachable, clock skew, allowlist, caps vs the account."""

from __future__ import annotations

import time
from decimal import Decimal

from ...base import clock
from ...base.config import Config
from ...base.sizing import EXCHANGE_MINIMUM_EUR
from ...loop.allowlist import unlisted
from .check import Check, failed, passed, skipped, warned

SKEW_SHARE = 4  # clock skew must stay under a quarter of the access window
# Caps are judged against the account's value with this much room: fees eat into a €25 account
# (€24.99998 after one trade), and that must not read as "the caps are more than the account".
# 1 % is what four trades at Bitvavo's lowest taker fee (0.25 %) cost.
FEE_ROOM = Decimal("0.01")


def _market_data(cfg: Config):
    from ...exchange import market_data

    return market_data(cfg)


def _markets_or_none(ex) -> dict | None:
    try:
        return ex.markets()
    except Exception:
        return None


def exchange_checks(cfg: Config, exchange=None) -> tuple[list[Check], dict | None]:
    """exchange reachable + clock skew; returns the markets for the allowlist check."""
    try:
        ex = exchange or _market_data(cfg)
    except Exception as e:
        fail = failed("exchange", f"cannot build the exchange client: {e}", "fix the config as the message says")
        return [fail, skipped("clock_skew", "exchange not reachable")], None
    if getattr(ex, "name", "") == "static":
        return [
            skipped("exchange", "paper mode with fixed [paper] prices: no exchange used"),
            skipped("clock_skew", "no exchange used"),
        ], _markets_or_none(ex)
    where = cfg.exchange.url or "Bitvavo"
    try:
        t0 = time.time()
        server_ms = ex.server_time_ms()
        t1 = time.time()
        markets = ex.markets()
    except Exception as e:
        return [
            failed(
                "exchange",
                f"{where} not reachable: {e}",
                "check the network (and [exchange] url if set); Bitvavo's status page says if it is down",
            ),
            skipped("clock_skew", "exchange not reachable"),
        ], None
    reach = passed("exchange", f"{where} answered ({len(markets)} markets, {int((t1 - t0) * 1000)} ms)")
    return [reach, _clock_skew(cfg, where, server_ms, t1 - t0)], markets


def _clock_skew(cfg: Config, where: str, server_ms: int, took_s: float) -> Check:
    # local time at the middle of the request, from tinybot's clock
    local_ms = clock.now_ms() - int(took_s * 500)
    skew_ms = server_ms - local_ms
    window_ms = int(cfg.exchange.access_window.total_seconds() * 1000)
    limit_ms = window_ms // SKEW_SHARE
    detail = f"clock differs from {where} by {skew_ms / 1000:+.3f}s (access window {window_ms / 1000:g}s)"
    if abs(skew_ms) + int(took_s * 500) > limit_ms:
        return failed(
            "clock_skew",
            detail + f"; must stay under {limit_ms / 1000:g}s",
            "sync the clock: `sudo timedatectl set-ntp true` (a Pi has no RTC; check"
            " `timedatectl status` says 'System clock synchronized: yes')",
        )
    return passed("clock_skew", detail)


def allowlist(cfg: Config, markets: dict | None, why_none: str = "the exchange did not answer") -> Check:
    allow = cfg.risk.allowlist
    if not allow:
        return failed(
            "allowlist",
            "risk.allowlist is empty: every market is blocked",
            f'set [risk] allowlist = ["BTC-EUR"] in {cfg.path}',
        )
    if markets is None:
        return skipped("allowlist", f"{', '.join(allow)}: not checked: {why_none}")
    unknown = unlisted(allow, markets)  # `tinybot run` refuses to start on these (loop.allowlist)
    halted = [f"{m} ({markets[m].status})" for m in allow if m in markets and markets[m].status != "trading"]
    if unknown or halted:
        parts = ([f"not on the exchange: {', '.join(unknown)}"] if unknown else []) + (
            [f"not trading: {', '.join(halted)}"] if halted else []
        )
        return failed("allowlist", "; ".join(parts), f"remove them from [risk] allowlist in {cfg.path}")
    return passed("allowlist", f"{', '.join(allow)}: on the exchange and trading")


def account_value(cfg: Config, conn, exchange) -> tuple[Decimal | None, str]:
    """What the account is worth now: EUR plus every asset with an EUR market at its bid."""
    if cfg.mode == "paper":
        return cfg.paper.starting_eur, "paper.starting_eur"
    try:
        ex = exchange or _market_data(cfg)
        balances = ex.balances()
        eur = balances.get("EUR")
        value = (eur.available + eur.in_order) if eur else Decimal(0)
        held = {a: b.available + b.in_order for a, b in balances.items() if a != "EUR"}
        held = {a: q for a, q in held.items() if q > 0}
        markets = ex.markets() if held else {}
        for asset, qty in sorted(held.items()):
            if f"{asset}-EUR" in markets:
                value += qty * ex.ticker(f"{asset}-EUR").bid
    except Exception as e:
        return None, f"cannot read the account: {e}"
    return value, "EUR plus positions at the bid"


def caps(cfg: Config, conn, exchange, *, account: str | None = None) -> Check:
    """Caps that make no sense are a FAIL; caps larger than the account only a warning.

    ``account``: why the account cannot be read (another check's root cause), or None to read it.
    """
    r = cfg.risk
    problems = []
    for name in ("max_trade_eur", "max_daily_eur", "max_exposure_eur"):
        if getattr(r, name) <= 0:
            problems.append(f"risk.{name} is 0")
    if 0 < r.max_trade_eur < EXCHANGE_MINIMUM_EUR:
        problems.append(
            f"risk.max_trade_eur €{r.max_trade_eur} is below Bitvavo's €{EXCHANGE_MINIMUM_EUR} minimum order"
        )
    if r.max_trade_eur > r.max_daily_eur:
        problems.append("risk.max_trade_eur is larger than risk.max_daily_eur")
    if problems:
        return failed("caps", "; ".join(problems), f"adjust [risk] in {cfg.path}")
    caps_text = f"per trade €{r.max_trade_eur}, per day €{r.max_daily_eur}, exposure €{r.max_exposure_eur}"
    if account is not None:
        return skipped("caps", f"{caps_text}; not compared with the account: {account}")
    size, source = account_value(cfg, conn, exchange)
    if size is None:
        return skipped("caps", f"{caps_text}; not compared with the account: {source}")
    room = (size * FEE_ROOM).quantize(Decimal("0.01"))
    over = [
        f"risk.{n} €{getattr(r, n)}"
        for n in ("max_trade_eur", "max_daily_eur", "max_exposure_eur")
        if getattr(r, n) > size + room
    ]
    if over:
        return warned(
            "caps",
            f"{', '.join(over)} more than the account (€{size:.2f}, {source}; room for fees"
            f" €{room:.2f}): the caps never bind, the balance does",
            f"lower them in [risk] in {cfg.path}, or add money to the account",
        )
    return passed("caps", f"{caps_text}; account €{size:.2f} ({source})")
