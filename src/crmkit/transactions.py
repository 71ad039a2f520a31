"""Transactions: purchases and refunds in exact Decimal money with an ISO 4217 currency."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Literal

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit._validation import AttributeValue
from crmkit.schema._registry import hand_tuned

__all__ = ["LineItem", "Transaction", "TransactionKind"]

TransactionKind = Literal["purchase", "refund"]


def _more_than_zero(value: Decimal) -> Decimal:
    if value == 0:
        raise ValidationError("quantity", "must be greater than zero", value)
    return value


@schema.value_object(kw_only=False)
class LineItem:
    """One product line of a transaction."""

    product: str = schema.text(personal=False)
    quantity: Decimal = schema.money(default=Decimal(1), check=_more_than_zero, personal=False)
    unit_price: Decimal = schema.money(default=Decimal(0), personal=False)

    @property
    def total(self) -> Decimal:
        """quantity x unit price."""
        return self.quantity * self.unit_price


@schema.aggregate("transactions", time_field="occurred_at", kw_only=False)
class Transaction(schema.Record):
    """A purchase or a refund. ``amount`` is never negative: ``kind`` says which way money went.

    ``order_id`` names the order it paid (or refunded), so the revenue of orders reaches
    purchase summaries and value models like any other purchase.
    """

    customer_id: uuid.UUID = schema.ref("customers", on_delete="cascade", personal=False)
    occurred_at: dt.datetime = schema.instant(sortable=True, personal=False)
    amount: Decimal = schema.money(sortable=True, personal=False)
    currency: str = schema.currency(sortable=True, personal=False)
    kind: TransactionKind = schema.text(
        default="purchase", choices=("purchase", "refund"), sortable=True, personal=False
    )
    line_items: tuple[LineItem, ...] = schema.many(LineItem, default=(), personal=False)
    attributes: Mapping[str, AttributeValue] = schema.attributes(personal="financial")
    #: The order (``crmkit.sales.Order``) this payment or refund is for, when it is for one
    #: (``crm.sales.record_payment``); the order's deletion leaves the money and clears the link.
    order_id: uuid.UUID | None = schema.ref("orders", on_delete="set_null", default=None, personal=False)

    @property
    def signed_amount(self) -> Decimal:
        """The amount with refunds negative, for sums of revenue."""
        return -self.amount if self.kind == "refund" else self.amount


hand_tuned(Transaction)
