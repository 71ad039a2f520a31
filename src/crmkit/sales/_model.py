"""The sales aggregates, each declared once: leads, pipelines, opportunities and their history,
products, quotes, orders, tasks and notes.

Nothing here is backend code: memory://, SQLite, PostgreSQL and MongoDB derive their tables,
documents, indexes and codecs from these declarations. The rules that span records (the
history, a converted lead being read-only, a stage that deals still sit in) live in the
``crmkit_before_commit`` hook of ``crmkit.sales._hooks``, so every API that writes obeys them.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any, ClassVar

from crmkit import schema
from crmkit._errors import ValidationError
from crmkit.sales._money import round_to_currency, total

__all__ = [
    "AGGREGATES",
    "ForecastCategory",
    "Lead",
    "LeadConversion",
    "LeadStatus",
    "Note",
    "Opportunity",
    "OpportunityContact",
    "OpportunityHistory",
    "Order",
    "OrderLine",
    "OrderStatus",
    "Pipeline",
    "PipelineStage",
    "Priority",
    "Product",
    "Quote",
    "QuoteLine",
    "QuoteStatus",
    "Task",
    "TaskStatus",
    "stage_set",
]

_ONE = Decimal(1)
_MONEY_LIMIT = Decimal(10) ** 15
#: Fractions (probabilities, discounts, tax rates) the test kit draws: random money may exceed 1.
_FRACTIONS = (Decimal("0"), Decimal("0.1"), Decimal("0.25"), Decimal("0.5"), Decimal("0.19"), Decimal("1"))


def _fraction(name: str, value: Decimal | None) -> None:
    if value is not None and value > _ONE:
        raise ValidationError(name, "must be a fraction between 0 and 1", value)


class LeadStatus(enum.Enum):
    """Where a lead stands; ``converted`` leads are read-only."""

    OPEN = "open"
    WORKING = "working"
    CONVERTED = "converted"
    DISQUALIFIED = "disqualified"


class ForecastCategory(enum.Enum):
    """The forecast category of a stage or a deal."""

    PIPELINE = "pipeline"
    BEST_CASE = "best_case"
    COMMIT = "commit"
    CLOSED = "closed"
    OMITTED = "omitted"


class QuoteStatus(enum.Enum):
    """A quote's state: draft, sent, then accepted, rejected or expired."""

    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


class OrderStatus(enum.Enum):
    """An order's state; an activated order refuses changes to its lines."""

    DRAFT = "draft"
    ACTIVATED = "activated"
    CANCELLED = "cancelled"


class Priority(enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class TaskStatus(enum.Enum):
    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


# --------------------------------------------------------------------------- leads


@schema.aggregate("leads", indexes=[("status",), ("owner",)])
class Lead(schema.Record):
    """A prospect not yet qualified: who, from where, and what became of it."""

    name: str = schema.text(sortable=True, personal="identity")
    company: str | None = schema.text(default=None, sortable=True, personal=False)
    email: str | None = schema.text(default=None, personal="contact")
    phone: str | None = schema.text(default=None, personal="contact")
    title: str | None = schema.text(default=None, personal="identity")
    source: str | None = schema.text(default=None, sortable=True, personal=False)
    campaign: str | None = schema.text(default=None, sortable=True, personal=False)
    owner: str | None = schema.text(default=None, sortable=True, personal=False)
    status: LeadStatus = schema.enum(LeadStatus, default=LeadStatus.OPEN, sortable=True, personal=False)
    disqualified_reason: str | None = schema.text(default=None, personal="free_text")
    score: int | None = schema.integer(default=None, sortable=True, personal=False)
    converted_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    organization_id: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    person_id: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    opportunity_id: uuid.UUID | None = schema.ref("opportunities", on_delete="set_null", default=None, personal=False)
    attributes: Mapping[str, object] = schema.attributes(personal="free_text")


@schema.aggregate("lead_conversions", time_field="converted_at", unique=[("idempotency_key",)], indexes=[("lead_id",)])
class LeadConversion(schema.Record):
    """What converting a lead made, under the caller's idempotency key (``crm.sales.convert``)."""

    idempotency_key: str = schema.text(sortable=True, personal=False)
    lead_id: uuid.UUID = schema.ref("leads", on_delete="cascade", personal=False)
    converted_at: dt.datetime = schema.instant(sortable=True, personal=False)
    organization_id: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    person_id: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    opportunity_id: uuid.UUID | None = schema.ref("opportunities", on_delete="set_null", default=None, personal=False)


# --------------------------------------------------------------------------- pipelines


@schema.value_object(kw_only=False)
class PipelineStage:
    """One stage of a pipeline: its key (never renamed), label, default probability and forecast category."""

    key: str = schema.text(personal=False)
    label: str | None = schema.text(default=None, personal=False)
    probability: Decimal = schema.money(default=Decimal(0), personal=False)
    forecast: ForecastCategory = schema.enum(ForecastCategory, default=ForecastCategory.PIPELINE, personal=False)
    closed: bool = schema.boolean(default=False, personal=False)
    won: bool = schema.boolean(default=False, personal=False)

    #: The test kit draws fractions, and stages that are not won (a won stage is closed too).
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"probability": _FRACTIONS, "won": (False,)}

    def __attrs_post_init__(self) -> None:
        _fraction("probability", self.probability)
        if self.won and not self.closed:
            raise ValidationError("won", "a won stage is closed too (closed=True)", self.won)

    @property
    def name(self) -> str:
        """The label shown for the stage (its key when it has none)."""
        return self.label or self.key


