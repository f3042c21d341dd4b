"""`tinybot doctor`: the go-live checklist as a command.

Each check returns a ``Check`` with pass / fail / skip, what it saw, and how
to fix a failure.  ``go_no_go(cfg)`` is what `tinybot run` asks in live mode
before it starts.  Doctor only *reads*: the kill-switch check writes inside a
transaction it rolls back, and the exchange is reached with the read-only
client (the trade key is never used to build a client here).
"""
from __future__ import annotations

import os
import re
import sqlite3
import stat
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from . import backup, clock, db, notify
from .config import SECRET_NAMES, Config, ConfigError

BITVAVO_MIN_ORDER_EUR = Decimal("5")
BACKUP_MAX_AGE = timedelta(days=7)
SKEW_SHARE = 4  # clock skew must stay under a quarter of the access window


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # 'pass' | 'fail' | 'skip'
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def as_dict(self) -> dict:
        return asdict(self)


def passed(name: str, detail: str) -> Check:
    return Check(name, "pass", detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, "fail", detail, fix)


def skipped(name: str, detail: str) -> Check:
    return Check(name, "skip", detail)


def run_checks(cfg: Config, *, send_test_alert: bool = False, exchange=None) -> list[Check]:
    """Every check, in checklist order.  ``exchange``: a read-only client to use (tests); built when needed."""
    checks: list[Check] = []
    conn = _open(cfg, checks)
    if conn is not None:
        checks.append(_guarded("kill_switch", lambda: kill_switch_wired(conn)))
    checks.append(_guarded("secrets_file", lambda: secrets_file(cfg)))
    checks.append(_guarded("keys_separated", lambda: keys_separated(cfg)))
    checks.append(_guarded("no_secret_leaks", lambda: no_secret_leaks(cfg)))
    checks.append(_guarded("alerts", lambda: alerts(cfg, send_test_alert)))
    checks.append(_guarded("operator_id", lambda: operator_id(cfg)))
    ex_checks, markets = exchange_checks(cfg, exchange)
    checks += ex_checks
    checks.append(_guarded("allowlist", lambda: allowlist(cfg, markets)))
    checks.append(_guarded("caps", lambda: caps(cfg, conn, exchange)))
    checks.append(_guarded("backup", lambda: recent_backup(cfg)))
    if conn is not None:
        conn.close()
    return checks


def go_no_go(cfg: Config, **kwargs) -> tuple[bool, list[Check]]:
    """(True, []) when every check passes; else (False, the failed checks).  For `tinybot run` in live mode."""
    failures = [c for c in run_checks(cfg, **kwargs) if not c.ok]
    return not failures, failures


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
        missing.append("UNIQUE(trade_history.exchange, market, trade_id): a fill is stored once (ids are unique per market)")
    if not re.search(r"CHECK \(id = 1\)", _table_sql(conn, "kill_switch")):
        missing.append("CHECK(kill_switch.id = 1): one switch")
    if missing:
        return failed("database", "missing: " + "; ".join(missing),
                      "this database was not made by tinybot's schema; restore a backup or start a new one"
                      " with `tinybot init` in another directory")
    if pending:
        return failed("database", f"migrations not applied: {', '.join(pending)}",
                      "run `tinybot init` (it backs up the database, then migrates)")
    return passed("database", "UNIQUE proposal_id and client_order_id, CHECK on states, one kill-switch row;"
                              " migrations up to date")


def integrity(conn: sqlite3.Connection) -> Check:
    result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
    fks = conn.execute("PRAGMA foreign_key_check").fetchall()
    if result != ["ok"]:
        return failed("integrity", "PRAGMA integrity_check: " + "; ".join(result[:5]),
                      "stop the bot and restore the newest good backup (docs/OPERATIONS.md, Rollback)")
    if fks:
        return failed("integrity", f"{len(fks)} row(s) break a foreign key",
                      "restore the newest good backup (docs/OPERATIONS.md, Rollback)")
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
        return failed("kill_switch", "the switch did not flip and restore in a transaction",
                      "the database is read-only or damaged; check its permissions")
    now = "ENABLED" if before[0] else f"DISABLED ({before[1]}; `tinybot resume` turns it on)"
    return passed("kill_switch", f"write + read-back works (rolled back); trading is {now}")


# --- secrets --------------------------------------------------------------------

def _read_secret_file(path: Path) -> dict[str, str]:
    """NAME=value lines, read regardless of the file's mode (the mode has its own check)."""
    out = {}
    if not path.exists():
        return out
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = (s.strip() for s in line.split("=", 1))
            name = name.removeprefix("export ").strip()
            out[name] = value.strip('"').strip("'")
    return out


def _secret(cfg: Config, name: str) -> str | None:
    return os.environ.get(name) or _read_secret_file(cfg.secrets_path).get(name) or None


