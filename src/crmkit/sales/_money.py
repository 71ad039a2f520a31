"""Exact line and header totals: rounded to the currency's minor unit, half-even."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["minor_units", "round_to_currency"]

#: ISO 4217 minor units that are not two places (the codes without a minor unit keep their exact value).
_MINOR_UNITS: dict[str, int | None] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
    **dict.fromkeys(["XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"], None),
}


def minor_units(currency: str) -> int | None:
    """The decimal places of a currency's minor unit (JPY: 0, EUR: 2, KWD: 3); None when it has none."""
    return _MINOR_UNITS.get(currency, 2)


def round_to_currency(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-even to the currency's minor unit (``Decimal("12.345")`` EUR -> ``12.34``)."""
    places = minor_units(currency)
    if places is None:
        return amount
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def total(amounts: Iterable[Decimal], currency: str) -> Decimal:
    """The sum of already rounded amounts, written with the currency's places (0 -> ``0.00`` in EUR)."""
    return round_to_currency(sum(amounts, Decimal(0)), currency)
