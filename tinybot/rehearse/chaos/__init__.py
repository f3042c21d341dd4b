"""Crash-consistency and fault-injection harness: numbers, not promises.

``batches.run(runs, seed)`` drives tinybot, in live mode, against the Bitvavo
simulator through a seeded random sequence of *runs*.  One run is one
proposal and everything that can go wrong around it:

* 1–3 OS processes executing the proposal at the same instant (a barrier),
  sometimes with a reconcile loop racing them;
* a crash point armed in one of them (``TINYBOT_CRASH_AT``: the process
  dies with ``os._exit`` on the spot), and sometimes one armed in the
  reconcile that follows;
* a simulator fault (timeouts before/after accept, resets, 5xx, 101, 109,
  110, garbage 200, delays) on the order request or on one of the reads
  around it;
* then a restart (a clean ``execute`` of the same proposal) when something
  crashed or stopped early, and a reconcile;
* sometimes a backup (``tinybot.store.backup.make``) taken at some moment of the
  run — before the proposal, before its execution, or right after the first
  attempt (often while its execution is ``claimed`` or ``submitting``) — and,
  once the run has sent and filled what it would, that backup restored
  (``tinybot.ops.restore.restore``: kill switch off, in-flight rows quarantined),
  trading resumed, the proposal executed again and reconciled, as a person
  running the README's rollback drill would.

Each batch's simulator finds closed orders by clientOrderId or not
(``find_closed_by_client_id``; Bitvavo documents neither): by default the
batches alternate, the tour runs without it (the hard case).

A restore rolls back the database, never the world.  Each batch's database
is first made as a tinybot of an older schema made it (the batches go
through every shipped schema in turn), and that first backup is one of the
backups a run may restore; some runs are a DCA advisor's tick on a market of
its own, some make an LLM call; after every restore the DCA advisor is asked
again.  Two *aged* batches (closed-order lookup on, then off) run in this
process on a clock freezegun moves, so backups are restored one and two days
after they were taken, a backup of every shipped schema among them.

Runs are grouped in *batches*: one simulator account and one fresh bot
database per batch.  At the end of a batch the harness waits until every
request's access window has passed, reconciles once more, and checks the
invariants of ``tinybot.rehearse.chaos.invariants`` against the simulator's own
record.  Every batch has its own seed (derived from the run's seed and the
batch number), so ``--seed S --only-batch B`` replays one batch.

The processes are forked from a forkserver that has already imported
ccxt and tinybot: ``import ccxt`` costs ~0.8 s of CPU, which per process
would turn the 2000-run soak into hours.  They are real processes all the
same: separate memory, separate SQLite connections, killed without cleanup.

Modules (this file holds only this text; import each name from its module):

* ``settings`` — what the runs use: keys, markets, crash points, fault
  kinds, backup moments, shares, the ``Settings`` of the bot.toml it writes;
* ``bench`` — ``Bench``, one simulator account and one bot database, which
  holds its collaborators: ``account`` (the simulator side: the account,
  its holdings), ``bot`` (tinybot on the bench's database: propose,
  execute here, reconcile, LLM spend, the DCA advisor, resume, restore),
  ``memory`` (what a restore makes the database forget: the harness's
  proposal numbers, ids handed out, the rows before each restore, the
  problems seen), ``backups`` (backups now or of every shipped schema, and
  their restores, checked as they happen), ``processes`` (where jobs run:
  forked from the forkserver, or in this process for the aged batches);
* ``worker`` — what runs inside each forked process;
* ``plan`` — the plan of one run (``plan_run``) and the tour's (``tour``);
* ``runs`` — one run carried out: the fault armed, the racing attempts, the
  restart, the crashing reconcile, the restore drill;
* ``batches`` — the run loop: the tour, the aged batches, the random
  batches, their ends (``finish``), and ``run``;
* ``storms`` — the retry storm and the cap race;
* ``invariants`` — the checks against the simulator's record;
* ``report`` — the ``Report``, as text and as JSON;
* ``cli`` (and ``__main__``) — ``python -m tinybot.rehearse.chaos``.
"""
