"""A heartbeat from outside: ping a push URL after each tick, so a dead Pi is noticed by someone else.

``[alerts] heartbeat_url`` is a push URL of a monitoring service that
raises the alarm when the pings stop: a power cut, a dead SD card, a hung
process or a lost network all look the same from outside — silence.

* healthchecks.io (or a self-hosted Healthchecks): ``https://hc-ping.com/<uuid>``.
  A good tick pings the URL, a failed tick pings ``<url>/fail``, doctor's check
  uses ``<url>/log`` (recorded, neither success nor failure).
  (https://healthchecks.io/docs/http_api/, /docs/signaling_failures/)
* Uptime Kuma push monitors: ``https://kuma.example/api/push/<token>?status=up&msg=OK&ping=``.
  A good tick sends ``status=up``, a failed one ``status=down`` with a short
  ``msg``; doctor's check sends ``status=up`` with ``msg=tinybot doctor``.
* Anything else: pinged after good ticks only (a service without a failure
  signal alarms on the silence).

A ping never breaks a tick: ``ping`` catches everything, waits at most
``TIMEOUT_S``, and logs without the URL's secret part (the UUID or push token
is what lets anyone ping your check).  Plain ``urllib`` from the standard
library: one GET per tick needs no client library.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger("tinybot.heartbeat")

TIMEOUT_S = 5.0


def configured(cfg) -> bool:
    return bool(cfg.alerts.heartbeat_url)


def is_kuma(url: str) -> bool:
    return "/api/push/" in urllib.parse.urlsplit(url).path


def url_for(url: str, kind: str, msg: str = "") -> str | None:
    """The URL to hit for ``kind`` ('ok' | 'fail' | 'check'); None when the service has no such signal."""
    parts = urllib.parse.urlsplit(url)
    if is_kuma(url):
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        query["status"] = "down" if kind == "fail" else "up"
        query["msg"] = msg or {"ok": "OK", "fail": "tick failed", "check": "tinybot doctor"}[kind]
        query.setdefault("ping", "")
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    if kind == "ok":
        return url
    if not _healthchecks_style(parts):
        return None
    suffix = "/fail" if kind == "fail" else "/log"
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def _healthchecks_style(parts: urllib.parse.SplitResult) -> bool:
    """hc-ping.com, or a self-hosted Healthchecks: /ping/<uuid> or /<uuid>, /<ping-key>/<slug>."""
    return "hc-ping" in (parts.hostname or "") or "/ping/" in parts.path or _looks_like_uuid(parts.path)


def _looks_like_uuid(path: str) -> bool:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return len(last) == 36 and last.count("-") == 4


def where(url: str) -> str:
    """The URL with its secret part hidden, for logs and doctor: scheme://host/…"""
    parts = urllib.parse.urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


def _hit(url: str) -> tuple[bool, str]:
    req = urllib.request.Request(url, headers={"User-Agent": "tinybot"}, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            resp.read(200)
            return True, f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except Exception as e:  # DNS, refused, TLS, timeout: never let it out of a tick
        reason = getattr(e, "reason", e)
        return False, f"{type(reason).__name__}: {reason}".replace(url, where(url))


def ping(cfg, ok: bool, msg: str = "") -> bool:
    """After a tick: the success ping, or the failure signal.  True if the service took it.  Never raises."""
    try:
        base = cfg.alerts.heartbeat_url
        if not base:
            return False
        url = url_for(base, "ok" if ok else "fail", msg[:100])
        if url is None:
            return False  # no failure signal: the missing success ping is the alarm
        done, detail = _hit(url)
        if not done:
            log.warning(
                "heartbeat to %s not delivered (%s); the monitor will alarm if this goes on", where(base), detail
            )
        return done
    except Exception as e:
        log.warning("heartbeat failed: %s", type(e).__name__)
        return False


def check(cfg) -> tuple[bool, str]:
    """For `tinybot doctor`: does the heartbeat URL answer?  Uses a signal that is neither up nor down where the
    service has one (Healthchecks' /log); an Uptime Kuma push counts as one 'up' beat."""
    base = cfg.alerts.heartbeat_url
    if not base:
        return True, "not configured ([alerts] heartbeat_url)"
    url = url_for(base, "check") or base
    done, detail = _hit(url)
    if done:
        return True, f"{where(base)} answered ({detail})"
    return False, (
        f"{where(base)} did not answer ({detail}): check [alerts] heartbeat_url in {cfg.path}"
        " and that this machine can reach it"
    )
