-- tinybot's schema: the single source of the DDL.
--
-- Conventions (see docs/HARDENING.md):
--   * every timestamp is written by Python as ISO-8601 UTC text with
--     microseconds ('2026-11-27T20:08:32.000000Z'), so that freezegun controls
--     all of them and text order is time order.  No CURRENT_TIMESTAMP, no
--     datetime('now') anywhere: SQL-side clocks cannot be frozen in tests.
--   * money, prices and amounts are Decimal strings ('10.00', '0.00012345');
--     never REAL.  Sums are done in Python with Decimal.
--
-- Each statement below belongs to the migration named in the "-- migration:"
-- line above it; db.py applies migrations in order, each in its own
-- BEGIN IMMEDIATE transaction, and records the name in schema_migrations.

-- migration: 0001_core

-- What an advisor (or a person) wants to do.  Parameters are fixed at
-- approval: approval_hash covers market, side, amounts and expiry, and the
-- executor refuses a proposal whose parameters no longer match it.
CREATE TABLE proposals (
    id            INTEGER PRIMARY KEY,
    market        TEXT NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    amount_quote  TEXT,                 -- EUR to spend (buy by EUR)
    amount        TEXT,                 -- base amount (sell, or buy by base)
    source        TEXT NOT NULL,        -- 'cli', 'rules', 'dca', 'llm', 'module:function'
    reason        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    decided_at    TEXT,                 -- approved / rejected / expired at
    decided_by    TEXT,                 -- 'auto', 'cli', ...
    approval_hash TEXT,
    CHECK ((amount_quote IS NULL) <> (amount IS NULL))
);
CREATE INDEX proposals_status ON proposals (status, expires_at);

-- One row per attempt to turn a proposal into an order.  UNIQUE(proposal_id)
-- is the idempotency claim: a second execute of the same proposal cannot
-- insert a second row, so it cannot send a second order.  client_order_id is
-- fixed at claim and is the only id ever sent for this proposal.
CREATE TABLE trade_executions (
    id                INTEGER PRIMARY KEY,
    proposal_id       INTEGER NOT NULL UNIQUE REFERENCES proposals (id),
    client_order_id   TEXT NOT NULL UNIQUE,
    exchange          TEXT NOT NULL,    -- 'paper' | 'bitvavo'
    market            TEXT NOT NULL,
    side              TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    amount_quote      TEXT,             -- copied from the proposal at claim
    amount            TEXT,
    notional_eur      TEXT,             -- EUR this execution counts for in caps
    state             TEXT NOT NULL
                      CHECK (state IN ('claimed', 'blocked', 'submitting', 'submitted',
                                       'filled', 'canceled', 'failed', 'unknown')),
    reason            TEXT,             -- reason code: text, for blocked/failed/unknown
    exchange_order_id TEXT,
    access_window_ms  INTEGER,          -- the request's validity window
    claimed_at        TEXT NOT NULL,
    submitting_at     TEXT,             -- durable commit right before the send
    resolved_at       TEXT,             -- reached a final state
    updated_at        TEXT NOT NULL,
    filled_amount     TEXT NOT NULL DEFAULT '0',
    filled_quote      TEXT NOT NULL DEFAULT '0',
    fee_paid          TEXT NOT NULL DEFAULT '0',
    fee_currency      TEXT
);
-- cooldown / anti-flip / caps read the latest in-flight-or-done rows per
-- market and per day; these keep those reads flat as history grows.
CREATE INDEX trade_executions_market_time ON trade_executions (market, submitting_at);
CREATE INDEX trade_executions_time ON trade_executions (submitting_at);
CREATE INDEX trade_executions_state ON trade_executions (state);

-- Fills as the exchange reports them.  UNIQUE(exchange, trade_id): a fill
-- seen twice (executor and reconcile, or two syncs) is stored once.
CREATE TABLE trade_history (
    id              INTEGER PRIMARY KEY,
    execution_id    INTEGER REFERENCES trade_executions (id),
    exchange        TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    client_order_id TEXT,
    market          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    amount          TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT NOT NULL,
    fee_currency    TEXT NOT NULL,
    executed_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    UNIQUE (exchange, trade_id)
);
CREATE INDEX trade_history_market_time ON trade_history (market, executed_at);

