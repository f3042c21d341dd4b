"""`tinybot doctor --live-probe`: read-only questions to Bitvavo, each compared with what the simulator answers.

No order is placed or cancelled: every client is the key checks' GET-only one.  The simulator is asked in
memory (no server, no network), with the default settings the tests run against.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from ...base import clock
from ...store import db
from ...base.config import Config
from .keys import credentials, fingerprint, is_network_error, key_client, observed_path, probe_market, secret


@dataclass(frozen=True)
class Probe:
    name: str
    status: str  # 'same' | 'differs' | 'skip'
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


# the read-only requests whose rights the probe compares: (method, path, params for a market M)
RIGHTS = (
    ("GET", "/balance", lambda m: {}),
    ("GET", "/account", lambda m: {}),
    ("GET", "/ordersOpen", lambda m: {"market": m}),
    ("GET", "/orders", lambda m: {"market": m, "limit": 1}),
    ("GET", "/trades", lambda m: {"market": m, "limit": 1}),
)
CCXT_CALL = {
    "/balance": "privateGetBalance",
    "/account": "privateGetAccount",
    "/ordersOpen": "privateGetOrdersOpen",
    "/orders": "privateGetOrders",
    "/trades": "privateGetTrades",
    "/order": "privateGetOrder",
    "/markets": "publicGetMarkets",
}
# what the two keys may do in the simulator's model (a user's setup: View only, and View + Trade)
MODEL_RIGHTS = {"READ": frozenset({"view"}), "TRADE": frozenset({"view", "trade"})}
WINDOW_PROBE = timedelta(days=3)  # longer than Bitvavo's documented 24 hours per /trades request


def _ask(client, path: str, params: dict) -> tuple[str, object]:
    """('ok', answer) or ('refused', 'errorCode N: text') or ('unreachable', text); never raises."""
    from ...exchange.bitvavo.errors import error_code

    try:
        return "ok", getattr(client, CCXT_CALL[path])(dict(params))
    except Exception as e:
        code, text = error_code(e)
        if code is None and is_network_error(e):
            return "unreachable", f"{type(e).__name__}: {e}"
        return "refused", f"errorCode {code}: {text}" if code is not None else f"{type(e).__name__}: {e}"


class SimModel:
    """The simulator as the model Bitvavo is compared with: one in-memory simulator with a probe account."""

    def __init__(self):
        from ...sim import SimAccount, Simulator

        self.sim = Simulator(
            accounts=[SimAccount("probe", "probe", frozenset({"view", "trade"}), {})], markets=("BTC-EUR", "ETH-EUR")
        )

    @property
    def finds_closed_by_client_id(self) -> bool:
        return self.sim.find_closed_by_client_id

    def answer(self, path: str, method: str, params: dict, key: str | None, perms: frozenset) -> tuple[str, object]:
        """The simulator's answer to the same request, asked with a key that has ``perms``."""
        from ...sim.server import ROUTES
        from ...sim.wire import SimError

        route = ROUTES[(method, path)]
        need = route.perm
        if need == "trade_read":  # reading orders and trades is a Trade right (unless the model relaxes it)
            need = "view" if getattr(self.sim, "view_key_reads_orders", False) else "trade"
        if need is not None and need not in perms:
            return "refused", f"errorCode {310 if need == 'trade' else 311}: needs the {need} right"
        try:
            return "ok", route.call(
                self.sim, "probe" if key else None, {k: str(v) for k, v in params.items()}, params.get("market")
            )
        except SimError as e:
            return "refused", f"errorCode {e.code}: {e.message}"


def live_probe(cfg: Config, clients: dict | None = None, save_to: Path | None = None) -> list[Probe]:
    """Read-only questions to the real exchange (no order is placed or cancelled), each compared with what
    `tinybot sim` answers: key rights, market table, fee tier, the 24-hour window of /trades and /orders,
    and whether a past filled order of tinybot's is found by its clientOrderId.

    What it saw is recorded beside the database (keys.observed_path: doctor's read_key check reads it) and,
    with ``save_to``, written there to be shared: keys, secrets and ids redacted (``observation``).
    """
    clients = clients or {}
    for env in ("READ", "TRADE"):
        if env not in clients:
            clients[env] = key_client(cfg, env)
    model = SimModel()
    market = probe_market(cfg)
    rights: dict[str, dict[str, str]] = {}
    out: list[Probe] = []
    out.append(_probe_rights(clients, market, model, rights))
    out += _probe_markets(clients.get("TRADE") or clients.get("READ"), cfg, model)
    out.append(_probe_fees(clients.get("TRADE") or clients.get("READ"), model))
    out += _probe_windows(clients.get("TRADE"), market, model)
    out.append(_probe_client_order_id(clients.get("TRADE"), cfg, model))
    record = observation(cfg, out, rights)
    _write_json(observed_path(cfg), record)
    if save_to is not None:
        _write_json(save_to, {k: v for k, v in record.items() if k != "keys"} | {"keys": _shareable(record)})
    return out


