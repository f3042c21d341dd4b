"""Alerts to the bot's owner, through apprise URLs (ntfy, Telegram, Discord, e-mail, ...).

Three promises:

* **Never in the way.** ``Notifier.alert`` catches everything: an alert that
  cannot be delivered is logged and recorded, and the tick goes on.  apprise
  is imported only when an alert is actually sent, so `tinybot kill` and
  `tinybot status` never pay for it.
* **Not a flood, never a gap.** The same dedupe key is sent at most once per
  ``[alerts] min_interval``.  Alerts have a priority (``urgent``): kill
  switch, the bot stopped or died, an outage, an order whose outcome is
  unknown, drift (surprise orders, fill conflicts, a restore in doubt), key
  problems and every error are never held back; routine ones (fills, block
  summaries, the digest) share ``MAX_PER_HOUR`` per rolling hour, and the next
  alert sent says how many were held back.  ``[alerts] fills`` = "each" |
  "digest" | "off" says whether fills alert one by one.  The check and the
  claim happen in one ``BEGIN IMMEDIATE``, so two processes cannot both send
  the same one.
* **No secrets.** Every text is redacted against every secret value before it
  is stored or sent; ``RedactingFilter`` does the same for log records
  (apprise's own log lines included, once it sits on the handler).

The scheduler's API, once per tick (outside any transaction)::

    n = notify.Notifier(cfg, conn)
    n.drain_events()          # kill switch flips, surprises, unknowns, reconcile results
    n.summarise_blocks()      # guard blocks, one summary per min_interval
    n.execution(result)       # after each executor.execute(...)

and on its own (tinybot.loop): ``exchange_outage`` / ``exchange_back``
once per outage (keyed by its start), ``bot_stopped`` on every stop of the
loop, ``bot_died`` when a start finds the last run vanished, and
``start_refused`` when the live start gate says no.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from datetime import timedelta

from ..base import clock
from ..store import db

log = logging.getLogger("tinybot.notify")

MAX_PER_HOUR = 20
REDACTED = "«redacted»"
SEVERITIES = ("info", "warning", "error")
# apprise's notify types, by our severity
_APPRISE_TYPE = {"info": "info", "warning": "warning", "error": "failure"}
# kinds never held back by the hourly cap (rare, and each one needs the owner); any "error" alert is urgent too
URGENT_KINDS = frozenset(
    {
        "kill_switch",
        "test",
        "bot_stopped",
        "bot_died",
        "start_refused",
        "doctor_ignored",
        "exchange_outage",
        "exchange_back",
        "execution_unknown",
        "execution_overdue",
        "surprise_order",
        "fill_conflict",
        "restore_in_doubt",
        "key_problem",
    }
)
HELD_BACK = "rate limit"  # alert_log.detail of a routine alert the hourly cap held back starts with this
DROPPED_CURSOR = "alerts.dropped_reported"  # the last held-back alert_log id already counted in a sent alert
# Bitvavo's errorCodes for a key that is wrong, expired or lacks a permission (tinybot.exchange.bitvavo.errors)
_KEY_PROBLEM = re.compile(r"errorCode 3(0\d|1[0-3])\b|AuthenticationError|PermissionDenied")


def urgent(kind: str, severity: str) -> bool:
    """Never held back by the hourly cap: the kinds in URGENT_KINDS and every error."""
    return kind in URGENT_KINDS or severity == "error"


# event kinds (tinybot.trade.ledger.event) that become alerts, with the alert kind
EVENT_ALERTS = {
    "kill_switch": "kill_switch",
    "surprise_order": "surprise_order",
    "execution_unknown": "execution_unknown",
    "reconciled": "order_update",
}


# --- redaction --------------------------------------------------------------

# one list of what to hide, shared with doctor's leak scan: tinybot.base.secrets
from ..base.secrets import secret_values, split_urls  # noqa: E402,F401  (notify.secret_values stays importable)


def redact(text: str, values: list[str]) -> str:
    for v in values:
        if v and v in text:
            text = text.replace(v, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Put this on every log handler: it rewrites each record's message with secrets redacted.

    The scheduler does ``handler.addFilter(notify.RedactingFilter(cfg))``;
    because it sits on the handler, records propagated from other loggers
    (apprise, urllib3, ccxt) are redacted too.
    """

    def __init__(self, cfg=None, values: list[str] | None = None):
        super().__init__()
        self.values = values if values is not None else (secret_values(cfg) if cfg is not None else [])

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.values:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact(message, self.values)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.values)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def install_redaction(cfg, logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one RedactingFilter to every handler of ``logger`` (default: the root logger)."""
    f = RedactingFilter(cfg)
    for h in (logger or logging.getLogger()).handlers:
        h.addFilter(f)
    return f


# --- delivery ---------------------------------------------------------------


def alert_urls(cfg) -> list[str]:
    """bot.toml's [alerts] urls plus TINYBOT_ALERT_URLS (where token-bearing URLs belong)."""
    urls = list(cfg.alerts.urls)
    try:
        urls += split_urls(cfg.secrets().get("TINYBOT_ALERT_URLS"))
    except Exception as e:
        log.warning("cannot read TINYBOT_ALERT_URLS: %s", e)
    return list(dict.fromkeys(urls))


def deliver(
    urls: list[str], title: str, body: str, severity: str = "warning", attach: list[str] | None = None
) -> tuple[bool, str]:
    """Send one message to every URL; (True, '') if at least one accepted it.  Never raises.

    ``attach``: file paths sent with it (a chart); services that take attachments (Telegram, ntfy,
    e-mail) show them, the others get the text alone.
    """
    if not urls:
        return False, "no alert URLs configured"
    try:
        import apprise  # lazy: ~0.1 s and several MB that kill/status must not pay for

        ap = apprise.Apprise()
        bad = [i for i, u in enumerate(urls, 1) if not ap.add(u)]
        if len(ap) == 0:
            return False, f"no usable alert URL (URL {', '.join(map(str, bad))} not understood by apprise)"
        ok = ap.notify(
            body=body,
            title=title,
            notify_type=_APPRISE_TYPE.get(severity, "info"),
            **({"attach": list(attach)} if attach else {}),
        )
        if ok:
            return True, ""
        return False, "apprise could not deliver to any URL (see the log for its reason)"
    except Exception as e:  # apprise or a plugin blew up: an alert must never stop trading
        return False, f"{type(e).__name__}: {e}"


@dataclass(frozen=True)
class Sent:
    status: str  # 'sent' | 'failed' | 'suppressed' | 'unconfigured'
    detail: str = ""

    @property
    def delivered(self) -> bool:
        return self.status == "sent"


class Notifier:
    """Alerts with dedupe, a rate limit, redaction, and a record in ``alert_log``.

    ``conn`` may be None (no dedupe, no record): doctor's test alert uses that.
    Call it outside any transaction; inside one it still sends but cannot
    record or dedupe (it says so in the log).
    """

    def __init__(self, cfg, conn: sqlite3.Connection | None = None, *, urls: list[str] | None = None):
        self.cfg = cfg
        self.conn = conn
        self.urls = alert_urls(cfg) if urls is None else list(urls)
        self.secrets = secret_values(cfg)
        self.min_interval: timedelta = cfg.alerts.min_interval

    # --- the one entry point -------------------------------------------------
    def alert(
        self,
        kind: str,
        text: str,
        *,
        key: str | None = None,
        severity: str = "warning",
        force: bool = False,
        attach: list[str] | None = None,
    ) -> Sent:
        """Send ``text`` unless the same key went out within min_interval or the hour's cap is used up.

        ``key`` groups alerts that should not repeat (default: kind + text).
        ``force`` skips dedupe and the cap (doctor's test alert).  Never raises.
        """
        try:
            return self._alert(kind, text, key, severity if severity in SEVERITIES else "warning", force, attach)
        except Exception as e:
            log.error("alert %s not sent: %s", kind, redact(f"{type(e).__name__}: {e}", self.secrets))
            return Sent("failed", f"{type(e).__name__}")

    def _alert(
        self, kind: str, text: str, key: str | None, severity: str, force: bool, attach: list[str] | None = None
    ) -> Sent:
        text = redact(str(text), self.secrets)
        key = redact(key, self.secrets) if key else f"{kind}:{text}"
        row_id = None
        if self.conn is not None and not self.conn.in_transaction:
            verdict, row_id = self._claim(kind, key, severity, text, force)
            if verdict is not None:
                log.info("alert %s suppressed (%s): %s", kind, verdict, text)
                return Sent("suppressed", verdict)
            text = self._claimed_text
        elif self.conn is not None:
            log.warning("alert %s sent without dedupe: called inside an open transaction", kind)
        if not self.urls:
            log.warning("alert (not delivered: no [alerts] urls / TINYBOT_ALERT_URLS): %s: %s", kind, text)
            result = Sent("unconfigured", "no alert URLs configured")
        else:
            ok, why = deliver(self.urls, f"tinybot: {kind.replace('_', ' ')}", text, severity, attach)
            why = redact(why, self.secrets)
            if ok:
                log.info("alert sent: %s: %s", kind, text)
                result = Sent("sent")
            else:
                log.warning("alert NOT delivered (%s): %s: %s", why, kind, text)
                result = Sent("failed", why)
        if row_id is not None:
            try:
                with db.transaction(self.conn):
                    self.conn.execute(
                        "UPDATE alert_log SET status = ?, detail = ? WHERE id = ?",
                        (result.status, result.detail, row_id),
                    )
            except Exception as e:
                log.warning("could not record alert result: %s", e)
        return result

    def _claim(self, kind: str, key: str, severity: str, text: str, force: bool) -> tuple[str | None, int | None]:
        """Dedupe + cap check and the claim row, in one BEGIN IMMEDIATE; ``text`` gets the held-back count."""
        now = clock.now()
        with db.transaction(self.conn):
            if not force:
                verdict = self._verdict(kind, key, severity, now)
                if verdict is not None:
                    self.conn.execute(
                        "INSERT INTO alert_log (at, kind, dedupe_key, severity, text, status, detail)"
                        " VALUES (?, ?, ?, ?, ?, 'suppressed', ?)",
                        (clock.to_iso(now), kind, key, severity, text, verdict),
                    )
                    return verdict, None
            self._claimed_text = text + self._held_back_note()
            cur = self.conn.execute(
                "INSERT INTO alert_log (at, kind, dedupe_key, severity, text, status) VALUES (?, ?, ?, ?, ?, 'sending')",
                (clock.to_iso(now), kind, key, severity, self._claimed_text),
            )
            return None, cur.lastrowid

    def _verdict(self, kind: str, key: str, severity: str, now) -> str | None:
        """Why this alert is not sent now (a duplicate, or a routine one over the hour's cap); None to send it."""
        recent = self.conn.execute(
            "SELECT at FROM alert_log WHERE dedupe_key = ? AND status IN ('sending', 'sent', 'unconfigured')"
            " AND at > ? ORDER BY at DESC LIMIT 1",
            (key, clock.to_iso(now - self.min_interval)),
        ).fetchone()
        if recent is not None:
            return f"duplicate of an alert sent at {recent['at']}"
        if urgent(kind, severity):
            return None
        kinds = ",".join("?" * len(URGENT_KINDS))
        n = self.conn.execute(
            "SELECT COUNT(*) FROM alert_log WHERE status IN ('sending', 'sent', 'failed') AND at > ?"
            f" AND kind NOT IN ({kinds}) AND severity != 'error'",
            (clock.to_iso(now - timedelta(hours=1)), *URGENT_KINDS),
        ).fetchone()[0]
        if n >= MAX_PER_HOUR:
            return f"{HELD_BACK}: {MAX_PER_HOUR} routine alerts in the last hour"
        return None

    def _held_back_note(self) -> str:
        """'(3 routine alerts held back by the hourly limit since 14:02)' once, in the next alert sent; else ''."""
        after = int(get_state(self.conn, DROPPED_CURSOR) or 0)
        row = self.conn.execute(
            "SELECT COUNT(*) AS n, MIN(at) AS first, MAX(id) AS last FROM alert_log"
            " WHERE status = 'suppressed' AND detail LIKE ? AND id > ?",
            (HELD_BACK + "%", after),
        ).fetchone()
        if not row["n"]:
            return ""
        set_state(self.conn, DROPPED_CURSOR, str(row["last"]))
        return (
            f"\n({row['n']} routine alert(s) held back by the hourly limit since"
            f" {clock.human_time(row['first'], self.cfg.tz)}: `tinybot status` and the log have them)"
        )

    # --- what the scheduler calls each tick -------------------------------------
    def drain_events(self) -> int:
        """Alert on events written since the last drain (kill switch, surprises, unknowns, reconcile).

        The first drain ever starts at the newest event (history is not
        replayed).  Returns how many alerts were attempted.
        """
        if self.conn is None:
            return 0
        try:
            cursor = get_state(self.conn, "alerts.events_cursor")
            newest = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            if cursor is None:
                set_state(self.conn, "alerts.events_cursor", str(newest))
                return 0
            rows = self.conn.execute(
                "SELECT * FROM events WHERE id > ? AND id <= ? ORDER BY id", (int(cursor), newest)
            ).fetchall()
            set_state(self.conn, "alerts.events_cursor", str(newest))
        except Exception as e:
            log.error("cannot read events for alerts: %s", e)
            return 0
        n = 0
        for ev in rows:
            kind = EVENT_ALERTS.get(ev["kind"])
            if kind is None and ev["severity"] == "info":
                continue
            self.alert(kind or ev["kind"], ev["detail"], key=f"event:{ev['id']}", severity=ev["severity"])
            n += 1
        return n

    def summarise_blocks(self) -> Sent | None:
        """One alert summarising guard blocks since the last summary, at most once per min_interval."""
        if self.conn is None:
            return None
        try:
            cursor = get_state(self.conn, "alerts.blocks_cursor")
            if cursor is None:
                newest = self.conn.execute("SELECT COALESCE(MAX(id), 0) FROM guard_decisions").fetchone()[0]
                set_state(self.conn, "alerts.blocks_cursor", str(newest))
                return None
            last = get_state(self.conn, "alerts.blocks_sent_at")
            if last is not None and clock.now() - clock.from_iso(last) < self.min_interval:
                return None
            rows = self.conn.execute(
                "SELECT id, reason_code, proposal_id FROM guard_decisions WHERE verdict = 'block' AND id > ?"
                " ORDER BY id",
                (int(cursor),),
            ).fetchall()
            if not rows:
                return None
            counts: dict[str, int] = {}
            for r in rows:
                counts[r["reason_code"]] = counts.get(r["reason_code"], 0) + 1
            proposals = len({r["proposal_id"] for r in rows})
            text = (
                f"{proposals} proposal(s) blocked by guards: "
                + ", ".join(f"{code} ×{n}" for code, n in sorted(counts.items(), key=lambda kv: -kv[1]))
                + " (`tinybot why ID` explains one)"
            )
            set_state(self.conn, "alerts.blocks_cursor", str(rows[-1]["id"]))
            set_state(self.conn, "alerts.blocks_sent_at", clock.now_iso())
        except Exception as e:
            log.error("cannot summarise guard blocks: %s", e)
            return None
        return self.alert("guard_blocks", text, key="guard_blocks", severity="info")

    def execution(self, result) -> Sent | None:
        """Alert for one ``executor.Result``: an unknown outcome and a key problem always; a fill or a sent
        order as ``[alerts] fills`` says (each / digest / off); a refusal (blocks are summarised)."""
        try:
            if not getattr(result, "sent", False):
                return None
            state = result.state
            if state in ("filled", "submitted") and self.cfg.alerts.fills != "each":
                return None  # "digest": tinybot.owner.digest lists the day's fills; "off": none
            kind, text, sev = self._describe(result)
        except Exception as e:
            log.error("cannot describe execution for an alert: %s", e)
            return None
        return self.alert(kind, text, key=f"execution:{result.execution_id}:{state}", severity=sev)

    def _describe(self, result) -> tuple[str, str, str]:
        """(alert kind, text, severity) of one execution's outcome."""
        state = result.state
        what = f"proposal {result.proposal_id} (execution {result.execution_id})"
        if state in ("filled", "submitted"):
            done = "filled" if state == "filled" else "sent"
            return (
                "order",
                f"order {done}: {self._trade(result.execution_id)}{what}, order {result.exchange_order_id}",
                "info",
            )
        if state == "unknown":
            return (
                "execution_unknown",
                f"order outcome unknown: {what}: {result.reason}; reconcile will resolve it",
                "warning",
            )
        if state == "failed":
            kind = "key_problem" if _KEY_PROBLEM.search(result.reason or "") else "order"
            return kind, f"order refused: {what}: {result.reason}", "warning"
        return "order", f"order {state}: {what}", "info"

    def _trade(self, execution_id) -> str:
        return "" if self.conn is None else trade_text(self.conn, execution_id)


def trade_text(conn: sqlite3.Connection, execution_id) -> str:
    """'buy BTC-EUR 0.0000997 @ 60030.09 = €5.99, fee €0.02; ' for an alert or the phone (empty when unknown)."""
    if execution_id is None:
        return ""
    from decimal import Decimal

    from ..base.money import eur_text, plain

    e = conn.execute("SELECT * FROM trade_executions WHERE id = ?", (execution_id,)).fetchone()
    if e is None:
        return ""
    amount, quote, fee = Decimal(e["filled_amount"]), Decimal(e["filled_quote"]), Decimal(e["fee_paid"])
    if amount <= 0:
        asked = f"€{e['amount_quote']}" if e["amount_quote"] else e["amount"]
        return f"{e['side']} {e['market']} {asked}; "
    fee_text = eur_text(fee) if (e["fee_currency"] or "EUR") == "EUR" else f"{plain(fee)} {e['fee_currency']}"
    return (
        f"{e['side']} {e['market']} {plain(amount)} @ {plain((quote / amount).quantize(Decimal('0.01')))}"
        f" = {eur_text(quote)}, fee {fee_text}; "
    )


# --- the key/value store for cursors and counters: tinybot.db (re-exported for existing callers) ---------

from ..store.db import get_state, set_state  # noqa: E402,F401
