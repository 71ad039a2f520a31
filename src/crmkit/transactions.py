"""Transactions: purchases and refunds in exact Decimal money with an ISO 4217 currency."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

import attrs

from crmkit._errors import ValidationError
from crmkit._ids import new_id
from crmkit._validation import (
    AttributeValue,
    aware,
    currency_code,
    frozen_attributes,
    frozen_tuple,
    money,
    nonempty_text,
    one_of,
    optional_aware,
    positive_int,
    uuid_field,
    valid_external_id,
)

__all__ = ["LineItem", "Transaction", "TransactionKind"]

TransactionKind = Literal["purchase", "refund"]


# The converters are built once: imports construct transactions by the million.
_QUANTITY = money("quantity")
_UNIT_PRICE = money("unit_price")
_AMOUNT = money("amount")


def _quantity(value: object) -> Decimal:
    amount = _QUANTITY(value)
    if amount == 0:
        raise ValidationError("quantity", "must be greater than zero", value)
    return amount


def _to_unit_price(value: Any) -> Any:
    return _UNIT_PRICE(value)


def _to_amount(value: Any) -> Any:
    return _AMOUNT(value)


@attrs.frozen
class LineItem:
    """One product line of a transaction."""

    product: str = attrs.field(validator=nonempty_text)
    quantity: Decimal = attrs.field(default=Decimal(1), converter=_quantity)
    unit_price: Decimal = attrs.field(default=Decimal(0), converter=_to_unit_price)

    @property
    def total(self) -> Decimal:
        """quantity x unit price."""
        return self.quantity * self.unit_price


_LINE_ITEMS = frozen_tuple("line_items", LineItem)


def _to_line_items(value: Any) -> Any:
    return _LINE_ITEMS(value)


@attrs.frozen
class Transaction:
    """A purchase or a refund. ``amount`` is never negative: ``kind`` says which way money went."""

    customer_id: uuid.UUID = attrs.field(validator=uuid_field)
    occurred_at: dt.datetime = attrs.field(validator=aware)
    amount: Decimal = attrs.field(converter=_to_amount)
    currency: str = attrs.field(validator=currency_code)
    kind: TransactionKind = attrs.field(default="purchase", validator=one_of("kind", ("purchase", "refund")))
    line_items: tuple[LineItem, ...] = attrs.field(default=(), converter=_to_line_items)
    attributes: Mapping[str, AttributeValue] = attrs.field(factory=dict, converter=frozen_attributes, hash=False)
    external_id: str | None = attrs.field(default=None, validator=valid_external_id)
    id: uuid.UUID = attrs.field(factory=new_id, validator=uuid_field)
    created_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    updated_at: dt.datetime | None = attrs.field(default=None, validator=optional_aware)
    version: int = attrs.field(default=0, validator=positive_int)

    @property
    def signed_amount(self) -> Decimal:
        """The amount with refunds negative, for sums of revenue."""
        return -self.amount if self.kind == "refund" else self.amount
