"""A heartbeat from outside: ping a push URL after each tick, so a dead Pi is noticed by someone else.

``[alerts] heartbeat_url`` is a push URL of a monitoring service that
raises the alarm when the pings stop: a power cut, a dead SD card, a hung
process or a lost network all look the same from outside — silence.

Where a failed tick goes is explicit: ``[alerts] heartbeat_fail_url``.

* Unset (the default): Healthchecks' convention, ``<url>/fail`` (hc-ping.com or
  a self-hosted Healthchecks, https://healthchecks.io/docs/signaling_failures/);
  doctor's check uses ``<url>/log`` (recorded, neither success nor failure).
* Uptime Kuma push monitors (``https://kuma.example/api/push/<token>?status=up&msg=OK&ping=``):
  a good tick sends ``status=up``, a failed one ``status=down`` with a short
  ``msg``; doctor's check sends ``status=up`` with ``msg=tinybot doctor``.
* Set to a URL: a failed tick GETs that URL; doctor's check pings the success
  URL itself (one real beat: the service has no neutral signal tinybot knows).
* Set to ``""``: a failed tick pings nothing (the missing success ping is the
  alarm); doctor pings the success URL.

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


def url_for(url: str, kind: str, msg: str = "") -> str:
    """The URL to hit for ``kind`` ('ok' | 'fail' | 'check') by Uptime Kuma's or Healthchecks' convention."""
    parts = urllib.parse.urlsplit(url)
    if is_kuma(url):
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        query["status"] = "down" if kind == "fail" else "up"
        query["msg"] = msg or {"ok": "OK", "fail": "tick failed", "check": "tinybot doctor"}[kind]
        query.setdefault("ping", "")
        return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
    if kind == "ok":
        return url
    suffix = "/fail" if kind == "fail" else "/log"
    return urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))


def fail_url(cfg, msg: str = "") -> str | None:
    """Where a failed tick is signalled: ``[alerts] heartbeat_fail_url`` when set ("" = nowhere), else the
    heartbeat URL's own failure signal (Kuma: status=down; otherwise Healthchecks' ``<url>/fail``)."""
    explicit = cfg.alerts.heartbeat_fail_url
    if explicit is not None:
        return (url_for(explicit, "fail", msg) if is_kuma(explicit) else explicit) or None
    base = cfg.alerts.heartbeat_url
    return url_for(base, "fail", msg) if base else None


def check_url(cfg) -> tuple[str, str]:
    """(URL, what it is) doctor pings: a neutral signal where the convention has one, else one success beat."""
    base = cfg.alerts.heartbeat_url
    if is_kuma(base):
        return url_for(base, "check"), "an 'up' beat with msg=tinybot doctor"
    if cfg.alerts.heartbeat_fail_url is None:
        return url_for(base, "check"), "its /log signal (neither success nor failure)"
    return base, "one success beat (heartbeat_fail_url is set, so no Healthchecks /log is assumed)"


def failure_route(cfg) -> str:
    """What a failed tick does, for doctor's line: where it pings, or that only the silence tells."""
    url = fail_url(cfg)
    if url is None:
        return 'a failed tick pings nothing (heartbeat_fail_url = ""): the missing success ping is the alarm'
    return f"a failed tick pings {where(url)}" + ("" if cfg.alerts.heartbeat_fail_url else " (the default)")


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
        url = base if ok else fail_url(cfg, msg[:100])
        if url is None:
            return False  # heartbeat_fail_url = "": the missing success ping is the alarm
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
    """For `tinybot doctor`: does the heartbeat URL answer?  ``check_url`` says what is pinged (never the
    failure signal: that would raise the alarm); the line says where a failed tick goes too."""
    base = cfg.alerts.heartbeat_url
    if not base:
        return True, "not configured ([alerts] heartbeat_url)"
    url, what = check_url(cfg)
    done, detail = _hit(url)
    if done:
        return True, f"{where(base)} answered ({detail}) to {what}; {failure_route(cfg)}"
    return False, (
        f"{where(base)} did not answer ({detail}): check [alerts] heartbeat_url in {cfg.path}"
        " and that this machine can reach it"
    )
