"""Money, one way: Decimal in, exact decimal strings out, EUR printed the same everywhere.

Never ``float``; never scientific notation (``Decimal("1E-8")`` prints as
``0.00000001``).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")


def plain(d: Decimal) -> str:
    """An exact decimal string, trailing zeros dropped, never scientific: 0.00000001, 12, 0.5."""
    s = f"{d.normalize():f}"
    return "0" if s in ("-0", "0") else s


def cents_or_none(d: Decimal | None) -> str | None:
    """A EUR amount for JSON: the exact decimal string to the cent (``cents``), or None for no value."""
    return None if d is None else cents(d)


def cents(d: Decimal) -> str:
    """A EUR amount to the cent, as a decimal string: '6.00', '-0.02'; never '-0.00'."""
    q = d.quantize(CENT, rounding=ROUND_HALF_EVEN)
    return f"{q if q else abs(q):f}"


def eur_text(d: Decimal | str | int | None) -> str:
    """A EUR amount for people: '€6.00', '-€0.02', '€—' for no value."""
    if d is None:
        return "€—"
    s = cents(Decimal(d))
    return f"-€{s[1:]}" if s.startswith("-") else f"€{s}"
