"""A real headless Chromium for page tests: no network, console messages and requests recorded.

``load`` renders a page as a desktop browser does (``--dump-dom``, a
screenshot).  ``phone`` opens it as a phone would: Chromium's own device
emulation over the DevTools protocol (a 390 px wide screen, the page's
viewport meta honoured, touch), through ``--remote-debugging-pipe`` so no
port and no extra library is needed; it measures the laid-out page.

Chromium comes from Debian's packages; ``chromium()`` installs it when it is
missing (the tests run as root in CI) and fails loudly if it cannot.  Every
page is loaded through a recording proxy on 127.0.0.1 (loopback included), so
a page that reaches for anything outside itself is seen, not silently refused.

Chromium itself calls home (update.googleapis.com, accounts.google.com) even
with every background flag off; those requests come whatever the page is.
So the harness first loads an empty page and takes the hosts it contacts as
the browser's own; a page's requests are the ones to any other host.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--proxy-bypass-list=<-loopback>",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-field-trial-config",
    "--no-service-autorun",
    "--disable-breakpad",
    "--metrics-recording-only",
]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, text=True, timeout=900)
        path = shutil.which("chromium")
        assert path, f"could not install Debian's chromium for the browser tests: {r.stderr[-2000:]}"
    return path


@dataclass
class Page:
    dom: str
    console: list[str]
    requests: list[str]
    screenshot: bytes


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def _any(self):
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(404)
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_CONNECT = _any

    def log_message(self, *a):
        pass


def _host(request: str) -> str:
    target = request.split(" ", 1)[1]
    if "://" in target:
        target = target.split("://", 1)[1]
    return target.split("/", 1)[0].rsplit(":", 1)[0]


_OWN: set[str] | None = None


def browser_own_hosts() -> set[str]:
    """Hosts Chromium contacts by itself, found by loading an empty page."""
    global _OWN
    if _OWN is None:
        with tempfile.TemporaryDirectory() as d:
            blank = Path(d) / "blank.html"
            blank.write_text("<!doctype html><title>blank</title>")
            _OWN = {_host(r) for r in _load(blank, 800, 600).requests}
        assert all(h.endswith((".google.com", ".googleapis.com")) for h in _OWN), _OWN
    return _OWN


def load(file: Path, *, width: int = 1000, height: int = 2400) -> Page:
    own = browser_own_hosts()
    page = _load(file, width, height)
    page.requests = [r for r in page.requests if _host(r) not in own]
    return page


def _load(file: Path, width: int, height: int) -> Page:
    exe = chromium()
    seen: list[str] = []
    handler = type("R", (_Recorder,), {"seen": seen})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as profile:
            common = [
                exe,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}",
                f"--window-size={width},{height}",
            ]
            dom = subprocess.run(
                common + ["--dump-dom", file.resolve().as_uri()], capture_output=True, text=True, timeout=120
            )
            shot = Path(profile) / "shot.png"
            subprocess.run(common + [f"--screenshot={shot}", file.resolve().as_uri()], capture_output=True, timeout=120)
            png = shot.read_bytes() if shot.exists() else b""
    finally:
        proxy.shutdown()
        proxy.server_close()
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    return Page(dom.stdout, console, seen, png)


@dataclass
class PhonePage:
    viewport_width: int  # the layout viewport: the phone's width when the page asks for device-width
    scroll_width: int  # the laid-out document's width: more than the viewport means scrolling sideways
    console: list[str]
    requests: list[str]
    screenshot: bytes  # the whole page, as the phone lays it out


class _Pipe:
    """The DevTools protocol over the pipe Chromium reads on fd 3 and writes on fd 4: NUL-ended JSON messages."""

    def __init__(self, args: list[str], stderr):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def fds():  # in the child: its fd 3 reads what we write, its fd 4 writes what we read
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=stderr)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _read(self) -> dict:
        while b"\0" not in self._buf:
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read()
            if m.get("id") == self._id:
                assert "error" not in m, m
                return m.get("result", {})
            self.events.append(m)

    def wait_for(self, method: str) -> dict:
        while True:
            for e in self.events:
                if e.get("method") == method:
                    self.events.remove(e)
                    return e
            self.events.append(self._read())

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (EOFError, OSError):
            pass
        os.close(self._out)
        os.close(self._in)
        self.proc.wait(timeout=60)


def phone(file: Path, *, width: int = 390, height: int = 844) -> PhonePage:
    """Open ``file`` as a phone ``width`` CSS px wide would and measure it (through the recording proxy)."""
    import base64

    own = browser_own_hosts()
    exe = chromium()
    seen: list[str] = []
    handler = type("R", (_Recorder,), {"seen": seen})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        with tempfile.TemporaryDirectory() as profile, tempfile.TemporaryFile("w+") as log:
            pipe = _Pipe(
                [
                    exe,
                    *FLAGS,
                    "--remote-debugging-pipe",
                    f"--user-data-dir={profile}",
                    f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}",
                    "about:blank",
                ],
                log,
            )
            try:
                target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
                s = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
                pipe.call(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 3, "mobile": True},
                    s,
                )
                pipe.call("Emulation.setTouchEmulationEnabled", {"enabled": True}, s)
                pipe.call("Page.enable", None, s)
                pipe.call("Page.navigate", {"url": file.resolve().as_uri()}, s)
                pipe.wait_for("Page.loadEventFired")
                measured = pipe.call(
                    "Runtime.evaluate",
                    {
                        "expression": "JSON.stringify([document.documentElement.clientWidth,"
                        " document.documentElement.scrollWidth])",
                        "returnByValue": True,
                    },
                    s,
                )
                viewport, scroll = json.loads(measured["result"]["value"])
                size = pipe.call("Page.getLayoutMetrics", None, s)["cssContentSize"]
                whole = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
                shot = base64.b64decode(
                    pipe.call(
                        "Page.captureScreenshot", {"format": "png", "clip": whole, "captureBeyondViewport": True}, s
                    )["data"]
                )
            finally:
                pipe.close()
            log.seek(0)
            console = [line for line in log.read().splitlines() if ":CONSOLE" in line]
    finally:
        proxy.shutdown()
        proxy.server_close()
    return PhonePage(viewport, scroll, console, [r for r in seen if _host(r) not in own], shot)
