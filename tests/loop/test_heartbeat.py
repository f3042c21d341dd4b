"""The outside heartbeat (tinybot.loop.heartbeat) against a local push-URL server on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers.configs import paper_config_text
from tinybot.loop import heartbeat

UUID = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"


class PushServer:
    """Records every request path; answers ``status``."""

    def __init__(self):
        self.paths: list[str] = []
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.paths.append(self.path)
                body = b"OK"
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def push():
    s = PushServer()
    yield s
    s.close()


def cfg_with(write_config, url):
    return write_config(paper_config_text() + (f'[alerts]\nheartbeat_url = "{url}"\n' if url else ""))


def test_healthchecks_style_good_tick_pings_the_url_and_a_failed_tick_its_fail_variant(write_config, push):
    cfg = cfg_with(write_config, f"{push.url}/ping/{UUID}")
    assert heartbeat.ping(cfg, True) is True
    assert heartbeat.ping(cfg, False) is True
    assert push.paths == [f"/ping/{UUID}", f"/ping/{UUID}/fail"]


def test_uptime_kuma_push_says_up_or_down(write_config, push):
    cfg = cfg_with(write_config, f"{push.url}/api/push/AbCdEf123?status=up&msg=OK&ping=")
    heartbeat.ping(cfg, True)
    heartbeat.ping(cfg, False, "exchange unreachable")
    assert push.paths == [
        "/api/push/AbCdEf123?status=up&msg=OK&ping=",
        "/api/push/AbCdEf123?status=down&msg=exchange+unreachable&ping=",
    ]


def test_the_failure_url_is_explicit_in_config_with_healthchecks_fail_as_the_default(write_config, push):
    """Issue 23 item 14: a plain URL pinged nothing on failure and doctor pinged its success URL, unlike the docs."""
    plain = cfg_with(write_config, f"{push.url}/beat")
    assert heartbeat.ping(plain, False) is True and heartbeat.ping(plain, True) is True
    ok, detail = heartbeat.check(plain)
    assert ok and detail.endswith(
        f"to its /log signal (neither success nor failure); a failed tick pings {push.url}/… (the default)"
    )
    assert push.paths == ["/beat/fail", "/beat", "/beat/log"]


def test_an_explicit_failure_url_is_used_and_doctor_then_pings_one_success_beat(write_config, push):
    own = write_config(
        paper_config_text() + f'[alerts]\nheartbeat_url = "{push.url}/beat"\nheartbeat_fail_url = "{push.url}/down"\n'
    )
    assert heartbeat.ping(own, False) is True
    ok, detail = heartbeat.check(own)
    assert ok and "to one success beat" in detail and detail.endswith(f"a failed tick pings {push.url}/…")
    assert push.paths == ["/down", "/beat"]


def test_an_empty_failure_url_pings_nothing_on_failure(write_config, push):
    silent = write_config(
        paper_config_text() + f'[alerts]\nheartbeat_url = "{push.url}/beat"\nheartbeat_fail_url = ""\n'
    )
    assert heartbeat.ping(silent, False) is False
    ok, detail = heartbeat.check(silent)
    assert ok and detail.endswith(
        'a failed tick pings nothing (heartbeat_fail_url = ""): the missing success ping is the alarm'
    )
    assert push.paths == ["/beat"]


def test_the_failure_url_must_be_http(write_config):
    from tinybot.base.errors import ConfigError

    with pytest.raises(ConfigError, match="alerts.heartbeat_fail_url: 'nope' is not an http"):
        write_config(paper_config_text() + '[alerts]\nheartbeat_fail_url = "nope"\n')


def test_url_for_the_known_services():
    hc = f"https://hc-ping.com/{UUID}"
    assert heartbeat.url_for(hc, "ok") == hc
    assert heartbeat.url_for(hc, "fail") == f"{hc}/fail"
    assert heartbeat.url_for(hc, "check") == f"{hc}/log"
    assert (
        heartbeat.url_for("https://hc-ping.com/PINGKEY/backup-job", "fail")
        == "https://hc-ping.com/PINGKEY/backup-job/fail"
    )
    assert (
        heartbeat.url_for("https://kuma.lan/api/push/tok", "check")
        == "https://kuma.lan/api/push/tok?status=up&msg=tinybot+doctor&ping="
    )


def test_a_failing_ping_never_raises_and_never_logs_the_secret_part(write_config, push, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    cfg = cfg_with(write_config, f"http://127.0.0.1:{dead}/ping/{UUID}")
    with caplog.at_level(logging.WARNING, logger="tinybot.heartbeat"):
        assert heartbeat.ping(cfg, True) is False
        assert heartbeat.ping(cfg, False) is False
    push.status = 500
    cfg500 = cfg_with(write_config, f"{push.url}/ping/{UUID}")
    with caplog.at_level(logging.WARNING, logger="tinybot.heartbeat"):
        assert heartbeat.ping(cfg500, True) is False
    assert "heartbeat to http://127.0.0.1:" in caplog.text and "HTTP 500" in caplog.text
    assert UUID not in caplog.text


def test_a_hanging_monitor_costs_a_tick_at_most_the_timeout(write_config, monkeypatch):
    monkeypatch.setattr(heartbeat, "TIMEOUT_S", 0.3)
    with socket.socket() as silent:  # the kernel completes the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        cfg = cfg_with(write_config, f"http://127.0.0.1:{silent.getsockname()[1]}/ping/{UUID}")
        result = []
        t = threading.Thread(target=lambda: result.append(heartbeat.ping(cfg, True)), daemon=True)
        t.start()
        t.join(3)  # wall-clock bound on the client, not a clock the code reads
        assert not t.is_alive(), "ping() still waiting: no timeout on the request"
        assert result == [False]


def test_not_configured_is_a_no_op(write_config, push):
    cfg = cfg_with(write_config, None)
    assert heartbeat.ping(cfg, True) is False
    assert heartbeat.check(cfg) == (True, "not configured ([alerts] heartbeat_url)")
    assert not heartbeat.configured(cfg)


def test_check_for_doctor_uses_a_signal_that_is_neither_up_nor_down(write_config, push):
    cfg = cfg_with(write_config, f"{push.url}/ping/{UUID}")
    ok, detail = heartbeat.check(cfg)
    assert ok and detail.startswith(f"{push.url}/… answered (HTTP 200) to its /log signal")
    assert push.paths == [f"/ping/{UUID}/log"]
    push.status = 404
    ok, detail = heartbeat.check(cfg)
    assert not ok and detail.startswith(f"{push.url}/… did not answer (HTTP 404): check [alerts] heartbeat_url in")
    assert UUID not in detail


def test_heartbeat_url_must_be_http(write_config):
    from tinybot.base.errors import ConfigError

    with pytest.raises(ConfigError, match="alerts.heartbeat_url: 'hc-ping.com/x' is not an http"):
        cfg_with(write_config, "hc-ping.com/x")
