"""The owner's phone over Telegram's Bot API: api (the client), poller (the loop), commands (what each message does).

Long polling (``getUpdates``), so it works behind home NAT with no open
port.  Plain HTTP(S) through the standard library's ``http.client`` on one
kept-alive connection: no third-party client, nothing heavy imported (see
docs/TELEGRAM.md for why).

* ``api``: the Bot API client (``BotApi``), the token (a secret: never in a
  log, an error or the database), what an update looks like, Telegram's
  text limits; ``check`` and ``recent_chats`` for doctor and the CLI.
* ``poller``: the ``Poller`` (the offset, the claim of each update before it
  is acted on, the chat allowlist, what was sent before the start), its loop
  (``run_loop``), ``Background`` (the loop on a thread of `tinybot run`),
  ``serve`` (`tinybot telegram`), one loop per database (a ``RunLock``).
* ``commands``: each /command and button (parse, call one core function,
  render), and announcing new proposals with their buttons.

For the scheduler (``tinybot run``)::

    tg = poller.Background(cfg).start()   # own thread, own DB connection; a no-op if off
    ...
    tg.stop()
"""
