"""Doctor's key checks: the two keys set and separate, and what each key can do, tried with GET requests only.

Bitvavo's key rights: View = balance, account; Trade = place, view and cancel orders.  So the read key must
read the balance and be refused order reads; the trade key must read both.  Every request goes through the
adapter's GET-only guard, which refuses any other method before a byte leaves.  This is doctor's one module
that names the trade key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ...base.config import Config
from ...base.secrets import lookup, where
from .check import Check, failed, passed, skipped, warned

OBSERVED_FILE = "live_probe.json"  # what the last `doctor --live-probe` saw, beside the database

AUTH_UNKNOWN_KEY = frozenset({305})
AUTH_KEY_LENGTH = frozenset({301})  # "API Key must be of length 64"
AUTH_BAD_SIGNATURE = frozenset({308, 309})
AUTH_CLOCK = frozenset({304})
NO_PERMISSION = frozenset({307, 310, 311, 312, 402, 403})


def secret(cfg: Config, name: str) -> str | None:
    """Read regardless of the file's mode (the mode has its own check, secrets_file)."""
    return lookup(cfg.secrets_path, name)


def keys_separated(cfg: Config) -> Check:
    read_key, trade_key = secret(cfg, "TINYBOT_READ_KEY"), secret(cfg, "TINYBOT_TRADE_KEY")
    read_secret, trade_secret = secret(cfg, "TINYBOT_READ_SECRET"), secret(cfg, "TINYBOT_TRADE_SECRET")
    if cfg.mode == "paper":
        if trade_key or trade_secret:
            return failed(
                "keys_separated",
                "a trade key is configured in paper mode",
                f"remove TINYBOT_TRADE_KEY/SECRET from the environment and {cfg.secrets_path} until you go live",
            )
        return passed("keys_separated", "paper mode: no trade key configured")
    missing = [
        n
        for n, v in (
            ("TINYBOT_READ_KEY", read_key),
            ("TINYBOT_READ_SECRET", read_secret),
            ("TINYBOT_TRADE_KEY", trade_key),
            ("TINYBOT_TRADE_SECRET", trade_secret),
        )
        if not v
    ]
    if missing:
        return failed(
            "keys_separated",
            f"not set: {', '.join(missing)}",
            f"create two API keys on Bitvavo (one with View only, one with View+Trade) and put them in"
            f" {cfg.secrets_path} (chmod 600)",
        )
    if read_key == trade_key or read_secret == trade_secret:
        return failed(
            "keys_separated",
            "the read key and the trade key are the same key",
            "create a separate View-only key on Bitvavo for TINYBOT_READ_KEY/SECRET",
        )
    return passed("keys_separated", "read key and trade key are both set and different")


def credentials(cfg: Config) -> dict[str, str]:
    """The keys and secrets that are set, by a label that names none of them ("read key" → value)."""
    names = ("TINYBOT_READ_KEY", "TINYBOT_READ_SECRET", "TINYBOT_TRADE_KEY", "TINYBOT_TRADE_SECRET")
    return {n[8:].lower().replace("_", " "): v for n in names if (v := secret(cfg, n))}


def same_key(cfg: Config) -> bool:
    read, trade = secret(cfg, "TINYBOT_READ_KEY"), secret(cfg, "TINYBOT_TRADE_KEY")
    return bool(read) and read == trade


def probe_market(cfg: Config) -> str:
    """The market a key's order reads ask about: the first allowlisted one."""
    return cfg.risk.allowlist[0] if cfg.risk.allowlist else "BTC-EUR"


def is_network_error(e: BaseException) -> bool:
    import ccxt

    return isinstance(e, (ccxt.NetworkError, OSError))


def key_client(cfg: Config, env: str):
    """A ccxt client signed with TINYBOT_<env>_KEY behind the adapter's GET-only guard (the one the
    adapter puts the trade key behind for its lookups): it refuses every method but GET before a byte
    leaves, so no probe can place or cancel anything, whatever the key may do."""
    from ...exchange.bitvavo.endpoint import Endpoint

    key, key_secret = secret(cfg, f"TINYBOT_{env}_KEY"), secret(cfg, f"TINYBOT_{env}_SECRET")
    if not key or not key_secret:
        return None
    return Endpoint(cfg, key, key_secret, rate_limit=False, get_only=True).ccxt


# --- what the live probe saw a key do (written by probe.py) -----------------------------------


def observed_path(cfg: Config) -> Path:
    return cfg.db_path.parent / OBSERVED_FILE


