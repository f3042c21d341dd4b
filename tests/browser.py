"""A real headless Chromium for page tests: no network, console messages and requests recorded.

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
