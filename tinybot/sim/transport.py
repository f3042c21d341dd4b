"""An in-process transport: ccxt talks to a Simulator through its request handler, without a socket."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

from .server import DropConnection, Handler

_REASONS = {code: text for code, (text, _long) in Handler.responses.items()}
_SERVER = f"{Handler.server_version} {Handler.sys_version}".strip()


class _InMemoryRequest(Handler):
    """The simulator's request handler over a request held in memory: its answer is kept as it is, not
    written out as HTTP text for the transport to parse back."""

    def __init__(self, server, method: str, path: str, headers: CaseInsensitiveDict, body: bytes):
        self.server, self.client_address = server, ("127.0.0.1", 0)
        self.command, self.request_version, self.close_connection = method, "HTTP/1.1", False
        self.path, self.headers, self.rfile = path, headers, io.BytesIO(body)
        self.answer: tuple[int, str, bytes, dict] | None = None

    def _answer(self, status: int, content_type: str, body: bytes, headers: dict) -> None:
        self.answer = (status, content_type, body, headers)


class _Answer(requests.Response):
    """A requests answer already complete in memory.  ``requests.Response()`` builds a cookie jar and more
    for every answer; ccxt reads only the status, reason, headers, text and ``raise_for_status``."""

    def __init__(self, status: int, headers: CaseInsensitiveDict, content: bytes, url: str):
        self._content, self._content_consumed, self._next = content, True, None
        self.status_code, self.reason, self.headers, self.url = status, _REASONS.get(status, ""), headers, url
        self.encoding, self.raw, self.request, self.connection = "utf-8", None, None, None
        self.history, self.cookies, self.elapsed = [], _NO_COOKIES, timedelta(0)


class _NoCookies(requests.cookies.RequestsCookieJar):
    """The simulator sets no cookie: ccxt's ``session.cookies.clear()`` before each request has nothing to do."""

    def clear(self, domain=None, path=None, name=None) -> None:
        pass


_NO_COOKIES = _NoCookies()


class InProcessSession:
    """Stands in for ccxt's HTTP session: each request goes to the simulator's own request handler
    in this thread, without a socket.

    Everything above it is what live mode runs (ccxt building, signing and parsing every request,
    and raising on every error answer) and everything below it is the simulator's server code
    (routing, signature and access-window checks, rate limit, Bitvavo-shaped answers).  Only
    requests' session, the TCP round trip, the server thread and the HTTP text between them are
    left out: they were most of a replay tick's time (docs/REPLAY.md, "Speed").  The answer keeps
    the headers the server sends but its wall-clock ``Date``.
    """

    def __init__(self, sim):
        self.server = SimpleNamespace(sim=sim, verbose=False, stopping=threading.Event())
        self.headers: dict = {}
        self.cookies = _NO_COOKIES

    def request(self, method, url, data=None, headers=None, **_ignored):
        parts = urlsplit(url)
        body = data or b""
        body = body.encode() if isinstance(body, str) else body
        h = CaseInsensitiveDict({k: str(v) for k, v in (headers or {}).items()})
        h["Content-Length"] = str(len(body))
        path = parts.path + ("?" + parts.query if parts.query else "")
        handler = _InMemoryRequest(self.server, method, path, h, body)
        try:
            handler.respond(method)
        except DropConnection as d:
            raise requests.ConnectionError(
                "connection reset by the simulator" if d.reset else "no answer from the simulator (Read timed out)"
            ) from None
        status, content_type, payload, extra = handler.answer
        answer_headers = CaseInsensitiveDict(
            {"Server": _SERVER, "Content-Type": content_type, "Content-Length": str(len(payload))}
        )
        answer_headers.update((k, str(v)) for k, v in extra.items())
        return _Answer(status, answer_headers, payload, url)

    def close(self) -> None:
        pass
