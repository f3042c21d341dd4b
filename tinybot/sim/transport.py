"""An in-process transport: ccxt talks to a Simulator through its request handler, without a socket."""

from __future__ import annotations

import io
import threading
from http.client import HTTPMessage
from types import SimpleNamespace
from urllib.parse import urlsplit

import requests
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict

from .server import DropConnection, Handler


class InProcessSession:
    """Stands in for ccxt's HTTP session: each request goes to the simulator's own request handler
    in this thread, without a socket.

    Everything above it is what live mode runs (ccxt building, signing and parsing every request,
    and raising on every error answer) and everything below it is the simulator's server code
    (routing, signature and access-window checks, rate limit, Bitvavo-shaped answers).  Only
    requests' session, the TCP round trip and the server thread are left out: they were most of a
    replay tick's time (docs/REPLAY.md, "Speed").
    """

    def __init__(self, sim):
        self.server = SimpleNamespace(sim=sim, verbose=False, stopping=threading.Event())
        self.headers: dict = {}
        self.cookies = RequestsCookieJar()

    def request(self, method, url, data=None, headers=None, **_ignored):
        parts = urlsplit(url)
        body = data or b""
        body = body.encode() if isinstance(body, str) else body
        h = Handler.__new__(Handler)  # a request handler without a socket: rfile/wfile are in memory
        h.server, h.client_address = self.server, ("127.0.0.1", 0)
        h.command, h.request_version, h.close_connection = method, "HTTP/1.1", False
        h.path = parts.path + ("?" + parts.query if parts.query else "")
        h.requestline = f"{method} {h.path} HTTP/1.1"
        h.headers = HTTPMessage()
        for k, v in (headers or {}).items():
            h.headers[k] = str(v)
        h.headers["Content-Length"] = str(len(body))
        h.rfile, h.wfile = io.BytesIO(body), io.BytesIO()
        try:
            h.respond(method)
        except DropConnection as d:
            raise requests.ConnectionError(
                "connection reset by the simulator" if d.reset else "no answer from the simulator (Read timed out)"
            ) from None
        head, _, payload = h.wfile.getvalue().partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        _version, code, *reason = lines[0].split(" ", 2)
        resp = requests.Response()
        resp.status_code, resp.reason = int(code), reason[0] if reason else ""
        resp.headers = CaseInsensitiveDict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        resp._content, resp.encoding, resp.url = payload, "utf-8", url
        return resp

    def close(self) -> None:
        pass
