"""The owner's phone: proposals to approve or reject, /status, /kill ..., over Telegram's Bot API.

Long polling (``getUpdates``), so it works behind home NAT with no open
port.  Plain HTTP(S) through the standard library's ``http.client`` on one
kept-alive connection: no third-party client, nothing heavy imported (see
docs/TELEGRAM.md for why).

What holds, and how:

* **Only the owner.**  Updates from a chat not in ``[telegram] chat_ids``
  are ignored without a reply (logged once per chat).
* **Nothing old, nothing twice.**  The next update id is kept in the
  database (``ops_state``: ``telegram.offset``) and written *before* an
  update is acted on, so a crash can lose an action (the owner gets no
  answer and asks again) but never repeat one; an update at or below it is
  skipped.  Everything Telegram still holds when the loop starts was sent
  while nobody was listening: it is answered "not acted on, send it again",
  never executed.
* **Same code as the CLI.**  A tap calls ``proposals.approve`` /
  ``proposals.reject``; the executor's guards still decide at send time.  A
  button only acts on a *pending* proposal; one already decided or expired
  is answered so.
* **A stolen phone can at worst stop trading.**  ``/kill`` is one write
  (``killswitch.set_enabled``), no exchange involved; ``/resume`` is off
  unless ``allow_resume = true``, and then needs a second tap on a one-use
  button within two minutes.
* **An audit trail.**  Every command and tap from an allowed chat is an
  ``events`` row of kind ``telegram`` naming the chat.
* **The token never shows.**  It is read from ``TINYBOT_TELEGRAM_TOKEN``
  (environment or the 0600 secrets file); it sits in every request path, so
  every error text is built without the URL and scrubbed of it anyway.

For the scheduler (``tinybot run``)::

    tg = telegram.Background(cfg).start()   # own thread, own DB connection; None-safe no-op if off
    ...
    tg.stop()

or, in its own loop, ``telegram.Poller(cfg, conn).poll_once(timeout=0)``.
``tinybot telegram`` runs ``serve(cfg)`` on its own.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import logging
import os
import re
import secrets as _random
import socket
import sqlite3
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from . import clock, db
from .config import Config, ConfigError

log = logging.getLogger("tinybot.telegram")

TOKEN_NAME = "TINYBOT_TELEGRAM_TOKEN"
OFFSET_KEY = "telegram.offset"  # the next update_id to act on
ANNOUNCED_KEY = "telegram.announced"  # the highest proposal id sent to the owner
RESUME_KEY = "telegram.resume"  # the one open /resume confirmation (JSON)
RESUME_TTL = timedelta(minutes=2)
STALE_MESSAGE = timedelta(minutes=1)  # a message dated this long before the start is not acted on
MAX_BACKOFF_S = 60.0
REDACTED = "«redacted»"
TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
HELP = (
    "Proposals waiting for your approval arrive here with Approve/Reject buttons.\nCommands:\n"
    "/status – trading on/off, positions, caps used today, scheduler\n"
    "/pnl – net profit or loss, fees, LLM cost, against holding\n"
    "/proposals – proposals waiting for you\n"
    "/why N – every guard decision for proposal N\n"
    "/kill [reason] – stop all trading now\n"
    "/resume – allow trading again (only if telegram.allow_resume = true)"
)


class TelegramError(Exception):
    """A Bot API call that did not work; the text never contains the token."""

    def __init__(self, method: str, detail: str, *, code: int | None = None, retry_after: float | None = None):
        super().__init__(f"Telegram {method}: {detail}")
        self.method, self.detail, self.code, self.retry_after = method, detail, code, retry_after

    @property
    def fatal(self) -> bool:
        """401/404: the token (or api_url) is wrong; retrying will not help."""
        return self.code in (401, 404)


class AlreadyServing(ConfigError):
    """Another Telegram loop holds this database's poller lock (exit code 75 for `tinybot telegram`)."""


# --- configuration ---------------------------------------------------------------


def enabled(cfg: Config) -> bool:
    """Telegram is on when ``[telegram] chat_ids`` lists at least one chat."""
    return bool(cfg.telegram.chat_ids)


def read_token(cfg: Config) -> str:
    """The bot token from the environment or the secrets file; ConfigError naming the fix (never the value)."""
    token = (cfg.secrets().get(TOKEN_NAME) or "").strip()
    if not token:
        raise ConfigError(
            f"{TOKEN_NAME} is not set: put the token BotFather gave you in {cfg.secrets_path}"
            f" as {TOKEN_NAME}=... (chmod 600), or export it"
        )
    if not TOKEN_RE.match(token):
        raise ConfigError(
            f"{TOKEN_NAME} does not look like a bot token (digits, a colon, then letters,"
            f" digits, - or _): check for spaces or quotes in {cfg.secrets_path}"
        )
    return token


