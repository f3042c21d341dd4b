"""`tinybot tax YEAR`: a Box 3 worksheet for the Netherlands.  A worksheet, not tax advice.

Box 3 taxes what you hold on the *peildatum*, 1 January 00:00 (Europe/Amsterdam,
whatever the config's ``timezone``): euros count as savings ("banktegoeden"),
crypto as other assets ("overige bezittingen").  Whoever thinks the assumed
return is too high may show the actual return instead (a counter-evidence
statement, "tegenbewijs"), which needs the values at both ends of the year,
what was deposited or withdrawn, and the realised and unrealised results.

What tinybot can say, and from where:

* what the account held at a moment: what it held before tinybot's first fill
  (the baseline of its first balance snapshot; paper: the starting balance)
  plus every fill up to that moment — tinybot's ledger, so anything done
  outside tinybot after the baseline is not in it (that shows as drift);
* Bitvavo's price at the moment: the 1-minute candle that opens then (its open),
  else the last candle before it (its close) — from the candle store, fetched
  from Bitvavo's public candles when missing;
* the year's fills, fees, realised result (average cost, as `tinybot pnl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from . import clock, money, pnl

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
DISCLAIMER = (
    "A worksheet from tinybot's own records, not tax advice: check every figure against Bitvavo's"
    " statements and the Belastingdienst's rules for your year."
)


class TaxError(Exception):
    """The worksheet cannot be made (no price for the peildatum, bad year); the message says what to do."""


def peildatum(year: int) -> datetime:
    """1 January ``year`` 00:00 in Europe/Amsterdam, as a UTC moment."""
    return datetime(year, 1, 1, tzinfo=AMSTERDAM).astimezone(timezone.utc)


@dataclass(frozen=True)
class PricePoint:
    price: Decimal
    candle_open_ms: int
    how: str  # "open of the candle at the moment" | "close of the last candle before it"


def price_at(conn, market: str, at: datetime, client=None) -> PricePoint:
    """Bitvavo's price of ``market`` at ``at``, from stored candles (fetched when missing and a client is given)."""
    from . import candles

    at_ms = clock.to_ms(at)
    for interval, back in (("1m", timedelta(hours=1)), ("1h", timedelta(days=7))):
        step = candles.INTERVALS[interval]
        lo, hi = clock.to_ms(at - back), at_ms + step
        found = candles.load(conn, market, interval, lo, hi)
        if not found and client is not None:
            try:
                candles.fetch(conn, client, [market], interval, clock.from_ms(lo), clock.from_ms(hi))
            except candles.CandleError:
                pass  # tried; the next interval, or the error below, says what is missing
            found = candles.load(conn, market, interval, lo, hi)
        exact = [c for c in found if c.timestamp_ms == at_ms]
        if exact:
            return PricePoint(exact[0].open, at_ms, f"open of the {interval} candle at the moment")
        before = [c for c in found if c.timestamp_ms < at_ms]
        if before:
            return PricePoint(before[-1].close, before[-1].timestamp_ms, f"close of the last {interval} candle before")
    raise TaxError(
        f"no Bitvavo price for {market} at {clock.to_iso(at)}: fetch candles around it with"
        f" `tinybot data fetch {market} --interval 1m --since {clock.to_iso(at - timedelta(hours=1))[:16]}`"
        " (needs the network) or import them"
    )


def holdings_at(conn, cfg, at: datetime) -> tuple[dict[str, Decimal], str]:
    """What the account held at ``at`` by tinybot's ledger: the baseline plus every fill up to then."""
    base = pnl.baseline(conn, cfg)
    note = ""
    if base is None:
        base = {}
        note = "no balance snapshot yet: holdings are tinybot's fills only, not what the account held before"
    moved = pnl.replay(conn, until=clock.to_iso(at)).delta
    out = {a: base.get(a, Decimal(0)) + moved.get(a, Decimal(0)) for a in set(base) | set(moved)}
    return {a: v for a, v in sorted(out.items()) if v != 0}, note


def snapshot(conn, cfg, at: datetime, client=None) -> dict:
    held, note = holdings_at(conn, cfg, at)
    eur = held.get("EUR", Decimal(0))
    crypto, lines = Decimal(0), []
    for asset, amount in held.items():
        if asset == "EUR":
            continue
        p = price_at(conn, f"{asset}-EUR", at, client)
        value = amount * p.price
        crypto += value
        lines.append(
            {
                "asset": asset,
                "amount": money.plain(amount),
                "price_eur": money.plain(p.price),
                "price_source": p.how,
                "value_eur": money.cents(value),
            }
        )
    return {
        "at": clock.to_iso(at),
        "at_local": at.astimezone(AMSTERDAM).isoformat(),
        "savings_eur": money.cents(eur),
        "other_assets_eur": money.cents(crypto),
        "total_eur": money.cents(eur + crypto),
        "crypto": lines,
        "note": note,
    }


def worksheet(conn, cfg, year: int, client=None) -> dict:
    if not 2009 <= year <= 2100:
        raise TaxError(f"YEAR: {year} is not a year tinybot can make a worksheet for (2009–2100)")
    start, end = peildatum(year), peildatum(year + 1)
    now = clock.now()
    opening = snapshot(conn, cfg, start, client) if start <= now else None
    closing = snapshot(conn, cfg, end, client) if end <= now else None
    lo, hi = clock.to_iso(start), clock.to_iso(end)
    rows = conn.execute(
        "SELECT * FROM trade_history WHERE executed_at >= ? AND executed_at < ? ORDER BY executed_at, id", (lo, hi)
    ).fetchall()
    bought = sum((Decimal(r["amount"]) * Decimal(r["price"]) for r in rows if r["side"] == "buy"), Decimal(0))
    sold = sum((Decimal(r["amount"]) * Decimal(r["price"]) for r in rows if r["side"] == "sell"), Decimal(0))
    fees = sum((Decimal(r["fee"]) for r in rows if r["fee_currency"] == "EUR"), Decimal(0))
    coin_fees = sum(1 for r in rows if r["fee_currency"] != "EUR")

    realised_year = pnl.realised_between(conn, lo, hi)
    unrealised_end = None
    if closing is not None:
        books = pnl.replay(conn, until=hi).books
        unrealised_end = Decimal(0)
        for market, b in books.items():
            if b.base > 0:
                unrealised_end += b.base * price_at(conn, market, end, client).price - b.cost
    drift = pnl.drift(conn, cfg)
    return {
        "year": year,
        "disclaimer": DISCLAIMER,
        "peildatum": opening,
        "next_peildatum": closing,
        "fills": {
            "count": len(rows),
            "bought_eur": money.cents(bought),
            "sold_eur": money.cents(sold),
            "fees_eur": money.cents(fees),
            "fills_with_fee_in_coin": coin_fees,
        },
        "counter_evidence": {
            "value_start_eur": opening["total_eur"] if opening else None,
            "value_end_eur": closing["total_eur"] if closing else None,
            "deposits_withdrawals_seen": {
                "drift": drift["assets"],
                "at": drift["at"],
                "note": "what the exchange holds beyond tinybot's ledger (deposits, withdrawals, manual trades);"
                " tinybot does not read Bitvavo's deposit history" + (f"; {drift['note']}" if drift["note"] else ""),
            },
            "realised_eur": money.cents(realised_year),
            "unrealised_end_eur": None if unrealised_end is None else money.cents(unrealised_end),
        },
    }
