"""What both Bitvavo clients read, written once: market data and balances over one key, order lookups over another.

``Reader`` is the one home of every read; ``BitvavoReadOnly`` and
``BitvavoTrading`` each hold one and take its methods as their own
(``Reader.expose_on``), so neither forwards a read by hand. The reader has no
method that places, cancels, posts or deletes: in the read-only client its
lookup endpoint holds the trade key, GET only.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ...base import clock
from ...base.markets import normalise_market
from ..base import READ_METHODS, Balance, Candle, ExchangeError, Fill, Market, Order, Ticker
from .endpoint import Endpoint
from .errors import NOT_FOUND_CODES
from .parse import (
    balances_from_raw,
    candles_from_raw,
    fill_from_raw,
    markets_from_raw,
    order_from_raw,
    parse_answer,
    shape,
    ticker_from_raw,
    time_from_raw,
    whole_number,
)

MARKETS_TTL_MS = 5 * 60_000
PAGE_LIMIT = 1000  # Bitvavo's maximum for /orders and /trades
MAX_PAGES = 40  # per call, over every 24-hour slice
SLICE_MS = 23 * 3_600_000  # GET /trades spans at most 24 h a request: slices of 23 h leave an hour for clock skew
MAX_LOOKBACK_MS = 31 * 86_400_000  # a lookup further back than this is refused (one request per slice)
CANDLE_LIMIT = 1440
ALL_TICKERS_WEIGHT = 25  # GET /ticker/24h without a market (1 with one)
ALL_TICKERS_RESERVE = 100  # public weight kept for markets and candles: below it, tickers are read one by one

NO_LOOKUP_KEY = (
    "needs the trade key: Bitvavo lets only a key with trade rights read orders and trades;"
    " set TINYBOT_TRADE_KEY and TINYBOT_TRADE_SECRET"
)

# What a client answers with its reader's own bound methods: the contract's reads, the candle
# store's raw rows and the ban it waits out, and replay's in-process routing.
EXPOSED = (*READ_METHODS, "candle_rows", "rate_limited_until_ms", "route_requests")

log = logging.getLogger("tinybot.exchange")


class Reader:
    """Markets, tickers, candles, balances and time over ``view``; order and trade lookups over ``lookups``.

    ``lookups`` is None when no key may read orders (then every lookup says
    which key to set). The trading client passes its one endpoint as both.
    """

    def __init__(self, view: Endpoint, lookups: Endpoint | None):
        self._view = view
        self._lookups = lookups
        self._markets: dict[str, Market] | None = None
        self._markets_at = 0
        self.skipped_markets: dict[str, str] = {}  # malformed rows left out of the last market table
        self._public_weight: tuple[int, int] | None = None  # (left, resets at) after the last ticker answer

    def expose_on(self, client) -> None:
        """Make this reader's reads ``client``'s own methods (the very same bound methods, nothing wrapped)."""
        for name in EXPOSED:
            setattr(client, name, getattr(self, name))

    def route_requests(self, session, *, milliseconds: Callable[[], int]) -> None:
        """Every ccxt instance of this reader sends through ``session`` and signs its requests on
        ``milliseconds``, without client-side throttling.

        For `tinybot replay`, which answers in-process from the simulator on a
        simulated clock (docs/REPLAY.md); never for the real exchange.
        """
        for ep in dict.fromkeys(e for e in (self._view, self._lookups) if e is not None):
            ep.route(session, milliseconds)

    def rate_limited_until_ms(self) -> int | None:
        return self._view.banned_until_ms()

    # --- market data and balances: the view key ------------------------------------------
    def markets(self) -> dict[str, Market]:
        raw = self._view.call("markets", self._view.ccxt.publicGetMarkets, {})
        mkts, skipped = markets_from_raw(raw)
        if skipped != self.skipped_markets:
            for name, why in skipped.items():
                log.warning("Bitvavo market %s left out: %s", name, why)
        self.skipped_markets = skipped
        self._markets, self._markets_at = mkts, clock.now_ms()
        return dict(mkts)

    def cached_markets(self) -> dict[str, Market]:
        if self._markets is None or clock.now_ms() - self._markets_at > MARKETS_TTL_MS:
            return self.markets()
        return self._markets

    def ticker(self, market: str) -> Ticker:
        market = normalise_market(market)
        raw = self._view.call(f"ticker {market}", self._view.ccxt.publicGetTicker24h, {"market": market})
        self._public_weight = self._view.weight_left()
        return parse_answer(f"ticker {market}", lambda r: ticker_from_raw(market, r), raw)

    def tickers(self, markets) -> dict[str, Ticker]:
        """Several markets in one ``GET /ticker/24h`` without a market (it answers for every market) while the
        minute's public weight has room for it (it weighs ALL_TICKERS_WEIGHT), else one request per market.

        A market missing from the answer, or whose row does not parse, is left out (``ticker`` says why).
        """
        wanted = list(dict.fromkeys(normalise_market(m) for m in markets))
        if len(wanted) < 2 or not self._room_for_all_tickers():
            return {m: self.ticker(m) for m in wanted}
        raw = self._view.call("tickers", self._view.ccxt.publicGetTicker24h, {})
        self._public_weight = self._view.weight_left()
        if not isinstance(raw, list):
            raise ExchangeError(f"Bitvavo sent an unexpected answer to tickers: {shape(raw)}")
        rows = {r.get("market"): r for r in raw if isinstance(r, dict)}
        out = {}
        for m in wanted:
            try:
                out[m] = ticker_from_raw(m, rows[m])
            except (ExchangeError, KeyError, TypeError, ValueError, AttributeError):
                continue  # left out: ticker(m) alone says what is wrong with it
        return out

    def _room_for_all_tickers(self) -> bool:
        """Does the minute's public weight (the last ticker answer's headers) leave room for one request for all,
        and would it go out at once?  At a tick of a few seconds ccxt's throttle would hold it up to 1.5 s (its
        weight × 60 ms since the previous request) every tick, where one request per market waits ~60 ms each."""
        if self._view.throttle_would_wait(ALL_TICKERS_WEIGHT):
            return False
        if self._public_weight is None:
            return True
        remaining, reset_at = self._public_weight
        return clock.now_ms() >= reset_at or remaining >= ALL_TICKERS_WEIGHT + ALL_TICKERS_RESERVE

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        """Oldest first; at most 1440 (Bitvavo's limit per request)."""
        market = normalise_market(market)
        params = {"market": market, "interval": interval, "limit": max(1, min(int(limit), CANDLE_LIMIT))}
        raw = self._view.call(f"candles {market} {interval}", self._view.ccxt.publicGetMarketCandles, params)
        return parse_answer(f"candles {market}", candles_from_raw, raw)

    def candle_rows(self, what: str, params: dict) -> Any:
        """``GET /{market}/candles`` with the caller's start/end/limit, the rows as Bitvavo sent them.

        For the candle store (tinybot.analysis.candles), which pages through history
        itself; rate limits and errors are handled as for every other read.
        """
        return self._view.call(what, self._view.ccxt.publicGetMarketCandles, params)

    def balances(self) -> dict[str, Balance]:
        """What /balance lists; Bitvavo leaves out zero balances, so a missing asset holds 0."""
        raw = self._view.call("balance", self._view.ccxt.privateGetBalance, {}, private=True)
        return parse_answer("balance", balances_from_raw, raw)

    def server_time_ms(self) -> int:
        raw = self._view.call("time", self._view.ccxt.publicGetTime, {})
        return parse_answer("time", time_from_raw, raw)

    # --- order and trade lookups: a key with trade rights ----------------------------------
    def _lookup(self, what: str, fn_name: str, params: dict) -> Any:
        if self._lookups is None:
            raise ExchangeError(f"{what} {NO_LOOKUP_KEY}")
        ep = self._lookups
        return ep.call(what, getattr(ep.ccxt, fn_name), params, private=True, no_key=NO_LOOKUP_KEY)

    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        market = normalise_market(market)
        what = f"order lookup {client_order_id}"
        try:
            raw = self._lookup(what, "privateGetOrder", {"market": market, "clientOrderId": client_order_id})
        except ExchangeError as e:
            if getattr(e, "code", None) in NOT_FOUND_CODES:
                return None
            raise
        return parse_answer(what, lambda r: order_from_raw(r, client_order_id), raw)

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        """Newest first, like the paper exchange.

        Paged in the same 23-hour slices as trades: Bitvavo documents the
        24-hour span for GET /trades and says nothing either way for GET
        /orders, so tinybot does not depend on /orders taking more.
        """
        market = normalise_market(market)
        what = f"orders {market}"
        rows = self._paged(what, "privateGetOrders", market, since_ms, "created", "orderId")
        orders = parse_answer(what, lambda rs: [order_from_raw(r) for r in rs], rows)
        return sorted(orders, key=lambda o: o.created_ms, reverse=True)

    def open_orders(self, market: str) -> list[Order]:
        market = normalise_market(market)  # always with a market: without one the call weighs 25
        raw = self._lookup(f"open orders {market}", "privateGetOrdersOpen", {"market": market})
        return parse_answer(f"open orders {market}", lambda rs: [order_from_raw(r) for r in rs], raw)

    def trades_since(self, market: str, since_ms: int) -> list[Fill]:
        """Oldest first, like the paper exchange."""
        market = normalise_market(market)
        what = f"trades {market}"
        rows = self._paged(what, "privateGetTrades", market, since_ms, "timestamp", "id")
        fills = parse_answer(what, lambda rs: [fill_from_raw(r) for r in rs], rows)
        return sorted(fills, key=lambda f: (f.timestamp_ms, f.trade_id))

    def _paged(self, what: str, fn_name: str, market: str, since_ms: int, ts_key: str, id_key: str) -> list[dict]:
        """Every row at or after since_ms: 23-hour slices (GET /trades spans at most 24 h a request),
        each followed back page by page while a page comes full (Bitvavo sends newest first)."""
        if self._lookups is None:
            raise ExchangeError(f"{what} {NO_LOOKUP_KEY}")
        now = clock.now_ms()
        if since_ms < now - MAX_LOOKBACK_MS:
            raise ExchangeError(
                f"Bitvavo {what}: since {clock.to_iso(clock.from_ms(max(since_ms, 0)))} is more than"
                f" {MAX_LOOKBACK_MS // 86_400_000} days back (Bitvavo answers 24 hours per request)"
            )
        rows: dict[str, dict] = {}
        pages = 0
        start = since_ms
        while True:
            last = start + SLICE_MS >= now
            params: dict[str, Any] = {"market": market, "start": start, "limit": PAGE_LIMIT}
            if not last:
                params["end"] = start + SLICE_MS
            while True:
                pages += 1
                if pages > MAX_PAGES:
                    raise ExchangeError(f"Bitvavo {what}: more than {MAX_PAGES} pages since {since_ms}")
                page = self._lookup(what, fn_name, dict(params))
                if not isinstance(page, list):
                    raise ExchangeError(f"Bitvavo sent an unexpected answer to {what}: {shape(page)}")
                new = [r for r in page if isinstance(r, dict) and r.get(id_key) not in rows]
                for r in new:
                    rows[r[id_key]] = r
                if len(page) < PAGE_LIMIT:
                    break
                if not new:
                    raise ExchangeError(f"Bitvavo {what}: more than {PAGE_LIMIT} rows in one millisecond")
                params["end"] = min(whole_number(r.get(ts_key), ts_key) for r in page)  # inclusive: dedupe by id
            if last:
                break
            start += SLICE_MS
        return [r for r in rows.values() if whole_number(r.get(ts_key), ts_key) >= since_ms]
