"""Doctor's checklist: every check in order, each skipped when another check already names its root cause."""

from __future__ import annotations

import sqlite3

from ...advisors import llm_budget
from ...base.config import Config
from . import keys, local, market
from .check import Check, guarded, skipped, warned

UNREACHABLE = "the exchange did not answer (see exchange)"
NO_SECRETS = "tinybot refuses to read the secrets file (see secrets_file)"


def run_checks(cfg: Config, *, send_test_alert: bool = False, exchange=None, scan_files: bool = True) -> list[Check]:
    """Every check, in checklist order.  ``exchange``: a read-only client to use (tests); built when needed.

    ``scan_files=False``: skip reading the database file's bytes for leaked secrets.  A process that holds
    an open SQLite connection must never open() and close() the database file itself: closing any
    descriptor of a file drops *all* of the process's POSIX locks on it, SQLite's included, and other
    processes then read the database as if nobody were writing it.
    """
    conn, checks = local.open_database(cfg)
    try:
        if conn is not None:
            checks.append(local.on_database("kill_switch", cfg, lambda: local.kill_switch_wired(conn)))
            try:
                unknown = llm_budget.unknown_spend(conn, tz=cfg.tz)  # a restore could not read the LLM spend
            except sqlite3.DatabaseError:  # a damaged file: the integrity check says so, and how to restore
                unknown = None
            if unknown:
                checks.append(warned("llm_budget", unknown, "check the spend on the provider's dashboard"))
        secrets = guarded("secrets_file", lambda: local.secrets_file(cfg))
        checks += [secrets, guarded("keys_separated", lambda: keys.keys_separated(cfg))]
        leaks_at = len(checks)  # scanned last, once this process's own connection is closed (see above)
        checks.append(guarded("operator_id", lambda: local.operator_id(cfg)))
        if secrets.ok:
            checks += _needing_secrets(cfg, conn, exchange, send_test_alert)
        else:  # tinybot refuses to read the file: everything that needs a secret waits for that fix
            checks += _waiting_for_secrets(cfg, conn)
        checks.append(guarded("backup", lambda: local.recent_backup(cfg)))
        if secrets.ok:
            checks.append(guarded("heartbeat", lambda: local.heartbeat_check(cfg)))
            checks.append(guarded("telegram", lambda: local.telegram_check(cfg, send_test_alert)))
    finally:
        if conn is not None:
            conn.close()
    checks.insert(leaks_at, _leak_scan(cfg, scan_files))
    return checks


def _needing_secrets(cfg: Config, conn: sqlite3.Connection | None, exchange, send_test_alert: bool) -> list[Check]:
    """alerts, exchange, clock skew, the two keys (live), allowlist and caps."""
    out = [guarded("alerts", lambda: local.alerts(cfg, send_test_alert))]
    (reach, skew), markets = market.exchange_checks(cfg, exchange)
    out += [reach, skew]
    if cfg.mode == "live":
        out += keys.key_checks(cfg, reachable=reach.status == "pass", clock_ok=skew.status != "fail")
    out.append(guarded("allowlist", lambda: market.allowlist(cfg, markets, UNREACHABLE)))
    account = None if reach.status != "fail" else UNREACHABLE
    if skew.status == "fail":
        account = "the clock is off (see clock_skew): signed requests are refused"
    out.append(guarded("caps", lambda: market.caps(cfg, conn, exchange, account=account)))
    return out


def _waiting_for_secrets(cfg: Config, conn: sqlite3.Connection | None) -> list[Check]:
    """What _needing_secrets checks, skipped; allowlist and caps still judge the config alone."""
    needs = ["alerts", "exchange", "clock_skew"] + (["read_key", "trade_key"] if cfg.mode == "live" else [])
    return [skipped(n, NO_SECRETS) for n in needs] + [
        guarded("allowlist", lambda: market.allowlist(cfg, None, NO_SECRETS)),
        guarded("caps", lambda: market.caps(cfg, conn, None, account=NO_SECRETS)),
    ]


def _leak_scan(cfg: Config, scan_files: bool) -> Check:
    if not scan_files:
        return skipped(
            "no_secret_leaks",
            "not scanned at start (the bot holds the database open); `tinybot doctor` scans the files",
        )
    return guarded("no_secret_leaks", lambda: local.no_secret_leaks(cfg))


def go_no_go(cfg: Config, **kwargs) -> tuple[bool, list[Check]]:
    """(True, []) when no check fails; else (False, the failed checks).  Warnings do not count."""
    failures = [c for c in run_checks(cfg, **kwargs) if not c.ok]
    return not failures, failures