def secrets_file(cfg: Config) -> Check:
    p = cfg.secrets_path
    if not p.exists():
        return passed("secrets_file", f"no secrets file at {p}; secrets come from the environment")
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return failed("secrets_file", f"{p} has mode {mode:o}: others can read your keys", f"chmod 600 {p}")
    if hasattr(os, "getuid") and p.stat().st_uid != os.getuid():
        return failed("secrets_file", f"{p} is not owned by you", f"chown $USER {p} && chmod 600 {p}")
    return passed("secrets_file", f"{p} is mode {mode:o}, owned by you")


def keys_separated(cfg: Config) -> Check:
    read_key, trade_key = _secret(cfg, "TINYBOT_READ_KEY"), _secret(cfg, "TINYBOT_TRADE_KEY")
    read_secret, trade_secret = _secret(cfg, "TINYBOT_READ_SECRET"), _secret(cfg, "TINYBOT_TRADE_SECRET")
    if cfg.mode == "paper":
        if trade_key or trade_secret:
            return failed("keys_separated", "a trade key is configured in paper mode",
                          f"remove TINYBOT_TRADE_KEY/SECRET from the environment and {cfg.secrets_path}"
                          " until you go live")
        return passed("keys_separated", "paper mode: no trade key configured")
    missing = [n for n, v in (("TINYBOT_READ_KEY", read_key), ("TINYBOT_READ_SECRET", read_secret),
                              ("TINYBOT_TRADE_KEY", trade_key), ("TINYBOT_TRADE_SECRET", trade_secret)) if not v]
    if missing:
        return failed("keys_separated", f"not set: {', '.join(missing)}",
                      f"create two API keys on Bitvavo (one with View only, one with View+Trade) and put them in"
                      f" {cfg.secrets_path} (chmod 600)")
    if read_key == trade_key or read_secret == trade_secret:
        return failed("keys_separated", "the read key and the trade key are the same key",
                      "create a separate View-only key on Bitvavo for TINYBOT_READ_KEY/SECRET")
    return passed("keys_separated", "read key and trade key are both set and different")


def secret_values(cfg: Config) -> list[str]:
    values = [v for n in SECRET_NAMES for v in [_secret(cfg, n)] if v]
    for v in list(values):
        values += [u for u in notify.split_urls(v) if len(u) >= 4]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


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
    values = secret_values(cfg)
    files = scanned_files(cfg)
    if not values:
        return passed("no_secret_leaks", "no secrets configured, nothing to leak")
    names = {v.encode(): n for n in SECRET_NAMES for v in [_secret(cfg, n)] if v}
    leaks = []
    for p in files:
        for needle in _contains(p, [v.encode() for v in values]):
            leaks.append(f"{names.get(needle, 'a secret value')} in {p}")
    if leaks:
        return failed("no_secret_leaks", "; ".join(sorted(set(leaks))),
                      "remove the value from that file (for the DB or a log: rotate the key on Bitvavo,"
                      " since the old value was written to disk) and keep secrets only in the secrets file")
    return passed("no_secret_leaks", f"no secret value in {len(files)} file(s): "
                                     + ", ".join(p.name for p in files))


# --- alerts ---------------------------------------------------------------------

def alerts(cfg: Config, send_test: bool) -> Check:
    urls = notify.alert_urls(cfg)
    if not urls:
        if cfg.mode == "paper":
            return skipped("alerts", "no alert URLs (paper mode; needed before going live)")
        return failed("alerts", "no alert URLs configured",
                      f"put an apprise URL (e.g. ntfys://ntfy.sh/your-topic, tgram://TOKEN/CHAT) in"
                      f" TINYBOT_ALERT_URLS in {cfg.secrets_path}, then run `tinybot doctor --send-test-alert`")
    import apprise

    bad = [i for i, u in enumerate(urls, 1) if not apprise.Apprise().add(u)]
    if bad:
        return failed("alerts", f"apprise does not understand alert URL number {', '.join(map(str, bad))}",
                      "check the URL against https://github.com/caronc/apprise/wiki")
    if not send_test:
        return passed("alerts", f"{len(urls)} alert URL(s) configured (deliver one with --send-test-alert)")
    sent = notify.Notifier(cfg, None, urls=urls).alert(
        "test", f"tinybot doctor test alert from {cfg.path.parent} at {clock.now_iso()}", severity="info", force=True)
    if not sent.delivered:
        return failed("alerts", f"test alert not delivered: {sent.detail}",
                      "check the URL and the network; the log has apprise's reason")
    return passed("alerts", f"test alert delivered to {len(urls)} URL(s)")


# --- exchange -------------------------------------------------------------------