-- Position per market at cost, maintained in the same transaction that
-- inserts a fill, so the exposure cap reads one row per market.
CREATE TABLE positions (
    market     TEXT PRIMARY KEY,
    base       TEXT NOT NULL,           -- base amount held by tinybot's fills
    cost_eur   TEXT NOT NULL,           -- EUR at cost (buys incl. fees, reduced pro rata by sells)
    realised_eur TEXT NOT NULL DEFAULT '0',
    updated_at TEXT NOT NULL
);

-- The kill switch: exactly one row.  Read inside the send transaction.
CREATE TABLE kill_switch (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    trading_enabled INTEGER NOT NULL CHECK (trading_enabled IN (0, 1)),
    reason          TEXT NOT NULL DEFAULT '',
    changed_at      TEXT NOT NULL,
    changed_by      TEXT NOT NULL DEFAULT ''
);

-- Every guard verdict, pass or block, so "why (not)?" always has an answer.
CREATE TABLE guard_decisions (
    id           INTEGER PRIMARY KEY,
    proposal_id  INTEGER NOT NULL REFERENCES proposals (id),
    execution_id INTEGER REFERENCES trade_executions (id),
    stage        TEXT NOT NULL,         -- 'claim' | 'preflight' | 'commit' | 'approval'
    guard        TEXT NOT NULL,         -- e.g. 'cooldown'
    verdict      TEXT NOT NULL CHECK (verdict IN ('pass', 'block')),
    reason_code  TEXT NOT NULL,         -- e.g. 'ok', 'cooldown_active'
    detail       TEXT NOT NULL DEFAULT '',
    decided_at   TEXT NOT NULL
);
CREATE INDEX guard_decisions_proposal ON guard_decisions (proposal_id);
CREATE INDEX guard_decisions_time ON guard_decisions (decided_at);

-- What happened, for humans and alerts: state changes found by reconcile,
-- kill switch flips, surprises (orders we have no row for), tick failures.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL DEFAULT 'info' CHECK (severity IN ('info', 'warning', 'error')),
    execution_id INTEGER REFERENCES trade_executions (id),
    detail       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events (at);

