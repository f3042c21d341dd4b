"""The book: one walk over the fills, in order — every money figure tinybot shows is computed here.

A fill belongs to one *book*, named after the advisor whose proposal made it
(``dca``, ``rules``, ``llm``, a custom advisor's name; ``manual`` for the
CLI and Telegram; ``external`` for orders no proposal accounts for and for
``--external`` sells).  Each book keeps, per market, its own position at
average cost; the market's position is the sum of its books.

API, by module (the names below are stable; new ones are added, none renamed):

* The step (``book.steps``).  ``Fill`` (one ``trade_history`` row: ``Fill.from_row``;
  ``.quote``, ``.fee_eur`` — a fee in the coin valued at the fill's price —
  ``.moves`` — what it moved on the account, per asset) and ``Position``
  (``base``, ``cost_eur``, ``realised_eur``, ``fees_eur``, ``fills``,
  ``last_buy_at``; ``.value(bid)``, ``.unrealised(bid)``).
  ``apply(books, fill)`` is the average-cost step on one market's books
  (book → Position): a buy adds its EUR and fee to the cost; a sell takes
  its share of the cost and realises the difference, fee included.  EUR
  figures are kept to ``EUR_PLACES`` (8 decimals) at every step, so a stored
  position and a recomputed one agree digit for digit.
* The walk (``book.steps``).  ``walk(conn, until=, market=)`` → ``Walk``: ``.books``
  (market → book → Position), ``.delta`` (asset → what every fill moved on
  the account), ``.external_eur``, ``.steps`` (each fill with what it
  realised per book), ``.market(m)``, ``.book_totals()``, ``.period(since,
  until)`` → ``Period`` (realised, fees, fills, buys, sells).
  ``walk_fills(fills)`` is the same over ``Fill`` objects; ``fills(conn,
  until=, market=)`` reads them.  ``buckets(walk, llm_costs, period, tz)``
  → period key → ``Bucket`` (realised, fees, LLM, fills) for ``daily``,
  ``weekly``, ``monthly`` (``period_key``).
* Costs (``book.steps``).  ``llm_costs(conn, until=)`` → [(at, EUR)]; ``llm_cost(conn,
  since=, until=)``.
* Prices (``book.valuation``).  ``Price``; ``last_prices(conn, cfg)`` (the last tick, or fixed
  paper prices); ``PriceHistory(conn)`` (``price_log`` and the fills:
  ``.at(market, when)``, ``.as_of(when)``); ``prices_as_of(conn, cfg,
  until)`` — the one choice of prices the table and the chart both use.
* The start (``book.benchmarks``).  ``start(conn, cfg)`` → ``Start(at, capital_eur)``: the money
  tinybot had when it started (paper: ``[paper] starting_eur``; live: the
  EUR of the first balance snapshot).
* Benchmarks (``book.benchmarks``).  ``holding(...)`` and ``dca(...)`` → ``Benchmark`` (``name``,
  ``title``, ``capital_eur``, ``spent_eur``, ``buys``, ``markets``,
  ``pnl_at(when, bids, market=None)``): what the same money would have
  made, bought by market orders by amountQuote with the fee, never spending
  more than there was; ``benchmarks(conn, cfg, until=)`` builds both for the
  database, in ``traded_markets(conn, cfg)``.
* Views (``book.figures``).  ``summary(conn, cfg, prices=, until=)`` → ``Summary`` (totals,
  per market, per book and market — ``lines`` — and the benchmarks);
  ``series(conn, cfg, since=, until=, prices=)`` → ``Series`` of ``Point``
  (net, realised, unrealised, fees, LLM, holding, DCA, per book): its last
  point is ``summary(...)`` to the digit, by construction; ``trades(conn,
  since=, until=)`` → ``Trade`` rows (fill, book, EUR value, fee in EUR,
  proposal, source, reason).
* The account (``book.holdings``).  ``balances(conn, cfg)``, ``baseline(conn, cfg)``,
  ``account_delta(conn, until=, recorded_by=)``, ``holdings_at(conn, cfg,
  when)`` → (baseline or None, asset → amount), ``drift(conn, cfg)``: the
  exchange's balances against the ledger *as it stood when they were read*
  (fills recorded after that moment are not in those balances, so they are
  not drift).
* Books (``book.steps``).  ``default_book(source, external)``, ``BUILTIN_BOOKS``,
  ``MANUAL``, ``EXTERNAL``.

No exchange import: `tinybot pnl` and `status` read this without ccxt.
"""