def fingerprint(key: str) -> str:
    """Which key a record speaks of, without the key: the first 12 hex of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def observed_key(cfg: Config, env: str) -> dict | None:
    """What the last live probe recorded of TINYBOT_<env>_KEY ({reads_orders, rights, at}), if it probed this
    very key; None when there is no record, it cannot be read, or it is of another key."""
    key = secret(cfg, f"TINYBOT_{env}_KEY")
    try:
        record = json.loads(observed_path(cfg).read_text())
        seen = record["keys"][env.lower()]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not key or not isinstance(seen, dict) or seen.get("fingerprint") != fingerprint(key):
        return None
    return seen | {"at": record.get("at")}


# --- what one key did ---------------------------------------------------------------


@dataclass(frozen=True)
class KeyProbe:
    """What one API key did on two read-only calls: GET /balance (View) and GET /ordersOpen (Trade)."""

    env: str  # "READ" or "TRADE"
    auth: str  # ok | unknown_key | key_length | bad_secret | clock | unreachable | error
    auth_detail: str = ""
    orders: str = "untried"  # readable | refused | error | untried
    orders_detail: str = ""


def _kind(code: int | None, exc: BaseException) -> str:
    if code in AUTH_UNKNOWN_KEY:
        return "unknown_key"
    if code in AUTH_KEY_LENGTH:
        return "key_length"
    if code in AUTH_BAD_SIGNATURE:
        return "bad_secret"
    if code in AUTH_CLOCK:
        return "clock"
    if code in NO_PERMISSION:
        return "refused"
    return "unreachable" if code is None and is_network_error(exc) else "error"


def probe_key(cfg: Config, env: str) -> KeyProbe | None:
    """Two read-only requests signed with exactly this key (ccxt underneath, no facade that could route a
    lookup to another key): GET /balance, then GET /ordersOpen for the first allowlisted market."""
    from ...exchange.bitvavo.errors import describe_error, error_code

    raw = key_client(cfg, env)
    if raw is None:
        return None
    try:
        raw.privateGetBalance({})
    except Exception as e:
        kind = _kind(error_code(e)[0], e)
        return KeyProbe(env, "error" if kind == "refused" else kind, describe_error(e))
    try:
        raw.privateGetOrdersOpen({"market": probe_market(cfg)})
    except Exception as e:
        kind = _kind(error_code(e)[0], e)
        if kind == "unreachable":
            return KeyProbe(env, "unreachable", describe_error(e))
        return KeyProbe(env, "ok", orders="refused" if kind == "refused" else "error", orders_detail=describe_error(e))
    return KeyProbe(env, "ok", orders="readable")


def _guarded_probe(cfg: Config, env: str) -> KeyProbe | None:
    try:
        return probe_key(cfg, env)
    except Exception as e:  # building the client failed (a config problem): say it as an answer
        return KeyProbe(env, "error", f"{type(e).__name__}: {e}")


# --- the two checks -------------------------------------------------------------------


def key_checks(cfg: Config, *, reachable: bool, clock_ok: bool) -> list[Check]:
    """read_key and trade_key: each key authenticated with a read-only call, and what it may read.

    One root cause gives one FAIL: an exchange that does not answer, one key for both, or a clock Bitvavo
    refuses skips both checks (their own checks say so) instead of failing them with the wrong fix.
    """
    if not reachable:
        return _both_skipped("the exchange did not answer (see exchange)")
    if same_key(cfg):
        return _both_skipped("one key for both (see keys_separated)")
    read, trade = _guarded_probe(cfg, "READ"), _guarded_probe(cfg, "TRADE")
    if not clock_ok or any(p is not None and p.auth == "clock" for p in (read, trade)):
        why = "Bitvavo refuses signed requests while the clock is off (see clock_skew)"
        if clock_ok:  # the skew check passed yet Bitvavo says 304: say it here, once
            return [
                skipped("read_key", why),
                failed(
                    "trade_key",
                    "Bitvavo refused the request's timestamp (304): the clock or the access window is off",
                    "sync the clock: `sudo timedatectl set-ntp true`",
                ),
            ]
        return _both_skipped(why)
    if any(p is not None and p.auth == "unreachable" for p in (read, trade)):
        return _both_skipped("the exchange stopped answering during the check")
    swapped = (
        read is not None
        and trade is not None
        and read.auth == "ok"
        and trade.auth == "ok"
        and read.orders == "readable"
        and trade.orders == "refused"
    )
    return [_read_key(cfg, read, swapped), _trade_key(cfg, trade, swapped)]


def _both_skipped(why: str) -> list[Check]:
    return [skipped("read_key", why), skipped("trade_key", why)]


def _read_key(cfg: Config, read: KeyProbe | None, swapped: bool) -> Check:
    """The advisors' key: authenticates, and is refused order reads (View only)."""
    if read is None:
        return skipped("read_key", "TINYBOT_READ_KEY/SECRET not set (see keys_separated)")
    if read.auth != "ok":
        return _auth_failure("read_key", read, cfg)
    if swapped:
        return skipped("read_key", "see trade_key: the two keys look swapped")
    if read.orders == "readable":
        return _read_key_reads_orders(cfg)
    if read.orders == "refused":
        return passed("read_key", "authenticates (balance read); refused order reads: View only, as it should be")
    return skipped("read_key", f"authenticates; order-read right unknown: {read.orders_detail}")