-- LLM spend: reserve worst case before a call, settle to real usage after.
CREATE TABLE gpt_usage_log (
    id                INTEGER PRIMARY KEY,
    state             TEXT NOT NULL CHECK (state IN ('reserved', 'settled', 'expired', 'failed')),
    model             TEXT NOT NULL,
    reserved_at       TEXT NOT NULL,
    settled_at        TEXT,
    day               TEXT NOT NULL,    -- 'YYYY-MM-DD' UTC, the budget period it counts in
    month             TEXT NOT NULL,    -- 'YYYY-MM'
    prompt_tokens_est INTEGER NOT NULL,
    max_tokens        INTEGER NOT NULL,
    reserved_eur      TEXT NOT NULL,
    input_tokens      INTEGER,
    output_tokens     INTEGER,
    cost_eur          TEXT,
    detail            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gpt_usage_log_period ON gpt_usage_log (day, month, state);

-- Scheduler ticks: the slot is claimed with a UNIQUE row, so a slot is never
-- processed twice, even across restarts or two schedulers.
CREATE TABLE ticks (
    id          INTEGER PRIMARY KEY,
    slot        TEXT NOT NULL UNIQUE,   -- aligned slot start
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed')),
    pid         INTEGER NOT NULL,
    summary     TEXT NOT NULL DEFAULT ''
);

-- Paper exchange state lives in the same file, so paper orders go through
-- the very same transactions and crash behaviour as the bot's own rows.
CREATE TABLE paper_balances (
    asset     TEXT PRIMARY KEY,
    available TEXT NOT NULL,
    in_order  TEXT NOT NULL DEFAULT '0'
);

CREATE TABLE paper_orders (
    order_id            TEXT PRIMARY KEY,
    client_order_id     TEXT NOT NULL UNIQUE,
    market              TEXT NOT NULL,
    side                TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    order_type          TEXT NOT NULL,
    status              TEXT NOT NULL,
    amount              TEXT,
    amount_quote        TEXT,
    filled_amount       TEXT NOT NULL,
    filled_amount_quote TEXT NOT NULL,
    fee_paid            TEXT NOT NULL,
    fee_currency        TEXT,
    created_ms          INTEGER NOT NULL
);
CREATE INDEX paper_orders_market_time ON paper_orders (market, created_ms);

CREATE TABLE paper_fills (
    trade_id     TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES paper_orders (order_id),
    market       TEXT NOT NULL,
    side         TEXT NOT NULL,
    amount       TEXT NOT NULL,
    price        TEXT NOT NULL,
    fee          TEXT NOT NULL,
    fee_currency TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL
);
CREATE INDEX paper_fills_market_time ON paper_fills (market, timestamp_ms);

-- migration: 0002_scheduler

-- The scheduler's heartbeat: one row, rewritten by the running `tinybot run`
-- at start, after every tick, while backing off and at a clean stop, so
-- `tinybot status` can say whether the bot is alive and when it ticks next.
-- Liveness also checks that the PID in the lock file is a live process: a
-- crashed scheduler leaves state = 'running' behind, which is reported as
-- "not running (stopped without a clean exit)".
CREATE TABLE scheduler_heartbeat (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    pid           INTEGER NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('running', 'backing_off', 'stopped')),
    started_at    TEXT NOT NULL,        -- when this scheduler process started
    beat_at       TEXT NOT NULL,        -- its last sign of life
    interval_s    INTEGER NOT NULL,
    next_tick_at  TEXT,                 -- the slot it will run next (NULL once stopped)
    detail        TEXT NOT NULL DEFAULT ''
);

-- migration: 0004_ops

-- Every alert tinybot tried to send (text already redacted), so dedupe and
-- the hourly rate limit survive restarts and hold across processes: the
-- check and the 'sending' row are written in one BEGIN IMMEDIATE.
CREATE TABLE alert_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    kind       TEXT NOT NULL,           -- 'kill_switch', 'order', 'tick_failed', ...
    dedupe_key TEXT NOT NULL,           -- same key => at most once per [alerts] min_interval
    severity   TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    text       TEXT NOT NULL,
    status     TEXT NOT NULL
               CHECK (status IN ('sending', 'sent', 'failed', 'suppressed', 'unconfigured')),
    detail     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX alert_log_key_time ON alert_log (dedupe_key, at);
CREATE INDEX alert_log_time ON alert_log (at);

-- Small named values the ops code keeps between ticks: alert cursors, the
-- consecutive exchange error counter, today's P&L baseline for the loss limit.
CREATE TABLE ops_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- migration: 0005_money_path

-- Bitvavo documents trade ids (and order ids) as unique *per market*: a fill
-- is keyed by (exchange, market, trade_id), so the same id on another market
-- is another fill, not a duplicate to drop.  `settled` = 0 while Bitvavo has
-- not yet reported the fill's fee (fee/feeCurrency come only once settled);
-- a later sighting of the same fill corrects the fee, and the position with it.
CREATE TABLE trade_history_v2 (
    id              INTEGER PRIMARY KEY,
    execution_id    INTEGER REFERENCES trade_executions (id),
    exchange        TEXT NOT NULL,
    trade_id        TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    client_order_id TEXT,
    market          TEXT NOT NULL,
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    amount          TEXT NOT NULL,
    price           TEXT NOT NULL,
    fee             TEXT NOT NULL,
    fee_currency    TEXT NOT NULL,
    executed_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    settled         INTEGER NOT NULL DEFAULT 1 CHECK (settled IN (0, 1)),
    external        INTEGER NOT NULL DEFAULT 0 CHECK (external IN (0, 1)),  -- coins tinybot did not buy: not in its P/L
    UNIQUE (exchange, market, trade_id)
);
INSERT INTO trade_history_v2 (id, execution_id, exchange, trade_id, order_id, client_order_id, market, side,
                              amount, price, fee, fee_currency, executed_at, recorded_at)
    SELECT id, execution_id, exchange, trade_id, order_id, client_order_id, market, side,
           amount, price, fee, fee_currency, executed_at, recorded_at FROM trade_history;
