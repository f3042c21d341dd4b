"""The simulator's accounts: API keys, their permissions, and the balances each account holds.

Several keys may share one account, as several API keys of one Bitvavo
account do. The books of an account are kept under its first key (its
"books" key); every other key of it maps to that one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from .wire import s

PERMISSIONS = frozenset({"view", "trade", "withdraw"})


@dataclass(frozen=True)
class SimAccount:
    """One API key of one (sub)account. ``permissions`` ⊆ {"view", "trade", "withdraw"}.

    Keys with the same non-empty ``account`` name share one account (balances,
    orders, trades), as several API keys of one Bitvavo account do: a
    view-only key sees the balance the trading key's orders moved (reading the
    orders themselves needs ``trade``, unless ``view_key_reads_orders``). The
    first key of an account brings its balances; later keys must not name any.
    """

    key: str
    secret: str
    permissions: frozenset = frozenset({"view", "trade"})
    balances: dict = field(default_factory=dict)
    account: str = ""


class Accounts(Mapping):
    """API key → its ``SimAccount``; plus each account's available and in-order balances."""

    def __init__(self):
        self._keys: dict[str, SimAccount] = {}
        self._books: dict[str, str] = {}  # api key -> the key that owns the account's books
        self._available: dict[str, dict[str, Decimal]] = {}
        self._in_order: dict[str, dict[str, Decimal]] = {}

    def __getitem__(self, key: str) -> SimAccount:
        return self._keys[key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, account: SimAccount) -> None:
        bad_perms = set(account.permissions) - PERMISSIONS
        if bad_perms:
            raise ValueError(
                f"unknown permission(s) {sorted(bad_perms)} for key {account.key!r}; use view, trade, withdraw"
            )
        if account.key in self._keys:
            raise ValueError(f"duplicate API key {account.key!r}")
        sibling = next((k for k, a in self._keys.items() if account.account and a.account == account.account), None)
        self._keys[account.key] = account
        if sibling is not None:
            if account.balances:
                raise ValueError(
                    f"key {account.key!r} joins account {account.account!r}: give balances on its first key only"
                )
            self._books[account.key] = self._books[sibling]
            return
        self._books[account.key] = account.key
        self._available[account.key] = {"EUR": Decimal(0)} | {a: Decimal(str(v)) for a, v in account.balances.items()}
        self._in_order[account.key] = {}

    def books(self, key: str | None) -> str | None:
        """The key whose books an API key's account uses (itself unless it shares an account)."""
        return None if key is None else self._books.get(key, key)

    def available(self, key: str) -> dict[str, Decimal]:
        """The account's available balances (the live dict: the engine moves them)."""
        return self._available[self.books(key)]

    def in_order(self, key: str) -> dict[str, Decimal]:
        """What the account's open orders hold (the live dict)."""
        return self._in_order[self.books(key)]

    def set(self, key: str, asset: str, available) -> None:
        self.available(key)[asset] = Decimal(str(available))

    def move(self, key: str, asset: str, delta: Decimal, *, held: bool = False) -> None:
        """Add `delta` (may be < 0) to the available balance, or with held=True to what orders hold."""
        book = self.in_order(key) if held else self.available(key)
        book[asset] = book.get(asset, Decimal(0)) + delta

    def hold(self, key: str, asset: str, amount: Decimal) -> None:
        """An order takes `amount` out of the available balance and holds it."""
        self.move(key, asset, -amount)
        self.move(key, asset, amount, held=True)

    def release(self, key: str, asset: str, amount: Decimal) -> None:
        """An order gives back `amount` it held."""
        self.move(key, asset, -amount, held=True)
        self.move(key, asset, amount)

    def state(self) -> tuple[dict, dict]:
        """``balances`` and ``accounts`` of GET /_sim/state: per key, its account's balances and who it is."""
        balances = {
            k: {
                a: {"available": s(v), "inOrder": s(self.in_order(k).get(a, Decimal(0)))}
                for a, v in sorted(self.available(k).items(), key=lambda i: (i[0] != "EUR", i[0]))
            }
            for k in self._keys
        }
        accounts = {
            k: {"account": a.account or k, "books": self.books(k), "permissions": sorted(a.permissions)}
            for k, a in self._keys.items()
        }
        return balances, accounts
