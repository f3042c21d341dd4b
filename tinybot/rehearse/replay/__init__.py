"""`tinybot replay`: what would tinybot have done?  The real tick over stored candles.

Replay runs the real scheduler tick — reconcile → safety → expire → snapshot
→ advisors → proposals → approval → guards → executor → sync — in **live
mode** through the real ccxt adapter, against the Bitvavo simulator
(``tinybot.sim``) in this process, with a simulated clock and a scratch
database.  Nothing reaches the internet, the live database is only read
(candles, the LLM record), and no real key is ever read: every secret a replay
asks for is a throwaway key of the simulator.  docs/REPLAY.md has the
semantics and why this, not the paper exchange, is the one code path with live.

* ``plan`` — what a replay covers: the live database opened read-only, the
  markets, the candle interval, the ticks, the candles they read; ``ReplayError``.
* ``simulator`` — the simulator with the stored candles at their real times,
  the price at a tick the open of the candle starting then, plus slippage
  (``ReplaySimulator``, ``ReplayMarket``); the replay account's equity and quotes.
* ``settings`` — the user's bot.toml with ``--set`` overrides, pointed at the
  simulator and a scratch folder of its own (``scratch_config``, ``ReplaySecrets``).
* ``llm`` — the llm advisor's answers: from the LLM record at €0
  (``RecordedLLM``), or with ``--llm live`` from the provider within the budget
  left (``LiveLLM``).
* ``run`` — one replay (``replay``): plan, simulator, LLM stand-in, one real
  tick per slot on the simulated clock, the summary, cleaning up.
* ``summary`` — the figures: P/L, fees, trades from the book (``tinybot.trade.book``),
  drawdown and exposure tick by tick, the buy-and-hold and DCA benchmarks.
* ``sweep`` — the grid of ``--set`` combinations, each replayed in its own process.
* ``score`` — ``--score --advisors``: the advisors head to head, each a shadow on its own book; the
  knowledge cutoff (look-ahead) check; `tinybot score`'s board over the scratch database.

Nothing is imported here: import each name from its module.
"""