DROP TABLE trade_history;
ALTER TABLE trade_history_v2 RENAME TO trade_history;
CREATE INDEX trade_history_market_time ON trade_history (market, executed_at);
CREATE INDEX trade_history_time ON trade_history (executed_at);
CREATE INDEX trade_history_unsettled ON trade_history (execution_id) WHERE settled = 0;

-- A sell proposed explicitly as selling coins tinybot did not buy
-- (`tinybot propose ... sell --external`): allowed past tinybot's own
-- position, booked apart from its P/L.
ALTER TABLE proposals ADD COLUMN external INTEGER NOT NULL DEFAULT 0 CHECK (external IN (0, 1));
ALTER TABLE trade_executions ADD COLUMN external INTEGER NOT NULL DEFAULT 0 CHECK (external IN (0, 1));
-- When an execution became "in doubt" without a send of its own that bounds
-- it (a restore from backup put it back as claimed/submitting/unknown): reconcile
-- may call its order absent only from in_doubt_at + 2 access windows + grace.
ALTER TABLE trade_executions ADD COLUMN in_doubt_at TEXT;
-- Orders the exchange has that no execution accounts for (a clientOrderId
-- tinybot has no row for, a second order under an execution's clientOrderId,
-- an order for a row that never sent one): found by reconcile's surprise
-- scan, booked (their fills move positions and count against the caps),
-- alerted once, and remembered here so a later scan only syncs their fills.
CREATE TABLE unaccounted_orders (
    id              INTEGER PRIMARY KEY,
    exchange        TEXT NOT NULL,
    market          TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    client_order_id TEXT,
    execution_id    INTEGER REFERENCES trade_executions (id),
    side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    status          TEXT NOT NULL,
    created_at      TEXT NOT NULL,     -- when the exchange made the order: cooldown and anti-flip count it
    first_seen_at   TEXT NOT NULL,
    detail          TEXT NOT NULL,
    UNIQUE (exchange, market, order_id)
);
CREATE INDEX unaccounted_orders_market_time ON unaccounted_orders (market, created_at);

-- migration: 0006_pnl

