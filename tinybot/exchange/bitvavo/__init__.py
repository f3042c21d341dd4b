"""The live exchange: Bitvavo's REST v2 through ccxt, behind tinybot's contract (docs/LIVE.md).

A module per concern; import names from the module that defines them:

* ``clients``  — ``BitvavoReadOnly`` (order methods raise) and
  ``BitvavoTrading``; ``read_only_client(cfg)``; ``probe_key_rights``.
* ``reads``    — ``Reader``: market data, balances and order lookups, the one
  home of every read both clients answer.
* ``endpoint`` — ``Endpoint``: one key on one URL (its ccxt instance,
  rate-limit pacing and backoff, the HTTP status of each answer, GET only
  when asked).
* ``parse``    — Bitvavo's raw JSON → ``Order``, ``Fill``, ``Market``,
  ``Ticker`` …, every number a ``Decimal`` from Bitvavo's string.
* ``errors``   — ``ERROR_CODES`` and ``classify_send``: every way a send can
  end is sorted here, once, into accepted / refused / ambiguous.

Why composition, not a common base class: the two clients share every read
but differ in what they may do with the trade key. Each *holds* a ``Reader``
and takes its read methods as its own (``Reader.expose_on``), so the reads
are written once and neither client forwards them by hand, while
``BitvavoTrading`` inherits from nothing and ``BitvavoReadOnly``'s refusing
``send_order``/``cancel_order`` are its own. No base class sits between a
client that refuses to trade and one that trades; the reader has no method
that places or cancels, and the read-only client's trade-key endpoint
refuses every HTTP method but GET (tests/exchange/test_key_separation.py checks all
three).

``errors`` and ``endpoint`` (and so ``reads`` and ``clients``) import ccxt
(~0.35 s, ~78 MB); ``parse`` and this file do not. Commands that need no
exchange never import these modules, so they never load ccxt (tests and
``bench/run.py --only startup`` check it).
"""
