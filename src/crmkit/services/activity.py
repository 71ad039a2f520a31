"""``crm.interactions`` and ``crm.transactions``: contacts on every channel, purchases and refunds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crmkit._errors import ValidationError
from crmkit.entities import (
    INTERACTIONS,
    TRANSACTIONS,
)
from crmkit.interactions import Interaction
from crmkit.transactions import Transaction

if TYPE_CHECKING:
    pass

from crmkit.services.records import _Records

__all__ = ["Interactions", "Transactions"]


class Interactions(_Records[Interaction]):
    """``crm.interactions``: contacts with customers on any channel."""

    spec = INTERACTIONS

    def _check_references(self, records: Sequence[Interaction], first_row: int | None) -> None:
        known = self._crm.channels
        for i, record in enumerate(records):
            if record.channel not in known:
                err = ValidationError(
                    "channel", f"is not a registered channel (known: {', '.join(sorted(known))})", str(record.channel)
                )
                raise err if first_row is None else err.at_row(first_row + i)
        self._require_customers(records, ("customer_id",), first_row)


class Transactions(_Records[Transaction]):
    """``crm.transactions``: purchases and refunds."""

    spec = TRANSACTIONS

    def _check_references(self, records: Sequence[Transaction], first_row: int | None) -> None:
        self._require_customers(records, ("customer_id",), first_row)
        self._crm._require_references(self.spec, records, first_row)  # the order paid, when one is named