# --- the Bot API over http.client ----------------------------------------------------


class BotApi:
    """Bot API calls over one kept-alive HTTP(S) connection.

    ``abort()`` may be called from another thread or a signal handler: it
    shuts the socket so a long poll in progress returns at once.
    """

    def __init__(self, api_url: str, token: str, *, timeout_s: float = 15.0):
        u = urllib.parse.urlsplit(api_url.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError(f"telegram.api_url: {api_url!r} is not an http(s) URL")
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.base_path = u.path
        self.token = token
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.aborted = False

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                import ssl  # only for https: loading OpenSSL is most of this module's memory

                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=timeout, context=ssl.create_default_context()
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        self._conn.timeout = timeout
        return self._conn

    def call(self, method: str, params: dict | None = None, *, timeout: float | None = None) -> Any:
        """POST one method with a JSON body; the ``result`` on success, else TelegramError."""
        body = json.dumps(params or {}).encode()
        path = f"{self.base_path}/bot{self.token}/{method}"
        wait = timeout if timeout is not None else self.timeout_s
        for attempt in (1, 2):
            with self._lock:
                conn = self._connect(wait)
                reused = conn.sock is not None
            try:
                conn.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json", "User-Agent": "tinybot"}
                )
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
                break
            except (OSError, http.client.HTTPException) as e:
                self.close()
                # a kept-alive connection the other side dropped while idle: once more on a fresh one
                dropped = isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if attempt == 1 and reused and dropped and not self.aborted:
                    continue
                raise TelegramError(
                    method,
                    self.scrub(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
                    + f" (is {self.scheme}://{self.host} reachable?)",
                ) from None
        try:
            data = json.loads(raw)
        except ValueError:
            start = self.scrub(raw[:80].decode(errors="replace"))
            raise TelegramError(method, f"HTTP {status}, not a Bot API answer: {start!r}", code=status) from None
        if not isinstance(data, dict):
            raise TelegramError(method, f"HTTP {status}, not a Bot API answer", code=status)
        if status != 200 or not data.get("ok"):
            code = data.get("error_code") or status
            retry = (data.get("parameters") or {}).get("retry_after")
            detail = self.scrub(str(data.get("description") or f"HTTP {status}"))
            hint = {
                401: " — the token was refused: check TINYBOT_TELEGRAM_TOKEN (BotFather /token)",
                404: " — no such bot or method: check TINYBOT_TELEGRAM_TOKEN and telegram.api_url",
                409: " — another program polls this bot (a second tinybot, or a webhook is set)",
            }.get(code, "")
            raise TelegramError(
                method,
                f"{code} {detail}{hint}",
                code=code,
                retry_after=float(retry) if isinstance(retry, (int, float)) else None,
            )
        return data.get("result")

    def scrub(self, text: str) -> str:
        return text.replace(self.token, REDACTED) if self.token else text

    def abort(self) -> None:
        """Unblock a call in progress (from another thread or a signal handler); no retry after it."""
        self.aborted = True
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


# --- the poller --------------------------------------------------------------------


@dataclass
class PollResult:
    updates: int = 0  # updates received
    acted: int = 0  # commands and taps from allowed chats that were acted on
    ignored: int = 0  # from chats not allowed, already handled, or sent before the start
    announced: list[int] = field(default_factory=list)  # proposal ids sent to the owner
    error: TelegramError | None = None


class Poller:
    """One Bot API client and the handling of what arrives.  ``poll_once()`` is one cycle.

    ``conn`` must belong to the calling thread.  ``prices(market)`` may give
    a Ticker for the guards' pre-check (default: [paper] prices when fixed;
    else the guards that need a price say so and decide at send time).
    """

    def __init__(
        self,
        cfg: Config,
        conn: sqlite3.Connection,
        *,
        token: str | None = None,
        prices: Callable[[str], Any] | None = None,
    ):
        self.cfg = cfg
        self.conn = conn
        self.chats = frozenset(cfg.telegram.chat_ids)
        self.poll_timeout = cfg.telegram.poll_timeout.total_seconds()
        self.api = BotApi(cfg.telegram.api_url, token or read_token(cfg), timeout_s=15.0)
        self.prices = prices if prices is not None else _default_prices(cfg)
        self.started_at: datetime | None = None
        self.username: str | None = None
        self._ignored_chats: set[int] = set()

    # -- the cycle --
    def start(self) -> None:
        """Check the token (getMe) and set aside what was sent while nobody listened.  Raises TelegramError."""
        me = self.api.call("getMe")
        self.username = (me or {}).get("username")
        self.started_at = clock.now()
        while True:  # everything Telegram holds now predates this start
            batch = self._get_updates(0)
            for u in batch:
                self._not_acted_on(u)
            if len(batch) < 100:
                break
        log.info("telegram: polling as @%s for %d chat(s)", self.username, len(self.chats))

    def poll_once(self, timeout: float | None = None) -> PollResult:
        """Announce new proposals, long-poll once (``timeout`` s, default telegram.poll_timeout), act.

        Never raises for Telegram or network trouble: the result carries the
        error and the caller backs off.
        """
        result = PollResult()
        try:
            if self.started_at is None:
                self.start()
            result.announced = self.announce()
            updates = self._get_updates(self.poll_timeout if timeout is None else timeout)
        except TelegramError as e:
            result.error = e
            return result
        result.updates = len(updates)
        for u in updates:
            if self._handle(u):
                result.acted += 1
            else:
                result.ignored += 1
        return result

    def _get_updates(self, timeout: float) -> list[dict]:
        params: dict[str, Any] = {"timeout": int(timeout), "allowed_updates": ["message", "callback_query"]}
        offset = self._offset()
        if offset:
            params["offset"] = offset
        got = self.api.call("getUpdates", params, timeout=timeout + 15)
        return sorted(
            (u for u in got or [] if isinstance(u, dict) and isinstance(u.get("update_id"), int)),
            key=lambda u: u["update_id"],
        )

    def _offset(self) -> int:
        from .db import get_state

        return int(get_state(self.conn, OFFSET_KEY) or 0)

    def _claim(self, update: dict) -> bool:
        """Move the offset past this update before acting: an update is acted on at most once."""
        from .db import get_state, set_state

        uid = update["update_id"]
        with db.transaction(self.conn):
            if uid < int(get_state(self.conn, OFFSET_KEY) or 0):
                return False
            set_state(self.conn, OFFSET_KEY, str(uid + 1))
        return True

    def _not_acted_on(self, update: dict) -> None:
        """An update from before the start: answered (allowed chats only), never executed."""
        if not self._claim(update):
            return
        chat, msg, query = _where(update)
        if chat is None or not self._allowed(chat):
            return
        note = "Not acted on: this was sent while tinybot was not listening. Send it again if you still mean it."
        if query is not None:
            self._answer(query["id"], "Not acted on: tapped while tinybot was not listening. Tap again.")
        else:
            self.send(chat, f"{note}\n({_short(msg.get('text', ''))})")
        self.audit(chat, f"not acted on (sent before the start): {_short(_what(update))}")

    def _handle(self, update: dict) -> bool:
        """Act on one update; True if it was acted on.  A failure in one update never stops the loop."""
        if not self._claim(update):
            log.info("telegram: update %s already handled; skipped", update["update_id"])
            return False
        chat, msg, query = _where(update)
        if chat is None or not self._allowed(chat):
            return False
        try:
            if query is not None:
                self._on_tap(chat, query)
                return True
            date = msg.get("date")
            if (
                isinstance(date, int)
                and self.started_at
                and clock.from_ms(date * 1000) < self.started_at - STALE_MESSAGE
            ):
                self.send(
                    chat,
                    "Not acted on: this message is older than tinybot's start. Send it again if you"
                    f" still mean it.\n({_short(msg.get('text', ''))})",
                )
                self.audit(chat, f"not acted on (older than the start): {_short(msg.get('text', ''))}")
                return False
            self._on_message(chat, msg)
            return True
        except Exception as e:  # a bug or a locked database: say so, log it, keep serving
            log.exception("telegram: handling update %s failed", update["update_id"])
            self.send(
                chat,
                f"Error: {type(e).__name__}: {self.api.scrub(str(e))[:300]}. Nothing else was done;"
                " try again, or use the tinybot command on the Pi.",
            )
            return False

    def _allowed(self, chat: int) -> bool:
        if chat in self.chats:
            return True
        if chat not in self._ignored_chats:
            self._ignored_chats.add(chat)
            log.warning(
                "telegram: ignoring chat %s: not in telegram.chat_ids in %s (logged once per chat)", chat, self.cfg.path
            )
        return False

    # -- commands --
    def _on_message(self, chat: int, msg: dict) -> None:
        text = (msg.get("text") or "").strip()
        word, _, rest = text.partition(" ")
        cmd, _, addressee = word.partition("@")
        if addressee and self.username and addressee.lower() != self.username.lower():
            return  # a command for another bot in a group
        rest = rest.strip()
        self.audit(chat, f"command {_short(text)}")
        handler = {
            "/status": self.cmd_status,
            "/pnl": self.cmd_pnl,
            "/proposals": self.cmd_proposals,
            "/why": self.cmd_why,
            "/kill": self.cmd_kill,
            "/resume": self.cmd_resume,
        }.get(cmd.lower())
        if handler is None:
            self.send(chat, HELP)
            return
        handler(chat, rest)

    def cmd_status(self, chat: int, rest: str) -> None:
        from .status import status

        d = status(self.conn, self.cfg)
        ks = d["kill_switch"]
        lines = [
            f"Trading {'ENABLED' if ks['trading_enabled'] else 'DISABLED (' + ks['reason'] + ')'}"
            f" since {_hm(ks['changed_at'])} · mode {d['mode']}"
        ]
        lines.append(
            "Positions: "
            + (
                ", ".join(f"{p['market']} {p['base']} (cost €{Decimal(p['cost_eur']):.2f})" for p in d["positions"])
                or "none"
            )
        )
        c = d["caps"]
        lines.append(
            f"Today €{c['daily']['used_eur']} of €{c['daily']['cap_eur']} spent;"
            f" exposure €{c['exposure']['used_eur']} of €{c['exposure']['cap_eur']}"
        )
        lines.append(
            f"Pending proposals: {d['pending_proposals']} · unresolved executions: {len(d['unresolved_executions'])}"
        )
        s, t = d["scheduler"], d["scheduler"]["last_tick"]
        lines.append(
            f"Scheduler: {s['state']}"
            + (" (STALE)" if s["stale"] else "")
            + (f", last tick {_hm(t['slot'])} {t['status']}" if t else ", never ticked")
        )
        self.send(chat, "\n".join(lines))

    def cmd_pnl(self, chat: int, rest: str) -> None:
        from . import pnl
        from .money import eur

        d = pnl.report(self.conn, self.cfg)
        when = f"prices of {_hm(d['prices_at'])}" if d["prices_at"] else "configured paper prices"
        lines = [
            f"Net {eur(d['net_eur'])} ({when})",
            f"realised {eur(d['realised_eur'])}, unrealised {eur(d['unrealised_eur'])}",
            f"fees {eur(d['fees_eur'])} (included), LLM {eur(d['llm_cost_eur'])}",
        ]
        lines += [
            f"{b['title']}: {eur(b['pnl_eur'])}" for b in d["benchmarks"].values() if b and b["pnl_eur"] is not None
        ]
        lines += [f"book {a['advisor']}: net {eur(a['net_eur'])}" for a in d["advisors"]]
        lines += [
            f"{p['market']}: {p['base']} worth {eur(p['value_eur'])}"
            + ("" if p["sellable"] is not False else " — STRANDED under the €5 minimum")
            for p in d["positions"]
        ] or ["No open positions."]
        self.send(chat, "\n".join(lines))

    def cmd_proposals(self, chat: int, rest: str) -> None:
        now = clock.now_iso()
        rows = self.conn.execute(
            "SELECT * FROM proposals WHERE status = 'pending' AND expires_at > ? ORDER BY id DESC LIMIT 10", (now,)
        ).fetchall()
        if not rows:
            self.send(chat, "No proposal is waiting for approval.")
            return
        for r in reversed(rows):
            self.send(chat, self.describe(r), markup=_buttons(r["id"]))

    def cmd_why(self, chat: int, rest: str) -> None:
        from .proposals import ProposalError
        from .status import why

        if not rest.lstrip("#").isdigit():
            self.send(chat, "Usage: /why N (a proposal number, as in /proposals)")
            return
        try:
            d = why(self.conn, int(rest.lstrip("#")))
        except ProposalError as e:
            self.send(chat, str(e))
            return
        p, e = d["proposal"], d["execution"]
        lines = [
            f"#{p['id']} {p['side']} {p['market']} {_size(p)} from {p['source']}: {p['status']}"
            + (f" by {p['decided_by']}" if p["decided_by"] else "")
        ]
        if p["reason"]:
            lines.append(f"Why: {_short(p['reason'], 300)}")
        lines.append(
            f"Execution {e['id']}: {e['state']}" + (f" — {e['reason']}" if e["reason"] else "")
            if e
            else "Not executed."
        )
        for dec in d["decisions"][-20:]:
            mark = "✓" if dec["verdict"] == "pass" else "✗"
            lines.append(
                f"{mark} {dec['stage']} {dec['guard']}: {dec['reason_code']}"
                + (f" — {dec['detail']}" if dec["verdict"] != "pass" and dec["detail"] else "")
            )
        self.send(chat, "\n".join(lines))

    def cmd_kill(self, chat: int, rest: str) -> None:
        from . import killswitch

        reason = _short(rest, 200) or "killed from Telegram"
        if killswitch.set_enabled(self.conn, False, reason, by=f"telegram:{chat}"):
            self.audit(chat, f"kill switch ON: {reason}", severity="warning")
            self.send(
                chat,
                f"Trading DISABLED: {reason}\nNothing not yet sent will be sent."
                + (" /resume (with confirmation) or" if self.cfg.telegram.allow_resume else "")
                + " `tinybot resume` on the Pi turns it back on.",
            )
        else:
            ks = killswitch.state(self.conn)
            self.send(
                chat,
                f"Trading was already DISABLED since {_hm(ks['changed_at'])} ({ks['changed_by']}: {ks['reason']}).",
            )

    def cmd_resume(self, chat: int, rest: str) -> None:
        from . import killswitch
        from .db import set_state

        if not self.cfg.telegram.allow_resume:
            self.audit(chat, "/resume refused: telegram.allow_resume is false")
            self.send(
                chat,
                "/resume is off (telegram.allow_resume = false in bot.toml): from the phone you can"
                " only stop trading. On the Pi: `tinybot resume`.",
            )
            return
        if killswitch.state(self.conn)["trading_enabled"]:
            self.send(chat, "Trading is already enabled.")
            return
        nonce = _random.token_hex(8)
        set_state(
            self.conn,
            RESUME_KEY,
            json.dumps({"nonce": nonce, "chat": chat, "until": clock.to_iso(clock.now() + RESUME_TTL)}),
        )
        ks = killswitch.state(self.conn)
        self.send(
            chat,
            f"Resume trading? It was stopped {_hm(ks['changed_at'])} by {ks['changed_by']}:"
            f" {ks['reason']}.\nThis button works once, for {int(RESUME_TTL.total_seconds() // 60)}"
            " minutes.",
            markup={
                "inline_keyboard": [
                    [
                        {"text": "Yes, resume trading", "callback_data": f"resume:{nonce}"},
                        {"text": "Cancel", "callback_data": f"cancel:{nonce}"},
                    ]
                ]
            },
        )

    # -- buttons --
    def _on_tap(self, chat: int, query: dict) -> None:
        data = str(query.get("data") or "")
        action, _, arg = data.partition(":")
        if action in ("approve", "reject") and arg.isdigit():
            self._decide(chat, query, action, int(arg))
        elif action in ("resume", "cancel"):
            self._confirm_resume(chat, query, action, arg)
        else:
            self.audit(chat, f"unknown button {_short(data, 64)!r}")
            self._answer(query["id"], "Unknown button; nothing done.")

    def _decide(self, chat: int, query: dict, action: str, pid: int) -> None:
        """Approve or reject through the CLI's code; only a proposal that is pending now."""
        from . import proposals

        by = f"telegram:{chat}"
        try:
            row = proposals.get(self.conn, pid)
        except proposals.ProposalError as e:
            self.audit(chat, f"tap {action} #{pid}: {e}")
            self._answer(query["id"], str(e))
            return
        if row["status"] != "pending":
            outcome = f"#{pid} is already {row['status']}" + (f" (by {row['decided_by']})" if row["decided_by"] else "")
        else:
            try:
                (proposals.approve if action == "approve" else proposals.reject)(self.conn, pid, by=by)
                row = proposals.get(self.conn, pid)
                done = "approved" if action == "approve" else "rejected"
                if row["status"] == done and row["decided_by"] == by:
                    outcome = f"{done.capitalize()} #{pid}"
                else:
                    outcome = f"#{pid} is already {row['status']} (by {row['decided_by']})"
            except proposals.ProposalError as e:
                outcome = str(e)
        self.audit(chat, f"tap {action} #{pid}: {outcome}", severity="info")
        self._answer(query["id"], outcome)
        final = outcome
        if outcome.startswith("Approved"):
            final += f" at {_hm(clock.now_iso())}. " + self._execution_hint(pid)
        self._edit(query, final)

    def _execution_hint(self, pid: int) -> str:
        from .liveness import liveness

        if liveness(self.conn, self.cfg)["alive"]:
            return "tinybot run executes it at its next tick; the guards decide again at send time."
        return f"No `tinybot run` is running: on the Pi, `tinybot execute {pid}`."

    def _confirm_resume(self, chat: int, query: dict, action: str, nonce: str) -> None:
        from . import killswitch
        from .db import get_state, set_state

        with db.transaction(self.conn):  # the confirmation is used up in the same transaction that checks it
            raw = get_state(self.conn, RESUME_KEY)
            open_ = json.loads(raw) if raw else {}
            valid = (
                bool(nonce)
                and open_.get("nonce") == nonce
                and open_.get("chat") == chat
                and clock.now() < clock.from_iso(open_["until"])
            )
            if valid or open_.get("nonce") == nonce:
                set_state(self.conn, RESUME_KEY, "{}")
        if not valid:
            outcome = "This confirmation is used up or expired; nothing done."
        elif action == "cancel":
            outcome = "Cancelled; trading stays disabled."
        elif not self.cfg.telegram.allow_resume:
            outcome = "/resume is off (telegram.allow_resume = false); nothing done."
        elif killswitch.set_enabled(self.conn, True, "resumed from Telegram", by=f"telegram:{chat}"):
            outcome = "Trading ENABLED."
        else:
            outcome = "Trading was already enabled."
        self.audit(
            chat,
            f"tap {action} (resume confirmation): {outcome}",
            severity="warning" if outcome == "Trading ENABLED." else "info",
        )
        self._answer(query["id"], outcome)
        self._edit(query, outcome)

    # -- announcing proposals --
    def announce(self) -> list[int]:
        """Send each new proposal waiting for approval, once, with its guard pre-check and buttons."""
        from .db import get_state, set_state

        cursor = int(get_state(self.conn, ANNOUNCED_KEY) or 0)
        now = clock.now()
        rows = self.conn.execute(
            "SELECT * FROM proposals WHERE id > ? AND status = 'pending' AND expires_at > ? ORDER BY id LIMIT 20",
            (cursor, clock.to_iso(now)),
        ).fetchall()
        sent = []
        for row in rows:
            if self._tick_may_still_approve(row, now):
                break  # its tick's approval step has not run yet: announce it after, in order
            text, markup = self.describe(row), _buttons(row["id"])
            delivered = [c for c in sorted(self.chats) if self.send(c, text, markup=markup) is not None]
            if not delivered:
                break  # Telegram unreachable: the same proposal next cycle
            set_state(self.conn, ANNOUNCED_KEY, str(row["id"]))
            sent.append(row["id"])
        return sent

    def _tick_may_still_approve(self, row, now: datetime) -> bool:
        """With approval = "auto", a proposal made inside a tick still running may be approved by that tick."""
        if self.cfg.scheduler.approval != "auto":
            return False
        return (
            self.conn.execute(
                "SELECT 1 FROM ticks WHERE status = 'running' AND started_at <= ? AND started_at > ? LIMIT 1",
                (row["created_at"], clock.to_iso(now - timedelta(hours=1))),
            ).fetchone()
            is not None
        )

    def describe(self, row) -> str:
        """A proposal as the owner sees it: what, why, until when, and what the guards say now."""
        expires = clock.from_iso(row["expires_at"])
        left = max(int((expires - clock.now()).total_seconds() // 60), 0)
        lines = [
            f"Proposal #{row['id']} waits for your approval",
            f"{row['side'].upper()} {row['market']} {_size(row)} — from {row['source']}",
        ]
        if row["reason"]:
            lines.append(f"Why: {_short(row['reason'], 600)}")
        lines.append(f"Expires {_hm(row['expires_at'])} (in {left} min)")
        lines += self.precheck(row)
        return "\n".join(lines)

    def precheck(self, row) -> list[str]:
        """What the guards would say now, without an execution (as the scheduler's approval policy does)."""
        from . import guards

        ticker = None
        try:
            ticker = self.prices(row["market"]) if self.prices else None
        except Exception as e:  # a price is a nicety here: the executor reads a fresh one at send time
            log.info("telegram: no price for %s for the pre-check: %s", row["market"], e)
        ctx = guards.Context(self.conn, self.cfg, clock.now(), row, None, None, ticker, None)
        checks = [
            guards.kill_switch,
            guards.expiry,
            guards.allowlist,
            guards.cooldown,
            guards.anti_flip,
            guards.max_trade,
            guards.daily_cap,
            guards.exposure_cap,
            guards.own_position,
        ]
        if ticker is not None:
            checks += [guards.sellable_after, guards.no_dust]
        verdicts = [g(ctx) for g in checks]
        blocks = [v for v in verdicts if not v.ok and v.code != "no_price"]
        unknown = [v for v in verdicts if not v.ok and v.code == "no_price"]
        ok = len(verdicts) - len(blocks) - len(unknown)
        lines = [f"Guards now: {ok} of {len(verdicts)} pass" + (" — would be BLOCKED:" if blocks else ".")]
        lines += [f"✗ {v.guard}: {v.detail}" for v in blocks]
        if unknown:
            lines.append("? needs a price, decided at send time: " + ", ".join(v.guard for v in unknown))
        lines.append("Balance, exchange minimum and precision are checked at send time.")
        return lines

    # -- sending --
    def send(self, chat: int, text: str, *, markup: dict | None = None) -> dict | None:
        """sendMessage; the message, or None if it could not be delivered (logged)."""
        params: dict[str, Any] = {"chat_id": chat, "text": _fit(text), "disable_web_page_preview": True}
        if markup:
            params["reply_markup"] = markup
        try:
            return self.api.call("sendMessage", params)
        except TelegramError as e:
            log.warning("telegram: message to chat %s not delivered: %s", chat, e)
            return None

    def _answer(self, query_id: str, text: str) -> None:
        try:
            self.api.call("answerCallbackQuery", {"callback_query_id": query_id, "text": _short(text, 190)})
        except TelegramError as e:  # a tap older than Telegram keeps queries: the edit below still says it
            log.info("telegram: tap not answered: %s", e)

    def _edit(self, query: dict, outcome: str) -> None:
        """Put the outcome under the message the button was on, and take its buttons away."""
        msg = query.get("message") or {}
        if not msg.get("message_id"):
            return
        text = f"{msg.get('text') or ''}\n\n→ {outcome}".strip()
        try:
            self.api.call(
                "editMessageText", {"chat_id": msg["chat"]["id"], "message_id": msg["message_id"], "text": _fit(text)}
            )
        except TelegramError as e:
            log.info("telegram: message not edited: %s", e)

    def audit(self, chat: int, detail: str, *, severity: str = "info") -> None:
        from . import ledger

        with db.transaction(self.conn):
            ledger.event(self.conn, "telegram", f"chat {chat}: {detail}", severity=severity)

    def close(self) -> None:
        self.api.close()


# --- helpers ---------------------------------------------------------------------------


def _default_prices(cfg: Config):
    if cfg.mode == "paper" and cfg.paper.prices:
        from .exchange.static import StaticMarketData

        return StaticMarketData(cfg.paper.prices).ticker
    return None


def _where(update: dict) -> tuple[int | None, dict, dict | None]:
    """(chat id, message, callback query or None) of an update; chat None for kinds tinybot does not serve."""
    if isinstance(update.get("callback_query"), dict):
        q = update["callback_query"]
        msg = q.get("message") if isinstance(q.get("message"), dict) else {}
        chat = (msg.get("chat") or {}).get("id")
        return (chat if isinstance(chat, int) else None), msg, q
    msg = update.get("message")
    if isinstance(msg, dict):
        chat = (msg.get("chat") or {}).get("id")
        return (chat if isinstance(chat, int) else None), msg, None
    return None, {}, None


def _what(update: dict) -> str:
    _, msg, q = _where(update)
    return f"tap {q.get('data')}" if q is not None else str(msg.get("text") or "")


def _buttons(pid: int) -> dict:
    return {
        "inline_keyboard": [
            [
                {"text": f"Approve #{pid}", "callback_data": f"approve:{pid}"},
                {"text": f"Reject #{pid}", "callback_data": f"reject:{pid}"},
            ]
        ]
    }


def _size(row) -> str:
    return f"€{Decimal(row['amount_quote']):.2f}" if row["amount_quote"] is not None else f"{row['amount']} (base)"


def _hm(iso: str | None) -> str:
    if not iso:
        return "?"
    t = clock.from_iso(iso)
    return t.strftime("%H:%M UTC") if t.date() == clock.now().date() else t.strftime("%Y-%m-%d %H:%M UTC")


def _short(text: str, n: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _fit(text: str) -> str:
    return text if len(text) <= 4000 else text[:3999] + "…"  # Telegram takes 4096 characters


# --- one poller per database ------------------------------------------------------------


class PollerLock:
    """An flock next to the database: two pollers on one token would fight (Telegram answers 409)."""

    def __init__(self, cfg: Config):
        self.path = Path(f"{cfg.db_path}.telegram.lock")
        self.fd: int | None = None

    def acquire(self) -> "PollerLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            try:
                pid = self.path.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise AlreadyServing(
                f"another Telegram loop (PID {pid}) already serves {self._db()}: `tinybot run`"
                " runs one when [telegram] chat_ids is set; stop one of them"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def _db(self) -> str:
        return str(self.path)[: -len(".telegram.lock")]

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


# --- the loop ----------------------------------------------------------------------------


def run_loop(poller: Poller, stop: threading.Event) -> int:
    """poll_once until ``stop`` is set; back off on errors.  0 when stopped, 1 on a fatal token error."""
    failures = 0
    while not stop.is_set():
        try:
            r = poller.poll_once()
        except Exception as e:  # the database (locked, read-only, full): log it, back off, keep the loop
            log.exception("telegram: poll failed")
            r = PollResult(error=TelegramError("poll", f"{type(e).__name__}: {poller.api.scrub(str(e))}"))
        if r.error is None:
            failures = 0
            continue
        if stop.is_set():
            break
        if r.error.fatal:
            log.error("telegram: %s; the Telegram loop stops", r.error)
            return 1
        failures += 1
        wait = r.error.retry_after or min(2.0 ** (failures - 1), MAX_BACKOFF_S)
        (log.warning if failures <= 3 or failures % 20 == 0 else log.info)(
            "telegram: %s (%d in a row); retrying in %.0fs", r.error, failures, wait
        )
        stop.wait(wait)
    return 0


class Background:
    """The Telegram loop on a thread of its own (own DB connection), for `tinybot run`.

    ``start()`` does nothing when telegram is off, and logs (never raises)
    when it cannot run: the scheduler must not depend on the phone.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.poller: Poller | None = None
        self.exit_code: int | None = None

    def start(self) -> "Background":
        if not enabled(self.cfg):
            return self
        try:
            token = read_token(self.cfg)
        except ConfigError as e:
            log.error("telegram: not started: %s", e)
            return self
        self.thread = threading.Thread(target=self._run, args=(token,), name="tinybot-telegram", daemon=True)
        self.thread.start()
        return self

    def _run(self, token: str) -> None:
        lock = conn = None
        try:
            lock = PollerLock(self.cfg).acquire()
            conn = db.connect(self.cfg.db_path)
            self.poller = Poller(self.cfg, conn, token=token)
            self.exit_code = run_loop(self.poller, self.stop_event)
        except Exception as e:
            log.error("telegram: the Telegram loop stopped: %s", e if isinstance(e, ConfigError) else repr(e))
            self.exit_code = 1
        finally:
            if self.poller is not None:
                self.poller.close()
            if conn is not None:
                conn.close()
            if lock is not None:
                lock.release()

    def stop(self, wait: float = 5.0) -> None:
        self.stop_event.set()
        if self.poller is not None:
            self.poller.api.abort()
        if self.thread is not None:
            self.thread.join(wait)


def _print(text: str, err: bool = False) -> None:
    import sys

    print(text, file=sys.stderr if err else sys.stdout)


def serve(cfg: Config, conn: sqlite3.Connection, *, echo: Callable[..., None] = _print) -> int:
    """`tinybot telegram`: the loop in this process until SIGINT/SIGTERM.  Returns the exit code.

    0 when stopped by a signal; 78 (EX_CONFIG: a person must fix it, systemd should not restart) when
    Telegram refuses the token.  AlreadyServing when another loop holds the lock (the CLI exits 75).
    """
    import signal

    from .exitcodes import OK, REFUSED_START

    if not enabled(cfg):
        raise ConfigError(
            f"telegram.chat_ids is empty in {cfg.path}: add your chat id"
            " (`tinybot telegram --chats` lists who wrote to the bot)"
        )
    lock = PollerLock(cfg).acquire()
    poller = Poller(cfg, conn)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        poller.api.abort()  # a long poll in progress returns now

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            poller.start()
        except TelegramError as e:
            if e.fatal:
                echo(f"Error: {e}", err=True)
                return REFUSED_START
            echo(f"Telegram not reachable yet ({e}); retrying.", err=True)
        echo(
            f"tinybot telegram: serving chat(s) {', '.join(map(str, sorted(poller.chats)))}"
            + (f" as @{poller.username}" if poller.username else "")
            + f", long poll {int(poller.poll_timeout)}s. Ctrl-C stops."
        )
        code = run_loop(poller, stop)
        echo("Stopped." if code == 0 else "Stopped: the token was refused (see the log line above).", err=code != 0)
        return OK if code == 0 else REFUSED_START
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        poller.close()
        lock.release()


def recent_chats(cfg: Config) -> list[dict]:
    """Who wrote to the bot lately (to find your chat id).  Peeks: confirms nothing, acts on nothing."""
    api = BotApi(cfg.telegram.api_url, read_token(cfg))
    try:
        updates = api.call("getUpdates", {"timeout": 0, "allowed_updates": ["message", "callback_query"]}) or []
    finally:
        api.close()
    chats: dict[int, dict] = {}
    for u in updates:
        chat, msg, _ = _where(u)
        if chat is None:
            continue
        c, who = msg.get("chat") or {}, msg.get("from") or {}
        name = (
            c.get("title") or c.get("username") or c.get("first_name") or who.get("username") or who.get("first_name")
        )
        chats[chat] = {
            "chat_id": chat,
            "type": c.get("type", ""),
            "name": name or "",
            "last_text": _short(_what(u), 60),
            "allowed": chat in cfg.telegram.chat_ids,
        }
    return list(chats.values())


def check(cfg: Config, *, send_test: bool = False) -> tuple[bool, str]:
    """For `tinybot doctor`: does the token work (getMe), and (send_test) can each chat be reached?"""
    if not enabled(cfg):
        return True, "off (no telegram.chat_ids)"
    try:
        api = BotApi(cfg.telegram.api_url, read_token(cfg))
    except ConfigError as e:
        return False, str(e)
    try:
        me = api.call("getMe") or {}
        detail = f"token works: @{me.get('username')}"
        if send_test:
            for chat in cfg.telegram.chat_ids:
                api.call(
                    "sendMessage",
                    {"chat_id": chat, "text": f"tinybot test message from {cfg.path.parent} at {_hm(clock.now_iso())}"},
                )
            detail += f"; test message delivered to {len(cfg.telegram.chat_ids)} chat(s)"
        return True, detail
    except TelegramError as e:
        return False, str(e)
    finally:
        api.close()
