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
  plus every fill up to that moment — tinybot's ledger (tinybot.trade.book), so
  anything done outside tinybot after the baseline is not in it (that shows
  as drift).  Only from the moment tinybot first saw the account (live: its
  first balance snapshot): a peildatum before it is *unknown*, said so, with
  null values, unless the owner supplies what the account held then
  (``--opening``/``--closing ASSET=AMOUNT``, from Bitvavo's statement);
* Bitvavo's price at the moment: the 1-minute candle that opens then (its open),
  else the last candle before it (its close) — from the candle store, fetched
  from Bitvavo's public candles when missing;
* the year's fills, fees (a fee in the coin valued at its fill's price) and
  realised result: the book's, as `tinybot pnl` shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from ..base.errors import TinybotError
from ..base import clock, money
from ..trade.book import benchmarks, holdings, steps

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
DISCLAIMER = (
    "A worksheet from tinybot's own records, not tax advice: check every figure against Bitvavo's"
    " statements and the Belastingdienst's rules for your year."
)


class TaxError(TinybotError):
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


def first_seen(conn, cfg) -> datetime | None:
    """From when tinybot knows what the account held: live, its first balance snapshot (the baseline's time);
    paper, the paper account's start (tinybot.trade.book.start: its first snapshot, price or fill)."""
    s = benchmarks.start(conn, cfg)
    # live: the first balance snapshot (Start.at can be an earlier price or fill, before any balance was read)
    return s.at if cfg.mode == "paper" else s.snapshot_at


def parse_held(items, option: str) -> dict[str, Decimal] | None:
    """``--opening EUR=20 --opening BTC=0.0003`` → {asset: amount}; None when not given."""
    if not items:
        return None
    out: dict[str, Decimal] = {}
    for item in items:
        asset, eq, amount = item.partition("=")
        asset = asset.strip().upper()
        try:
            value = Decimal(amount.strip())
        except InvalidOperation:
            value = None
        if not eq or not asset.isalnum() or value is None or not value.is_finite() or value < 0:
            raise TaxError(f"{option}: {item!r} is not ASSET=AMOUNT like EUR=20 or BTC=0.0003 (repeat it per asset)")
        out[asset] = out.get(asset, Decimal(0)) + value
    return out


def _when(at: datetime) -> str:
    """A moment as the worksheet says it: '1 January 2026 00:00', Amsterdam time (the peildatum's zone)."""
    local = at.astimezone(AMSTERDAM)
    return f"{local.day} {local:%B %Y %H:%M}"


def holdings_at(conn, cfg, at: datetime) -> tuple[dict[str, Decimal], str]:
    """What the account held at ``at`` by tinybot's ledger (tinybot.trade.book): the baseline plus every fill to then."""
    base, held = holdings.holdings_at(conn, cfg, at)
    note = "" if base is not None else "no balance snapshot yet: holdings are tinybot's fills only"
    return {a: v for a, v in held.items() if v != 0}, note


def _values(conn, held: dict[str, Decimal], at: datetime, client) -> dict:
    eur = held.get("EUR", Decimal(0))
    crypto, lines = Decimal(0), []
    for asset, amount in sorted(held.items()):
        if asset == "EUR" or amount == 0:
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
        "savings_eur": money.cents(eur),
        "other_assets_eur": money.cents(crypto),
        "total_eur": money.cents(eur + crypto),
        "crypto": lines,
    }


def snapshot(
    conn, cfg, at: datetime, client=None, supplied: dict[str, Decimal] | None = None, option: str = ""
) -> dict:
    """The account at a peildatum: from tinybot's ledger when it knew the account then, else from what the owner
    supplied (``supplied``, by ``option``), else unknown (``known`` false, values null)."""
    seen = first_seen(conn, cfg)
    head = {"at": clock.to_iso(at), "at_local": at.astimezone(AMSTERDAM).isoformat()}
    if seen is not None and at >= seen:
        if supplied is not None:
            raise TaxError(
                f"{option}: tinybot knows what the account held on {_when(at)} from its own records (it first saw"
                f" the account {_when(seen)}); leave {option} out"
            )
        held, note = holdings_at(conn, cfg, at)
        return {**head, "known": True, "source": "ledger", **_values(conn, held, at, client), "note": note}
    if supplied is not None:
        note = f"supplied with {option}, not from tinybot's records"
        return {**head, "known": True, "source": "owner", **_values(conn, supplied, at, client), "note": note}
    since = f"it first saw the account {_when(seen)}" if seen else "it has no balance snapshot yet"
    return {
        **head,
        "known": False,
        "source": None,
        "savings_eur": None,
        "other_assets_eur": None,
        "total_eur": None,
        "crypto": None,
        "note": f"unknown to tinybot ({since}): take what the account held on {_when(at)} from Bitvavo's"
        f" statement and pass it with {option} ASSET=AMOUNT, once per asset (EUR included)",
    }


def _year_fills(conn, lo: str, hi: str) -> dict:
    """The year's fills as the book reads them (a fee in the coin valued at its fill's price)."""
    rows = [f for f in steps.fills(conn, until=hi) if f.at > lo]
    return {
        "count": len(rows),
        "bought_eur": money.cents(sum((f.quote for f in rows if f.side == "buy"), Decimal(0))),
        "sold_eur": money.cents(sum((f.quote for f in rows if f.side == "sell"), Decimal(0))),
        "fees_eur": money.cents(sum((f.fee_eur for f in rows), Decimal(0))),
        "fills_with_fee_in_coin": sum(1 for f in rows if f.fee_currency != "EUR"),
    }


def _unrealised(conn, at: datetime, client) -> Decimal:
    """What tinybot's positions at ``at`` were worth above their average cost, at Bitvavo's prices then."""
    w = steps.walk(conn, until=clock.to_iso(at))
    total = Decimal(0)
    for market in w.markets():
        pos = w.market(market)
        if pos.base > 0:
            total += pos.unrealised(price_at(conn, market, at, client).price)
    return total


def worksheet(conn, cfg, year: int, client=None, *, opening=None, closing=None) -> dict:
    """The Box 3 worksheet for ``year``; ``opening``/``closing``: what the owner says the account held at a
    peildatum tinybot did not see (--opening/--closing ASSET=AMOUNT)."""
    if not 2009 <= year <= 2100:
        raise TaxError(f"YEAR: {year} is not a year tinybot can make a worksheet for (2009–2100)")
    start, end = peildatum(year), peildatum(year + 1)
    now = clock.now()
    for option, given, at in (("--opening", opening, start), ("--closing", closing, end)):
        if given is not None and at > now:
            raise TaxError(f"{option}: {_when(at)} has not come yet; leave {option} out")
    opening_snap = snapshot(conn, cfg, start, client, opening, "--opening") if start <= now else None
    closing_snap = snapshot(conn, cfg, end, client, closing, "--closing") if end <= now else None
    lo, hi = clock.to_iso(start), clock.to_iso(end)
    realised_year = steps.walk(conn, until=hi).period(lo, hi).realised_eur
    unrealised_end = None
    if closing_snap is not None:  # tinybot's own positions: known whoever supplied the account's value
        unrealised_end = _unrealised(conn, end, client)
    drift = holdings.drift(conn, cfg)
    return {
        "year": year,
        "disclaimer": DISCLAIMER,
        "peildatum": opening_snap,
        "next_peildatum": closing_snap,
        "fills": _year_fills(conn, lo, hi),
        "counter_evidence": {
            "value_start_eur": opening_snap["total_eur"] if opening_snap else None,
            "value_end_eur": closing_snap["total_eur"] if closing_snap else None,
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
