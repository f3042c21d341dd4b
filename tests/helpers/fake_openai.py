"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, over real HTTP.

    with FakeOpenAI() as fake:                 # fake.base_url = "http://127.0.0.1:PORT/v1"
        fake.reply('{"proposals": []}', prompt_tokens=812, completion_tokens=95)
        fake.reply_status(401)                 # next request: HTTP 401
        fake.reply_raw(b"<html>oops")          # next request: a 200 whose body is not JSON
        fake.reply(..., delay=2.0)             # answer late (client timeouts)
        ...
        fake.requests                          # [{"path", "headers", "body"}] as received

Replies are used in order; when none is queued the default is an empty
proposal list with usage 100/10.  Every received request is counted, including
ones whose answer comes too late for the client.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAI:
    def __init__(self):
        self.requests: list[dict] = []
        self._replies: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    spec = fake._replies.pop(0) if fake._replies else fake._completion('{"proposals": []}', 100, 10)
                if spec.get("delay"):
                    time.sleep(spec["delay"])
                if self.path != "/v1/chat/completions":
                    spec = {"status": 404, "raw": b'{"error": {"message": "not found"}}'}
                payload = spec["raw"] if "raw" in spec else json.dumps(spec["json"]).encode()
                try:
                    self.send_response(spec.get("status", 200))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): fine, the request was still counted

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    # --- scripting -------------------------------------------------------------

    @staticmethod
    def _completion(
        content, prompt_tokens, completion_tokens, *, finish_reason="stop", refusal=None, usage=True
    ) -> dict:
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": "fake-mini",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                }
            ],
        }
        if usage:
            body["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return {"json": body}

    def reply(self, content, prompt_tokens=100, completion_tokens=10, *, delay=0.0, **kw) -> None:
        """Queue a 200 chat completion; ``content`` may be a str or an object (JSON-encoded)."""
        if not isinstance(content, str) and content is not None:
            content = json.dumps(content)
        spec = self._completion(content, prompt_tokens, completion_tokens, **kw)
        spec["delay"] = delay
        with self._lock:
            self._replies.append(spec)

    def reply_status(self, status: int, message: str = "error", delay: float = 0.0) -> None:
        with self._lock:
            self._replies.append(
                {"status": status, "raw": json.dumps({"error": {"message": message}}).encode(), "delay": delay}
            )

    def reply_raw(self, raw: bytes, status: int = 200) -> None:
        with self._lock:
            self._replies.append({"status": status, "raw": raw})

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":  # python tests/helpers/fake_openai.py: serve until Ctrl-C, for trying the advisor by hand
    with FakeOpenAI() as f:
        print(f"llm.base_url = {f.base_url!r}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
