"""Bitvavo REST v2 over HTTP on loopback: routing, signatures, rate limit, faults, admin.

Paths are served with and without the ``/v2`` prefix (ccxt requests
``/v2/...``); the signature is always checked over ``"/v2" + path``, which is
what Bitvavo clients sign. The handler talks to a ``Simulator`` (simulator.py)
only through the ``sim`` its server carries, and never imports it: the
simulator imports this module to serve itself.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import ipaddress
import json
import operator
import re
import socket
import struct
import sys
import threading
import traceback
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

from . import wire
from .faults import make_fault, parse_fault_spec
from .market import INTERVALS
from .wire import SimError, bad

_STAMP = operator.itemgetter(0)  # a candle row's timestamp
_SIG_RE = re.compile(r"[0-9a-fA-F]{64}")
_MARKET_PATH = re.compile(r"/([A-Za-z0-9]+-[A-Za-z0-9]+)/(book|candles|trades)")

_HTML_5XX = (
    b"<html><head><title>502 Bad Gateway</title></head><body>"
    b"<center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body></html>\n"
)
_GARBAGE = b"<<<\x00 not json: upstream said OK \xff>>>"


class Route:
    """One endpoint: its fault kind, whether it is signed, the right it needs, its url parameters and weight."""

    def __init__(self, kind, private, perm, params, weight, call):
        self.kind, self.private, self.perm = kind, private, perm
        self.params = params  # allowed url parameters (GET/DELETE)
        self.weight = weight  # int or callable(params) -> int
        self.call = call  # (sim, key, params, path_market) -> JSON-able

    def cost(self, params: dict) -> int:
        return self.weight(params) if callable(self.weight) else self.weight


def _one_or_all(params, one, everything):
    return one(params["market"]) if "market" in params else everything()


def _depth(params) -> int:
    raw = params.get("depth", "1000")
    if not str(raw).isdigit():
        raise bad(205, "depth parameter is invalid.")
    return int(raw)


def _candles(sim, market: str, params: dict) -> list:
    sim.market(market)
    interval = params.get("interval")
    if interval is None:
        raise bad(203, "interval parameter is required.")
    if interval not in INTERVALS or INTERVALS[interval] * 1000 < sim.interval_ms:
        raise bad(205, "interval parameter is invalid.")
    start, end, limit = wire.window(params, 1440, 1440)
    step = INTERVALS[interval] * 1000
    for name, bound in (("start", start), ("end", end)):
        # docs rest-api/get-candlestick-data: start and end "must align exactly" with the interval
        if bound is not None and bound % step:
            raise bad(205, f"{name} parameter is invalid: it must align exactly with a {interval} interval.")
    sim.revise_candles(market)
    rows = sim.candles(market, interval)  # oldest first, one per timestamp: the window is found by bisection
    lo = 0 if start is None else bisect.bisect_left(rows, start, key=_STAMP)
    hi = len(rows)
    if end is not None:
        hi = (bisect.bisect_right if sim.candle_end == "inclusive" else bisect.bisect_left)(rows, end, key=_STAMP)
    newest_first = rows[max(lo, hi - limit) : hi][::-1]
    return sim.market(market).candle_wire(newest_first, step, sim.now_ms(), sim.live_shapes)


def _assets(sim, params: dict):
    assets = sim.assets_json()
    if "symbol" not in params:
        return assets
    for a in assets:
        if a["symbol"] == params["symbol"]:
            return a
    raise bad(205, "symbol parameter is invalid.")


def _listed(sim, name):
    m = sim.market(name)
    if m.status == "delisted":  # no longer listed: GET /markets does not know it
        raise bad(205, "market parameter is invalid.")
    return m


def _fees(sim) -> dict:
    return wire.fees_json(sim.taker_fee, sim.maker_fee)


ROUTES = {
    ("GET", "/time"): Route(
        "time", False, None, (), 1, lambda sim, k, p, m: {"time": sim.now_ms(), "timeNs": sim.now_ms() * 1_000_000}
    ),
    ("GET", "/markets"): Route(
        "markets",
        False,
        None,
        ("market",),
        1,
        lambda sim, k, p, m: _one_or_all(
            p,
            lambda n: wire.market_json(_listed(sim, n), sim.live_shapes),
            lambda: [wire.market_json(x, sim.live_shapes) for x in sim.listed_markets()],
        ),
    ),
    ("GET", "/assets"): Route("assets", False, None, ("symbol",), 1, lambda sim, k, p, m: _assets(sim, p)),
    ("GET", "/ticker/price"): Route(
        "ticker",
        False,
        None,
        ("market",),
        1,
        lambda sim, k, p, m: _one_or_all(
            p,
            lambda n: wire.ticker_price(sim.market(n)),
            lambda: [wire.ticker_price(sim.market(n)) for n in sim.markets],
        ),
    ),
    ("GET", "/ticker/book"): Route(
        "ticker",
        False,
        None,
        ("market",),
        1,
        lambda sim, k, p, m: _one_or_all(
            p,
            lambda n: wire.ticker_book(sim.market(n)),
            lambda: [wire.ticker_book(sim.market(n)) for n in sim.markets],
        ),
    ),
    ("GET", "/ticker/24h"): Route(
        "ticker",
        False,
        None,
        ("market",),
        lambda p: 1 if "market" in p else 25,
        lambda sim, k, p, m: _one_or_all(p, sim.ticker_24h, lambda: [sim.ticker_24h(n) for n in sim.markets]),
    ),
    ("GET", "book"): Route("book", False, None, ("depth",), 1, lambda sim, k, p, m: sim.book(m, _depth(p))),
    ("GET", "candles"): Route(
        "candles", False, None, ("interval", "limit", "start", "end"), 1, lambda sim, k, p, m: _candles(sim, m, p)
    ),
    ("GET", "trades"): Route(
        "public_trades",
        False,
        None,
        ("limit", "start", "end", "tradeIdFrom", "tradeIdTo"),
        5,
        lambda sim, k, p, m: sim.list_trades(None, {**p, "market": m}),
    ),
    ("GET", "/balance"): Route(
        "balance", True, "view", ("symbol",), 5, lambda sim, k, p, m: sim.balances_json(k, p.get("symbol"))
    ),
    ("GET", "/account"): Route(
        "account",
        True,
        "view",
        (),
        1,
        lambda sim, k, p, m: wire.account_json(sim.taker_fee, sim.maker_fee),
    ),
    ("GET", "/account/fees"): Route(
        "fees",
        True,
        "view",
        ("market", "quote"),
        1,
        lambda sim, k, p, m: (sim.market(p["market"]) and _fees(sim)) if "market" in p else _fees(sim),
    ),
    ("POST", "/order"): Route("create_order", True, "trade", (), 1, lambda sim, k, p, m: sim.create_order(k, p)),
    # Reading orders and trades is a Trade right (SRC_SDK_RIGHTS): "trade_read" routes refuse a
    # view-only key with 310 unless the simulator runs with view_key_reads_orders.
    ("GET", "/order"): Route(
        "get_order",
        True,
        "trade_read",
        ("market", "orderId", "clientOrderId"),
        1,
        lambda sim, k, p, m: sim.get_order(k, p),
    ),
    ("DELETE", "/order"): Route(
        "cancel_order",
        True,
        "trade",
        ("market", "orderId", "clientOrderId", "operatorId"),
        1,
        lambda sim, k, p, m: sim.cancel_order(k, p),
    ),
    ("GET", "/orders"): Route(
        "orders",
        True,
        "trade_read",
        ("market", "limit", "start", "end", "orderIdFrom", "orderIdTo"),
        5,
        lambda sim, k, p, m: sim.list_orders(k, p),
    ),
    ("DELETE", "/orders"): Route(
        "cancel_orders",
        True,
        "trade",
        ("market", "operatorId"),
        lambda p: 25 if "market" in p else 100,
        lambda sim, k, p, m: sim.cancel_orders(k, p),
    ),
    # Weight 1 with a market, 25 without (docs institutional-api/get-open-orders; BITVAVO.md).
    ("GET", "/ordersOpen"): Route(
        "open_orders",
        True,
        "trade_read",
        ("market", "base"),
        lambda p: 1 if "market" in p else 25,
        lambda sim, k, p, m: sim.open_orders(k, p),
    ),
    ("GET", "/trades"): Route(
        "trades",
        True,
        "trade_read",
        ("market", "limit", "start", "end", "tradeIdFrom", "tradeIdTo"),
        5,
        lambda sim, k, p, m: sim.list_trades(k, p),
    ),
}


def _json_default(o):
    if isinstance(o, Decimal):
        return format(o, "f")
    raise TypeError(type(o).__name__)


def answer_body(payload) -> bytes:
    """A JSON answer as the simulator sends it: compact, Decimals as plain decimal strings."""
    return json.dumps(payload, default=_json_default, separators=(",", ":")).encode()


class DropConnection(Exception):
    """Close the connection without an answer (reset=True: with a TCP RST)."""

    def __init__(self, reset: bool = False):
        self.reset = reset


def canonical_body(method: str, raw: bytes) -> str:
    """The body as Bitvavo checks the signature over it (BITVAVO.md "Authentication"): empty for GET
    and DELETE whatever was sent (a `{}` some clients send on a GET), else the compact JSON of
    the parsed body, so a client that signed compact JSON but sent it spaced is accepted. A body
    that is not JSON is signed as sent (it is refused with 102 after the signature check)."""
    if method in ("GET", "DELETE") or not raw:
        return ""
    try:
        return json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


class Handler(BaseHTTPRequestHandler):
    # Answer at once: without this, Nagle + delayed ACK add ~40 ms to every request.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "tinybot-sim"
    sys_version = ""

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("sim: %s %s\n" % (self.address_string(), fmt % args))

    # --- plumbing -------------------------------------------------------------

    def _send(
        self,
        status: int,
        payload=None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json; charset=utf-8",
        headers: dict | None = None,
    ):
        self._answer(status, content_type, raw if raw is not None else answer_body(payload), headers or {})

    def _answer(self, status: int, content_type: str, body: bytes, headers: dict) -> None:
        """Write the answer as HTTP/1.1 onto the connection (the in-process transport keeps it instead)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self, reset: bool):
        self.close_connection = True
        if reset:
            # SO_LINGER 0 makes close() send RST: the client sees "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _hang(self, seconds: float):
        self.server.stopping.wait(seconds)

    def _dispatch(self, method: str):
        try:
            self.respond(method)
        except DropConnection as d:
            self._drop(d.reset)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # a simulator bug: say so loudly, answer like Bitvavo's unknown error
            traceback.print_exc(file=sys.stderr)
            try:
                self._send(500, {"errorCode": 400, "error": "Unknown error (simulator bug, see its stderr)."})
            except OSError:
                self.close_connection = True

    def _fault_before(self, fault, sim) -> bool:
        """An armed fault that acts before the request is handled; True if it already answered."""
        if fault.kind == "delay":
            self._hang(fault.delay)
            return False
        if fault.kind == "timeout_before_accept":
            self._hang(fault.delay)
            raise DropConnection()
        if fault.kind == "html_5xx":
            self._send(fault.status or 502, raw=_HTML_5XX, content_type="text/html")
            return True
        if fault.kind in ("rate_limit_110", "rate_limit_105"):
            reset_at = sim.now_ms() + 60_000
            text = (
                "Rate limit exceeded (simulated fault)."
                if fault.kind == "rate_limit_110"
                else f"Your IP or API key has been banned for not respecting the rate limit. The ban expires at {reset_at}."
            )
            self._send(
                429,
                {"errorCode": int(fault.kind[-3:]), "error": text},
                headers={
                    "bitvavo-ratelimit-limit": sim.rate_limit,
                    "bitvavo-ratelimit-remaining": 0,
                    "bitvavo-ratelimit-resetat": reset_at,
                },
            )
            return True
        if not fault.accept:
            self._faulty_answer(fault)
            return True
        return False

    def _call(self, method, rest, query, raw_body, route, params, path_market, sim):
        """Authenticate, check the parameters as Bitvavo does, and run the route."""
        key = self._authenticate(method, rest, query, raw_body, route.perm) if route.private else None
        if method in ("POST", "PUT"):
            if params:
                raise bad(
                    200,
                    f"{next(iter(params))} url parameter is not supported. Please note that "
                    "parameters are case-sensitive and use body parameters for PUT and POST requests.",
                )
            params = self._json_body(raw_body)
        else:
            for p in params:
                if p not in route.params:
                    raise bad(
                        200,
                        f"{p} url parameter is not supported. Please note that parameters are "
                        "case-sensitive and use body parameters for PUT and POST requests.",
                    )
        return route.call(sim, sim.owner(key), params, path_market)

    def respond(self, method: str):
        """Answer the request in ``path``, ``headers`` and ``rfile`` into ``wfile`` (DropConnection: no answer)."""
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        if path == "/_sim" or path.startswith("/_sim/"):
            return self._admin(method, path, raw_body)

        rest = path[3:] if path.startswith("/v2/") else path
        route, path_market = ROUTES.get((method, rest)), None
        if route is None:
            mm = _MARKET_PATH.fullmatch(rest)
            if mm:
                route, path_market = ROUTES.get((method, mm.group(2))), mm.group(1)
        if route is None:
            return self._send(404, {"errorCode": 110, "error": "Invalid endpoint. Please check url and HTTP method."})
        sim = self.server.sim
        params = dict(parse_qsl(query, keep_blank_values=True))

        fault = sim.take_fault(route.kind)
        if fault is not None and self._fault_before(fault, sim):
            return None

        # SRC_RATE_LIMITS: signed requests count against the key (public ones too), unsigned ones
        # against the IP. Every answer carries the three bitvavo-ratelimit-* headers.
        ident = self.headers.get("Bitvavo-Access-Key") or f"ip:{self.client_address[0]}"
        try:
            cost = route.cost(params)
        except SimError:
            cost = 1
        ok, remaining, reset_at = sim.limiter.charge(ident, cost)
        limit_headers = {
            "bitvavo-ratelimit-limit": sim.rate_limit,
            "bitvavo-ratelimit-remaining": remaining,
            "bitvavo-ratelimit-resetat": reset_at,
        }
        if not ok:
            e = wire.rate_limit_refusal(sim.rate_limit_code, sim.rate_limit, reset_at)
            status, payload = e.status, e.as_json()
        else:
            try:
                status, payload = 200, self._call(method, rest, query, raw_body, route, params, path_market, sim)
            except SimError as e:
                status, payload = e.status, e.as_json()

        if fault is not None and fault.kind != "delay":
            if fault.kind == "timeout_after_accept":
                self._hang(fault.delay)
                raise DropConnection()
            return self._faulty_answer(fault)
        self._send(status, payload, headers=limit_headers)

    def _faulty_answer(self, fault):
        if fault.kind == "error_101":
            return self._send(
                500, {"errorCode": 101, "error": "Unknown error. Operation may or may not have succeeded."}
            )
        if fault.kind == "error_109":  # BITVAVO.md (SRC_ERRORS "HTTP 503"): 109 comes with 503, 101 with 500
            return self._send(
                503,
                {
                    "errorCode": 109,
                    "error": ("The matching engine did not respond in time. Operation may or may not have succeeded."),
                },
            )
        if fault.kind == "garbage_200":
            return self._send(200, raw=_GARBAGE, content_type="text/plain")
        if fault.kind == "not_found_240":
            err = wire.order_not_found()
            return self._send(err.status, err.as_json())
        if fault.kind == "reset":
            raise DropConnection(reset=True)
        raise AssertionError(fault.kind)

    @staticmethod
    def _json_body(raw: bytes) -> dict:
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise bad(102, "Invalid JSON.") from None
        if not isinstance(body, dict):
            raise bad(102, "Invalid JSON.")
        return body

    def _authenticate(self, method: str, rest: str, query: str, raw_body: bytes, perm: str) -> str:
        sim = self.server.sim
        h = self.headers
        key, sig, ts, window = (
            h.get("Bitvavo-Access-Key"),
            h.get("Bitvavo-Access-Signature"),
            h.get("Bitvavo-Access-Timestamp"),
            h.get("Bitvavo-Access-Window", "10000"),
        )

        def refuse(code, message):
            return SimError(403, code, message)

        if not key or not sig or ts is None:
            raise refuse(300, "Authentication is required for this endpoint.")
        if not ts.isdigit():
            raise refuse(
                302, "Timestamp is invalid. This must be a timestamp in ms. See Bitvavo-Access-Timestamp header."
            )
        if not window.isdigit() or not 100 <= int(window) <= 60000:
            raise refuse(303, "Window must be between 100 and 60000 ms.")
        account = sim.accounts.get(key)
        if account is None and len(key) != 64:
            # Bitvavo's keys are 64 characters; a key of another length is refused before it is looked up
            # (ccxt's error table and support.bitvavo.com API-Fehlermeldungen: 301). The simulator's own
            # keys may be any length, as tests name them.
            raise refuse(301, "API Key must be of length 64.")
        if account is None:
            raise refuse(305, "No active API key found.")
        if not _SIG_RE.fullmatch(sig):
            raise refuse(
                308, "The signature length is invalid (HMAC-SHA256 should return a 64 length hexadecimal string)."
            )
        signed = ts + method + "/v2" + rest + ("?" + query if query else "") + canonical_body(method, raw_body)
        expected = hmac.new(account.secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise refuse(309, "The signature is invalid.")
        if abs(sim.now_ms() - int(ts)) > int(window):
            raise refuse(
                304,
                "Request was not received within acceptable window (default 10s, or custom with "
                "Bitvavo-Access-Window header) of Bitvavo-Access-Timestamp header.",
            )
        # Texts of 310/311 as in ccxt's copy of Bitvavo's error list (ccxt/bitvavo.py 'exact').
        if perm == "trade_read":
            if "trade" in account.permissions or (sim.view_key_reads_orders and "view" in account.permissions):
                return key
            raise refuse(310, "This key does not allow trading actions.")
        if perm not in account.permissions:
            if perm == "trade":
                raise refuse(310, "This key does not allow trading actions.")
            raise refuse(311, "This key does not allow showing account information.")
        return key

    # --- admin (loopback only, no auth) -------------------------------------------

    def _admin(self, method: str, path: str, raw_body: bytes):
        if not ipaddress.ip_address(self.client_address[0]).is_loopback:
            return self._send(403, {"error": "admin endpoints answer loopback clients only"})
        route = _ADMIN.get((method, path))
        if route is None:
            return self._send(404, {"error": f"no admin endpoint {method} {path}; see docs/SIMULATOR.md"})
        try:
            body = json.loads(raw_body) if raw_body else {}
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            return self._send(200, route(self.server.sim, body))
        except (ValueError, KeyError, TypeError, ArithmeticError) as e:
            return self._send(400, {"error": f"{type(e).__name__}: {e}"})


# --- admin endpoints (loopback only, no auth): (method, path) -> fn(sim, body) -> the JSON answer -------


def _faults(sim, body: dict) -> dict:
    return {"faults": [f.as_dict() for f in sim.faults()]}


def _arm_fault(sim, body: dict) -> dict:
    if "spec" in body:
        fault = parse_fault_spec(body["spec"])
    else:
        fault = make_fault(**{k: body[k] for k in ("kind", "on", "count", "delay", "accept", "status") if k in body})
    sim.arm(fault)
    return _faults(sim, body)


def _clear_faults(sim, body: dict) -> dict:
    sim.clear_faults()
    return {"faults": []}


def _advance(sim, body: dict) -> dict:
    steps = body.get("steps", 1)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError("steps must be a positive integer")
    sim.advance(steps)
    return {"steps": sim.steps, "prices": sim.state_json()["prices"]}


def _set_price(sim, body: dict) -> dict:
    if body.get("market") not in sim.markets:
        raise ValueError(f"market must be one of {', '.join(sim.markets)}")
    sim.set_price(body["market"], Decimal(str(body["price"])))
    return {"market": body["market"], "price": format(sim.price(body["market"]), "f")}


def _set_market(sim, body: dict) -> dict:
    sim.set_market_status(body.get("market"), body.get("status"))
    return {"markets": {n: m.status for n, m in sim.markets.items()}}


def _outcomes(sim, body: dict) -> dict:
    return {"outcomes": [o.as_dict() for o in sim.outcomes()]}


def _add_outcome(sim, body: dict) -> dict:
    sim.add_outcome(
        **{k: body[k] for k in ("kind", "fraction", "fills", "step_ticks", "on_hold", "count") if k in body}
    )
    return _outcomes(sim, body)


def _clear_outcomes(sim, body: dict) -> dict:
    sim.clear_outcomes()
    return {"outcomes": []}


def _set_balance(sim, body: dict) -> dict:
    if body.get("key") not in sim.accounts:
        raise ValueError("key must be one of the simulator's API keys")
    sim.set_balance(body["key"], body["asset"], Decimal(str(body["available"])))
    return {"key": body["key"], "balance": sim.balances_json(body["key"])}


_ADMIN = {
    ("GET", "/_sim/state"): lambda sim, body: sim.state_json(),
    ("GET", "/_sim/faults"): _faults,
    ("POST", "/_sim/faults"): _arm_fault,
    ("DELETE", "/_sim/faults"): _clear_faults,
    ("POST", "/_sim/advance"): _advance,
    ("POST", "/_sim/price"): _set_price,
    ("POST", "/_sim/market"): _set_market,
    ("GET", "/_sim/outcome"): _outcomes,
    ("POST", "/_sim/outcome"): _add_outcome,
    ("DELETE", "/_sim/outcome"): _clear_outcomes,
    ("GET", "/_sim/mode"): lambda sim, body: sim.modes(),
    ("POST", "/_sim/mode"): lambda sim, body: sim.set_mode(**body),
    ("POST", "/_sim/settle"): lambda sim, body: {"settled": sim.settle_fills()},
    ("POST", "/_sim/balance"): _set_balance,
}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never wait for a fault that is still hanging
    allow_reuse_address = True


def loopback_address(host: str) -> str:
    """The IPv4 loopback address `host` names, or ValueError: admin endpoints have no auth."""
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        ip = None
    if ip is None or not ip.is_loopback:
        raise ValueError(
            f"the simulator binds to loopback only (127.0.0.1), not {host!r}: "
            "its /_sim/ admin endpoints have no authentication"
        )
    return str(ip)


class SimServer:
    """A running simulator endpoint: ``url``, ``port``, ``close()``; also a context manager."""

    def __init__(self, sim, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False):
        address = loopback_address(host)
        self.sim = sim
        self.httpd = _HTTPServer((address, port), Handler)
        self.httpd.sim = sim
        self.httpd.verbose = verbose
        self.httpd.stopping = threading.Event()
        self.host, self.port = address, self.httpd.server_address[1]
        self.url = f"http://{address}:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"bitvavo-sim:{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.httpd.stopping.set()  # wake handlers hanging in a fault
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "SimServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SimServer {self.url}>"
