"""Faults the simulator can inject, the ``ON:KIND[:opt=val,...]`` spec syntax, and the list of armed ones.

``accept`` says whether the exchange *does* the operation before the fault
hits the answer. It only means something for kinds that happen after the
request reached the matching engine; see ``KINDS``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# kind → (accept default, accept choosable, default delay seconds)
KINDS = {
    "delay": (True, False, 1.0),  # sleep, then answer normally
    "timeout_after_accept": (True, False, 30.0),  # do it, hang, close without an answer
    "timeout_before_accept": (False, False, 30.0),  # hang, close; nothing done
    "html_5xx": (False, False, 0.0),  # 502 (or `status`) with an HTML body; nothing done
    "error_101": (True, True, 0.0),  # 500 {"errorCode":101}; done unless accept=False
    "error_109": (True, True, 0.0),  # 503 {"errorCode":109}; done unless accept=False
    "rate_limit_110": (False, False, 0.0),  # 429 {"errorCode":110} + resetat header; nothing done
    "rate_limit_105": (False, False, 0.0),  # 429 {"errorCode":105} "ban expires at …"; nothing done
    "garbage_200": (True, True, 0.0),  # 200 with a non-JSON body; done unless accept=False
    "reset": (True, True, 0.0),  # TCP reset, no answer; done unless accept=False
    # 404 {"errorCode":240} although the order exists: GET /order for a moment right after the order was
    # created (reported by a third-party Bitvavo SDK); nothing is done, the lookup just misses
    "not_found_240": (False, False, 0.0),
}

# What `on` may name: one per endpoint family, plus "any".
REQUEST_KINDS = (
    "create_order",
    "get_order",
    "cancel_order",
    "cancel_orders",
    "orders",
    "open_orders",
    "trades",
    "balance",
    "account",
    "fees",
    "ticker",
    "book",
    "candles",
    "markets",
    "assets",
    "time",
    "public_trades",
    "any",
)


@dataclass
class Fault:
    kind: str
    on: str = "create_order"
    count: int | None = 1  # None: every matching request until cleared
    delay: float = 0.0
    accept: bool = True
    status: int | None = None  # html_5xx only: 502 by default
    remaining: int | None = field(default=None, repr=False)
    fired: int = 0

    def __post_init__(self):
        if self.remaining is None:
            self.remaining = self.count

    def as_dict(self) -> dict:
        return asdict(self)


def make_fault(
    kind: str,
    on: str = "create_order",
    count: int | None = 1,
    delay: float | None = None,
    accept: bool | None = None,
    status: int | None = None,
) -> Fault:
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}")
    if on not in REQUEST_KINDS:
        raise ValueError(f"unknown request kind {on!r}; use one of {', '.join(REQUEST_KINDS)}")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValueError(f"fault count must be a positive integer or None (every time), not {count!r}")
    accept_default, accept_choosable, delay_default = KINDS[kind]
    if accept is None:
        accept = accept_default
    elif accept != accept_default and not accept_choosable:
        raise ValueError(f"fault {kind} does not take accept={accept}: it is always accept={accept_default}")
    delay = delay_default if delay is None else float(delay)
    if delay < 0:
        raise ValueError("fault delay must be >= 0 seconds")
    if status is not None and (kind != "html_5xx" or not 500 <= int(status) <= 599):
        raise ValueError("status= is only for html_5xx and must be 500..599")
    return Fault(
        kind=kind,
        on=on,
        count=count,
        delay=delay,
        accept=bool(accept),
        status=int(status) if status is not None else None,
    )


def parse_fault_spec(spec: str) -> Fault:
    """``create_order:timeout_after_accept:count=1,delay=2,accept=false``.

    count=0 or count=always means every matching request until cleared.
    """
    parts = spec.split(":", 2)
    if len(parts) < 2:
        raise ValueError(f"fault {spec!r} is not ON:KIND[:opt=val,...], e.g. create_order:error_101:accept=false")
    on, kind = parts[0].strip(), parts[1].strip()
    opts: dict = {}
    if len(parts) == 3 and parts[2].strip():
        for item in parts[2].split(","):
            name, eq, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not eq:
                raise ValueError(f"fault option {item!r} is not name=value")
            try:
                if name == "count":
                    opts["count"] = None if value in ("0", "always") else int(value)
                elif name == "delay":
                    opts["delay"] = float(value)
                elif name == "status":
                    opts["status"] = int(value)
                elif name == "accept":
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    opts["accept"] = value.lower() in ("true", "1", "yes")
                else:
                    raise ValueError(f"unknown fault option {name!r}; use count, delay, accept, status")
            except ValueError as e:
                raise ValueError(str(e) or f"fault option {name}={value!r} is not valid") from None
    return make_fault(kind, on=on, **opts)


class ArmedFaults:
    """The faults armed on a simulator, in the order they fire (the simulator's lock guards it)."""

    def __init__(self):
        self._faults: list[Fault] = []

    def arm(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def all(self) -> list[Fault]:
        return list(self._faults)

    def take(self, request_kind: str) -> Fault | None:
        """The first armed fault matching this request; uses up one of its count."""
        for f in self._faults:
            if f.on in (request_kind, "any"):
                if f.remaining is not None:
                    f.remaining -= 1
                    if f.remaining <= 0:
                        self._faults.remove(f)
                f.fired += 1
                return f
        return None