-- What the last tick saw, so `tinybot pnl` and `status` answer from the
-- database alone (no exchange, no ccxt): one row per market and per asset,
-- overwritten every tick (small writes; nothing accumulates).
CREATE TABLE market_prices (
    market  TEXT PRIMARY KEY,
    bid     TEXT NOT NULL,
    ask     TEXT NOT NULL,
    last    TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE TABLE account_balances (
    asset     TEXT PRIMARY KEY,
    available TEXT NOT NULL,
    in_order  TEXT NOT NULL,
    at        TEXT NOT NULL
);
-- What the account held before tinybot's first recorded fill, per asset
-- (fixed at the first balance snapshot: balance minus the fills booked by
-- then).  drift = balance now - (baseline + every fill since): zero unless
-- money moved outside tinybot (deposits, withdrawals, manual trades).
CREATE TABLE account_baseline (
    asset  TEXT PRIMARY KEY,
    amount TEXT NOT NULL,
    at     TEXT NOT NULL
);
-- One price per market per hour (the first tick of the hour), for the
-- report's equity curve and price chart: 24 small rows a day per market.
CREATE TABLE price_log (
    hour    TEXT NOT NULL,      -- 'YYYY-MM-DDTHH:00:00.000000Z'
    market  TEXT NOT NULL,
    bid     TEXT NOT NULL,
    ask     TEXT NOT NULL,
    last    TEXT NOT NULL,
    PRIMARY KEY (hour, market)
);

-- migration: 0007_candles

-- The candle store (tinybot/analysis/candles.py): Bitvavo candles fetched with
-- `tinybot data fetch` or imported from CSV, for `tinybot replay`.  Prices
-- and volumes are decimal strings as Bitvavo sends them; ts_ms is the
-- candle's open time in ms since the epoch (UTC).  An interval without
-- trades has no candle on Bitvavo and gets no row here: gaps stay gaps.
-- Replay only reads these tables; it trades in a scratch database.
CREATE TABLE candles (
    market   TEXT NOT NULL,             -- 'BTC-EUR'
    interval TEXT NOT NULL,             -- '1m', '1h', '1d', ...
    ts_ms    INTEGER NOT NULL,          -- open time
    open     TEXT NOT NULL,
    high     TEXT NOT NULL,
    low      TEXT NOT NULL,
    close    TEXT NOT NULL,
    volume   TEXT NOT NULL,
    PRIMARY KEY (market, interval, ts_ms)
) WITHOUT ROWID;

-- Which time ranges were downloaded or imported, written in the same
-- transaction as their candles: a missing candle inside a covered range is
-- a gap (no trades), one outside was never fetched, and an interrupted
-- fetch resumes with the ranges not covered yet.
CREATE TABLE candle_coverage (
    id          INTEGER PRIMARY KEY,
    market      TEXT NOT NULL,
    interval    TEXT NOT NULL,
    start_ms    INTEGER NOT NULL,       -- inclusive
    end_ms      INTEGER NOT NULL,       -- exclusive
    source      TEXT NOT NULL,          -- 'bitvavo' or 'csv:<file name>'
    recorded_at TEXT NOT NULL,
    CHECK (end_ms > start_ms)
);
CREATE INDEX candle_coverage_market ON candle_coverage (market, interval, start_ms);

-- A market's limits as Bitvavo listed them at fetch time, so replay's
-- simulated exchange applies the real tick size, decimals and minimums.
CREATE TABLE candle_markets (
    market            TEXT PRIMARY KEY,
    tick_size         TEXT NOT NULL,
    quantity_decimals INTEGER NOT NULL,
    notional_decimals INTEGER NOT NULL,
    min_quote         TEXT NOT NULL,
    min_base          TEXT NOT NULL,
    recorded_at       TEXT NOT NULL
);

-- migration: 0008_llm_record

-- The LLM record (tinybot/advisors/llm_record.py): every LLM call that got an answer,
-- in paper and live runs alike, written right after the budget settles it.
-- `tinybot replay` answers the llm advisor from here at €0 when the prompt
-- (the request's messages, byte for byte once canonical) matches.  The
-- prompt holds the advisor's snapshot view only: numbers and market names,
-- never a secret (tinybot/advisors/llm.py, snapshot_view).
CREATE TABLE llm_calls (
    id            INTEGER PRIMARY KEY,
    usage_id      INTEGER NOT NULL UNIQUE REFERENCES gpt_usage_log (id),  -- the budget row of this call
    at            TEXT NOT NULL,        -- when the answer was recorded (tinybot.clock)
    model         TEXT NOT NULL,        -- llm.model asked
    prompt_sha256 TEXT NOT NULL,        -- of `prompt`
    prompt        TEXT NOT NULL,        -- the messages, canonical JSON (sorted keys, no spaces)
    answer        TEXT NOT NULL,        -- the response body as received (JSON text, or what came instead)
    input_tokens  INTEGER,              -- the response's usage (NULL: it sent none)
    output_tokens INTEGER,
    cost_eur      TEXT NOT NULL         -- what the budget settled it at (decimal string)
);
CREATE INDEX llm_calls_prompt ON llm_calls (prompt_sha256);

-- migration: 0009_restore

-- A restore rolls back the database, never the world (docs/HARDENING.md): an
-- id the owner has seen (a proposal in a Telegram message, an execution in
-- an alert) must never name something else later.  SQLite hands out
-- max(id) + 1, so a restored older database would hand the same ids out
-- again; with AUTOINCREMENT it hands out past sqlite_sequence, which a
-- restore sets past the highest ids of the database it replaces
-- (tinybot/ops/restore.py).  The tables are rebuilt by db.migrate right after
-- this migration's (empty) statements, keeping every column and index they
-- have (0010_books may already have added some): SQL cannot copy a table
-- whose columns it does not know.

-- migration: 0010_books

-- Books per advisor (tinybot/trade/book/, docs/PNL.md): every fill belongs to one
-- book, named after the advisor whose proposal made it ('dca', 'rules',
-- 'llm', a custom advisor's name), 'manual' for a person's proposals (CLI,
-- Telegram) and 'external' for --external sells and for orders no execution
-- accounts for.  A proposal names the book it trades: its advisor's own, or,
-- for a sell, one it may sell from (rules.sell_from, exits.books, propose
-- --book).  Existing rows are migrated by the proposals' source.
ALTER TABLE proposals ADD COLUMN book TEXT NOT NULL DEFAULT '';
UPDATE proposals SET book = CASE
    WHEN external = 1 THEN 'external'
    WHEN source IN ('cli', 'telegram') THEN 'manual'
    WHEN source = 'top_up' THEN 'manual'   -- before books a top-up bought for the one position there was
    ELSE source END;
ALTER TABLE trade_history ADD COLUMN book TEXT NOT NULL DEFAULT '';
UPDATE trade_history SET book = COALESCE((
    SELECT p.book FROM trade_executions e JOIN proposals p ON p.id = e.proposal_id
    WHERE e.id = trade_history.execution_id
      AND trade_history.external = 0
      AND (e.exchange_order_id IS NULL OR e.exchange_order_id = trade_history.order_id)
), 'external');
CREATE INDEX trade_history_book ON trade_history (book, market, executed_at);
-- One row per book and market, kept by the ledger in the transaction that
-- records a fill (tinybot.book's average-cost step; a fill found late, or a
-- fee settled later, books the market again from its fills).  `positions`
-- stays the market's total: the sum of its books.  EUR columns have exactly
-- 8 decimals (book.EUR_PLACES); base amounts are exact.  Filled from the
-- fills by db.migrate right after this migration's statements (Python: the
-- average-cost walk needs exact decimals, which SQL does not have).
CREATE TABLE book_positions (
    book         TEXT NOT NULL,
    market       TEXT NOT NULL,
    base         TEXT NOT NULL,
    cost_eur     TEXT NOT NULL,
    realised_eur TEXT NOT NULL DEFAULT '0',
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (book, market)
);

-- migration: 0011_speed

-- What every tick reads seeks, however long the history (issue 26, docs/PERFORMANCE.md).  An advisor's
-- recent proposals (advisors.read_history, every tick, per advisor): without this index SQLite walks the
-- proposals back from the newest until it has 50 of that source, i.e. the whole table for an advisor that
-- rarely proposes (dca: once a period; an advisor turned off a year ago and on again).
CREATE INDEX proposals_source ON proposals (source, id);
-- The proposals that may still expire: pending or approved, with no execution.  proposals.expire_stale
-- runs every tick and looked for them among every approved proposal ever (each executed one stays
-- 'approved': its execution carries what became of it), a walk that grew with the history (1.3 ms of
-- CPU a tick at 5 000).  Kept by these triggers, in the same transaction as the change; expire_stale
-- still checks each candidate against proposals itself, so a row here never expires anything on its own.
CREATE TABLE proposals_open (
    id         INTEGER PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX proposals_open_expiry ON proposals_open (expires_at);
INSERT INTO proposals_open (id, expires_at)
    SELECT id, expires_at FROM proposals p WHERE status IN ('pending', 'approved')
    AND NOT EXISTS (SELECT 1 FROM trade_executions e WHERE e.proposal_id = p.id);
CREATE TRIGGER proposals_open_created AFTER INSERT ON proposals
WHEN NEW.status IN ('pending', 'approved')
BEGIN
    INSERT OR REPLACE INTO proposals_open (id, expires_at) VALUES (NEW.id, NEW.expires_at);
END;
CREATE TRIGGER proposals_open_changed AFTER UPDATE OF status, expires_at ON proposals
BEGIN
    DELETE FROM proposals_open WHERE id = NEW.id;
    INSERT INTO proposals_open (id, expires_at) SELECT NEW.id, NEW.expires_at
        WHERE NEW.status IN ('pending', 'approved')
        AND NOT EXISTS (SELECT 1 FROM trade_executions WHERE proposal_id = NEW.id);
END;
CREATE TRIGGER proposals_open_deleted AFTER DELETE ON proposals
BEGIN
    DELETE FROM proposals_open WHERE id = OLD.id;
END;
CREATE TRIGGER proposals_open_executed AFTER INSERT ON trade_executions
BEGIN
    DELETE FROM proposals_open WHERE id = NEW.proposal_id;
END;
CREATE TRIGGER proposals_open_unexecuted AFTER DELETE ON trade_executions
BEGIN
    INSERT OR REPLACE INTO proposals_open (id, expires_at) SELECT id, expires_at FROM proposals
        WHERE id = OLD.proposal_id AND status IN ('pending', 'approved')
        AND NOT EXISTS (SELECT 1 FROM trade_executions WHERE proposal_id = OLD.proposal_id);
END;

-- migration: 0013_score

-- Shadow advisors ([scoreboard] shadow in bot.toml; tinybot/trade/shadow.py,
-- tinybot/advisors/shadow.py; docs/SCORE.md).  A shadow advisor runs each tick
-- beside the live ones; its proposals live here, never in `proposals`: they are
-- never approved, executed, counted in the caps or sent to the phone.  The next
-- tick fills each on paper (buy at the ask, sell at the bid, Bitvavo's fee, the
-- €5 minimum) into the shadow's own virtual book, after the same caps and
-- guards the live bot applies, counted on that book.
CREATE TABLE shadow_books (
    advisor     TEXT PRIMARY KEY,
    started_at  TEXT NOT NULL,
    capital_eur TEXT NOT NULL            -- the EUR it starts with: the live bot's starting money
);
CREATE TABLE shadow_proposals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    advisor      TEXT NOT NULL REFERENCES shadow_books (advisor),
    created_at   TEXT NOT NULL,
    market       TEXT NOT NULL,
    side         TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    amount_quote TEXT,                   -- EUR, or
    amount       TEXT,                   -- base amount (exactly one of the two)
    reason       TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'filled', 'blocked')),
    decided_at   TEXT,
    detail       TEXT NOT NULL DEFAULT '',  -- a blocked one: the guard's reason code and why
    CHECK ((amount_quote IS NULL) != (amount IS NULL))
);
CREATE INDEX shadow_proposals_open ON shadow_proposals (state, advisor, id);
-- A paper fill, shaped like a trade_history row so the book reads it with the same step.
CREATE TABLE shadow_fills (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    proposal_id  INTEGER NOT NULL UNIQUE REFERENCES shadow_proposals (id),
    book         TEXT NOT NULL,          -- the shadow advisor
    market       TEXT NOT NULL,
    side         TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    amount       TEXT NOT NULL,
    price        TEXT NOT NULL,
    fee          TEXT NOT NULL,
    fee_currency TEXT NOT NULL,
    executed_at  TEXT NOT NULL,
    external     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX shadow_fills_book ON shadow_fills (book, executed_at);
-- Whose LLM call a usage row is: the live llm advisor's ('llm') or a shadow's
-- ('shadow:llm').  Both spend the one budget; each is charged to its own score.
ALTER TABLE gpt_usage_log ADD COLUMN book TEXT NOT NULL DEFAULT 'llm';
