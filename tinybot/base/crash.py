"""Named crash points for the fault-injection harness.

``point("after_submitting_commit")`` kills the process on the spot — no
cleanup, no ``finally``, like a power cut or SIGKILL — when the environment
variable ``TINYBOT_CRASH_AT`` names that point.  Unarmed it costs one dict
lookup.  ``TINYBOT_CRASH_AFTER=N`` skips the first N hits of the point.
"""

from __future__ import annotations

import os

POINTS = (
    "after_claim",
    "after_submitting_commit",
    "after_send_before_reply",  # the exchange accepted; we have not read the reply
    "after_reply_before_record",
    "mid_reconcile",
    "mid_fill_sync",
)

_hits: dict[str, int] = {}


def point(name: str) -> None:
    armed = os.environ.get("TINYBOT_CRASH_AT")
    if armed != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] > int(os.environ.get("TINYBOT_CRASH_AFTER", "0")):
        os._exit(int(os.environ.get("TINYBOT_CRASH_CODE", "137")))
