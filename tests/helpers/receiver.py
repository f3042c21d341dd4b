"""A local HTTP endpoint that records what apprise's json:// notifier posts."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """A local HTTP endpoint that records what apprise's json:// notifier posts."""

    def __init__(self):
        self.messages: list[dict] = []
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.raw.append(self.path + " " + body.decode("utf-8", "replace"))
                if outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.raw: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