#: Stage sets the test kit draws for pipelines (random stages may repeat a key).
_EXAMPLE_STAGES: tuple[tuple[PipelineStage, ...], ...] = (
    (),
    (
        PipelineStage(key="open", label="Open", probability=Decimal("0.2")),
        PipelineStage(key="won", probability=_ONE, forecast=ForecastCategory.CLOSED, closed=True, won=True),
        PipelineStage(key="lost", forecast=ForecastCategory.OMITTED, closed=True),
    ),
    (PipelineStage(key="Ștefan 📞", probability=Decimal("0.333333"), forecast=ForecastCategory.COMMIT),),
)


@schema.aggregate("pipelines", unique=[("key",)])
class Pipeline(schema.Record):
    """An ordered set of stages; a tenant has any number of them."""

    key: str = schema.text(sortable=True, personal=False)
    name: str = schema.text(sortable=True, personal=False)
    stages: tuple[PipelineStage, ...] = schema.many(PipelineStage, default=(), personal=False)

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"stages": _EXAMPLE_STAGES}

    def __attrs_post_init__(self) -> None:
        keys = [s.key for s in self.stages]
        if len(set(keys)) != len(keys):
            raise ValidationError("stages", "stage keys must differ", keys)

    def stage(self, key: str) -> PipelineStage:
        """The stage with this key; ValidationError naming ``stage`` when the pipeline has none."""
        for stage in self.stages:
            if stage.key == key:
                return stage
        raise ValidationError("stage", f"pipeline {self.key!r} has no stage {key!r}", key)

    def won_stage(self) -> PipelineStage:
        """The first won stage; ValidationError when the pipeline has none."""
        for stage in self.stages:
            if stage.won:
                return stage
        raise ValidationError("stages", f"pipeline {self.key!r} has no won stage", self.key)


# --------------------------------------------------------------------------- opportunities


@schema.value_object
class OpportunityContact:
    """A person involved in a deal, and their role in it (decision maker, champion...)."""

    person_id: uuid.UUID = schema.uuid(personal=False)
    role: str | None = schema.text(default=None, personal=False)


@schema.aggregate(
    "opportunities",
    indexes=[("pipeline", "stage"), ("customer_id",), ("close_date",)],
)
class Opportunity(schema.Record):
    """A deal moving through a pipeline; its history is written by every change, whatever made it."""

    name: str = schema.text(sortable=True, personal="free_text")
    pipeline: str = schema.text(sortable=True, personal=False)
    stage: str = schema.text(sortable=True, personal=False)
    customer_id: uuid.UUID | None = schema.ref("customers", on_delete="cascade", default=None, personal=False)
    contacts: tuple[OpportunityContact, ...] = schema.many(OpportunityContact, default=(), personal=False)
    amount: Decimal | None = schema.money(default=None, sortable=True, personal=False)
    currency: str | None = schema.currency(default=None, sortable=True, personal=False)
    close_date: dt.date | None = schema.date(default=None, sortable=True, personal=False)
    probability: Decimal | None = schema.money(default=None, sortable=True, personal=False)
    forecast: ForecastCategory | None = schema.enum(ForecastCategory, default=None, sortable=True, personal=False)
    owner: str | None = schema.text(default=None, sortable=True, personal=False)
    lead_id: uuid.UUID | None = schema.ref("leads", on_delete="set_null", default=None, personal=False)
    campaign: str | None = schema.text(default=None, personal=False)
    source: str | None = schema.text(default=None, personal=False)
    lost_reason: str | None = schema.text(default=None, personal="free_text")
    #: amount x probability, rounded half-even to the currency (six places without one): always
    #: derived on construction, whatever is passed, and stored so that forecasts sum it in the store.
    expected_revenue: Decimal | None = schema.money(default=None, sortable=True, personal=False)
    attributes: Mapping[str, object] = schema.attributes(personal="free_text")

    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"probability": (None, *_FRACTIONS)}

    def __attrs_post_init__(self) -> None:
        _fraction("probability", self.probability)
        expected = None
        if self.amount is not None and self.probability is not None:
            expected = round_to_currency(self.amount * self.probability, self.currency or "XXX")
            if self.currency is None or expected.as_tuple().exponent < -6:  # type: ignore[operator]
                expected = expected.quantize(Decimal("0.000001"))
            if expected >= _MONEY_LIMIT:  # rounding up the largest amounts would leave money's range
                expected = (self.amount * self.probability).quantize(expected, rounding=ROUND_DOWN)
        object.__setattr__(self, "expected_revenue", expected)


