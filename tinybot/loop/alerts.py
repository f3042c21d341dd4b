"""The loop's own alerts (outage, stopped, died, refused) get out even when the database is locked."""

from __future__ import annotations

from ..owner.notify import Notifier


def send(notifier: Notifier, kind: str, text: str, *, key: str, severity: str) -> None:
    """Through ``notifier`` (dedupe, rate limit, a row in alert_log); when that row cannot be written because
    another process holds the database, again without the database (no dedupe): the owner must hear it."""
    sent = notifier.alert(kind, text, key=key, severity=severity)
    if sent.status == "failed" and "OperationalError" in sent.detail:
        Notifier(notifier.cfg, None).alert(kind, text, key=key, severity=severity)
