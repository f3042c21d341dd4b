"""Doctor's local checks, none of which asks the exchange: database, kill switch, secrets file, leaks, alerts, backup.

Also the owner's outside channels (heartbeat, Telegram), which ask their own services, never Bitvavo.
Each check only reads: the kill-switch check writes inside a transaction it rolls back.
"""

from __future__ import annotations

import re
import sqlite3
import stat
from datetime import timedelta
from pathlib import Path

from ...store import backup, db
from ...base import clock
from ...owner import notify
from ...base.config import Config
from ...base.errors import ConfigError
from ...base.secrets import file_problem
from .check import Check, failed, guarded, passed, skipped, warned

BACKUP_MAX_AGE = timedelta(days=7)


# --- database -------------------------------------------------------------------


def open_database(cfg: Config) -> tuple[sqlite3.Connection | None, list[Check]]:
    """The database's connection (None when there is none or it cannot be read) and its two checks:
    constraints, integrity.  A damaged file, a read-only or full card is said as such, with its fix."""
    if not cfg.db_path.exists():
        return None, [failed("database", f"no database at {cfg.db_path}", "run `tinybot init`")]
    try:
        conn = db.connect(cfg.db_path)
        pending = [m.name for m in (db.pending_migrations(conn) if not db.is_read_only(conn) else ())]
    except sqlite3.Error as e:
        return None, [database_fault("database", cfg, e)]
    return conn, [
        on_database("database", cfg, lambda: db_constraints(conn, pending)),
        on_database("integrity", cfg, lambda: integrity(conn)),
    ]


def on_database(name: str, cfg: Config, fn) -> Check:
    """``guarded`` for a check that reads or writes the database: a fault of the file or its card is not a
    bug in the check (``database_fault``)."""

    def checked() -> Check:
        try:
            return fn()
        except sqlite3.Error as e:
            return database_fault(name, cfg, e)

    return guarded(name, checked)


def database_fault(name: str, cfg: Config, e: sqlite3.Error) -> Check:
    """What is wrong with the database or its card (tinybot.store.db.fault), and the fix for that."""
    f = db.fault(e, cfg.db_path)
    folder = cfg.db_path.parent
    fix = {
        "damaged": "stop the bot (`sudo systemctl stop tinybot`) and do what the line above says (docs/OPERATIONS.md,"
        " Rollback); then check the card (`dmesg`)",
        "read_only": "the card is failing (it turned read-only): check it (`dmesg`) and move to a good card as the"
        " line above says (docs/OPERATIONS.md, A failing SD card)",
        "full": f"free some space on {folder} (old backups, logs); a running bot resumes by itself",
        "locked": f"find the process that holds it (`fuser -v {cfg.db_path}`) and end it",
        "io": "check the card (`dmesg`); keep the file, and restore a backup if it does not read again",
    }.get(f.kind, "check the card (`dmesg`) and the file")
    return failed(name, str(f), fix)


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


# --- the secrets file and what must never hold a secret ---------------------------


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
    # exactly what the log redaction and the alerts hide (tinybot.base.secrets), URL tokens included
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


# --- backups ----------------------------------------------------------------------


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


# --- who hears of trouble: alerts, the outside heartbeat, the owner's phone --------


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


def heartbeat_check(cfg: Config) -> Check:
    """The outside heartbeat answers (a warning, never a blocked start: the outside service may be down)."""
    from ...loop import heartbeat

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
    from ...owner.telegram import api as telegram

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
