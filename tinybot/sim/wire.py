"""What crosses the wire: the JSON shapes Bitvavo answers with, its refusals, and the request values it checks.

Pure functions over the simulator's records (no state, no lock): the engine,
the market state and the server call them. Numbers leave as strings, as
Bitvavo writes them.
"""

from __future__ import annotations

import uuid
from decimal import Decimal, InvalidOperation

# Where each behaviour comes from (docs/SIMULATOR.md has the full table with the tests).
DOCS = "https://docs.bitvavo.com/docs"
SRC_ERRORS = DOCS + "/errors"
SRC_RATE_LIMITS = DOCS + "/rate-limits"
SRC_SDK_RIGHTS = (
    "github.com/bitvavo/python-bitvavo-api README, 'Possible rights are' (Trade: place, update, view and cancel orders)"
)
SRC_CCXT_FIXTURES = "github.com/ccxt/ccxt ts/src/test/static/response/bitvavo.json (recorded responses)"

OPEN_STATUSES = ("new", "partiallyFilled", "awaitingTrigger")


class SimError(Exception):
    """A refusal the exchange answers with ``{"errorCode": code, "error": message}``."""

    def __init__(self, status: int, code: int, message: str):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def as_json(self) -> dict:
        return {"errorCode": self.code, "error": self.message}


def bad(code: int, message: str) -> SimError:
    return SimError(400, code, message)


def order_not_found() -> SimError:
    return SimError(
        404,
        240,
        "No order found. Please be aware that simultaneously updating the same order may return this error.",
    )


def rate_limit_refusal(code: int, limit: int, reset_at: int) -> SimError:
    """The 429 answer for a blocked identity, in the errorCode the rate_limit_code mode picks."""
    if code == 105:  # SRC_ERRORS (and ccxt's table): the text says when the ban ends
        return SimError(
            429,
            105,
            f"Your IP or API key has been banned for not respecting the rate limit. The ban expires at {reset_at}.",
        )
    return SimError(
        429,
        110,
        f"Rate limit exceeded: {limit} weight per minute. Requests are allowed again at {reset_at}.",
    )


# --- numbers ------------------------------------------------------------------------------


def s(x: Decimal) -> str:
    """Decimal → plain string without trailing zeros, never scientific notation.

    As Bitvavo writes numbers (SRC_CCXT_FIXTURES: "0.0002", "6.8976", "34469", "16.48").
    """
    return format(x.normalize(), "f") if x else "0"


def dec(value, name: str) -> Decimal:
    """Parse an incoming number (string or JSON number); 205 if it is not one."""
    if isinstance(value, bool) or value is None:
        raise bad(205, f"{name} parameter is invalid.")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise bad(205, f"{name} parameter is invalid.") from None
    if not d.is_finite():
        raise bad(205, f"{name} parameter is invalid.")
    return d


