"""Transactions: purchases and refunds in exact Decimal money with an ISO 4217 currency."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

import attrs

from crmkit._errors import ValidationError
from crmkit._ids import new_id
from crmkit._validation import (
    AttributeValue,
    aware_datetime,
    currency_code,
    frozen_attributes,
    frozen_tuple,
    money,
    nonempty_text,
    one_of,
    optional_text,
    positive_int,
    uuid_field,
)

__all__ = ["LineItem", "Transaction", "TransactionKind"]

TransactionKind = Literal["purchase", "refund"]


def _quantity(value: object) -> Decimal:
    amount = money("quantity")(value)
    if amount == 0:
        raise ValidationError("quantity", "must be greater than zero", value)
    return amount


@attrs.frozen
class LineItem:
    """One product line of a transaction."""

    product: str = attrs.field(validator=nonempty_text)
    quantity: Decimal = attrs.field(default=Decimal(1), converter=_quantity)
    unit_price: Decimal = attrs.field(default=Decimal(0), converter=money("unit_price"))

    @property
    def total(self) -> Decimal:
        """quantity x unit price."""
        return self.quantity * self.unit_price


@attrs.frozen
class Transaction:
    """A purchase or a refund. ``amount`` is never negative: ``kind`` says which way money went."""

    customer_id: uuid.UUID = attrs.field(validator=uuid_field)
    occurred_at: dt.datetime = attrs.field(converter=aware_datetime("occurred_at"))
    amount: Decimal = attrs.field(converter=money("amount"))
    currency: str = attrs.field(validator=currency_code)
    kind: TransactionKind = attrs.field(default="purchase", validator=one_of("kind", ("purchase", "refund")))
    line_items: tuple[LineItem, ...] = attrs.field(default=(), converter=frozen_tuple("line_items", LineItem))
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, converter=frozen_attributes, hash=False)
    external_id: str | None = attrs.field(default=None, validator=optional_text)
    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, converter=aware_datetime("created_at", optional=True))
    updated_at: dt.datetime | None = attrs.field(default=None, converter=aware_datetime("updated_at", optional=True))
    version: int = attrs.field(default=0, validator=positive_int)

    @property
    def signed_amount(self) -> Decimal:
        """The amount with refunds negative, for sums of revenue."""
        return -self.amount if self.kind == "refund" else self.amount
