"""Advisors the loop's tests configure as ``helpers.advisors:NAME`` (also from the `tinybot run` processes
they start, with tests/ on PYTHONPATH).  A gate writes a marker file and waits until the test creates a
release file, so "mid-tick" is a state the test controls instead of a race it hopes to win."""

from __future__ import annotations

import os
import time
from decimal import Decimal
from pathlib import Path

from tinybot.trade.proposals import Draft


def gate_advisor(snapshot, cfg):
    """Write $TB_MARKER, wait for $TB_RELEASE (at most 20 s), then propose a small buy."""
    marker = Path(os.environ["TB_MARKER"])
    marker.with_suffix(".tmp").write_text(str(os.getpid()))
    marker.with_suffix(".tmp").replace(marker)  # whole: the test reads the PID as soon as the file exists
    release = Path(os.environ["TB_RELEASE"])
    deadline = time.monotonic() + 20
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return [Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason="gate opened")]


def buy_btc(snapshot, cfg):
    return [Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason="test: buy €5")]


def garbage(snapshot, cfg):
    return "buy everything"


def raises(snapshot, cfg):
    raise RuntimeError("advisor bug")


def half_bad(snapshot, cfg):
    return [
        Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason="fine"),
        Draft("BTC-EUR", "hold", amount_quote=Decimal("6"), reason="bad side"),
        {"market": "BTC-EUR"},
        Draft("BTC-EUR", "buy", amount_quote=Decimal("6"), reason=""),
    ]


def sneaky(snapshot, cfg):
    """Tries to reach an exchange from the snapshot: it holds only data."""
    assert not any(hasattr(snapshot, a) for a in ("send_order", "exchange", "client", "conn"))
    return []


SEEN_CANDLES: list = []


def record_candles(snapshot, cfg):
    """Remember the closed BTC-EUR candles this tick's snapshot showed (in SEEN_CANDLES)."""
    SEEN_CANDLES.append({c.timestamp_ms: c.close for c in snapshot.candles.get("BTC-EUR", ())})
    return []