def _probe_rights(clients: dict, market: str, model: SimModel, rights: dict) -> Probe:
    """Each key on each read of RIGHTS; what Bitvavo answered goes into ``rights`` ({env: {path: answer}})."""
    seen, diffs = [], []
    for env in ("READ", "TRADE"):
        client = clients.get(env)
        if client is None:
            seen.append(f"{env.lower()} key not set")
            continue
        for method, path, params in RIGHTS:
            real, answer = _ask(client, path, params(market))
            if real == "unreachable":
                rights.pop(env, None)
                return Probe("key_rights", "skip", f"the exchange did not answer: {answer}")
            modelled, _ = model.answer(path, method, params(market), "probe", MODEL_RIGHTS[env])
            allowed = "allowed" if real == "ok" else f"refused ({answer})"
            rights.setdefault(env, {})[path] = allowed
            seen.append(f"{env.lower()} {path}: {allowed}")
            if (real == "ok") != (modelled == "ok"):
                diffs.append(
                    f"{method} {path} with the {env.lower()} key: Bitvavo {allowed}, the simulator"
                    f" {'allows it' if modelled == 'ok' else 'refuses it'}"
                )
    if diffs:
        return Probe("key_rights", "differs", "; ".join(diffs))
    return Probe("key_rights", "same", "; ".join(seen))


# --- what it saw, recorded --------------------------------------------------------------

ORDER_READS = ("/ordersOpen", "/orders", "/trades")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CODE = re.compile(r"errorCode (\d+)")
_EXECUTION = re.compile(r"execution \d+")


def observation(cfg: Config, probes: list[Probe], rights: dict) -> dict:
    """The probe's findings as JSON-ready data: when, each probe, each key's rights, the error codes seen.

    Keys and secrets never appear (a key is named by ``keys.fingerprint``), nor order ids, clientOrderIds
    or execution numbers: the record can be shared as it is, less its fingerprints."""
    keys = {}
    for env, seen in rights.items():
        key = secret(cfg, f"TINYBOT_{env}_KEY")
        if key:
            keys[env.lower()] = {
                "fingerprint": fingerprint(key),
                "reads_orders": all(seen.get(p) == "allowed" for p in ORDER_READS),
                "rights": seen,
            }
    redact = _redactor(cfg)
    found = [redact(p.as_dict()) for p in probes]
    codes = sorted({int(c) for p in found for c in _CODE.findall(p["detail"])} | _codes_in(rights))
    return {
        "at": clock.to_iso(clock.now()),
        "exchange": "bitvavo",
        "probes": found,
        "keys": redact(keys),
        "error_codes": codes,
        "differences": sum(1 for p in probes if p.status == "differs"),
    }


def _codes_in(rights: dict) -> set[int]:
    return {int(c) for seen in rights.values() for a in seen.values() for c in _CODE.findall(a)}


def _redactor(cfg: Config):
    """A function that blanks every key and secret of ``cfg``, UUIDs and execution numbers in JSON data."""
    values = [(v, f"<{label}>") for label, v in credentials(cfg).items()]

    def text(t: str) -> str:
        for v, label in values:
            t = t.replace(v, label)
        return _EXECUTION.sub("execution <n>", _UUID.sub("<id>", t))

    def redact(data):
        if isinstance(data, dict):
            return {k: redact(v) for k, v in data.items()}
        if isinstance(data, list):
            return [redact(v) for v in data]
        return text(data) if isinstance(data, str) else data

    return redact


def _shareable(record: dict) -> dict:
    """The keys' part of a record without fingerprints (what a shared file shows)."""
    return {env: {k: v for k, v in seen.items() if k != "fingerprint"} for env, seen in record["keys"].items()}


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a temporary file beside it, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _probe_markets(client, cfg: Config, model: SimModel) -> list[Probe]:
    if client is None:
        return [Probe("market_table", "skip", "no key set")]
    real, answer = _ask(client, "/markets", {})
    if real != "ok" or not isinstance(answer, list):
        return [Probe("market_table", "skip", f"GET /markets: {answer}")]
    _, model_rows = model.answer("/markets", "GET", {}, None, frozenset())
    model_fields = set().union(*(set(r) for r in model_rows)) if model_rows else set()
    model_min = {r.get("minOrderInQuoteAsset") for r in model_rows}
    rows = {r.get("market"): r for r in answer if isinstance(r, dict)}
    out = [_market_row(m, rows.get(m), model_fields, model_min) for m in cfg.risk.allowlist]
    return out or [Probe("market_table", "skip", "risk.allowlist is empty")]


