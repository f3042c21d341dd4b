"""The simulator: one Bitvavo exchange in memory, the owner of its market state, accounts, engine and faults.

``Simulator`` is what the server, the CLI, the tests, the demo and replay hold.
It keeps the price path moving, routes each call to the collaborator that
answers it, runs every call that touches state under one lock (so the HTTP
threads, the auto-stepper and a test poking ``sim.set_price`` never see half an
update), charges the rate limit, and starts servers (``serve()``).
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Callable, Iterable

from . import wire
from .accounts import Accounts, SimAccount
from .engine import MAKER_FEE, MODES, TAKER_FEE, Clock, Engine, Modes, Outcome
from .faults import ArmedFaults, Fault, make_fault
from .market import INTERVALS, MARKET_STATUSES, MarketState, lookup, read_csv
from .server import SimServer
from .wire import s


class RateLimit:
    """Each API key's (or, unsigned, each IP's) weight budget per minute, on the simulator's clock.

    The simulator holds one, shared by all its servers and the in-process transport; the
    server charges each request to it.
    """

    def __init__(self, limit: int, clock):
        self.limit = limit
        self.clock = clock  # .now_ms(): the simulator's clock
        self.weights: dict[str, list[int]] = {}  # identity → [minute start ms, used, banned until ms]
        self._lock = threading.Lock()

    def charge(self, ident: str, weight: int) -> tuple[bool, int, int]:
        """Spend `weight` of `ident`'s budget → (allowed, remaining, resetAt ms).

        Source SRC_RATE_LIMITS: the counter resets on wall-clock minutes ("every minute the
        system resets the counter at bitvavo-ratelimit-resetat"); a key that goes over is
        blocked until the end of the NEXT minute (over at 12:00:15 → free at 12:02:00); an IP
        (``ip:…``, unsigned calls) is blocked for 15 minutes. A refused request costs nothing.
        While blocked, resetAt is the moment the block ends. The clock is the simulator's, so
        tests move it instead of sleeping.
        """
        with self._lock:
            now = self.clock.now_ms()
            minute = now // 60_000 * 60_000
            w = self.weights.get(ident)
            if w is None or w[0] != minute:
                w = self.weights[ident] = [minute, 0, w[2] if w else 0]
            if now < w[2]:
                return False, 0, w[2]
            if w[1] + weight > self.limit:
                w[2] = now + 15 * 60_000 if ident.startswith("ip:") else minute + 120_000
                return False, 0, w[2]
            w[1] += weight
            return True, self.limit - w[1], minute + 60_000


def _mode(name: str) -> property:
    return property(lambda sim: getattr(sim.mode, name), doc=f"The {name} mode (change it with set_mode).")


class Simulator:
    """A Bitvavo exchange in memory. ``serve()`` puts it on a loopback port."""

    MODES = MODES

    rate_limit_code = _mode("rate_limit_code")
    trades_window = _mode("trades_window")
    orders_window = _mode("orders_window")
    balance_zero_rows = _mode("balance_zero_rows")
    unsettled = _mode("unsettled")
    candle_revisions = _mode("candle_revisions")
    view_key_reads_orders = _mode("view_key_reads_orders")
    clock_skew = _mode("clock_skew")
    find_closed_by_client_id = _mode("find_closed_by_client_id")
    candle_end = _mode("candle_end")
    short_balance = _mode("short_balance")
    live_shapes = _mode("live_shapes")
    halted_cancel_code = _mode("halted_cancel_code")
    halted_cancel_status = _mode("halted_cancel_status")

    def __init__(
        self,
        accounts: Iterable[SimAccount] = (),
        markets: Iterable[str] = ("BTC-EUR", "ETH-EUR"),
        seed: int = 7,
        candles_csv: str | None = None,
        clock: Callable[[], float] | None = None,
        interval: str = "1m",
        *,
        find_closed_by_client_id: bool = False,
        history: int = 1440,
        rate_limit: int = 1000,
        taker_fee: Decimal = TAKER_FEE,
        maker_fee: Decimal = MAKER_FEE,
        view_key_reads_orders: bool = False,
        rate_limit_code: int = 110,
        trades_window: str = "refuse",
        orders_window: str | None = None,
        balance_zero_rows: bool = False,
        unsettled: float | str | None = None,
        candle_gaps: float = 0.0,
        candle_revisions: int = 0,
        clock_skew: float = 0.0,
        **modes,  # any other mode of MODES (candle_end, short_balance, halted_cancel_code, ...)
    ):
        if interval not in INTERVALS:
            raise ValueError(f"interval {interval!r} is not one of {', '.join(INTERVALS)}")
        self.lock = threading.RLock()
        self.mode = Modes(
            clock_skew=float(clock_skew),
            view_key_reads_orders=bool(view_key_reads_orders),
            find_closed_by_client_id=find_closed_by_client_id,
        )
        self.clock = Clock(clock, self.mode)
        self.markets: dict[str, MarketState] = {}
        self.set_mode(
            rate_limit_code=rate_limit_code,
            trades_window=trades_window,
            orders_window=orders_window,
            balance_zero_rows=balance_zero_rows,
            unsettled=unsettled,
            candle_revisions=candle_revisions,
            **modes,
        )
        self.interval = interval
        self.interval_ms = INTERVALS[interval] * 1000
        self.limiter = RateLimit(rate_limit, self.clock)
        self.taker_fee, self.maker_fee = Decimal(taker_fee), Decimal(maker_fee)
        self.steps = 0
        csv_rows = read_csv(candles_csv) if candles_csv else {}
        for name in markets:
            if name.count("-") != 1 or not all(name.split("-")):
                raise ValueError(f"market {name!r} is not BASE-QUOTE, e.g. BTC-EUR")
            self.markets[name] = MarketState(
                name, INTERVALS[interval], history, seed, csv_rows.get(name), gap_probability=float(candle_gaps)
            )
        self.accounts = Accounts()
        for acct in accounts:
            self.add_account(acct)
        self.engine = Engine(self.markets, self.accounts, self.clock, self.mode, seed, self.taker_fee, self.maker_fee)
        self.armed = ArmedFaults()
        self._servers: list[SimServer] = []

    # --- modes (each also settable at run time: POST /_sim/mode) -------------------

    def set_mode(self, **modes) -> dict:
        """Change how the simulator behaves where Bitvavo's documents leave a choice; returns all modes.

        Every value is checked before any is applied: a bad one changes nothing.
        """
        for name, value in Modes.check(modes).items():
            if name == "candle_gaps":
                for m in self.markets.values():
                    m.gap_probability = value
            else:
                setattr(self.mode, name, value)
        return self.modes()

    def modes(self) -> dict:
        gaps = next(iter(self.markets.values())).gap_probability if self.markets else 0.0
        return {name: gaps if name == "candle_gaps" else getattr(self.mode, name) for name in self.MODES}

    def now_ms(self) -> int:
        return self.clock.now_ms()

    @property
    def rate_limit(self) -> int:
        """Weight each key (or IP) may spend per minute (RateLimit); may be changed at run time."""
        return self.limiter.limit

    @rate_limit.setter
    def rate_limit(self, limit: int) -> None:
        self.limiter.limit = limit

    # --- accounts and balances ----------------------------------------------

    def add_account(self, account: SimAccount) -> None:
        with self.lock:
            self.accounts.add(account)

    def owner(self, key: str | None) -> str | None:
        """The key whose books an API key's account uses (itself unless it shares an account)."""
        return self.accounts.books(key)

    def balance(self, key: str, *, in_order: bool = False) -> dict[str, Decimal]:
        """Available balances of a key's account (or what is held in orders)."""
        with self.lock:
            return dict(self.accounts.in_order(key) if in_order else self.accounts.available(key))

    def set_balance(self, key: str, asset: str, available) -> None:
        with self.lock:
            self.accounts.set(key, asset, available)

    def balances_json(self, key: str, symbol: str | None = None) -> list[dict]:
        """GET /balance rows (only assets above zero unless the balance_zero_rows mode)."""
        with self.lock:
            return wire.balance_rows(
                self.accounts.available(key), self.accounts.in_order(key), symbol, self.mode.balance_zero_rows
            )

    # --- markets and the price path -------------------------------------------------

    def market(self, name) -> MarketState:
        return lookup(self.markets, name)

    def set_market_status(self, market: str, status: str) -> None:
        """Halt a market (or put it in cancelOnly, auction, auctionMatching, delisted, or back to trading).

        POST /order then gets the status's definite refusal (MARKET_STATUSES); a delisted market
        also leaves GET /markets. A halted market refuses cancels too (halted_cancel_code/_status modes);
        canceling stays possible in every other status.
        """
        if status not in MARKET_STATUSES:
            raise ValueError(f"unknown market status {status!r}; use one of {', '.join(MARKET_STATUSES)}")
        with self.lock:
            if market not in self.markets:
                raise ValueError(f"market must be one of {', '.join(self.markets)}")
            self.markets[market].status = status

    def listed_markets(self) -> list[MarketState]:
        return [m for m in self.markets.values() if m.status != "delisted"]

    def price(self, market: str) -> Decimal:
        """Last price (close of the newest candle)."""
        with self.lock:
            return self.markets[market].last

    def set_price(self, market: str, price) -> None:
        """Force the last price: the newest candle's close (and high/low) move to it; fills what it crosses."""
        with self.lock:
            m = self.markets[market]
            p = m.set_last(price)
            self.engine.match(m, p, p)

    def advance(self, steps: int = 1) -> int:
        """Close `steps` more candles in every market; fill limit orders they cross."""
        with self.lock:
            for _ in range(steps):
                for m in self.markets.values():
                    _o, hi, lo, _c, _v = m.step()
                    self.engine.match(m, lo, hi)
                self.steps += 1
            return self.steps

    def candles(self, market: str, interval: str | None = None) -> list[list]:
        """Candles oldest first as [ts_ms, o, h, l, c, v]; the newest is the one containing now."""
        with self.lock:
            return self.markets[market].candles_at(self.now_ms(), interval)

    def revise_candles(self, market: str) -> None:
        """With candle_revisions=k, the k closed candles before the newest change a little (MarketState.revise)."""
        k = self.mode.candle_revisions
        if not k:
            return
        with self.lock:
            self.markets[market].revise(k)

    def assets_json(self) -> list[dict]:
        return wire.assets_json(self.markets.values())

    def ticker_24h(self, name: str) -> dict:
        with self.lock:
            m = self.market(name)
            now = self.now_ms()
            return wire.ticker_24h(m, self.candles(name)[-(86_400_000 // self.interval_ms) :], now)

    def book(self, name: str, depth: int) -> dict:
        with self.lock:
            return wire.book_json(self.market(name), depth)

    # --- faults --------------------------------------------------------------

    def add_fault(
        self,
        kind: str,
        on: str = "create_order",
        count: int | None = 1,
        delay: float | None = None,
        accept: bool | None = None,
        status: int | None = None,
    ) -> Fault:
        """Arm a fault for the next `count` requests of kind `on` (None = every one)."""
        return self.arm(make_fault(kind, on=on, count=count, delay=delay, accept=accept, status=status))

    def arm(self, fault: Fault) -> Fault:
        """Arm an already built fault (from ``parse_fault_spec``, the CLI or the admin endpoint)."""
        with self.lock:
            return self.armed.arm(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.armed.clear()

    def faults(self) -> list[Fault]:
        with self.lock:
            return self.armed.all()

    def take_fault(self, request_kind: str) -> Fault | None:
        """The first armed fault matching this request; uses up one of its count."""
        with self.lock:
            return self.armed.take(request_kind)

    # --- orders ---------------------------------------------------------------

    def orders(self, key: str | None = None) -> list[dict]:
        """Every order the exchange accepted, oldest first, incl. operatorId and apiKey (the account's first key)."""
        with self.lock:
            return self.engine.all_orders(self.owner(key))

    def trades(self, key: str | None = None) -> list[dict]:
        """Every fill, oldest first, as GET /trades rows plus apiKey (the account's first key)."""
        with self.lock:
            return self.engine.all_trades(self.owner(key))

    def settle_fills(self) -> int:
        """Settle every unsettled fill now (POST /_sim/settle); returns how many."""
        with self.lock:
            return self.engine.matcher.settle_all()

    def add_outcome(
        self,
        kind: str = "filled",
        *,
        fraction=None,
        fills: int = 1,
        step_ticks: int = 1,
        on_hold=None,
        count: int | None = 1,
    ) -> Outcome:
        """Make the next `count` market orders end as `kind` (see ``Outcome``)."""
        with self.lock:
            return self.engine.outcomes.add(kind, fraction, fills, step_ticks, on_hold, count)

    def outcomes(self) -> list[Outcome]:
        with self.lock:
            return self.engine.outcomes.all()

    def clear_outcomes(self) -> None:
        with self.lock:
            self.engine.outcomes.clear()

    # The REST operations on orders, as the server calls them (key = the account's books key).

    def create_order(self, key: str, body: dict) -> dict:
        with self.lock:
            return self.engine.create_order(key, body)

    def get_order(self, key: str, params: dict) -> dict:
        with self.lock:
            return self.engine.get_order(key, params)

    def cancel_order(self, key: str, params: dict) -> dict:
        with self.lock:
            return self.engine.cancel_order(key, params)

    def cancel_orders(self, key: str, params: dict) -> list[dict]:
        with self.lock:
            return self.engine.cancel_orders(key, params)

    def list_orders(self, key: str, params: dict) -> list[dict]:
        with self.lock:
            return self.engine.list_orders(key, params)

    def open_orders(self, key: str, params: dict) -> list[dict]:
        with self.lock:
            return self.engine.open_orders(key, params)

    def list_trades(self, key: str | None, params: dict) -> list[dict]:
        """GET /trades (key given) or the public GET /{market}/trades (key None)."""
        with self.lock:
            return self.engine.list_trades(key, params)

    # --- looking at it, serving it -----------------------------------------------------

    def state_json(self) -> dict:
        """Everything a test or a person wants to look at, as JSON-ready data."""
        with self.lock:
            balances, accounts = self.accounts.state()
            return {
                "time": self.now_ms(),
                "steps": self.steps,
                "prices": {n: s(m.last) for n, m in self.markets.items()},
                "balances": balances,
                "accounts": accounts,
                "markets": {n: m.status for n, m in self.markets.items()},
                "modes": self.modes(),
                "outcomes": [x.as_dict() for x in self.engine.outcomes.all()],
                "orders": self.orders(),
                "trades": self.trades(),
                "faults": [f.as_dict() for f in self.armed.all()],
            }

    def serve(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> SimServer:
        """Start the REST server on a daemon thread; returns a handle (url, port, close())."""
        server = SimServer(self, host, port, verbose=verbose)
        self._servers.append(server)
        return server

    def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
