"""Value encodings that keep crmkit's semantics where SQL types fall short.

* ``number_key``: any int, float or Decimal as text whose binary order is numeric order,
  exactly (no float rounding), so attribute numbers of different Python types compare
  as ``crmkit.query.evaluate`` does (``1 == 1.0 == Decimal("1.00")``, ``0.1 != Decimal("0.1")``).
* ``money_text``: money for SQLite, whose NUMERIC is a float. A fixed-width sortable key
  (sign letter, 15 integer digits, point, 6 decimals), then ``s`` and the Decimal's scale
  (0 to 6 places), so the exact Decimal comes back (``1.50`` stays ``1.50``, as in a
  PostgreSQL ``numeric``) and the first 23 characters compare and sort like the amounts.
* ``encode_attributes``: custom attributes as a JSON object of small typed objects
  (``{"s": text}``, ``{"b": bool}``, ``{"i"|"f"|"d": exact, "n": number_key}``, ``{"D": date}``,
  ``{"T": UTC datetime}``): the Python type round-trips, and each kind of value sits under
  its own key, so a query for one kind can never match another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "MONEY_KEY_WIDTH",
    "SCALES",
    "decode_attributes",
    "encode_attributes",
    "money_key",
    "money_of",
    "money_text",
    "number_key",
    "parse_money_text",
    "utc_text",
]

_EXPONENT_BIAS = 5000  # float exponents lie within [-324, 308]; Decimal and int ones are far smaller


def number_key(value: int | float | Decimal) -> str:
    """Text that sorts (byte by byte) exactly as the numbers do: sign, biased exponent, digits."""
    exact = value if isinstance(value, Decimal) else Decimal(value)  # Decimal(float) is exact
    if exact.is_zero():
        return "1"
    sign, digits, exponent = exact.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).rstrip("0")
    # scientific exponent of the leading digit, then a mantissa with no trailing zeros
    magnitude = exponent + len(digits) - 1 + _EXPONENT_BIAS
    if not sign:
        return f"2{magnitude:04d}{text}"
    complement = text.translate(_COMPLEMENT)
    return f"0{9999 - magnitude:04d}{complement}~"  # "~" sorts after digits: -1.2 > -1.23


_COMPLEMENT = str.maketrans("0123456789", "9876543210")

#: The sortable part of a money text: sign letter, 15 digits, point, 6 digits.
MONEY_KEY_WIDTH = 23


def money_key(amount: Decimal) -> str:
    """The fixed-width sortable key of an amount (|amount| < 10**15, at most 6 places).

    A query's bound past that range keys as ``Q`` (above every stored amount) or ``M`` (below).
    """
    micros = int(amount.scaleb(6))
    if abs(micros) >= 10**21:
        return "M" if micros < 0 else "Q"
    letter = "P"
    if micros < 0:
        micros += 10**21 - 1  # complement: larger magnitude sorts first
        letter = "N"
    units, fraction = divmod(micros, 1_000_000)
    return f"{letter}{units:015d}.{fraction:06d}"


def money_text(amount: Decimal) -> str:
    """Money as stored on SQLite: the sortable key, then ``s`` and the number of decimal places."""
    text = str(amount)
    if "E" not in text:  # plain notation, read straight off the text (imports write millions)
        negative = text[0] == "-"
        whole, _, fraction = (text[1:] if negative else text).partition(".")
        places = len(fraction)
        if places <= 6:
            micros = int(whole + fraction) * _TENS[6 - places]
            if micros >= 10**21:  # past the money range: only a query's bound, above (or below) all stored
                return "M" if negative else "Q"
            letter = "P"
            if negative and micros:
                micros = 10**21 - 1 - micros
                letter = "N"
            units, rest = divmod(micros, 1_000_000)
            return f"{letter}{units:015d}.{rest:06d}s{places}"
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return f"{money_key(amount)}s{max(0, -exponent)}"  # like numeric, no negative scale: 1E+2 is 100


_TENS = tuple(10**k for k in range(7))


#: Decimal(1) scaled to 0..6 places, for quantize.
SCALES = tuple(Decimal(1).scaleb(-places) for places in range(7))


def money_of(micros: int, places: int) -> Decimal:
    """An amount from its count of millionths and its number of decimal places."""
    return Decimal(micros).scaleb(-6).quantize(SCALES[places])


_PLACES = {str(places): places for places in range(7)}


def parse_money_text(text: str) -> Decimal:
    """The exact Decimal back from ``money_text``."""
    if text[0] == "P" and len(text) == 25:
        places = _PLACES.get(text[24])
        if places is not None:  # not negative: the digits up to its places are the Decimal's text
            return Decimal(text[1 : 17 + places])  # leading zeros and a bare "." change nothing
    micros = int(text[1:16] + text[17:23])
    if text[0] == "N":
        micros = micros - (10**21 - 1)
    return money_of(micros, int(text[24]) if len(text) > 24 else 6)


def utc_text(value: dt.datetime) -> str:
    """Fixed-width ISO text of a UTC instant (sorts as the instants do)."""
    return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def encode_attributes(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Custom attributes as stored (see the module docstring)."""
    return {key: encode_attribute(value) for key, value in attributes.items()}


def encode_attribute(value: Any) -> dict[str, Any]:
    """One attribute value as its typed JSON object."""
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int):
        return {"i": value, "n": number_key(value)}
    if isinstance(value, float):
        return {"f": repr(value), "n": number_key(value)}
    if isinstance(value, Decimal):
        return {"d": str(value), "n": number_key(value)}
    if isinstance(value, str):
        return {"s": value}
    if isinstance(value, dt.datetime):
        return {"T": utc_text(value)}
    if isinstance(value, dt.date):
        return {"D": value.isoformat()}
    raise TypeError(f"unsupported attribute value {value!r}")


def decode_attributes(stored: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    """The attribute values back with their exact Python types."""
    out: dict[str, Any] = {}
    for key, item in (stored or {}).items():
        if "s" in item:
            out[key] = item["s"]
        elif "b" in item:
            out[key] = bool(item["b"])
        elif "i" in item:
            out[key] = int(item["i"])
        elif "f" in item:
            out[key] = float(item["f"])
        elif "d" in item:
            out[key] = Decimal(item["d"])
        elif "T" in item:
            out[key] = dt.datetime.fromisoformat(item["T"]).astimezone(dt.timezone.utc)
        elif "D" in item:
            out[key] = dt.date.fromisoformat(item["D"])
        else:
            raise ValueError(f"attribute {key!r} has an unknown stored form {dict(item)!r}")
    return out
