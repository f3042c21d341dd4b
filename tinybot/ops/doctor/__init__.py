"""`tinybot doctor`: the go-live checklist as a command, one module per kind of check.

    check      the model: a ``Check`` with pass / fail / warn / skip, what it saw, how to fix it
    checklist  every check in order (run_checks) and the go/no-go verdict
    local      what needs no exchange: database, kill switch, secrets file, leaks, alerts, backup, phone
    market     exchange reachable, clock skew, allowlist, caps against the account
    keys       the two keys separated, and what each can do (GET requests only)
    gate       `tinybot run`'s start gate: what blocks the start, what warns, the override's alert
    probe      `--live-probe`: Bitvavo against the simulator's model, read-only

One root cause gives one FAIL: a check that depends on another one that failed (the secrets file, the
exchange, the clock) says "skip: see X" instead of failing with the wrong fix.  Doctor only *reads*.
Import the module you need (``from tinybot.ops.doctor import checklist``); this file re-exports nothing.
"""
