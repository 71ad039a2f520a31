"""The bundled CDNOW sample as crmkit records, for examples, tests and the demo (no numpy needed).

The CDNOW sample (Fader, Hardie and Lee 2005) holds the 6,919 purchases that 2,357
customers, acquired in the first quarter of 1997, made up to the end of June 1998. Each
sample id becomes one ``Customer`` and each line one ``Transaction`` in USD at UTC
midnight of its date. Ids are derived from the sample id and line number, so loading
twice gives the same records and ``add_many`` skips them by ``external_id``.

``simulate_baskets(...)`` draws seeded shopping baskets from a known process, with the
oracle that ranks by its true probabilities, for testing next-purchase recommenders
(needs numpy; see ``crmkit.value._simulation`` for the process).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any

from crmkit._errors import CRMError
from crmkit.customers import Customer
from crmkit.transactions import Transaction

if TYPE_CHECKING:
    from crmkit.value._simulation import BasketOracle, BasketSimulation, simulate_baskets

__all__ = [
    "CDNOW_CALIBRATION_END",
    "CDNOW_OBSERVATION_END",
    "BasketOracle",
    "BasketSimulation",
    "cdnow_customer_id",
    "cdnow_customers",
    "cdnow_transactions",
    "simulate_baskets",
]

# The basket simulator needs numpy: it is loaded on first use, so this module stays pure Python.
_SIMULATION = ("BasketOracle", "BasketSimulation", "simulate_baskets")


def __getattr__(name: str) -> Any:
    if name in _SIMULATION:
        from crmkit.value import _simulation

        return getattr(_simulation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: End of the 39-week calibration period used in the papers.
CDNOW_CALIBRATION_END = dt.date(1997, 9, 30)
#: Last day of the data (78 weeks after the start).
CDNOW_OBSERVATION_END = dt.date(1998, 6, 30)

_NAMESPACE = uuid.UUID("9f3c1c2e-5d1a-4f8e-9a57-0c2f8e1b7d41")


def _lines() -> Iterator[tuple[int, list[str]]]:
    source = resources.files("crmkit") / "data" / "cdnow" / "CDNOW_sample.txt"
    try:
        text = source.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CRMError("the CDNOW sample is not installed with this crmkit (data/cdnow/CDNOW_sample.txt)") from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            yield number, fields


def cdnow_customer_id(sample_id: int) -> uuid.UUID:
    """The customer id given to a CDNOW sample id (stable across loads)."""
    return uuid.uuid5(_NAMESPACE, f"customer:{int(sample_id)}")


def cdnow_customers() -> Iterator[Customer]:
    """One person per sample id, named ``CDNOW 0001``..., external id ``cdnow:1``..."""
    seen: set[int] = set()
    for _, fields in _lines():
        sample_id = int(fields[1])
        if sample_id in seen:
            continue
        seen.add(sample_id)
        yield Customer(
            kind="person",
            name=f"CDNOW {sample_id:04d}",
            external_id=f"cdnow:{sample_id}",
            attributes={"cdnow_master_id": int(fields[0])},
            id=cdnow_customer_id(sample_id),
        )


def cdnow_transactions() -> Iterator[Transaction]:
    """Every purchase of the sample, in file order, with the number of CDs as attribute ``cds``."""
    for number, (_, sample, day, cds, dollars) in _lines():
        yield Transaction(
            customer_id=cdnow_customer_id(int(sample)),
            occurred_at=dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.timezone.utc),
            amount=Decimal(dollars),
            currency="USD",
            attributes={"cds": int(cds)},
            external_id=f"cdnow:{int(sample)}:{number}",
            id=uuid.uuid5(_NAMESPACE, f"transaction:{number}"),
        )