#: The fields of an opportunity whose change writes a history row (the pipeline goes with the stage).
TRACKED = ("pipeline", "stage", "amount", "probability", "close_date", "forecast")


def stage_set(pipeline: str) -> str:
    """The stage set under which a pipeline's moves are stored in ``state_changes``: ``"pipeline:<key>"``."""
    return f"pipeline:{pipeline}"


@schema.aggregate(
    "opportunity_history", time_field="at", indexes=[("opportunity_id", "at")], default_order=("at", "id")
)
class OpportunityHistory(schema.Record):
    """One change of stage, amount, probability, close date or forecast category, with the previous values."""

    opportunity_id: uuid.UUID = schema.ref("opportunities", on_delete="cascade", personal=False)
    at: dt.datetime = schema.instant(sortable=True, personal=False)
    actor: str | None = schema.text(default=None, sortable=True, personal=False)
    pipeline: str = schema.text(sortable=True, personal=False)
    stage: str = schema.text(sortable=True, personal=False)
    stage_label: str | None = schema.text(default=None, personal=False)
    amount: Decimal | None = schema.money(default=None, personal=False)
    currency: str | None = schema.currency(default=None, personal=False)
    probability: Decimal | None = schema.money(default=None, personal=False)
    close_date: dt.date | None = schema.date(default=None, personal=False)
    forecast: ForecastCategory | None = schema.enum(ForecastCategory, default=None, personal=False)
    prev_pipeline: str | None = schema.text(default=None, personal=False)
    prev_stage: str | None = schema.text(default=None, personal=False)
    prev_amount: Decimal | None = schema.money(default=None, personal=False)
    prev_probability: Decimal | None = schema.money(default=None, personal=False)
    prev_close_date: dt.date | None = schema.date(default=None, personal=False)
    prev_forecast: ForecastCategory | None = schema.enum(ForecastCategory, default=None, personal=False)
    reason: str | None = schema.text(default=None, personal="free_text")
    #: On a change of stage (or pipeline): how many seconds the deal had sat in ``prev_stage``.
    seconds_in_stage: int | None = schema.integer(default=None, personal=False)
    #: On a change of stage (or pipeline): how many seconds the deal had existed (its age when it closes).
    seconds_open: int | None = schema.integer(default=None, personal=False)


# --------------------------------------------------------------------------- products, quotes, orders


@schema.aggregate("products", unique=[("sku",)])
class Product(schema.Record):
    """Something sold: its SKU, list price and currency."""

    sku: str = schema.text(sortable=True, personal=False)
    name: str = schema.text(sortable=True, personal=False)
    unit_price: Decimal = schema.money(personal=False)
    currency: str = schema.currency(personal=False)
    active: bool = schema.boolean(default=True, personal=False)
    description: str | None = schema.text(default=None, personal=False)


@schema.value_object
class _Line:
    """A line of a quote or an order: quantity, unit price, discount (a fraction) and tax rate,
    with totals rounded to the header's currency."""

    quantity: Decimal = schema.money(personal=False)
    unit_price: Decimal = schema.money(personal=False)
    product_id: uuid.UUID | None = schema.uuid(default=None, personal=False)
    description: str | None = schema.text(default=None, personal=False)
    discount: Decimal = schema.money(default=Decimal(0), personal=False)
    tax_rate: Decimal = schema.money(default=Decimal(0), personal=False)

    def net(self, currency: str) -> Decimal:
        """quantity x unit price x (1 - discount), rounded half-even to the currency's minor unit."""
        return round_to_currency(self.quantity * self.unit_price * (_ONE - self.discount), currency)

    def tax(self, currency: str) -> Decimal:
        """The line's tax: its rounded net amount x tax rate, rounded again."""
        return round_to_currency(self.net(currency) * self.tax_rate, currency)

    def total(self, currency: str) -> Decimal:
        return self.net(currency) + self.tax(currency)

    #: The discounts the test kit draws: fractions, which random money rarely is.
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"discount": _FRACTIONS}

    def __attrs_post_init__(self) -> None:
        _fraction("discount", self.discount)


