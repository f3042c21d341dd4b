"""`tinybot doctor`: the go-live checklist as a command.

Each check returns a ``Check`` with pass / fail / warn / skip, what it saw,
and how to fix it.  One root cause gives one FAIL: a check that depends on
another one that failed (the secrets file, the exchange, the clock) says
"skip: see X" instead of failing with the wrong fix.

``start_gate(cfg)`` is what `tinybot run` asks in live mode before its first
tick: it blocks only on what makes trading unsafe (``BLOCKS_START``: the
database, the secrets file, keys not separated or a trade key that does not
authenticate or cannot read orders, no operatorId, clock skew) and only warns
about the rest (caps against the account, backup age, alerts, ...).

Doctor only *reads*: the kill-switch check writes inside a transaction it
rolls back; each key is tried with GET requests only (balance, open orders;
the live probe a few more), through the adapter's GET-only guard, which
refuses any other method before a byte leaves.
"""

from __future__ import annotations

import re
import sqlite3
import stat
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from . import backup, clock, db, notify
from .config import Config, ConfigError
from .secrets import file_problem, lookup

BITVAVO_MIN_ORDER_EUR = Decimal("5")
BACKUP_MAX_AGE = timedelta(days=7)
SKEW_SHARE = 4  # clock skew must stay under a quarter of the access window
# Caps are judged against the account's value with this much room: fees eat into a €25 account
# (€24.99998 after one trade), and that must not read as "the caps are more than the account".
# 1 % is what four trades at Bitvavo's lowest taker fee (0.25 %) cost.
FEE_ROOM = Decimal("0.01")
# What `tinybot run` refuses to start on: each makes trading unsafe.  Everything else only warns.
BLOCKS_START = frozenset(
    {"database", "integrity", "kill_switch", "secrets_file", "keys_separated", "operator_id", "clock_skew", "trade_key"}
)
AUTH_UNKNOWN_KEY = frozenset({305})
AUTH_BAD_SIGNATURE = frozenset({308, 309})
AUTH_CLOCK = frozenset({304})
NO_PERMISSION = frozenset({307, 310, 311, 312, 402, 403})


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # 'pass' | 'fail' | 'warn' | 'skip'
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    @property
    def blocks_start(self) -> bool:
        return self.status == "fail" and self.name in BLOCKS_START

    def as_dict(self) -> dict:
        return asdict(self) | {"blocks_start": self.blocks_start}


