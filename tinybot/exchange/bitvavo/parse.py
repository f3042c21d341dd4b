"""Bitvavo's raw JSON answers → tinybot's contract objects, every number a Decimal from Bitvavo's string.

Orders, fills, markets, tickers, candles, balances and the server time. A
malformed answer raises ``ExchangeError`` with one readable line, never a
KeyError or an echo of an HTML page. No ccxt here: these functions read what
ccxt's raw endpoint methods (``publicGetMarkets``, ``privateGetOrder`` …)
hand back untouched.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from ..base import Balance, Candle, ExchangeError, Fill, Market, Order, Ticker


def parse_answer(what: str, fn: Callable, raw: Any) -> Any:
    """``fn(raw)``, or an ExchangeError that names the request (``what``) and what came back."""
    try:
        return fn(raw)
    except ExchangeError as e:
        raise ExchangeError(f"Bitvavo {what}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise ExchangeError(f"Bitvavo sent an unexpected answer to {what}: {shape(raw)}") from None


def shape(raw: Any) -> str:
    """What an unexpected answer looked like, without echoing HTML or control bytes."""
    if isinstance(raw, (str, bytes)):
        return f"not JSON ({len(raw)} characters)"
    text = json.dumps(raw, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


# --- fields ----------------------------------------------------------------------------------


def _dec(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ExchangeError(f"Bitvavo sent no number for {what}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ExchangeError(f"Bitvavo sent {value!r} for {what}, not a number") from None
    if not d.is_finite():
        raise ExchangeError(f"Bitvavo sent {value!r} for {what}, not a number")
    return d


def _opt_dec(value: Any, what: str) -> Decimal | None:
    return None if value is None or value == "" else _dec(value, what)


def whole_number(value: Any, what: str) -> int:
    """A timestamp or a count as Bitvavo sent it (a string or a number)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExchangeError(f"Bitvavo sent {value!r} for {what}, not a whole number") from None


def _field(raw: Any, key: str, what: str) -> Any:
    if not isinstance(raw, dict) or raw.get(key) is None:
        raise ExchangeError(f"Bitvavo's {what} has no {key!r}")
    return raw[key]


def _status(raw: str) -> str:
    # canceledAuction, canceledIOC, … are all "canceled" to tinybot
    return "canceled" if raw.startswith("canceled") else raw


def _fee(raw: dict, what: str) -> tuple[bool, Decimal]:
    """(settled, fee) of one fill: Bitvavo sends fee and feeCurrency only once ``settled`` is true.

    An unsettled fill (``settled: false``, or no fee yet) has fee 0 for now;
    a later lookup of the same fill brings the real one.
    """
    fee = _opt_dec(raw.get("fee"), f"{what} fee")
    if raw.get("settled") is False or fee is None:
        return False, Decimal(0)
    return True, fee


# --- orders and fills ---------------------------------------------------------------------------


def order_from_raw(raw: dict, client_order_id: str | None = None) -> Order:
    """An ``Order`` from Bitvavo's own order JSON (ccxt's ``order["info"]``)."""
    oid = str(_field(raw, "orderId", "order"))
    market = str(_field(raw, "market", "order"))
    side = _field(raw, "side", "order")
    if side not in ("buy", "sell"):
        raise ExchangeError(f"Bitvavo's order {oid} has side {side!r}")
    fills = []
    for f in raw.get("fills") or ():
        settled, fee = _fee(f, "fill")
        fills.append(
            Fill(
                trade_id=str(_field(f, "id", "fill")),
                order_id=oid,
                market=market,
                side=side,
                amount=_dec(f.get("amount"), "fill amount"),
                price=_dec(f.get("price"), "fill price"),
                fee=fee,
                fee_currency=str(f.get("feeCurrency") or raw.get("feeCurrency") or ""),
                timestamp_ms=whole_number(f.get("timestamp"), "fill timestamp"),
                settled=settled,
            )
        )
    return Order(
        order_id=oid,
        client_order_id=raw.get("clientOrderId") or client_order_id,
        market=market,
        side=side,
        order_type=str(raw.get("orderType") or "market"),
        status=_status(str(_field(raw, "status", "order"))),
        amount=_opt_dec(raw.get("amount"), "order amount"),
        amount_quote=_opt_dec(raw.get("amountQuote"), "order amountQuote"),
        filled_amount=_opt_dec(raw.get("filledAmount"), "filledAmount") or Decimal(0),
        filled_amount_quote=_opt_dec(raw.get("filledAmountQuote"), "filledAmountQuote") or Decimal(0),
        fee_paid=_opt_dec(raw.get("feePaid"), "feePaid") or Decimal(0),
        fee_currency=raw.get("feeCurrency") or None,
        created_ms=whole_number(raw.get("created"), "order created"),
        fills=tuple(fills),
    )