@schema.value_object
class QuoteLine(_Line):
    """A line of a quote: product, quantity, unit price, discount (a fraction) and tax rate."""


@schema.value_object
class OrderLine(_Line):
    """A line of an order, copied from the accepted quote's line."""


class _Totals:
    currency: str
    lines: tuple[_Line, ...]

    @property
    def subtotal(self) -> Decimal:
        """The sum of the lines' net amounts."""
        return total((line.net(self.currency) for line in self.lines), self.currency)

    @property
    def tax(self) -> Decimal:
        """The sum of the lines' taxes."""
        return total((line.tax(self.currency) for line in self.lines), self.currency)

    @property
    def total(self) -> Decimal:
        """subtotal + tax: the sum of the lines' totals."""
        return self.subtotal + self.tax


@schema.aggregate("quotes", indexes=[("opportunity_id",)])
class Quote(schema.Record, _Totals):
    """An offer for a deal; totals are derived from the lines (``subtotal``, ``tax``, ``total``)."""

    currency: str = schema.currency(personal=False)
    opportunity_id: uuid.UUID | None = schema.ref("opportunities", on_delete="cascade", default=None, personal=False)
    customer_id: uuid.UUID | None = schema.ref("customers", on_delete="cascade", default=None, personal=False)
    name: str | None = schema.text(default=None, personal=False)
    status: QuoteStatus = schema.enum(QuoteStatus, default=QuoteStatus.DRAFT, sortable=True, personal=False)
    synced: bool = schema.boolean(default=False, personal=False)
    expires_on: dt.date | None = schema.date(default=None, sortable=True, personal=False)
    lines: tuple[QuoteLine, ...] = schema.many(QuoteLine, default=(), personal=False)

    #: The test kit draws quotes that are not synced (a deal has at most one synced quote).
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {"synced": (False,)}


@schema.aggregate("orders", indexes=[("customer_id",), ("opportunity_id",)])
class Order(schema.Record, _Totals):
    """What the customer bought; an activated order refuses changes to its lines."""

    currency: str = schema.currency(personal=False)
    quote_id: uuid.UUID | None = schema.ref("quotes", on_delete="set_null", default=None, personal=False)
    opportunity_id: uuid.UUID | None = schema.ref("opportunities", on_delete="set_null", default=None, personal=False)
    customer_id: uuid.UUID | None = schema.ref("customers", on_delete="set_null", default=None, personal=False)
    status: OrderStatus = schema.enum(OrderStatus, default=OrderStatus.DRAFT, sortable=True, personal=False)
    ordered_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    lines: tuple[OrderLine, ...] = schema.many(OrderLine, default=(), personal=False)

    #: The test kit draws orders that are not activated yet (an activated one refuses edits to its lines).
    __crmkit_examples__: ClassVar[Mapping[str, tuple[Any, ...]]] = {
        "status": (OrderStatus.DRAFT, OrderStatus.CANCELLED)
    }


# --------------------------------------------------------------------------- tasks and notes


@schema.aggregate("tasks", indexes=[("assignee", "due_at"), ("status",), ("about", "created_at")])
class Task(schema.Record):
    """Something to do about any record (``about=`` a deal, a customer, a lead...)."""

    subject: str = schema.text(sortable=True, personal="free_text")
    about: schema.Ref | None = schema.ref_any(on_delete="cascade", default=None, personal=False)
    assignee: str | None = schema.text(default=None, sortable=True, personal=False)
    due_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    priority: Priority = schema.enum(Priority, default=Priority.NORMAL, sortable=True, personal=False)
    status: TaskStatus = schema.enum(TaskStatus, default=TaskStatus.OPEN, sortable=True, personal=False)
    remind_at: dt.datetime | None = schema.instant(default=None, sortable=True, personal=False)
    description: str | None = schema.text(default=None, personal="free_text")


@schema.aggregate("notes", time_field="written_at", indexes=[("about", "written_at")])
class Note(schema.Record):
    """A note about any record."""

    about: schema.Ref = schema.ref_any(on_delete="cascade", personal=False)
    body: str = schema.text(personal="free_text")
    written_at: dt.datetime = schema.instant(sortable=True, personal=False)
    author: str | None = schema.text(default=None, sortable=True, personal=False)


AGGREGATES: tuple[type, ...] = (
    Lead,
    Pipeline,
    Opportunity,
    OpportunityHistory,
    LeadConversion,
    Product,
    Quote,
    Order,
    Task,
    Note,
)