def passed(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def warned(name: str, detail: str, fix: str) -> Check:
    return Check(name, "warn", detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, "skip", detail)


def run_checks(cfg: Config, *, send_test_alert: bool = False, exchange=None, scan_files: bool = True) -> list[Check]:
    """Every check, in checklist order.  ``exchange``: a read-only client to use (tests); built when needed.

    ``scan_files=False``: skip reading the database file's bytes for leaked secrets.  A process that holds
    an open SQLite connection must never open() and close() the database file itself: closing any
    descriptor of a file drops *all* of the process's POSIX locks on it, SQLite's included, and other
    processes then read the database as if nobody were writing it.
    """
    checks: list[Check] = []
    conn = _open(cfg, checks)
    if conn is not None:
        checks.append(_guarded("kill_switch", lambda: kill_switch_wired(conn)))
    secrets = _guarded("secrets_file", lambda: secrets_file(cfg))
    checks.append(secrets)
    checks.append(_guarded("keys_separated", lambda: keys_separated(cfg)))
    leaks_at = len(checks)  # scanned last, once this process's own connection is closed (see above)
    checks.append(_guarded("operator_id", lambda: operator_id(cfg)))
    if not secrets.ok:  # tinybot refuses to read the file: everything that needs a secret waits for that fix
        why = "tinybot refuses to read the secrets file (see secrets_file)"
        needs = ["alerts", "exchange", "clock_skew"] + (["read_key", "trade_key"] if cfg.mode == "live" else [])
        checks += [skipped(n, why) for n in needs]
        checks.append(_guarded("allowlist", lambda: allowlist(cfg, None, why)))
        checks.append(_guarded("caps", lambda: caps(cfg, conn, None, account=why)))
    else:
        checks.append(_guarded("alerts", lambda: alerts(cfg, send_test_alert)))
        ex_checks, markets = exchange_checks(cfg, exchange)
        checks += ex_checks
        reach, skew = ex_checks
        if cfg.mode == "live":
            checks += key_checks(
                cfg, reachable=reach.status == "pass", clock_ok=skew.status != "fail", same_key=_same_key(cfg)
            )
        checks.append(
            _guarded("allowlist", lambda: allowlist(cfg, markets, "the exchange did not answer (see exchange)"))
        )
        account = None if reach.status != "fail" else "the exchange did not answer (see exchange)"
        if skew.status == "fail":
            account = "the clock is off (see clock_skew): signed requests are refused"
        checks.append(_guarded("caps", lambda: caps(cfg, conn, exchange, account=account)))
    checks.append(_guarded("backup", lambda: recent_backup(cfg)))
    if secrets.ok:
        checks.append(_guarded("heartbeat", lambda: heartbeat_check(cfg)))
        checks.append(_guarded("telegram", lambda: telegram_check(cfg, send_test_alert)))
    if conn is not None:
        conn.close()
    if scan_files:
        checks.insert(leaks_at, _guarded("no_secret_leaks", lambda: no_secret_leaks(cfg)))
    else:
        checks.insert(
            leaks_at,
            skipped(
                "no_secret_leaks",
                "not scanned at start (the bot holds the database open); `tinybot doctor` scans the files",
            ),
        )
    return checks


def heartbeat_check(cfg: Config) -> Check:
    """The outside heartbeat answers (a warning, never a blocked start: the outside service may be down)."""
    from .loop import heartbeat

    if not heartbeat.configured(cfg):
        return skipped("heartbeat", "no [alerts] heartbeat_url: a dead Pi would go unnoticed (docs/TELEGRAM.md)")
    ok, detail = heartbeat.check(cfg)
    return (
        passed("heartbeat", detail)
        if ok
        else warned("heartbeat", detail, f"check [alerts] heartbeat_url in {cfg.path}")
    )


def telegram_check(cfg: Config, send_test: bool) -> Check:
    """The owner's phone: the token works and the chats are set (a warning: Telegram may be down at boot)."""
    from . import telegram

    if not telegram.enabled(cfg):
        return skipped("telegram", "off (no [telegram] chat_ids)")
    ok, detail = telegram.check(cfg, send_test=send_test)
    return (
        passed("telegram", detail)
        if ok
        else warned(
            "telegram",
            detail,
            "check TINYBOT_TELEGRAM_TOKEN in the secrets file and [telegram] chat_ids (`tinybot telegram --chats`)",
        )
    )


def go_no_go(cfg: Config, **kwargs) -> tuple[bool, list[Check]]:
    """(True, []) when no check fails; else (False, the failed checks).  Warnings do not count."""
    failures = [c for c in run_checks(cfg, **kwargs) if not c.ok]
    return not failures, failures


def start_gate(cfg: Config, **kwargs) -> tuple[list[Check], list[Check]]:
    """For `tinybot run` in live mode: (checks that block the start, checks to warn about).

    Runs inside the scheduler, which holds the database open: the file scan for leaked secrets is left
    to `tinybot doctor` (see run_checks).
    """
    checks = run_checks(cfg, scan_files=False, **kwargs)
    return (
        [c for c in checks if c.blocks_start],
        [c for c in checks if c.status in ("fail", "warn") and not c.blocks_start],
    )


def _guarded(name: str, fn) -> Check:
    """A check that crashes is a failed check, not a crashed doctor."""
    try:
        return fn()
    except ConfigError as e:
        return failed(name, str(e), "fix the config or secrets file as the message says")
    except Exception as e:
        return failed(name, f"the check itself failed: {type(e).__name__}: {e}", "report this as a bug")


# --- database -------------------------------------------------------------------


def _open(cfg: Config, checks: list[Check]) -> sqlite3.Connection | None:
    if not cfg.db_path.exists():
        checks.append(failed("database", f"no database at {cfg.db_path}", "run `tinybot init`"))
        return None
    conn = db.connect(cfg.db_path)
    pending = [m.name for m in db.pending_migrations(conn)]
    checks.append(_guarded("database", lambda: db_constraints(conn, pending)))
    checks.append(_guarded("integrity", lambda: integrity(conn)))
    return conn


def _unique_columns(conn: sqlite3.Connection, table: str) -> set[tuple[str, ...]]:
    out = set()
    for idx in conn.execute(f"PRAGMA index_list('{table}')"):
        if idx["unique"]:
            cols = tuple(r["name"] for r in conn.execute(f"PRAGMA index_info('{idx['name']}')"))
            out.add(cols)
    return out


def _table_sql(conn: sqlite3.Connection, table: str) -> str:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    return re.sub(r"\s+", " ", row[0]) if row else ""


def db_constraints(conn: sqlite3.Connection, pending: list[str]) -> Check:
    """The constraints the guarantees rest on, read back from the live schema (not from schema.sql)."""
    missing = []
    uniq = _unique_columns(conn, "trade_executions")
    if ("proposal_id",) not in uniq:
        missing.append("UNIQUE(trade_executions.proposal_id): one proposal → at most one order")
    if ("client_order_id",) not in uniq:
        missing.append("UNIQUE(trade_executions.client_order_id)")
    if not re.search(r"\bstate TEXT NOT NULL CHECK \(state IN \(", _table_sql(conn, "trade_executions")):
        missing.append("CHECK on trade_executions.state")
    if ("exchange", "market", "trade_id") not in _unique_columns(conn, "trade_history"):
        missing.append(
            "UNIQUE(trade_history.exchange, market, trade_id): a fill is stored once (ids are unique per market)"
        )
    if not re.search(r"CHECK \(id = 1\)", _table_sql(conn, "kill_switch")):
        missing.append("CHECK(kill_switch.id = 1): one switch")
    if missing:
        return failed(
            "database",
            "missing: " + "; ".join(missing),
            "this database was not made by tinybot's schema; restore a backup or start a new one"
            " with `tinybot init` in another directory",
        )
    if pending:
        return failed(
            "database",
            f"migrations not applied: {', '.join(pending)}",
            "run `tinybot init` (it backs up the database, then migrates)",
        )
    return passed(
        "database",
        "UNIQUE proposal_id and client_order_id, CHECK on states, one kill-switch row; migrations up to date",
    )


def integrity(conn: sqlite3.Connection) -> Check:
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    fks = conn.execute("PRAGMA foreign_key_check").fetchall()
    if result != ["ok"]:
        return failed(
            "integrity",
            "PRAGMA integrity_check: " + "; ".join(result[:5]),
            "stop the bot and restore the newest good backup (docs/OPERATIONS.md, Rollback)",
        )
    if fks:
        return failed(
            "integrity",
            f"{len(fks)} row(s) break a foreign key",
            "restore the newest good backup (docs/OPERATIONS.md, Rollback)",
        )
    return passed("integrity", "PRAGMA integrity_check ok; foreign keys ok")


def kill_switch_wired(conn: sqlite3.Connection) -> Check:
    """Flip the switch and read it back inside a transaction that is rolled back."""
    before = conn.execute("SELECT trading_enabled, reason FROM kill_switch WHERE id = 1").fetchone()
    if before is None:
        return failed("kill_switch", "the kill_switch row is missing", "run `tinybot kill` then `tinybot resume`")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("UPDATE kill_switch SET trading_enabled = 1 - trading_enabled WHERE id = 1")
        flipped = conn.execute("SELECT trading_enabled FROM kill_switch WHERE id = 1").fetchone()[0]
    finally:
        conn.execute("ROLLBACK")
    after = conn.execute("SELECT trading_enabled FROM kill_switch WHERE id = 1").fetchone()[0]
    if flipped == before[0] or after != before[0]:
        return failed(
            "kill_switch",
            "the switch did not flip and restore in a transaction",
            "the database is read-only or damaged; check its permissions",
        )
    now = "ENABLED" if before[0] else f"DISABLED ({before[1]}; `tinybot resume` turns it on)"
    return passed("kill_switch", f"write + read-back works (rolled back); trading is {now}")


# --- secrets --------------------------------------------------------------------


def _secret(cfg: Config, name: str) -> str | None:
    """Read regardless of the file's mode (the mode has its own check, secrets_file)."""
    return lookup(cfg.secrets_path, name)


def secrets_file(cfg: Config) -> Check:
    p = cfg.secrets_path
    if not p.exists():
        return passed("secrets_file", f"no secrets file at {p}; secrets come from the environment")
    problem = file_problem(p)
    if problem is not None:
        return failed("secrets_file", f"{p} is {problem.what}: tinybot will not read your keys from it", problem.fix)
    mode = stat.S_IMODE(p.stat().st_mode)
    try:
        cfg.secrets().get("TINYBOT_READ_KEY")  # parses the whole file: an unknown name or a bad line
    except ConfigError as e:
        return failed("secrets_file", str(e), f"fix that line of {p} (NAME=value, one a line)")
    return passed("secrets_file", f"{p} is mode {mode:o}, owned by you")


def keys_separated(cfg: Config) -> Check:
    read_key, trade_key = _secret(cfg, "TINYBOT_READ_KEY"), _secret(cfg, "TINYBOT_TRADE_KEY")
    read_secret, trade_secret = _secret(cfg, "TINYBOT_READ_SECRET"), _secret(cfg, "TINYBOT_TRADE_SECRET")
    if cfg.mode == "paper":
        if trade_key or trade_secret:
            return failed(
                "keys_separated",
                "a trade key is configured in paper mode",
                f"remove TINYBOT_TRADE_KEY/SECRET from the environment and {cfg.secrets_path} until you go live",
            )
        return passed("keys_separated", "paper mode: no trade key configured")
    missing = [
        n
        for n, v in (
            ("TINYBOT_READ_KEY", read_key),
            ("TINYBOT_READ_SECRET", read_secret),
            ("TINYBOT_TRADE_KEY", trade_key),
            ("TINYBOT_TRADE_SECRET", trade_secret),
        )
        if not v
    ]
    if missing:
        return failed(
            "keys_separated",
            f"not set: {', '.join(missing)}",
            f"create two API keys on Bitvavo (one with View only, one with View+Trade) and put them in"
            f" {cfg.secrets_path} (chmod 600)",
        )
    if read_key == trade_key or read_secret == trade_secret:
        return failed(
            "keys_separated",
            "the read key and the trade key are the same key",
            "create a separate View-only key on Bitvavo for TINYBOT_READ_KEY/SECRET",
        )
    return passed("keys_separated", "read key and trade key are both set and different")


def _contains(path: Path, needles: list[bytes]) -> list[bytes]:
    """Which needles occur in the file, read in chunks (a DB or log may be big on a Pi)."""
    found, overlap = set(), max(map(len, needles)) - 1
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            window = tail + chunk
            found.update(n for n in needles if n in window)
            tail = window[-overlap:] if overlap else b""
    return [n for n in needles if n in found]


def scanned_files(cfg: Config) -> list[Path]:
    files = [cfg.path, cfg.db_path, Path(str(cfg.db_path) + "-wal")]
    log = cfg.log_path
    files += sorted(log.parent.glob(log.name + "*")) if log.parent.exists() else []
    return [p for p in dict.fromkeys(files) if p.is_file()]


def no_secret_leaks(cfg: Config) -> Check:
    # exactly what the log redaction and the alerts hide (tinybot.secrets), URL tokens included
    names = {v.encode(): n for v, n in cfg.secrets().labelled().items()}
    files = scanned_files(cfg)
    if not names:
        return passed("no_secret_leaks", "no secrets configured, nothing to leak")
    leaks = []
    for p in files:
        for needle in _contains(p, list(names)):
            leaks.append(f"{names[needle]} in {p}")
    if leaks:
        return failed(
            "no_secret_leaks",
            "; ".join(sorted(set(leaks))),
            "remove the value from that file (for the DB or a log: rotate the key on Bitvavo,"
            " since the old value was written to disk) and keep secrets only in the secrets file",
        )
    return passed("no_secret_leaks", f"no secret value in {len(files)} file(s): " + ", ".join(p.name for p in files))


# --- alerts ---------------------------------------------------------------------


def alerts(cfg: Config, send_test: bool) -> Check:
    urls = notify.alert_urls(cfg)
    if not urls:
        if cfg.mode == "paper":
            return skipped("alerts", "no alert URLs (paper mode; needed before going live)")
        return warned(
            "alerts",
            "no alert URLs configured: nobody hears of a stop, an outage or a kill switch",
            f"put an apprise URL (e.g. ntfys://ntfy.sh/your-topic, tgram://TOKEN/CHAT) in"
            f" TINYBOT_ALERT_URLS in {cfg.secrets_path}, then run `tinybot doctor --send-test-alert`",
        )
    import apprise

    bad = [i for i, u in enumerate(urls, 1) if not apprise.Apprise().add(u)]
    if bad:
        return failed(
            "alerts",
            f"apprise does not understand alert URL number {', '.join(map(str, bad))}",
            "check the URL against https://github.com/caronc/apprise/wiki",
        )
    if not send_test:
        return passed("alerts", f"{len(urls)} alert URL(s) configured (deliver one with --send-test-alert)")
    sent = notify.Notifier(cfg, None, urls=urls).alert(
        "test", f"tinybot doctor test alert from {cfg.path.parent} at {clock.now_iso()}", severity="info", force=True
    )
    if not sent.delivered:
        return failed(
            "alerts",
            f"test alert not delivered: {sent.detail}",
            "check the URL and the network; the log has apprise's reason",
        )
    return passed("alerts", f"test alert delivered to {len(urls)} URL(s)")


# --- exchange -------------------------------------------------------------------


def operator_id(cfg: Config) -> Check:
    if cfg.exchange.operator_id is not None:
        return passed("operator_id", f"operatorId {cfg.exchange.operator_id}")
    if cfg.mode == "paper":
        return skipped("operator_id", "not set (paper mode; required in live mode)")
    return failed(
        "operator_id",
        "[exchange] operator_id is not set; Bitvavo refuses orders without it",
        f"set [exchange] operator_id = <a whole number> in {cfg.path}",
    )


def _market_data(cfg: Config):
    from .exchange import market_data

    return market_data(cfg)


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
    # local time at the middle of the request, from tinybot's clock
    local_ms = clock.now_ms() - int((t1 - t0) * 500)
    skew_ms = server_ms - local_ms
    window_ms = int(cfg.exchange.access_window.total_seconds() * 1000)
    limit_ms = window_ms // SKEW_SHARE
    detail = f"clock differs from {where} by {skew_ms / 1000:+.3f}s (access window {window_ms / 1000:g}s)"
    if abs(skew_ms) + int((t1 - t0) * 500) > limit_ms:
        skew = failed(
            "clock_skew",
            detail + f"; must stay under {limit_ms / 1000:g}s",
            "sync the clock: `sudo timedatectl set-ntp true` (a Pi has no RTC; check"
            " `timedatectl status` says 'System clock synchronized: yes')",
        )
    else:
        skew = passed("clock_skew", detail)
    return [reach, skew], markets


# --- what each key can do (live) -------------------------------------------------


@dataclass(frozen=True)
class KeyProbe:
    """What one API key did on two read-only calls: GET /balance (View) and GET /ordersOpen (Trade)."""

    env: str  # "READ" or "TRADE"
    auth: str  # ok | unknown_key | bad_secret | clock | unreachable | error
    auth_detail: str = ""
    orders: str = "untried"  # readable | refused | error | untried
    orders_detail: str = ""


def _same_key(cfg: Config) -> bool:
    read, trade = _secret(cfg, "TINYBOT_READ_KEY"), _secret(cfg, "TINYBOT_TRADE_KEY")
    return bool(read) and read == trade


def _probe_market(cfg: Config) -> str:
    return cfg.risk.allowlist[0] if cfg.risk.allowlist else "BTC-EUR"


def _kind(code: int | None, exc: BaseException) -> str:
    if code in AUTH_UNKNOWN_KEY:
        return "unknown_key"
    if code in AUTH_BAD_SIGNATURE:
        return "bad_secret"
    if code in AUTH_CLOCK:
        return "clock"
    if code in NO_PERMISSION:
        return "refused"
    return "unreachable" if code is None and _is_network(exc) else "error"


def key_client(cfg: Config, env: str):
    """A ccxt client signed with TINYBOT_<env>_KEY behind the adapter's GET-only guard (the one the
    adapter puts the trade key behind for its lookups): it refuses every method but GET before a byte
    leaves, so no probe can place or cancel anything, whatever the key may do."""
    from .exchange import bitvavo

    key, secret = _secret(cfg, f"TINYBOT_{env}_KEY"), _secret(cfg, f"TINYBOT_{env}_SECRET")
    if not key or not secret:
        return None
    return bitvavo._Endpoint(cfg, key, secret, rate_limit=False, get_only=True).ccxt


def probe_key(cfg: Config, env: str) -> KeyProbe | None:
    """Two read-only requests signed with exactly this key (ccxt underneath, no facade that could route a
    lookup to another key): GET /balance, then GET /ordersOpen for the first allowlisted market."""
    from .exchange.bitvavo import describe_error, error_code

    raw = key_client(cfg, env)
    if raw is None:
        return None
    try:
        raw.privateGetBalance({})
    except Exception as e:
        kind = _kind(error_code(e)[0], e)
        return KeyProbe(env, "error" if kind == "refused" else kind, describe_error(e))
    try:
        raw.privateGetOrdersOpen({"market": _probe_market(cfg)})
    except Exception as e:
        kind = _kind(error_code(e)[0], e)
        if kind == "unreachable":
            return KeyProbe(env, "unreachable", describe_error(e))
        return KeyProbe(env, "ok", orders="refused" if kind == "refused" else "error", orders_detail=describe_error(e))
    return KeyProbe(env, "ok", orders="readable")


def _auth_failure(name: str, p: KeyProbe, cfg: Config) -> Check:
    var = f"TINYBOT_{p.env}"
    if p.auth == "unknown_key":
        return failed(
            name,
            f"{var}_KEY does not authenticate: Bitvavo knows no such key ({p.auth_detail})",
            f"copy the key again from Bitvavo (API settings) into {var}_KEY in {cfg.secrets_path};"
            " it may have been deleted",
        )
    if p.auth == "bad_secret":
        return failed(
            name,
            f"{var}_KEY does not authenticate: the signature is wrong, so {var}_SECRET is not"
            f" that key's secret ({p.auth_detail})",
            f"copy the secret again into {var}_SECRET in {cfg.secrets_path} (Bitvavo shows it once:"
            " if it is lost, make a new key)",
        )
    return failed(
        name,
        f"{var}_KEY: Bitvavo's answer to a balance read: {p.auth_detail}",
        "see the message; `tinybot doctor` again once it is fixed",
    )


def key_checks(  # noqa: C901  (each root cause once)
    cfg: Config,
    *,
    reachable: bool,
    clock_ok: bool,
    same_key: bool,
    probes: tuple[KeyProbe | None, KeyProbe | None] | None = None,
) -> list[Check]:
    """read_key and trade_key: each key authenticated with a read-only call, and what it may read.

    Bitvavo's key rights: View = balance, account; Trade = place, view and cancel orders.  So the read
    key must read the balance and be refused order reads; the trade key must read both.
    """
    if not reachable:
        why = "the exchange did not answer (see exchange)"
        return [skipped("read_key", why), skipped("trade_key", why)]
    if same_key:
        why = "one key for both (see keys_separated)"
        return [skipped("read_key", why), skipped("trade_key", why)]
    read, trade = probes or (_guarded_probe(cfg, "READ"), _guarded_probe(cfg, "TRADE"))
    if not clock_ok or any(p is not None and p.auth == "clock" for p in (read, trade)):
        why = "Bitvavo refuses signed requests while the clock is off (see clock_skew)"
        if clock_ok:  # the skew check passed yet Bitvavo says 304: say it here, once
            return [
                skipped("read_key", why),
                failed(
                    "trade_key",
                    "Bitvavo refused the request's timestamp (304): the clock or the access window is off",
                    "sync the clock: `sudo timedatectl set-ntp true`",
                ),
            ]
        return [skipped("read_key", why), skipped("trade_key", why)]
    if any(p is not None and p.auth == "unreachable" for p in (read, trade)):
        why = "the exchange stopped answering during the check"
        return [skipped("read_key", why), skipped("trade_key", why)]
    out: list[Check] = []
    # the read key
    if read is None:
        out.append(skipped("read_key", "TINYBOT_READ_KEY/SECRET not set (see keys_separated)"))
    swapped = (
        read is not None
        and trade is not None
        and read.auth == "ok"
        and trade.auth == "ok"
        and read.orders == "readable"
        and trade.orders == "refused"
    )
    if read is not None and not out:
        if read.auth != "ok":
            out.append(_auth_failure("read_key", read, cfg))
        elif swapped:
            out.append(skipped("read_key", "see trade_key: the two keys look swapped"))
        elif read.orders == "readable":
            out.append(
                failed(
                    "read_key",
                    "TINYBOT_READ_KEY can read orders, which Bitvavo allows only to keys with"
                    " Trade rights: the advisors' key could trade",
                    "make a key with View rights only on Bitvavo and put it in TINYBOT_READ_KEY/SECRET"
                    f" in {cfg.secrets_path} (if Bitvavo lists this key as View only, Bitvavo differs"
                    " from its documentation: run `tinybot doctor --live-probe` and report it)",
                )
            )
        elif read.orders == "refused":
            out.append(
                passed("read_key", "authenticates (balance read); refused order reads: View only, as it should be")
            )
        else:
            out.append(skipped("read_key", f"authenticates; order-read right unknown: {read.orders_detail}"))
    # the trade key
    if trade is None:
        out.append(skipped("trade_key", "TINYBOT_TRADE_KEY/SECRET not set (see keys_separated)"))
    elif trade.auth != "ok":
        out.append(_auth_failure("trade_key", trade, cfg))
    elif swapped:
        out.append(
            failed(
                "trade_key",
                "the two keys look swapped: TINYBOT_TRADE_KEY cannot read orders (View only)"
                " and TINYBOT_READ_KEY can (it has Trade rights)",
                f"swap the values of TINYBOT_READ_KEY/SECRET and TINYBOT_TRADE_KEY/SECRET in {cfg.secrets_path}",
            )
        )
    elif trade.orders == "refused":
        out.append(
            failed(
                "trade_key",
                f"TINYBOT_TRADE_KEY cannot read orders ({trade.orders_detail}): without"
                " that, an order whose answer was lost can never be looked up",
                "give this key Trade rights on Bitvavo (View + Trade, never Withdraw), or make a new one",
            )
        )
    elif trade.orders == "readable":
        out.append(
            passed("trade_key", "authenticates (balance read) and reads orders; tried read-only, nothing placed")
        )
    else:
        out.append(
            failed(
                "trade_key",
                f"TINYBOT_TRADE_KEY authenticates but reading orders failed: {trade.orders_detail}",
                "see the message; try `tinybot doctor` again",
            )
        )
    return out


def _guarded_probe(cfg: Config, env: str) -> KeyProbe | None:
    try:
        return probe_key(cfg, env)
    except Exception as e:  # building the client failed (a config problem): say it as an answer
        return KeyProbe(env, "error", f"{type(e).__name__}: {e}")


def _markets_or_none(ex) -> dict | None:
    try:
        return ex.markets()
    except Exception:
        return None


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
    unknown = [m for m in allow if m not in markets]
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
    if 0 < r.max_trade_eur < BITVAVO_MIN_ORDER_EUR:
        problems.append(f"risk.max_trade_eur €{r.max_trade_eur} is below Bitvavo's €5 minimum order")
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


# --- backups --------------------------------------------------------------------


def recent_backup(cfg: Config) -> Check:
    b = backup.latest(cfg)
    if b is None:
        return warned(
            "backup",
            f"no backup in {backup.backup_dir(cfg)}",
            "run `tinybot backup` (and schedule it daily: docs/OPERATIONS.md)",
        )
    age = clock.now() - b.at
    if age > BACKUP_MAX_AGE:
        return warned(
            "backup",
            f"newest backup is {age.days} days old ({b.path.name})",
            "run `tinybot backup` (and schedule it daily: docs/OPERATIONS.md)",
        )
    secs = int(age.total_seconds())
    return passed("backup", f"{b.path.name} ({secs // 3600}h{secs % 3600 // 60:02d}m old)")


# --- `tinybot doctor --live-probe`: Bitvavo against the simulator's model ----------------


@dataclass(frozen=True)
class Probe:
    name: str
    status: str  # 'same' | 'differs' | 'skip'
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


# the read-only requests whose rights the probe compares: (method, path, params for a market M)
RIGHTS = (
    ("GET", "/balance", lambda m: {}),
    ("GET", "/account", lambda m: {}),
    ("GET", "/ordersOpen", lambda m: {"market": m}),
    ("GET", "/orders", lambda m: {"market": m, "limit": 1}),
    ("GET", "/trades", lambda m: {"market": m, "limit": 1}),
)
CCXT_CALL = {
    "/balance": "privateGetBalance",
    "/account": "privateGetAccount",
    "/ordersOpen": "privateGetOrdersOpen",
    "/orders": "privateGetOrders",
    "/trades": "privateGetTrades",
    "/order": "privateGetOrder",
    "/markets": "publicGetMarkets",
}
# what the two keys may do in the simulator's model (a user's setup: View only, and View + Trade)
MODEL_RIGHTS = {"READ": frozenset({"view"}), "TRADE": frozenset({"view", "trade"})}
WINDOW_PROBE = timedelta(days=3)  # longer than Bitvavo's documented 24 hours per /trades request


def _ask(client, path: str, params: dict) -> tuple[str, object]:
    """('ok', answer) or ('refused', 'errorCode N: text') or ('unreachable', text); never raises."""
    from .exchange.bitvavo import error_code

    try:
        return "ok", getattr(client, CCXT_CALL[path])(dict(params))
    except Exception as e:
        code, text = error_code(e)
        if code is None and _is_network(e):
            return "unreachable", f"{type(e).__name__}: {e}"
        return "refused", f"errorCode {code}: {text}" if code is not None else f"{type(e).__name__}: {e}"


def _is_network(e: BaseException) -> bool:
    import ccxt

    return isinstance(e, (ccxt.NetworkError, OSError))


def _model(path: str, method: str, params: dict, key: str | None, perms: frozenset) -> tuple[str, object]:
    """The simulator's answer to the same request, asked in memory (no server, no network)."""
    from .sim.engine import SimError
    from .sim.server import ROUTES

    route = ROUTES[(method, path)]
    sim = _model_sim()
    need = route.perm
    if need == "trade_read":  # reading orders and trades is a Trade right (unless the model relaxes it)
        need = "view" if getattr(sim, "view_key_reads_orders", False) else "trade"
    if need is not None and need not in perms:
        return "refused", f"errorCode {310 if need == 'trade' else 311}: needs the {need} right"
    try:
        return "ok", route.call(
            sim, "probe" if key else None, {k: str(v) for k, v in params.items()}, params.get("market")
        )
    except SimError as e:
        return "refused", f"errorCode {e.code}: {e.message}"


_MODEL = {}


def _model_sim():
    """One in-memory simulator with default settings and a probe account: the model the tests run against."""
    if "sim" not in _MODEL:
        from .sim.engine import SimAccount, Simulator

        _MODEL["sim"] = Simulator(
            accounts=[SimAccount("probe", "probe", frozenset({"view", "trade"}), {})], markets=("BTC-EUR", "ETH-EUR")
        )
    return _MODEL["sim"]


def live_probe(cfg: Config, clients: dict | None = None) -> list[Probe]:
    """Read-only questions to the real exchange (no order is placed or cancelled), each compared with what
    `tinybot sim` answers: key rights, market table, fee tier, the 24-hour window of /trades and /orders,
    and whether a past filled order of tinybot's is found by its clientOrderId."""
    clients = clients or {}
    for env in ("READ", "TRADE"):
        if env not in clients:
            clients[env] = key_client(cfg, env)
    market = _probe_market(cfg)
    out: list[Probe] = []
    out.append(_probe_rights(clients, market))
    out += _probe_markets(clients.get("TRADE") or clients.get("READ"), cfg)
    out.append(_probe_fees(clients.get("TRADE") or clients.get("READ")))
    out += _probe_windows(clients.get("TRADE"), market)
    out.append(_probe_client_order_id(clients.get("TRADE"), cfg))
    return out


def _probe_rights(clients: dict, market: str) -> Probe:
    seen, diffs = [], []
    for env in ("READ", "TRADE"):
        client = clients.get(env)
        if client is None:
            seen.append(f"{env.lower()} key not set")
            continue
        for method, path, params in RIGHTS:
            real, answer = _ask(client, path, params(market))
            if real == "unreachable":
                return Probe("key_rights", "skip", f"the exchange did not answer: {answer}")
            model, _ = _model(path, method, params(market), "probe", MODEL_RIGHTS[env])
            allowed = "allowed" if real == "ok" else f"refused ({answer})"
            seen.append(f"{env.lower()} {path}: {allowed}")
            if (real == "ok") != (model == "ok"):
                diffs.append(
                    f"{method} {path} with the {env.lower()} key: Bitvavo {allowed}, the simulator"
                    f" {'allows it' if model == 'ok' else 'refuses it'}"
                )
    if diffs:
        return Probe("key_rights", "differs", "; ".join(diffs))
    return Probe("key_rights", "same", "; ".join(seen))


def _probe_markets(client, cfg: Config) -> list[Probe]:
    if client is None:
        return [Probe("market_table", "skip", "no key set")]
    real, answer = _ask(client, "/markets", {})
    if real != "ok" or not isinstance(answer, list):
        return [Probe("market_table", "skip", f"GET /markets: {answer}")]
    model, model_rows = _model("/markets", "GET", {}, None, frozenset())
    model_fields = set().union(*(set(r) for r in model_rows)) if model_rows else set()
    model_min = {r.get("minOrderInQuoteAsset") for r in model_rows}
    out = []
    rows = {r.get("market"): r for r in answer if isinstance(r, dict)}
    for m in cfg.risk.allowlist:
        r = rows.get(m)
        if r is None:
            out.append(Probe("market_table", "differs", f"{m}: not in Bitvavo's market table"))
            continue
        diffs = []
        missing, extra = model_fields - set(r), set(r) - model_fields
        if missing:
            diffs.append(f"fields the simulator has and Bitvavo does not: {', '.join(sorted(missing))}")
        if extra:
            diffs.append(f"fields Bitvavo has and the simulator does not: {', '.join(sorted(extra))}")
        if r.get("minOrderInQuoteAsset") not in model_min:
            diffs.append(
                f"minOrderInQuoteAsset {r.get('minOrderInQuoteAsset')} (simulator"
                f" {', '.join(sorted(str(v) for v in model_min))})"
            )
        if r.get("status") != "trading":
            diffs.append(f"status {r.get('status')!r}")
        shown = (
            f"{m}: status {r.get('status')}, min €{r.get('minOrderInQuoteAsset')}, min base"
            f" {r.get('minOrderInBaseAsset')}, tickSize {r.get('tickSize')}, quantityDecimals"
            f" {r.get('quantityDecimals')}"
        )
        out.append(
            Probe("market_table", "differs" if diffs else "same", shown + ("; " + "; ".join(diffs) if diffs else ""))
        )
    return out or [Probe("market_table", "skip", "risk.allowlist is empty")]


def _probe_fees(client) -> Probe:
    if client is None:
        return Probe("fee_tier", "skip", "no key set")
    real, answer = _ask(client, "/account", {})
    fees = answer.get("fees") if real == "ok" and isinstance(answer, dict) else None
    if not isinstance(fees, dict):
        return Probe("fee_tier", "skip", f"fee tier unknown: GET /account answered {answer}")
    _, model = _model("/account", "GET", {}, "probe", MODEL_RIGHTS["TRADE"])
    mf = model["fees"]
    shown = f"taker {fees.get('taker')}, maker {fees.get('maker')} (simulator taker {mf['taker']}, maker {mf['maker']})"
    same = Decimal(str(fees.get("taker"))) == Decimal(mf["taker"]) and Decimal(str(fees.get("maker"))) == Decimal(
        mf["maker"]
    )
    return Probe("fee_tier", "same" if same else "differs", shown)


def _probe_windows(client, market: str) -> list[Probe]:
    if client is None:
        return [Probe("time_window", "skip", "no trade key set (reading trades and orders needs Trade rights)")]
    end = clock.now_ms()
    params = {"market": market, "start": end - int(WINDOW_PROBE.total_seconds() * 1000), "end": end, "limit": 1}
    out = []
    for path in ("/trades", "/orders"):
        real, answer = _ask(client, path, params)
        model, model_answer = _model(path, "GET", params, "probe", MODEL_RIGHTS["TRADE"])
        what = f"GET {path} over {WINDOW_PROBE.days * 24} hours"
        r = "answered" if real == "ok" else f"refused ({answer})"
        m = "answers" if model == "ok" else f"refuses ({model_answer})"
        out.append(
            Probe(
                "time_window",
                "same" if (real == "ok") == (model == "ok") else "differs",
                f"{what}: Bitvavo {r}; the simulator {m} (tinybot pages /trades in 24-hour slices)",
            )
        )
    return out


def _probe_client_order_id(client, cfg: Config) -> Probe:
    if client is None:
        return Probe("client_order_id", "skip", "no trade key set")
    row = None
    if cfg.db_path.exists():
        conn = db.connect(cfg.db_path)
        try:
            row = conn.execute(
                "SELECT id, market, client_order_id, exchange_order_id, resolved_at FROM"
                " trade_executions WHERE state = 'filled' AND exchange = 'bitvavo'"
                " ORDER BY id DESC LIMIT 1"
            ).fetchone()
        finally:
            conn.close()
    if row is None:
        return Probe(
            "client_order_id", "skip", "no filled order of tinybot's yet: run this again after the first trade"
        )
    real, answer = _ask(client, "/order", {"market": row["market"], "clientOrderId": row["client_order_id"]})
    model_finds = _model_sim().find_closed_by_client_id
    found = real == "ok" and isinstance(answer, dict) and answer.get("clientOrderId") == row["client_order_id"]
    what = f"execution {row['id']} (filled {row['resolved_at']}, clientOrderId {row['client_order_id']})"
    r = f"found it ({answer.get('status')})" if found else f"did not find it ({answer})"
    same = found == model_finds
    return Probe(
        "client_order_id",
        "same" if same else "differs",
        f"{what}: Bitvavo {r}; the simulator {'finds' if model_finds else 'does not find'} filled orders by"
        " clientOrderId" + ("" if same or found else "; reconcile then falls back to GET /orders since the send"),
    )