def decimals_of(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


def is_uuid(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


# --- orders, fills, trades ------------------------------------------------------------------


def order_json(o: dict, m, on_hold: Decimal | None = None, live: bool = True) -> dict:
    """An order record as Bitvavo answers it; `on_hold` overrides what the record holds (an outcome's).

    ``live`` (the live_shapes mode): a filled buy by amountQuote shows its fee as amountQuoteRemaining,
    as seen on the live exchange (issue 24); otherwise "0"."""
    out = {"orderId": o["orderId"]}
    if o["clientOrderId"]:
        out["clientOrderId"] = o["clientOrderId"]
    out |= {
        "market": o["market"],
        "created": o["created"],
        "updated": o["updated"],
        "status": o["status"],
        "side": o["side"],
        "orderType": o["orderType"],
    }
    # An order by amountQuote echoes amountQuote/amountQuoteRemaining and no amount, for
    # sells too (docs get-orders: "If you set amountQuote in your order, amount is not returned").
    # Remainders are what is left after the fills, whatever the status.
    sent = o.get("sent", {})
    if o["amountQuote"] is not None:
        out["amountQuote"] = sent.get("amountQuote", s(o["amountQuote"]))
        spent = o["filledQuote"] + (o["fee"] if o["side"] == "buy" else 0)
        if o["status"] == "filled":
            out["amountQuoteRemaining"] = s(o["amountQuote"] - o["filledQuote"]) if live else "0"
        else:
            out["amountQuoteRemaining"] = s(max(Decimal(0), o["amountQuote"] - spent))
    elif o["amount"] is not None:
        out["amount"] = sent.get("amount", s(o["amount"]))
        out["amountRemaining"] = s(o["amount"] - o["filled"])
    if o["price"] is not None:
        out["price"] = sent.get("price", s(o["price"]))
    held = o["held"] if o["status"] in OPEN_STATUSES else Decimal(0)
    if on_hold is not None:
        held = on_hold
    out |= {
        "onHold": s(held),
        "onHoldCurrency": m.quote if o["side"] == "buy" else m.base,
        "filledAmount": s(o["filled"]),
        "filledAmountQuote": s(o["filledQuote"]),
        # feePaid counts settled fills only: an unsettled fill has no fee yet.
        "feePaid": s(sum((t["fee"] for t in o["fills"] if t["settled"]), Decimal(0))),
        "feeCurrency": m.quote,
        "fills": [fill_json(t) for t in o["fills"]],
        "selfTradePrevention": o["selfTradePrevention"],
        "visible": o["orderType"] == "limit",
    }
    if o["orderType"] == "limit":  # the recorded market orders (SRC_CCXT_FIXTURES) carry neither
        out |= {"timeInForce": o["timeInForce"], "postOnly": o["postOnly"]}
    return out | {"disableMarketProtection": False, "operatorId": o["operatorId"]}


def fill_json(t: dict) -> dict:
    # BITVAVO.md: a fill carries fee and feeCurrency only once settled is true.
    out = {
        "id": t["id"],
        "timestamp": t["timestamp"],
        "amount": s(t["amount"]),
        "price": s(t["price"]),
        "taker": t["taker"],
    }
    if t["settled"]:
        out |= {"fee": s(t["fee"]), "feeCurrency": t["feeCurrency"]}
    return out | {"settled": t["settled"]}


def trade_json(t: dict) -> dict:
    """A row of GET /trades (the account's own fills)."""
    out = {"id": t["id"], "orderId": t["orderId"]}
    if t["clientOrderId"]:
        out["clientOrderId"] = t["clientOrderId"]
    return (
        out
        | {"timestamp": t["timestamp"], "market": t["market"], "side": t["side"]}
        | {k: v for k, v in fill_json(t).items() if k not in ("id", "timestamp")}
    )


def public_trade_json(t: dict) -> dict:
    """A row of GET /{market}/trades: nobody's order, no fee."""
    return {
        "id": t["id"],
        "timestamp": t["timestamp"],
        "amount": s(t["amount"]),
        "price": s(t["price"]),
        "side": t["side"],
    }


def canceled_json(o: dict, operator_id: int) -> dict:
    out = {"orderId": o["orderId"]}
    if o["clientOrderId"]:
        out["clientOrderId"] = o["clientOrderId"]
    return out | {"operatorId": operator_id}


# --- account ----------------------------------------------------------------------------------


def balance_rows(available: dict, in_order: dict, symbol: str | None, zero_rows: bool) -> list[dict]:
    """GET /balance rows. docs websocket-api/get-account-balance: without a symbol it "returns
    the balance for all assets above zero"; SRC_CCXT_FIXTURES (a 2023 recording) still lists
    zero rows, which balance_zero_rows=True reproduces. A symbol asked for is always answered."""
    assets = sorted(set(available) | set(in_order) | ({symbol} if symbol else set()), key=lambda a: (a != "EUR", a))
    rows = [
        {"symbol": a, "available": s(available.get(a, Decimal(0))), "inOrder": s(in_order.get(a, Decimal(0)))}
        for a in assets
        if symbol in (None, a)
    ]
    if symbol is None and not zero_rows:
        rows = [r for r in rows if Decimal(r["available"]) or Decimal(r["inOrder"])]
    return rows


def fees_json(taker: Decimal, maker: Decimal) -> dict:
    return {"tier": "0", "volume": "0.00", "taker": format(taker, "f"), "maker": format(maker, "f")}


def account_json(taker: Decimal, maker: Decimal) -> dict:
    return {
        "fees": fees_json(taker, maker),
        "capabilities": ["buy", "sell", "depositCrypto", "depositFiat", "withdrawCrypto", "withdrawFiat"],
    }


# --- markets and market data ---------------------------------------------------------------


def market_json(m, live: bool = True) -> dict:
    """A row of GET /markets; ``live``: quantityDecimals/notionalDecimals as integers, as seen live (the
    docs' example shows them as numbers too), else as strings."""
    decimals = (lambda n: n) if live else str
    return {
        "market": m.name,
        "status": m.status,
        "base": m.base,
        "quote": m.quote,
        "pricePrecision": None,
        "tickSize": s(m.tick),
        "minOrderInBaseAsset": s(m.min_base),
        "minOrderInQuoteAsset": "5.00",
        "maxOrderInBaseAsset": "1000000000.00000000",
        "maxOrderInQuoteAsset": "1000000000.00",
        "quantityDecimals": decimals(m.quantity_decimals),
        "notionalDecimals": decimals(m.notional_decimals),
        "maxOpenOrders": "100",
        "feeCategory": "A",
        "orderTypes": ["market", "limit"],
    }


def assets_json(markets) -> list[dict]:
    """GET /assets: EUR first, then every base and quote of `markets`."""
    names = {"EUR": "Euro", "BTC": "Bitcoin", "ETH": "Ethereum"}
    symbols = ["EUR"] + sorted({m.base for m in markets} | {m.quote for m in markets} - {"EUR"})
    out = []
    for sym in symbols:
        fiat = sym == "EUR"
        out.append(
            {
                "symbol": sym,
                "name": names.get(sym, sym),
                "decimals": 2 if fiat else 8,
                "depositFee": "0",
                "depositConfirmations": 0 if fiat else 10,
                "depositStatus": "OK",
                "withdrawalFee": "0" if fiat else "0.0001",
                "withdrawalMinAmount": "0" if fiat else "0.001",
                "withdrawalStatus": "OK",
                # ccxt takes a currency's precision from its networks: without
                # SEPA on EUR, cost-based (amountQuote) market orders break.
                "networks": ["SEPA"] if fiat else [sym],
                "message": "",
            }
        )
    return out


def ticker_price(m) -> dict:
    return {"market": m.name, "price": format(m.last, "f")}


def ticker_book(m) -> dict:
    bid, ask = m.bid_ask()
    return {
        "market": m.name,
        "bid": format(bid, "f"),
        "bidSize": "0.50000000",
        "ask": format(ask, "f"),
        "askSize": "0.50000000",
    }


def ticker_24h(m, rows: list, now: int) -> dict:
    """GET /ticker/24h of market `m` from its candle `rows` ([ts, o, h, l, c, v], oldest first) of the last day."""
    bid, ask = m.bid_ask()
    vol = sum((r[5] for r in rows), Decimal(0))
    vq = sum((r[5] * r[4] for r in rows), Decimal(0)).quantize(Decimal("0.01"))
    return {
        "market": m.name,
        "startTimestamp": now - 86_400_000,
        "timestamp": now,
        "open": s(rows[0][1]),
        "openTimestamp": rows[0][0],
        "high": s(max(r[2] for r in rows)),
        "low": s(min(r[3] for r in rows)),
        "last": s(m.last),
        "closeTimestamp": rows[-1][0],
        "bid": s(bid),
        "bidSize": "0.50000000",
        "ask": s(ask),
        "askSize": "0.50000000",
        "volume": s(vol),
        "volumeQuote": s(vq),
    }


def book_json(m, depth: int) -> dict:
    bids, asks = m.levels(depth)
    return {
        "market": m.name,
        "nonce": m.nonce,
        "bids": [[s(p), s(q)] for p, q in bids],
        "asks": [[s(p), s(q)] for p, q in asks],
    }


def candle_rows(rows: list, live: bool = True) -> list[list]:
    """GET /{market}/candles rows: ``[ts, "o", "h", "l", "c", "v"]`` (SRC_CCXT_FIXTURES, fetchOHLCV); ``live``:
    the timestamp as a string, as docs rest-api/get-candlestick-data's example and the live exchange send it."""
    return [candle_row(r, live) for r in rows]


def candle_row(r, live: bool = True) -> list:
    """One row of ``candle_rows``."""
    return [
        str(r[0]) if live else r[0],
        format(r[1], "f"),
        format(r[2], "f"),
        format(r[3], "f"),
        format(r[4], "f"),
        format(r[5], "f"),
    ]


# --- requests: what Bitvavo checks in them ----------------------------------------------------


def window(params: dict, default_limit: int, max_limit: int) -> tuple[int | None, int | None, int]:
    """The ``start``, ``end`` (ms) and ``limit`` url parameters of a list request (205 if not numbers)."""

    def num(name):
        v = params.get(name)
        if v is None:
            return None
        if not str(v).isdigit():
            raise bad(205, f"{name} parameter is invalid.")
        return int(v)

    start, end, limit = num("start"), num("end"), num("limit")
    if limit is None:
        limit = default_limit
    if not 1 <= limit <= max_limit:
        raise bad(205, "limit parameter is invalid.")
    return start, end, limit


_ORDER_PARAMS = {
    "market",
    "side",
    "orderType",
    "amount",
    "amountQuote",
    "price",
    "timeInForce",
    "postOnly",
    "selfTradePrevention",
    "disableMarketProtection",
    "responseRequired",
    "clientOrderId",
    "operatorId",
}


def order_params(body: dict) -> tuple:
    """The body's own checks (201 unknown, 203 missing, 205 invalid), before any market is looked at."""
    for k in body:
        if k not in _ORDER_PARAMS:
            raise bad(201, f"{k} body parameter is not supported.")
    for k in ("market", "side", "orderType", "operatorId"):
        if k not in body:
            raise bad(203, f"{k} parameter is required.")
    operator_id = body["operatorId"]
    if isinstance(operator_id, bool) or not isinstance(operator_id, int) or operator_id < 1:
        raise bad(205, "operatorId parameter is invalid.")
    side, otype = body["side"], body["orderType"]
    if side not in ("buy", "sell"):
        raise bad(205, "side parameter is invalid.")
    if otype not in ("market", "limit"):
        raise bad(205, "orderType parameter is invalid (the simulator models market and limit only).")
    cid = body.get("clientOrderId")
    if cid is not None and not is_uuid(cid):
        raise bad(205, "clientOrderId parameter is invalid.")
    tif = body.get("timeInForce", "GTC")
    if tif not in ("GTC", "IOC", "FOK"):
        raise bad(205, "timeInForce parameter is invalid.")
    post_only = body.get("postOnly", False)
    if not isinstance(post_only, bool):
        raise bad(205, "postOnly parameter is invalid.")
    stp = body.get("selfTradePrevention", "decrementAndCancel")
    if stp not in ("decrementAndCancel", "cancelOldest", "cancelNewest", "cancelBoth"):
        raise bad(205, "selfTradePrevention parameter is invalid.")
    return operator_id, side, otype, cid, tif, post_only, stp


def order_shape(otype: str, body: dict, post_only: bool) -> None:
    """Which amounts an order type takes (202 not supported, 203 missing, 206 both)."""
    if otype == "market":
        if "price" in body:
            raise bad(202, "price order parameter is not supported.")
        if post_only:
            raise bad(202, "postOnly order parameter is not supported.")
        if ("amount" in body) == ("amountQuote" in body):
            if "amount" in body:
                raise bad(
                    206,
                    "Use either amount or amountQuote. The usage of both parameters at the same time is not supported.",
                )
            raise bad(203, "amount or amountQuote parameter is required.")
        return
    if "amountQuote" in body:
        raise bad(202, "amountQuote order parameter is not supported.")
    for k in ("amount", "price"):
        if k not in body:
            raise bad(203, f"{k} parameter is required.")


def order_amounts(m, body: dict) -> tuple:
    """amount, amountQuote and price as Decimals.  Too many decimals is errorCode 205 ("amount parameter is
    invalid": what the real exchange answered an XRP amount with 14 decimals, ccxt issue 19346; BITVAVO.md's
    429 is not what it sends), a price off the tick size 422 (docs releases v2.12.0); a value that is no
    positive number is 205 too."""
    amount = amount_quote = price = None
    if "amount" in body:
        amount = dec(body["amount"], "amount")
        if amount <= 0:
            raise bad(205, "amount parameter is invalid.")
        if decimals_of(amount) > m.quantity_decimals:
            raise bad(205, "amount parameter is invalid.")  # too many decimals: 205 on the real exchange
    if "amountQuote" in body:
        amount_quote = dec(body["amountQuote"], "amountQuote")
        if amount_quote <= 0:
            raise bad(205, "amountQuote parameter is invalid.")
        if decimals_of(amount_quote) > m.notional_decimals:
            raise bad(205, "amountQuote parameter is invalid.")
    if "price" in body:
        price = dec(body["price"], "price")
        if price <= 0:
            raise bad(213, "Price is below the minimum allowed amount.")
        if decimals_of(price) > 15:
            raise bad(215, "Price is too detailed. A maximum of 15 digits behind the decimal point are allowed.")
        if price % m.tick != 0:
            # docs.bitvavo.com/releases/v2.12.0: prices must be multiples of the tick size.
            raise bad(422, f"Invalid price tick size: price must be a multiple of {s(m.tick)}.")
    return amount, amount_quote, price
