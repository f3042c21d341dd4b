"""A local fake of Telegram's Bot API, on 127.0.0.1, for tests and the footprint measurement.

It speaks the subset tinybot uses, the way https://core.telegram.org/bots/api
documents it:

* every call is ``POST /bot<token>/<method>`` with a JSON body (query strings
  and form bodies are read too) and answers ``{"ok": true, "result": ...}`` or
  ``{"ok": false, "error_code": N, "description": "..."}``; a wrong token is
  ``401 Unauthorized``;
* ``getUpdates(offset, timeout, allowed_updates)``: long polling.  An
  update is confirmed (dropped) once ``getUpdates`` is called with an offset
  above its ``update_id``; the call waits up to ``timeout`` seconds (capped by
  ``max_poll``, short in tests) for a new update;
* ``sendMessage`` (with ``reply_markup.inline_keyboard``), ``editMessageText``,
  ``answerCallbackQuery``, ``getMe``.

Tests put updates in with ``send_text`` (a person typing) and ``tap`` (a
person pressing an inline button) and read what the bot did from ``calls``,
``messages`` and ``answers``.  ``fail_next(method, code)`` makes the next call
of a method fail (5xx, 401, 409, 429 with retry_after, or a dropped
connection with ``code=0``).  ``ignore_offset = True`` hands out updates
again whatever offset the bot sends (an update delivered twice).

Run it on its own for the footprint measurement (docs/TELEGRAM.md)::

    python tests/helpers/fake_telegram.py --port 8444 --token 123:abc
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOT_ID = 4242


class FakeTelegram:
    def __init__(
        self,
        token: str = "123456:TEST-token-abcdefghij",
        *,
        max_poll: float = 0.2,
        port: int = 0,
        username: str = "tinybot_test_bot",
    ):
        self.token = token
        self.max_poll = max_poll
        self.username = username
        self.calls: list[tuple[str, dict]] = []  # every request, in order: (method, params)
        self.messages: dict[tuple[int, int], dict] = {}  # (chat_id, message_id) -> the message as it is now
        self.answers: list[dict] = []  # answerCallbackQuery params
        self._updates: list[dict] = []
        self._confirmed = 0  # updates with update_id < this are gone
        self.ignore_offset = False
        self._ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._faults: dict[str, list[tuple[int, str]]] = {}
        self._cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # a client that hangs up mid-request (a stop)
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeTelegram":
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    # --- what a person does ----------------------------------------------------------
    def send_text(self, chat_id: int, text: str, *, date: int | None = None, user_id: int | None = None) -> int:
        """A message typed into ``chat_id``; returns its update_id."""
        msg = {
            "message_id": next(self._message_ids),
            "date": int(time.time()) if date is None else date,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": {"id": user_id or abs(chat_id), "is_bot": False, "first_name": "Owner"},
            "text": text,
        }
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        return self._add({"message": msg})

    def tap(self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None) -> int:
        """An inline button pressed under message ``message_id``; returns its update_id."""
        shown = self.messages.get(
            (chat_id, message_id),
            {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "text": "",
            },
        )
        query = {
            "id": f"cq{next(self._ids)}",
            "from": {"id": user_id or abs(chat_id), "is_bot": False, "first_name": "Owner"},
            "chat_instance": "1",
            "message": dict(shown),
            "data": data,
        }
        return self._add({"callback_query": query})

    def button(self, chat_id: int, message_id: int, label_start: str) -> str:
        """The callback_data of the button whose label starts with ``label_start`` (AssertionError if none)."""
        markup = self.messages[(chat_id, message_id)].get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for b in row:
                if b["text"].startswith(label_start):
                    return b["callback_data"]
        raise AssertionError(f"no button starting {label_start!r} under message {message_id}: {markup}")

    def _add(self, body: dict) -> int:
        with self._cond:
            uid = 1000 + next(self._ids)
            self._updates.append({"update_id": uid, **body})
            self._cond.notify_all()
        return uid

    def fail_next(self, method: str, code: int, description: str = "fault injected") -> None:
        self._faults.setdefault(method, []).append((code, description))

    # --- what the bot did -------------------------------------------------------------
    def sent(self, chat_id: int | None = None) -> list[dict]:
        """sendMessage params, in order (optionally for one chat)."""
        return [p for m, p in self.calls if m == "sendMessage" and (chat_id is None or int(p["chat_id"]) == chat_id)]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [p["text"] for p in self.sent(chat_id)]

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Block until ``predicate(self)`` holds (checked after every request) or ``timeout`` s of wall time.

        For tests that run the loop in another thread or process: they wait
        for an event (a request arrived), not for a clock.
        """
        import time as _time

        deadline = _time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - _time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]

    def pending_updates(self) -> int:
        with self._cond:
            return sum(1 for u in self._updates if u["update_id"] >= self._confirmed)

    # --- the API ----------------------------------------------------------------------
    def _dispatch(self, method: str, params: dict) -> tuple[int, dict]:
        try:
            return self._dispatch_inner(method, params)
        finally:
            with self._cond:
                self._cond.notify_all()  # wake wait_for()

    def _dispatch_inner(self, method: str, params: dict) -> tuple[int, dict]:
        with self._cond:
            self.calls.append((method, params))
            self._cond.notify_all()  # a request arrived (a long poll may now wait a while)
        faults = self._faults.get(method)
        if faults:
            code, description = faults.pop(0)
            if code == 0:
                raise ConnectionAbortedError("fault injected: connection dropped")
            body = {"ok": False, "error_code": code, "description": description}
            if code == 429:
                body["parameters"] = {"retry_after": 1}
            return code, body
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        try:
            return 200, {"ok": True, "result": handler(params)}
        except _ApiError as e:
            return e.code, {"ok": False, "error_code": e.code, "description": e.description}

    def _api_getMe(self, p):
        return {"id": BOT_ID, "is_bot": True, "first_name": "tinybot", "username": self.username}

    def _api_getUpdates(self, p):
        offset = int(p.get("offset") or 0)
        timeout = min(float(p.get("timeout") or 0), self.max_poll)
        allowed = p.get("allowed_updates")
        deadline = time.monotonic() + timeout
        with self._cond:
            if offset and not self.ignore_offset:
                self._confirmed = max(self._confirmed, offset)
            while True:
                ready = [
                    u
                    for u in self._updates
                    if (self.ignore_offset or u["update_id"] >= self._confirmed)
                    and (not allowed or any(k in u for k in allowed))
                ]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    return ready[: int(p.get("limit") or 100)]
                self._cond.wait(left)

    def _api_sendMessage(self, p):
        chat_id = int(p["chat_id"])
        if not str(p.get("text", "")).strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(p["text"]) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        _check_markup(p.get("reply_markup"))
        msg = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "tinybot"},
            "text": p["text"],
        }
        if p.get("reply_markup"):
            msg["reply_markup"] = p["reply_markup"]
        self.messages[(chat_id, msg["message_id"])] = msg
        return msg

    def _api_editMessageText(self, p):
        key = (int(p["chat_id"]), int(p["message_id"]))
        if key not in self.messages:
            raise _ApiError(400, "Bad Request: message to edit not found")
        _check_markup(p.get("reply_markup"))
        msg = dict(self.messages[key], text=p["text"])
        if p.get("reply_markup"):
            msg["reply_markup"] = p["reply_markup"]
        else:
            msg.pop("reply_markup", None)  # an edit without reply_markup removes the inline keyboard
        self.messages[key] = msg
        return msg

    def _api_answerCallbackQuery(self, p):
        if not p.get("callback_query_id"):
            raise _ApiError(400, "Bad Request: query id is required")
        self.answers.append(p)
        return True

    # --- HTTP -------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as api.telegram.org

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._serve(b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self._serve(self.rfile.read(length) if length else b"")

            def _serve(self, raw: bytes):
                path, _, query = self.path.partition("?")
                parts = path.strip("/").split("/")
                params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
                ctype = self.headers.get("Content-Type", "")
                try:
                    if raw and "json" in ctype:
                        params.update(json.loads(raw))
                    elif raw:
                        params.update({k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode()).items()})
                except ValueError:
                    return self._reply(400, {"ok": False, "error_code": 400, "description": "Bad Request: bad body"})
                if len(parts) != 2 or not parts[0].startswith("bot"):
                    return self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                if parts[0][3:] != fake.token:
                    return self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                for k in ("reply_markup", "allowed_updates"):
                    if isinstance(params.get(k), str):
                        params[k] = json.loads(params[k])
                try:
                    code, body = fake._dispatch(parts[1], params)
                except ConnectionAbortedError:
                    self.close_connection = True
                    self.connection.close()
                    return
                self._reply(code, body)

            def _reply(self, code: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


class _ApiError(Exception):
    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code, self.description = code, description


def _check_markup(markup) -> None:
    """Inline keyboards as Telegram checks them: rows of buttons, callback_data of 1-64 bytes."""
    if not markup:
        return
    rows = markup.get("inline_keyboard")
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise _ApiError(400, "Bad Request: inline keyboard must be an array of arrays")
    for row in rows:
        for b in row:
            data = b.get("callback_data", "")
            if not b.get("text") or not 1 <= len(data.encode()) <= 64:
                raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


def main() -> None:
    ap = argparse.ArgumentParser(description="A fake Telegram Bot API on 127.0.0.1")
    ap.add_argument("--port", type=int, default=8444)
    ap.add_argument("--token", default="123456:TEST-token-abcdefghij")
    ap.add_argument("--max-poll", type=float, default=50.0, help="cap on getUpdates' timeout (seconds)")
    ap.add_argument(
        "--tls",
        nargs=2,
        metavar=("CERT", "KEY"),
        help="serve HTTPS (as api.telegram.org does); point the client at CERT with SSL_CERT_FILE",
    )
    args = ap.parse_args()
    fake = FakeTelegram(args.token, max_poll=args.max_poll, port=args.port)
    url = fake.url
    if args.tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*args.tls)
        fake.server.socket = ctx.wrap_socket(fake.server.socket, server_side=True)
        url = url.replace("http://", "https://")
    print(f"fake Telegram Bot API on {url}", flush=True)
    try:
        fake.server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
