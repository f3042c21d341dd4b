"""What every tinybot command's exit code means: an API for cron, systemd and scripts.

0 only when what was asked happened.  The README's "Exit codes" table is
generated from nothing: keep it and this file saying the same.
"""

from __future__ import annotations

OK = 0  # done: what was asked happened
ERROR = 1  # an error a person must act on: bad config or input, a database fault (the message says which)
USAGE = 2  # click's own: unknown option, missing argument
BLOCKED = 3  # execute: blocked by a guard or refused by the exchange (final; nothing was sent or it failed)
UNKNOWN = 4  # the outcome is not known yet (an ambiguous send, reconcile left work open): reconcile later
UNREACHABLE = 5  # the exchange could not be reached (or answered nothing usable); nothing was changed
LOCKED = 75  # EX_TEMPFAIL: another process holds the scheduler lock or the database lock; try again later
REFUSED_START = 78  # EX_CONFIG: `tinybot run` refused to start (doctor's gate); a human must fix it, no restart loop

MEANING = {
    OK: "done",
    ERROR: "error (config, input or database; the message names it)",
    USAGE: "usage error (unknown option or missing argument)",
    BLOCKED: "blocked or failed (final; nothing more will happen to it)",
    UNKNOWN: "outcome unknown yet: run `tinybot reconcile` later",
    UNREACHABLE: "the exchange could not be reached; nothing was changed",
    LOCKED: "locked: another process holds the scheduler or database lock; try again later",
    REFUSED_START: "`tinybot run` refused to start: `tinybot doctor` says why",
}