def _read_key_reads_orders(cfg: Config) -> Check:
    """Bitvavo is unclear here: its SDK README gives "view orders" to Trade keys, its get-started page does not
    say whether View keys may. So a warning that names the uncertainty, until the live probe has seen this key."""
    seen = observed_key(cfg, "READ")
    if seen is not None and seen.get("reads_orders"):
        return passed(
            "read_key",
            f"reads orders, as the live probe saw on {seen.get('at')}: Bitvavo lets this key read orders"
            " (whether View rights include that is undocumented; tinybot only reads with it)",
        )
    return warned(
        "read_key",
        "TINYBOT_READ_KEY can read orders: either it has Trade rights (the advisors' key could trade) or"
        " Bitvavo lets View keys read orders (its SDK README says Trade; its get-started page is unclear);"
        " not yet observed by the live probe",
        "check in Bitvavo's API settings that this key has View rights only (else make a View-only key for"
        f" TINYBOT_READ_KEY/SECRET in {cfg.secrets_path}), then run `tinybot doctor --live-probe` to record"
        " what Bitvavo lets it do",
    )


def _trade_key(cfg: Config, trade: KeyProbe | None, swapped: bool) -> Check:
    """The executor's key: authenticates and reads orders (an order whose answer was lost is looked up)."""
    if trade is None:
        return skipped("trade_key", "TINYBOT_TRADE_KEY/SECRET not set (see keys_separated)")
    if trade.auth != "ok":
        return _auth_failure("trade_key", trade, cfg)
    if swapped:
        return failed(
            "trade_key",
            "the two keys look swapped: TINYBOT_TRADE_KEY cannot read orders (View only)"
            " and TINYBOT_READ_KEY can (it has Trade rights)",
            f"swap the values of TINYBOT_READ_KEY/SECRET and TINYBOT_TRADE_KEY/SECRET in {cfg.secrets_path}",
        )
    if trade.orders == "refused":
        return failed(
            "trade_key",
            f"TINYBOT_TRADE_KEY cannot read orders ({trade.orders_detail}): without"
            " that, an order whose answer was lost can never be looked up",
            "give this key Trade rights on Bitvavo (View + Trade, never Withdraw), or make a new one",
        )
    if trade.orders == "readable":
        return passed("trade_key", "authenticates (balance read) and reads orders; tried read-only, nothing placed")
    return failed(
        "trade_key",
        f"TINYBOT_TRADE_KEY authenticates but reading orders failed: {trade.orders_detail}",
        "see the message; try `tinybot doctor` again",
    )


def _auth_failure(name: str, p: KeyProbe, cfg: Config) -> Check:
    var = f"TINYBOT_{p.env}"
    if p.auth == "unknown_key":
        return failed(
            name,
            f"{var}_KEY does not authenticate: Bitvavo knows no such key ({p.auth_detail})",
            f"copy the key again from Bitvavo (API settings) into {where(cfg.secrets_path, var + '_KEY')};"
            " it may have been deleted",
        )
    if p.auth == "key_length":
        return failed(
            name,
            f"{var}_KEY is not a whole Bitvavo API key: Bitvavo's keys are 64 characters ({p.auth_detail})",
            f"copy the key again, all of it, from Bitvavo (API settings) into {where(cfg.secrets_path, var + '_KEY')}",
        )
    if p.auth == "bad_secret":
        return failed(
            name,
            f"{var}_KEY does not authenticate: the signature is wrong, so {var}_SECRET is not"
            f" that key's secret ({p.auth_detail})",
            f"copy the secret again into {where(cfg.secrets_path, var + '_SECRET')} (Bitvavo shows it once:"
            " if it is lost, make a new key)",
        )
    return failed(
        name,
        f"{var}_KEY: Bitvavo's answer to a balance read: {p.auth_detail}",
        "see the message; `tinybot doctor` again once it is fixed",
    )
