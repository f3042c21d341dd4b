"""The paper exchange: real (or injected) market data, simulated fills, state in SQLite.

It implements the same ``Trading`` contract as the live adapter and keeps its
balances, orders and fills in the bot's own database file (``paper_*``
tables), each order in one ``BEGIN IMMEDIATE`` transaction, so paper mode has
the same crash behaviour as the bot's own rows.

Fill model (the same as the Bitvavo simulator's; the arithmetic is
``tinybot.base.fees``): market orders fill at once, buys at the ask and sells at
the bid, paying the taker fee in EUR.  A buy by EUR (``amount_quote``)
debits exactly that much EUR (``filledAmountQuote + feePaid ==
amountQuote``, the base truncated to the market's quantity decimals); by
base amount, the EUR side settles in whole cents against the user.  EUR
balances stay in whole cents.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

from ..base import clock, crash, fees
from ..store import db
from .base import Balance, Candle, ExchangeError, Fill, Market, Order, SendOutcome, Ticker
from ..base.markets import normalise_market

# Faults a test (or the chaos harness) can arm on the paper exchange.
FAULTS = ("timeout_after_accept", "timeout_before_accept", "refuse")


class PaperExchange:
    name = "paper"

    def __init__(
        self,
        db_path: str | Path,
        market_data,
        *,
        starting_eur: Decimal = Decimal("25"),
        taker_fee: Decimal = fees.TAKER_FEE,
    ):
        self.db_path = Path(db_path)
        self.source = market_data
        self.taker_fee = taker_fee
        self.faults: list[str] = []  # consumed one per send, front first
        self._conn = db.open_db(self.db_path)
        # The paper exchange stands in for Bitvavo: an order it accepted and a power cut then lost is an
        # order that never reached the exchange, which the executor already handles (unknown → reconcile
        # → failed).  Its commits need not wait for the disk; the executor's FULL commit right after
        # syncs the WAL, paper frames included.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with db.transaction(self._conn) as c:
            if c.execute("SELECT COUNT(*) FROM paper_balances").fetchone()[0] == 0:
                c.execute(
                    "INSERT INTO paper_balances (asset, available) VALUES ('EUR', ?)",
                    (str(fees.cents_down(Decimal(starting_eur))),),
                )

    def close(self) -> None:
        self._conn.close()

    # --- market data: delegated --------------------------------------------
    def markets(self) -> dict[str, Market]:
        return self.source.markets()

    def ticker(self, market: str) -> Ticker:
        return self.source.ticker(market)

    def tickers(self, markets) -> dict[str, Ticker]:
        return self.source.tickers(markets)

    def candles(self, market: str, interval: str, limit: int) -> list[Candle]:
        return self.source.candles(market, interval, limit)

    def server_time_ms(self) -> int:
        return clock.now_ms()

    # --- account -------------------------------------------------------------
    def balances(self) -> dict[str, Balance]:
        rows = self._conn.execute("SELECT asset, available, in_order FROM paper_balances").fetchall()
        return {r["asset"]: Balance(Decimal(r["available"]), Decimal(r["in_order"])) for r in rows}

    def fetch_order(self, market: str, client_order_id: str) -> Order | None:
        row = self._conn.execute("SELECT * FROM paper_orders WHERE client_order_id = ?", (client_order_id,)).fetchone()
        return self._order(row) if row else None

    def orders_since(self, market: str, since_ms: int) -> list[Order]:
        rows = self._conn.execute(
            "SELECT * FROM paper_orders WHERE market = ? AND created_ms >= ? ORDER BY created_ms DESC",
            (normalise_market(market), since_ms),
        ).fetchall()
        return [self._order(r) for r in rows]

    def open_orders(self, market: str) -> list[Order]:
        return []  # market orders fill at once; paper has no resting orders

    def trades_since(self, market: str, since_ms: int) -> list[Fill]:
        rows = self._conn.execute(
            "SELECT * FROM paper_fills WHERE market = ? AND timestamp_ms >= ? ORDER BY timestamp_ms",
            (normalise_market(market), since_ms),
        ).fetchall()
        return [self._fill(r) for r in rows]

    # --- trading -------------------------------------------------------------
    def send_order(
        self,
        market: str,
        side: str,
        *,
        client_order_id: str,
        amount_quote: Decimal | None = None,
        amount: Decimal | None = None,
        sign_by_ms: int | None = None,
        claimed_ms: int | None = None,
    ) -> SendOutcome:
        """The contract's semantics: an order whose clientOrderId the exchange already has is never
        made again.  Bitvavo needs a lookup by id and a scan of the orders since ``claimed_ms``; paper
        checks every order it ever had, inside the transaction that would create it (stricter), so
        ``claimed_ms`` changes nothing here."""
        fault = self.faults.pop(0) if self.faults else None
        if fault == "timeout_before_accept":
            return SendOutcome.ambiguous("timeout: no reply from the paper exchange", code="RequestTimeout")
        if fault == "refuse":
            return SendOutcome.refused("paper exchange refused the order (injected)", code="injected")
        if sign_by_ms is not None and clock.now_ms() > sign_by_ms:
            return SendOutcome.refused("not sent: past the send deadline", code="send_deadline")
        try:
            outcome = self._fill_market_order(normalise_market(market), side, client_order_id, amount_quote, amount)
        except ExchangeError as e:  # market data unavailable: nothing was written
            return SendOutcome.refused(f"no price for {market}: {e}", code="no_price")
        if fault == "timeout_after_accept" and outcome.kind == "accepted":
            return SendOutcome.ambiguous("timeout after the paper exchange accepted the order", code="RequestTimeout")
        return outcome

    def cancel_order(self, market: str, client_order_id: str) -> bool:
        return False  # nothing ever rests on the paper exchange

    def _fill_market_order(self, market, side, cid, amount_quote, amount) -> SendOutcome:
        mkts = self.source.markets()
        if market not in mkts:
            return SendOutcome.refused(f"unknown market {market}", code="205")
        m = mkts[market]
        t = self.source.ticker(market)
        price = t.ask if side == "buy" else t.bid
        s = fees.settle(side, price, m.quantity_decimals, amount=amount, amount_quote=amount_quote, rate=self.taker_fee)
        base, quote, fee = s.base, s.quote, s.fee
        eur_delta, base_delta = (-s.eur, base) if side == "buy" else (s.eur, -base)
        notional = amount_quote if amount_quote is not None else base * price
        if notional < m.min_quote:
            return SendOutcome.refused(f"order below the minimum of €{m.min_quote}", code="217")
        if base <= 0:
            return SendOutcome.refused("amount rounds to zero", code="217")
        now_ms = clock.now_ms()
        order_id = str(uuid.uuid4())
        with db.transaction(self._conn) as c:
            if c.execute("SELECT 1 FROM paper_orders WHERE client_order_id = ?", (cid,)).fetchone():
                # Bitvavo refuses a clientOrderId of an open order (220); paper
                # keeps every id unique, which is stricter.
                return SendOutcome.ambiguous("clientOrderId already used", code="220")
            bal = {
                r["asset"]: Decimal(r["available"]) for r in c.execute("SELECT asset, available FROM paper_balances")
            }
            if bal.get("EUR", Decimal(0)) + eur_delta < 0 or bal.get(m.base, Decimal(0)) + base_delta < 0:
                return SendOutcome.refused("insufficient balance", code="216")
            for asset, delta in (("EUR", eur_delta), (m.base, base_delta)):
                c.execute(
                    "INSERT INTO paper_balances (asset, available) VALUES (?, ?)"
                    " ON CONFLICT (asset) DO UPDATE SET available = ?",
                    (asset, str(bal.get(asset, Decimal(0)) + delta), str(bal.get(asset, Decimal(0)) + delta)),
                )
            c.execute(
                "INSERT INTO paper_orders (order_id, client_order_id, market, side, order_type, status, amount,"
                " amount_quote, filled_amount, filled_amount_quote, fee_paid, fee_currency, created_ms)"
                " VALUES (?, ?, ?, ?, 'market', 'filled', ?, ?, ?, ?, ?, 'EUR', ?)",
                (order_id, cid, market, side, _s(amount), _s(amount_quote), str(base), str(quote), str(fee), now_ms),
            )
            c.execute(
                "INSERT INTO paper_fills (trade_id, order_id, market, side, amount, price, fee, fee_currency,"
                " timestamp_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 'EUR', ?)",
                (str(uuid.uuid4()), order_id, market, side, str(base), str(price), str(fee), now_ms),
            )
        crash.point("after_send_before_reply")
        return SendOutcome.accepted(self.fetch_order(market, cid))

    # --- rows -> contract objects --------------------------------------------
    def _order(self, r) -> Order:
        fills = tuple(
            self._fill(f)
            for f in self._conn.execute(
                "SELECT * FROM paper_fills WHERE order_id = ? ORDER BY timestamp_ms", (r["order_id"],)
            )
        )
        return Order(
            order_id=r["order_id"],
            client_order_id=r["client_order_id"],
            market=r["market"],
            side=r["side"],
            order_type=r["order_type"],
            status=r["status"],
            amount=_d(r["amount"]),
            amount_quote=_d(r["amount_quote"]),
            filled_amount=Decimal(r["filled_amount"]),
            filled_amount_quote=Decimal(r["filled_amount_quote"]),
            fee_paid=Decimal(r["fee_paid"]),
            fee_currency=r["fee_currency"],
            created_ms=r["created_ms"],
            fills=fills,
        )

    @staticmethod
    def _fill(f) -> Fill:
        return Fill(
            trade_id=f["trade_id"],
            order_id=f["order_id"],
            market=f["market"],
            side=f["side"],
            amount=Decimal(f["amount"]),
            price=Decimal(f["price"]),
            fee=Decimal(f["fee"]),
            fee_currency=f["fee_currency"],
            timestamp_ms=f["timestamp_ms"],
        )


def _s(d: Decimal | None) -> str | None:
    return None if d is None else str(d)


def _d(s: str | None) -> Decimal | None:
    return None if s is None else Decimal(s)