def operator_id(cfg: Config) -> Check:
    if cfg.exchange.operator_id is not None:
        return passed("operator_id", f"operatorId {cfg.exchange.operator_id}")
    if cfg.mode == "paper":
        return skipped("operator_id", "not set (paper mode; required in live mode)")
    return failed("operator_id", "[exchange] operator_id is not set; Bitvavo refuses orders without it",
                  f"set [exchange] operator_id = <a whole number> in {cfg.path}")


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
        return [skipped("exchange", "paper mode with fixed [paper] prices: no exchange used"),
                skipped("clock_skew", "no exchange used")], _markets_or_none(ex)
    where = cfg.exchange.url or "Bitvavo"
    try:
        t0 = time.time()
        server_ms = ex.server_time_ms()
        t1 = time.time()
        markets = ex.markets()
    except Exception as e:
        return [failed("exchange", f"{where} not reachable: {e}",
                       "check the network (and [exchange] url if set); Bitvavo's status page says if it is down"),
                skipped("clock_skew", "exchange not reachable")], None
    reach = passed("exchange", f"{where} answered ({len(markets)} markets, {int((t1 - t0) * 1000)} ms)")
    # local time at the middle of the request, from tinybot's clock
    local_ms = clock.now_ms() - int((t1 - t0) * 500)
    skew_ms = server_ms - local_ms
    window_ms = int(cfg.exchange.access_window.total_seconds() * 1000)
    limit_ms = window_ms // SKEW_SHARE
    detail = f"clock differs from {where} by {skew_ms / 1000:+.3f}s (access window {window_ms / 1000:g}s)"
    if abs(skew_ms) + int((t1 - t0) * 500) > limit_ms:
        skew = failed("clock_skew", detail + f"; must stay under {limit_ms / 1000:g}s",
                      "sync the clock: `sudo timedatectl set-ntp true` (a Pi has no RTC; check"
                      " `timedatectl status` says 'System clock synchronized: yes')")
    else:
        skew = passed("clock_skew", detail)
    return [reach, skew], markets


def _markets_or_none(ex) -> dict | None:
    try:
        return ex.markets()
    except Exception:
        return None


def allowlist(cfg: Config, markets: dict | None) -> Check:
    allow = cfg.risk.allowlist
    if not allow:
        return failed("allowlist", "risk.allowlist is empty: every market is blocked",
                      f'set [risk] allowlist = ["BTC-EUR"] in {cfg.path}')
    if markets is None:
        return failed("allowlist", f"{', '.join(allow)}: cannot check them, the exchange did not answer",
                      "fix the exchange check first")
    unknown = [m for m in allow if m not in markets]
    halted = [f"{m} ({markets[m].status})" for m in allow if m in markets and markets[m].status != "trading"]
    if unknown or halted:
        parts = ([f"not on the exchange: {', '.join(unknown)}"] if unknown else []) + \
                ([f"not trading: {', '.join(halted)}"] if halted else [])
        return failed("allowlist", "; ".join(parts), f"remove them from [risk] allowlist in {cfg.path}")
    return passed("allowlist", f"{', '.join(allow)}: on the exchange and trading")


def account_size(cfg: Config, conn, exchange) -> tuple[Decimal | None, str]:
    if cfg.mode == "paper":
        return cfg.paper.starting_eur, "paper.starting_eur"
    try:
        ex = exchange or _market_data(cfg)
        eur = ex.balances().get("EUR")
    except Exception as e:
        return None, f"cannot read the balance: {e}"
    cash = (eur.available + eur.in_order) if eur else Decimal(0)
    held = Decimal(0)
    if conn is not None:
        held = sum((Decimal(r[0]) for r in conn.execute("SELECT cost_eur FROM positions")), Decimal(0))
    return cash + held, "EUR balance + positions at cost"


def caps(cfg: Config, conn, exchange) -> Check:
    r = cfg.risk
    problems = []
    for name in ("max_trade_eur", "max_daily_eur", "max_exposure_eur"):
        if getattr(r, name) <= 0:
            problems.append(f"risk.{name} is 0")
    if 0 < r.max_trade_eur < BITVAVO_MIN_ORDER_EUR:
        problems.append(f"risk.max_trade_eur €{r.max_trade_eur} is below Bitvavo's €5 minimum order")
    if r.max_trade_eur > r.max_daily_eur:
        problems.append("risk.max_trade_eur is larger than risk.max_daily_eur")
    size, source = account_size(cfg, conn, exchange)
    if size is None:
        problems.append(source)
    else:
        for name in ("max_trade_eur", "max_daily_eur", "max_exposure_eur"):
            if getattr(r, name) > size:
                problems.append(f"risk.{name} €{getattr(r, name)} is more than the account (€{size:.2f}, {source})")
    if problems:
        return failed("caps", "; ".join(problems), f"adjust [risk] in {cfg.path}")
    return passed("caps", f"per trade €{r.max_trade_eur}, per day €{r.max_daily_eur}, exposure"
                          f" €{r.max_exposure_eur}; account €{size:.2f} ({source})")


# --- backups --------------------------------------------------------------------

def recent_backup(cfg: Config) -> Check:
    b = backup.latest(cfg)
    if b is None:
        return failed("backup", f"no backup in {backup.backup_dir(cfg)}",
                      "run `tinybot backup` (and schedule it daily: docs/OPERATIONS.md)")
    age = clock.now() - b.at
    if age > BACKUP_MAX_AGE:
        return failed("backup", f"newest backup is {age.days} days old ({b.path.name})",
                      "run `tinybot backup` (and schedule it daily: docs/OPERATIONS.md)")
    secs = int(age.total_seconds())
    return passed("backup", f"{b.path.name} ({secs // 3600}h{secs % 3600 // 60:02d}m old)")
