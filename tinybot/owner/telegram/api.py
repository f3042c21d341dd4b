"""The Bot API client: one kept-alive HTTP(S) connection, the token kept out of every text, Telegram's limits.

Every call is a JSON POST to ``/bot<token>/<method>``.  The token sits in
every request path, so every error text is built without the URL and
scrubbed of it anyway.  ``send``, ``answer`` and ``edit`` never raise: a
message that cannot be delivered is logged, and the loop goes on.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import urllib.parse
from typing import Any

from ...base import clock
from ...base.config import Config
from ...base.errors import ConfigError

log = logging.getLogger("tinybot.telegram")

TOKEN_NAME = "TINYBOT_TELEGRAM_TOKEN"
REDACTED = "«redacted»"
TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
MESSAGE_CHARS = 4000  # Telegram takes 4096 characters in a message
ANSWER_CHARS = 190  # and 200 in the answer to a tap


class TelegramError(Exception):
    """A Bot API call that did not work; the text never contains the token."""

    def __init__(self, method: str, detail: str, *, code: int | None = None, retry_after: float | None = None):
        super().__init__(f"Telegram {method}: {detail}")
        self.method, self.detail, self.code, self.retry_after = method, detail, code, retry_after

    @property
    def fatal(self) -> bool:
        """401/404: the token (or api_url) is wrong; retrying will not help."""
        return self.code in (401, 404)


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

    # -- what tinybot says: these never raise --
    def send(self, chat: int, text: str, *, markup: dict | None = None) -> dict | None:
        """sendMessage; the message, or None if it could not be delivered (logged)."""
        params: dict[str, Any] = {"chat_id": chat, "text": fit(text), "disable_web_page_preview": True}
        if markup:
            params["reply_markup"] = markup
        try:
            return self.call("sendMessage", params)
        except TelegramError as e:
            log.warning("telegram: message to chat %s not delivered: %s", chat, e)
            return None

    def answer(self, query_id: str, text: str) -> None:
        """answerCallbackQuery: the short note the phone shows under a tapped button."""
        try:
            self.call("answerCallbackQuery", {"callback_query_id": query_id, "text": short(text, ANSWER_CHARS)})
        except TelegramError as e:  # a tap older than Telegram keeps queries: the edit after it still says it
            log.info("telegram: tap not answered: %s", e)

    def edit(self, query: dict, outcome: str) -> None:
        """Put the outcome under the message the button was on, and take its buttons away."""
        msg = query.get("message") or {}
        if not msg.get("message_id"):
            return
        self.edit_message(msg["chat"]["id"], msg["message_id"], f"{msg.get('text') or ''}\n\n→ {outcome}".strip())

    def edit_message(self, chat: int, message_id: int, text: str) -> None:
        """editMessageText without reply_markup: the new text, and the message's buttons gone."""
        try:
            self.call("editMessageText", {"chat_id": chat, "message_id": message_id, "text": fit(text)})
        except TelegramError as e:
            log.info("telegram: message not edited: %s", e)


# --- what an update looks like, and what fits in a message --------------------------------


def where(update: dict) -> tuple[int | None, dict, dict | None]:
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


def what(update: dict) -> str:
    """What the person did, in a few words: the text typed, or the button tapped."""
    _, msg, q = where(update)
    return f"tap {q.get('data')}" if q is not None else str(msg.get("text") or "")


def short(text: str, n: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def fit(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


# --- without the loop: doctor and `tinybot telegram --chats/--test` ------------------------


def recent_chats(cfg: Config) -> list[dict]:
    """Who wrote to the bot lately (to find your chat id).  Peeks: confirms nothing, acts on nothing."""
    api = BotApi(cfg.telegram.api_url, read_token(cfg))
    try:
        updates = api.call("getUpdates", {"timeout": 0, "allowed_updates": ["message", "callback_query"]}) or []
    finally:
        api.close()
    chats: dict[int, dict] = {}
    for u in updates:
        chat, msg, _ = where(u)
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
            "last_text": short(what(u), 60),
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
                    {
                        "chat_id": chat,
                        "text": f"tinybot test message from {cfg.path.parent} at {clock.human_time(clock.now(), cfg.tz)}",
                    },
                )
            detail += f"; test message delivered to {len(cfg.telegram.chat_ids)} chat(s)"
        return True, detail
    except TelegramError as e:
        return False, str(e)
    finally:
        api.close()