def fill_from_raw(raw: dict) -> Fill:
    """A ``Fill`` from one row of Bitvavo's ``GET /trades``."""
    side = _field(raw, "side", "trade")
    if side not in ("buy", "sell"):
        raise ExchangeError(f"Bitvavo's trade has side {side!r}")
    settled, fee = _fee(raw, "trade")
    return Fill(
        trade_id=str(_field(raw, "id", "trade")),
        order_id=str(_field(raw, "orderId", "trade")),
        market=str(_field(raw, "market", "trade")),
        side=side,
        amount=_dec(raw.get("amount"), "trade amount"),
        price=_dec(raw.get("price"), "trade price"),
        fee=fee,
        fee_currency=str(raw.get("feeCurrency") or ""),
        timestamp_ms=whole_number(raw.get("timestamp"), "trade timestamp"),
        settled=settled,
    )


# --- markets and market data -----------------------------------------------------------------------


def markets_from_raw(rows: Any) -> tuple[dict[str, Market], dict[str, str]]:
    """Bitvavo's market table → (usable markets, {row: why it was skipped}).

    One malformed row (a new listing with a field missing, a typo upstream)
    must not make every market unusable: it is left out and reported.
    """
    if not isinstance(rows, list):
        raise ExchangeError(f"Bitvavo sent an unexpected answer to markets: {shape(rows)}")
    good: dict[str, Market] = {}
    skipped: dict[str, str] = {}
    for i, row in enumerate(rows):
        name = str(row.get("market")) if isinstance(row, dict) and row.get("market") else f"row {i}"
        try:
            m = market_from_raw(row)
        except ExchangeError as e:
            skipped[name] = str(e)
            continue
        good[m.name] = m
    if rows and not good:
        raise ExchangeError(
            f"Bitvavo's market table has no usable row ({len(rows)} malformed, e.g. {next(iter(skipped.values()))})"
        )
    return good, skipped


def market_from_raw(raw: dict) -> Market:
    name = str(_field(raw, "market", "market"))
    return Market(
        name=name,
        base=str(_field(raw, "base", f"market {name}")),
        quote=str(_field(raw, "quote", f"market {name}")),
        status=str(_field(raw, "status", f"market {name}")),
        tick_size=_dec(raw.get("tickSize"), f"{name} tickSize"),
        quantity_decimals=whole_number(raw.get("quantityDecimals"), f"{name} quantityDecimals"),
        notional_decimals=whole_number(raw.get("notionalDecimals"), f"{name} notionalDecimals"),
        min_quote=_dec(raw.get("minOrderInQuoteAsset"), f"{name} minOrderInQuoteAsset"),
        min_base=_opt_dec(raw.get("minOrderInBaseAsset"), f"{name} minOrderInBaseAsset") or Decimal(0),
    )


def ticker_from_raw(market: str, raw: dict) -> Ticker:
    """One market's ``GET /ticker/24h?market=`` answer."""
    return Ticker(
        market=market,
        bid=_dec(raw.get("bid"), f"{market} bid"),
        ask=_dec(raw.get("ask"), f"{market} ask"),
        last=_dec(raw.get("last"), f"{market} last"),
        timestamp_ms=whole_number(raw.get("timestamp"), f"{market} timestamp"),
    )


def candles_from_raw(rows: list) -> list[Candle]:
    """``GET /{market}/candles`` rows ``[time, open, high, low, close, volume]``, oldest first."""
    out = [
        Candle(
            whole_number(r[0], "candle time"),
            _dec(r[1], "open"),
            _dec(r[2], "high"),
            _dec(r[3], "low"),
            _dec(r[4], "close"),
            _dec(r[5], "volume"),
        )
        for r in rows
    ]
    return sorted(out, key=lambda c: c.timestamp_ms)  # Bitvavo sends newest first


def balances_from_raw(rows: list) -> dict[str, Balance]:
    """``GET /balance``: Bitvavo leaves out zero balances, so a missing asset holds 0."""
    return {
        str(r["symbol"]): Balance(
            _dec(r.get("available"), f"{r['symbol']} available"),
            _opt_dec(r.get("inOrder"), f"{r['symbol']} inOrder") or Decimal(0),
        )
        for r in rows
    }


def time_from_raw(raw: dict) -> int:
    """``GET /time``: the server's clock in unix milliseconds."""
    return whole_number(raw["time"], "time")
