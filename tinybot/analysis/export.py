"""`tinybot export --csv FILE`: every fill, for bookkeeping and for a crypto-tax tool.

Two layouts:

* ``generic``: one row per fill: time (UTC and local, the config's
  ``timezone``), market, side, amount, price, EUR value, fee, fee currency,
  order id, trade id, whether it was an external sale, and the advisor whose
  book it belongs to (tinybot.trade.book: rerun its average cost per advisor and
  market from this file and you get `tinybot pnl`'s realised P/L);
* ``koinly``: Koinly's "universal" import template (Date in UTC, Sent/Received
  Amount and Currency, Fee Amount/Currency, Net Worth, Label, Description,
  TxHash), the one layout a common crypto-tax tool imports without mapping.

Amounts are exact decimal strings as Bitvavo reported them (never floats,
never scientific notation).  The file is written whole or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from datetime import datetime
from pathlib import Path

from ..base.errors import TinybotError
from ..base import clock, money
from ..base.writable import cannot_write

LAYOUTS = ("generic", "koinly")
GENERIC = [
    "time_utc",
    "time_local",
    "market",
    "side",
    "amount",
    "price",
    "eur_value",
    "fee",
    "fee_currency",
    "order_id",
    "trade_id",
    "external",
    "advisor",
]
KOINLY = [
    "Date",
    "Sent Amount",
    "Sent Currency",
    "Received Amount",
    "Received Currency",
    "Fee Amount",
    "Fee Currency",
    "Net Worth Amount",
    "Net Worth Currency",
    "Label",
    "Description",
    "TxHash",
]


class ExportError(TinybotError):
    """Nothing was written; the message says why."""


def fills(conn, tz, year: int | None = None) -> list[dict]:
    from decimal import Decimal

    from sqlite_utils import Database  # bulk reads as dicts; only this command pays for the import

    sql, args = "SELECT * FROM trade_history", []
    if year is not None:  # the local year: from local 1 January 00:00 to the next
        lo = clock.day_start(datetime(year, 1, 1, 12, tzinfo=tz), tz)
        hi = clock.day_start(datetime(year + 1, 1, 1, 12, tzinfo=tz), tz)
        sql += " WHERE executed_at >= ? AND executed_at < ?"
        args = [clock.to_iso(lo), clock.to_iso(hi)]
    out = []
    for r in Database(conn).query(sql + " ORDER BY executed_at, id", args):
        at = clock.from_iso(r["executed_at"])
        amount, price = Decimal(r["amount"]), Decimal(r["price"])
        out.append(
            {**r, "at": at, "local": at.astimezone(tz), "amount_d": amount, "price_d": price, "value": amount * price}
        )
    return out


def rows(layout: str, items: list[dict]) -> tuple[list[str], list[list[str]]]:
    if layout == "generic":
        return GENERIC, [
            [
                clock.to_iso(f["at"]),
                f["local"].isoformat(timespec="seconds"),
                f["market"],
                f["side"],
                money.plain(f["amount_d"]),
                money.plain(f["price_d"]),
                money.plain(f["value"]),
                f["fee"],
                f["fee_currency"],
                f["order_id"],
                f["trade_id"],
                "true" if f["external"] else "false",
                f["book"],
            ]
            for f in items
        ]
    return KOINLY, [[f["at"].strftime("%Y-%m-%d %H:%M:%S UTC"), *_koinly(f)] for f in items]


def _koinly(f: dict) -> list[str]:
    base = f["market"].split("-")[0]
    value, amount = money.plain(f["value"]), money.plain(f["amount_d"])
    sent_amount, sent_cur, recv_amount, recv_cur = (
        (value, "EUR", amount, base) if f["side"] == "buy" else (amount, base, value, "EUR")
    )
    return [
        sent_amount,
        sent_cur,
        recv_amount,
        recv_cur,
        f["fee"],
        f["fee_currency"],
        value,
        "EUR",
        "",
        f"tinybot {f['side']} {f['market']} order {f['order_id']} ({f['book']})",
        f"{f['market']}:{f['trade_id']}",
    ]


def write(conn, cfg, path, *, layout: str = "generic", year: int | None = None) -> dict:
    if layout not in LAYOUTS:
        raise ExportError(f"--format must be one of {', '.join(LAYOUTS)}")
    if year is not None and not 2000 <= year <= 2100:
        raise ExportError(f"--year: {year} is not a year between 2000 and 2100")
    items = fills(conn, cfg.tz, year)
    header, body = rows(layout, items)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(body)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ExportError(str(cannot_write("the export", path, e))) from None
    return {"path": str(path), "layout": layout, "year": year, "fills": len(body)}