def _market_row(m: str, r: dict | None, model_fields: set, model_min: set) -> Probe:
    """One allowlisted market in Bitvavo's table against the simulator's: its fields, minimum and status."""
    if r is None:
        return Probe("market_table", "differs", f"{m}: not in Bitvavo's market table")
    diffs = []
    missing, extra = model_fields - set(r), set(r) - model_fields
    if missing:
        diffs.append(f"fields the simulator has and Bitvavo does not: {', '.join(sorted(missing))}")
    if extra:
        diffs.append(f"fields Bitvavo has and the simulator does not: {', '.join(sorted(extra))}")
    if r.get("minOrderInQuoteAsset") not in model_min:
        diffs.append(
            f"minOrderInQuoteAsset {r.get('minOrderInQuoteAsset')} (simulator"
            f" {', '.join(sorted(str(v) for v in model_min))})"
        )
    if r.get("status") != "trading":
        diffs.append(f"status {r.get('status')!r}")
    shown = (
        f"{m}: status {r.get('status')}, min €{r.get('minOrderInQuoteAsset')}, min base"
        f" {r.get('minOrderInBaseAsset')}, tickSize {r.get('tickSize')}, quantityDecimals"
        f" {r.get('quantityDecimals')}"
    )
    return Probe("market_table", "differs" if diffs else "same", shown + ("; " + "; ".join(diffs) if diffs else ""))


def _probe_fees(client, model: SimModel) -> Probe:
    if client is None:
        return Probe("fee_tier", "skip", "no key set")
    real, answer = _ask(client, "/account", {})
    fees = answer.get("fees") if real == "ok" and isinstance(answer, dict) else None
    if not isinstance(fees, dict):
        return Probe("fee_tier", "skip", f"fee tier unknown: GET /account answered {answer}")
    _, modelled = model.answer("/account", "GET", {}, "probe", MODEL_RIGHTS["TRADE"])
    mf = modelled["fees"]
    shown = f"taker {fees.get('taker')}, maker {fees.get('maker')} (simulator taker {mf['taker']}, maker {mf['maker']})"
    same = Decimal(str(fees.get("taker"))) == Decimal(mf["taker"]) and Decimal(str(fees.get("maker"))) == Decimal(
        mf["maker"]
    )
    return Probe("fee_tier", "same" if same else "differs", shown)


def _probe_windows(client, market: str, model: SimModel) -> list[Probe]:
    if client is None:
        return [Probe("time_window", "skip", "no trade key set (reading trades and orders needs Trade rights)")]
    end = clock.now_ms()
    params = {"market": market, "start": end - int(WINDOW_PROBE.total_seconds() * 1000), "end": end, "limit": 1}
    out = []
    for path in ("/trades", "/orders"):
        real, answer = _ask(client, path, params)
        modelled, model_answer = model.answer(path, "GET", params, "probe", MODEL_RIGHTS["TRADE"])
        what = f"GET {path} over {WINDOW_PROBE.days * 24} hours"
        r = "answered" if real == "ok" else f"refused ({answer})"
        m = "answers" if modelled == "ok" else f"refuses ({model_answer})"
        out.append(
            Probe(
                "time_window",
                "same" if (real == "ok") == (modelled == "ok") else "differs",
                f"{what}: Bitvavo {r}; the simulator {m} (tinybot pages /trades in 24-hour slices)",
            )
        )
    return out


def _last_filled_order(cfg: Config):
    """tinybot's newest filled Bitvavo order, or None (no database, or no trade yet)."""
    if not cfg.db_path.exists():
        return None
    conn = db.connect(cfg.db_path)
    try:
        return conn.execute(
            "SELECT id, market, client_order_id, exchange_order_id, resolved_at FROM"
            " trade_executions WHERE state = 'filled' AND exchange = 'bitvavo'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()


def _probe_client_order_id(client, cfg: Config, model: SimModel) -> Probe:
    if client is None:
        return Probe("client_order_id", "skip", "no trade key set")
    row = _last_filled_order(cfg)
    if row is None:
        return Probe(
            "client_order_id", "skip", "no filled order of tinybot's yet: run this again after the first trade"
        )
    real, answer = _ask(client, "/order", {"market": row["market"], "clientOrderId": row["client_order_id"]})
    model_finds = model.finds_closed_by_client_id
    found = real == "ok" and isinstance(answer, dict) and answer.get("clientOrderId") == row["client_order_id"]
    what = f"execution {row['id']} (filled {row['resolved_at']}, clientOrderId {row['client_order_id']})"
    r = f"found it ({answer.get('status')})" if found else f"did not find it ({answer})"
    same = found == model_finds
    return Probe(
        "client_order_id",
        "same" if same else "differs",
        f"{what}: Bitvavo {r}; the simulator {'finds' if model_finds else 'does not find'} filled orders by"
        " clientOrderId" + ("" if same or found else "; reconcile then falls back to GET /orders since the send"),
    )
