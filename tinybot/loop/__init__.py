"""`tinybot run`: the loop and the collaborators it owns, each testable alone.

* ``scheduler`` — the loop: the run lock, signals, start and stop, sleeping between slots.
* ``tick`` — one tick: its steps in order, the approval policy, executing approved proposals.
* ``beat`` — what the loop writes about itself: tick rows, the heartbeat row, written together
  and only when something changed (the SD-card write cuts).
* ``outage`` — the exchange outage tracker: pause, back off, say when it is over; ``diskfull`` the same
  for a disk with no room left; ``allowlist`` — at start, every allowlisted market must be listed.
* ``retention`` — old audit rows pruned, at most hourly; ``heartbeat`` — the outside ping after a tick;
  ``logfile`` — the log file; ``stop`` — SIGINT/SIGTERM as a flag the tick checks between steps.

Nothing is imported here: `tinybot doctor` reads ``loop.heartbeat`` without loading the loop.
"""
