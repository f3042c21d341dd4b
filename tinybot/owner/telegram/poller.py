"""The Telegram loop: long polling, the offset and the claim of each update, the chat allowlist, one loop per database.

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
* **One loop per database.**  Two loops polling one token would take
  updates away from each other: ``serve`` and ``Background`` hold a
  ``RunLock`` on ``<db>.telegram.lock``.

``Poller.poll_once()`` is one cycle; ``run_loop`` repeats it with back-off;
``Background`` runs that loop on a thread of `tinybot run`; ``serve`` is
`tinybot telegram`.  What a message or a button does is ``commands``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from ...base import clock
from ...store import db
from ...base.config import Config
from ...base.errors import ConfigError
from ...base.runlock import AlreadyRunning, RunLock
from .api import BotApi, TelegramError, enabled, read_token, short, what, where
from .commands import Announcer, Commands, Prices, audit, default_prices
from .followup import Followups

log = logging.getLogger("tinybot.telegram")

OFFSET_KEY = "telegram.offset"  # the next update_id to act on
STALE_MESSAGE = timedelta(minutes=1)  # a message dated this long before the start is not acted on
MAX_BACKOFF_S = 60.0


class AlreadyServing(ConfigError):
    """Another Telegram loop holds this database's poller lock (exit code 75 for `tinybot telegram`)."""


@dataclass
class PollResult:
    updates: int = 0  # updates received
    acted: int = 0  # commands and taps from allowed chats that were acted on
    ignored: int = 0  # from chats not allowed, already handled, or sent before the start
    announced: list[int] = field(default_factory=list)  # proposal ids sent to the owner
    error: TelegramError | None = None


class Poller:
    """Fetches updates, claims each one, and hands those from allowed chats to its ``commands``.

    It owns its collaborators: ``api`` (the Bot API client), ``commands``
    (what a message or a tap does) and ``announcer`` (new proposals to the
    phone).  ``conn`` must belong to the calling thread.  ``prices(market)``
    may give a Ticker for the guards' pre-check (default: [paper] prices when
    fixed).
    """

    def __init__(
        self,
        cfg: Config,
        conn: sqlite3.Connection,
        *,
        token: str | None = None,
        prices: Prices | None = None,
    ):
        self.cfg = cfg
        self.conn = conn
        self.chats = frozenset(cfg.telegram.chat_ids)
        self.poll_timeout = cfg.telegram.poll_timeout.total_seconds()
        self.api = BotApi(cfg.telegram.api_url, token or read_token(cfg), timeout_s=15.0)
        prices = prices if prices is not None else default_prices(cfg)
        self.followups = Followups(cfg, conn, self.api)
        self.commands = Commands(cfg, conn, self.api, prices=prices, followups=self.followups)
        self.announcer = Announcer(cfg, conn, self.api, self.chats, prices=prices, followups=self.followups)
        self.started_at: datetime | None = None
        self.username: str | None = None
        self._ignored_chats: set[int] = set()

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
            result.announced = self.announcer.announce()
            self.followups.check()
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
        return int(db.get_state(self.conn, OFFSET_KEY) or 0)

    def _claim(self, update: dict) -> bool:
        """Move the offset past this update before acting: an update is acted on at most once."""
        uid = update["update_id"]
        with db.transaction(self.conn):
            if uid < int(db.get_state(self.conn, OFFSET_KEY) or 0):
                return False
            db.set_state(self.conn, OFFSET_KEY, str(uid + 1))
        return True

    def _not_acted_on(self, update: dict) -> None:
        """An update from before the start: answered (allowed chats only), never executed."""
        if not self._claim(update):
            return
        chat, msg, query = where(update)
        if chat is None or not self._allowed(chat):
            return
        note = "Not acted on: this was sent while tinybot was not listening. Send it again if you still mean it."
        if query is not None:
            self.api.answer(query["id"], "Not acted on: tapped while tinybot was not listening. Tap again.")
        else:
            self.api.send(chat, f"{note}\n({short(msg.get('text', ''))})")
        audit(self.conn, chat, f"not acted on (sent before the start): {short(what(update))}")

    def _handle(self, update: dict) -> bool:
        """Act on one update; True if it was acted on.  A failure in one update never stops the loop."""
        if not self._claim(update):
            log.info("telegram: update %s already handled; skipped", update["update_id"])
            return False
        chat, msg, query = where(update)
        if chat is None or not self._allowed(chat):
            return False
        try:
            if query is not None:
                self.commands.on_tap(chat, query)
                return True
            if self._older_than_the_start(msg):
                self.api.send(
                    chat,
                    "Not acted on: this message is older than tinybot's start. Send it again if you"
                    f" still mean it.\n({short(msg.get('text', ''))})",
                )
                audit(self.conn, chat, f"not acted on (older than the start): {short(msg.get('text', ''))}")
                return False
            self.commands.on_message(chat, msg, username=self.username)
            return True
        except Exception as e:  # a bug or a locked database: say so, log it, keep serving
            log.exception("telegram: handling update %s failed", update["update_id"])
            self.api.send(
                chat,
                f"Error: {type(e).__name__}: {self.api.scrub(str(e))[:300]}. Nothing else was done;"
                " try again, or use the tinybot command on the Pi.",
            )
            return False

    def _older_than_the_start(self, msg: dict) -> bool:
        """A message Telegram hands over late, dated well before this loop started."""
        date = msg.get("date")
        return (
            isinstance(date, int)
            and self.started_at is not None
            and clock.from_ms(date * 1000) < self.started_at - STALE_MESSAGE
        )

    def _allowed(self, chat: int) -> bool:
        if chat in self.chats:
            return True
        if chat not in self._ignored_chats:
            self._ignored_chats.add(chat)
            log.warning(
                "telegram: ignoring chat %s: not in telegram.chat_ids in %s (logged once per chat)", chat, self.cfg.path
            )
        return False

    def close(self) -> None:
        self.api.close()


# --- one loop per database, and the loop ------------------------------------------------------


def lock(cfg: Config) -> RunLock:
    """Hold ``<db>.telegram.lock``; AlreadyServing (naming the holder's PID) when another loop holds it."""
    try:
        return RunLock(Path(f"{cfg.db_path}.telegram.lock")).acquire()
    except AlreadyRunning as e:
        raise AlreadyServing(
            f"another Telegram loop (PID {e.pid or '?'}) already serves {cfg.db_path}: `tinybot run`"
            " runs one when [telegram] chat_ids is set; stop one of them"
        ) from None


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
        held = conn = None
        try:
            held = lock(self.cfg)
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
            if held is not None:
                held.release()

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

    from ...base.exitcodes import OK, REFUSED_START

    if not enabled(cfg):
        raise ConfigError(
            f"telegram.chat_ids is empty in {cfg.path}: add your chat id"
            " (`tinybot telegram --chats` lists who wrote to the bot)"
        )
    held = lock(cfg)
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
        held.release()
