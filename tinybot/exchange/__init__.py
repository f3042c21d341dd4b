"""Exchange backends behind one contract (see base.py).

``read_only(cfg)`` is the client every module but the executor uses: market
data, balances and order lookups, and order methods that raise.  In live
mode market data and balances use the view key, and order/trade lookups the
trade key behind a GET-only endpoint, read by a reader that has no method to
place or cancel (Bitvavo lets only a key with trade rights read orders; see
bitvavo/).
The trading client is built only by ``tinybot.trade.executor.trading_exchange``.
Nothing here imports ccxt until a Bitvavo client is actually built.
"""

from __future__ import annotations

from .base import READ_METHODS, ReadOnlyClientError


def market_data(cfg, *, rate_limit: bool = True):
    """Prices and markets: fixed [paper] prices when configured, else Bitvavo (or exchange.url)."""
    if cfg.mode == "paper" and cfg.paper.prices:
        from .static import StaticMarketData

        return StaticMarketData(cfg.paper.prices)
    from .bitvavo.clients import read_only_client

    return read_only_client(cfg, rate_limit=rate_limit)


class ReadOnlyView:
    """Exposes only the read half of an exchange; order methods raise."""

    def __init__(self, inner):
        self._inner = inner
        self.name = inner.name
        for m in READ_METHODS:
            if hasattr(inner, m):
                setattr(self, m, getattr(inner, m))

    def send_order(self, *a, **k):
        raise ReadOnlyClientError("this is a read-only exchange client; only the executor places orders")

    def cancel_order(self, *a, **k):
        raise ReadOnlyClientError("this is a read-only exchange client; only the executor cancels orders")


def read_only(cfg, source=None, *, rate_limit: bool = True):
    """The read-only client for cfg's mode (paper: the paper account over market data).

    ``rate_limit=False`` turns off ccxt's client-side throttle on every key
    it holds (the simulator-backed soak; never for the real exchange).
    """
    if cfg.mode == "paper":
        from .paper import PaperExchange

        return ReadOnlyView(
            PaperExchange(
                cfg.db_path,
                source or market_data(cfg, rate_limit=rate_limit),
                starting_eur=cfg.paper.starting_eur,
                taker_fee=cfg.paper.taker_fee,
            )
        )
    return source or market_data(cfg, rate_limit=rate_limit)
