"""``crm.sales``: converting leads, moving deals, accepting quotes, history and the pipeline as of a moment."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from crmkit._errors import ConflictError, NotFound, ValidationError
from crmkit._validation import AttributeValue, text_of, utc
from crmkit.customers import Customer, EmailAddress, Phone
from crmkit.query import ALL, Expr, F, Where, bind
from crmkit.relationships import Relationship
from crmkit.sales import _predict, _reports
from crmkit.sales._hooks import note_reason
from crmkit.sales._model import (
    ForecastCategory,
    Lead,
    LeadConversion,
    LeadStatus,
    Opportunity,
    OpportunityHistory,
    Order,
    OrderLine,
    OrderStatus,
    Pipeline,
    PipelineStage,
    Quote,
    QuoteLine,
    QuoteStatus,
    Task,
    TaskStatus,
)
from crmkit.sales._money import round_to_currency
from crmkit.sales._predict import WinEvaluation, WinModel
from crmkit.sales._reports import FunnelStep, Performance, StageTime
from crmkit.schema import declared_fields
from crmkit.services.records import Records
from crmkit.transactions import Transaction, TransactionKind

if TYPE_CHECKING:
    from crmkit.crm import CRM

__all__ = ["ForecastRow", "OrderBalance", "PipelineEntry", "Sales", "Tasks"]


@attrs.frozen
class PipelineEntry:
    """An open deal as it stood at a moment: the fields its history tracks."""

    opportunity_id: uuid.UUID
    pipeline: str
    stage: str
    amount: Decimal | None
    currency: str | None
    probability: Decimal | None
    close_date: dt.date | None
    forecast: object

    @classmethod
    def of(cls, opportunity: Opportunity) -> PipelineEntry:
        return cls(
            opportunity.id,
            opportunity.pipeline,
            opportunity.stage,
            opportunity.amount,
            opportunity.currency,
            opportunity.probability,
            opportunity.close_date,
            opportunity.forecast,
        )


@attrs.frozen
class ForecastRow:
    """One period and forecast category of a forecast: its deals, their amount and weighted amount."""

    period: dt.date | None
    category: ForecastCategory | None
    count: int
    amount: Decimal
    weighted: Decimal


@attrs.frozen
class OrderBalance:
    """An order's total against the money recorded for it (``crm.sales.balance``), summed in the store.

    ``paid`` is what its purchases brought in less what its refunds gave back (``refunded``);
    ``due`` is what is left to pay (negative when more was paid than the order costs).
    """

    order_id: uuid.UUID
    currency: str
    total: Decimal
    paid: Decimal
    refunded: Decimal
    #: How many transactions name the order (payments and refunds, in its currency).
    transactions: int

    @property
    def due(self) -> Decimal:
        """The total less what was paid."""
        return self.total - self.paid


_PERIODS = ("day", "week", "month", "quarter", "year")


class Sales:
    """``crm.sales``: the sales operations that span records, each one transaction."""

    def __init__(self, crm: CRM) -> None:
        self._crm = crm
        #: Called after each write of ``convert`` with its step name (tests inject faults here).
        self._after_write: Callable[[str], None] = lambda step: None

    def __repr__(self) -> str:
        return f"<sales of {self._crm.tenant}>"

    # ----------------------------------------------------------------- pipelines

    def pipeline_named(self, key: str) -> Pipeline:
        """The pipeline with this key; NotFound when the tenant has none."""
        text_of("pipeline", key)
        found = self._crm.records(Pipeline).find(F("key") == key, limit=1).items
        if not found:
            raise NotFound("pipeline", key)
        return found[0]

    # ----------------------------------------------------------------- conversion

    def convert(
        self,
        lead_id: uuid.UUID,
        *,
        idempotency_key: str,
        opportunity: Opportunity | None = None,
        organization_id: uuid.UUID | None = None,
        person_id: uuid.UUID | None = None,
    ) -> LeadConversion:
        """Turn a lead into an organisation, a person who works for it and, optionally, a deal: one transaction.

        ``organization_id``/``person_id`` reuse stored customers (only their empty fields are
        filled from the lead). Calling again with the same ``idempotency_key`` returns the
        same result and writes nothing; the lead becomes read-only.
        """
        key = text_of("idempotency_key", idempotency_key)
        if not isinstance(lead_id, uuid.UUID):
            raise ValidationError("lead_id", "must be a uuid.UUID", lead_id)
        if opportunity is not None and not isinstance(opportunity, Opportunity):
            raise ValidationError("opportunity", "must be an Opportunity", opportunity)
        crm = self._crm
        conversions = crm.records(LeadConversion)
        with crm.transaction():
            done = conversions.find(F("idempotency_key") == key, limit=1).items
            if done:
                if done[0].lead_id != lead_id:
                    raise ConflictError(
                        f"idempotency key {key!r} was used to convert lead {done[0].lead_id}",
                        entity="lead_conversions",
                        key=key,
                    )
                return done[0]
            lead = crm.records(Lead).get(lead_id)
            if lead.status is LeadStatus.CONVERTED:
                raise ConflictError(f"lead {lead_id} is already converted", entity="leads", key=lead_id)
            now = crm.now()
            org = self._organization(lead, organization_id)
            person = self._person(lead, person_id)
            if org is not None and person is not None:
                self._works_for(person, org)
            deal = None
            if opportunity is not None:
                deal = self._deal(lead, opportunity, org or person)
            crm.records(Lead).update(
                attrs.evolve(
                    lead,
                    status=LeadStatus.CONVERTED,
                    converted_at=now,
                    organization_id=org,
                    person_id=person,
                    opportunity_id=deal,
                )
            )
            self._after_write("lead")
            stored = conversions.add(
                LeadConversion(
                    idempotency_key=key,
                    lead_id=lead_id,
                    converted_at=now,
                    organization_id=org,
                    person_id=person,
                    opportunity_id=deal,
                )
            )
            self._after_write("conversion")
        return stored

    def _organization(self, lead: Lead, reuse: uuid.UUID | None) -> uuid.UUID | None:
        customers = self._crm.customers
        if reuse is not None:
            current = customers.get(reuse)
            if current.kind != "organization":
                raise ValidationError("organization_id", "must be an organisation", reuse)
            if current.owner is None and lead.owner is not None:
                customers.update(attrs.evolve(current, owner=lead.owner))
                self._after_write("organization")
            return reuse
        if lead.company is None:
            return None
        org = customers.add(Customer(kind="organization", name=lead.company, owner=lead.owner))
        self._after_write("organization")
        return org.id

    def _person(self, lead: Lead, reuse: uuid.UUID | None) -> uuid.UUID:
        customers = self._crm.customers
        emails = (EmailAddress(lead.email),) if lead.email else ()
        phones = (Phone(lead.phone),) if lead.phone else ()
        if reuse is not None:
            current = customers.get(reuse)
            if current.kind != "person":
                raise ValidationError("person_id", "must be a person", reuse)
            filled = attrs.evolve(
                current,
                emails=current.emails or emails,
                phones=current.phones or phones,
                owner=current.owner if current.owner is not None else lead.owner,
            )
            if filled != current:
                customers.update(filled)
                self._after_write("person")
            return reuse
        person = customers.add(Customer(kind="person", name=lead.name, emails=emails, phones=phones, owner=lead.owner))
        self._after_write("person")
        return person.id

    def _works_for(self, person: uuid.UUID, org: uuid.UUID) -> None:
        relationships = self._crm.relationships
        where = (F("source_id") == person) & (F("target_id") == org) & (F("kind") == "works_for")
        if relationships.count(where):
            return
        relationships.add(Relationship(source_id=person, target_id=org, kind="works_for"))
        self._after_write("works_for")

    def _deal(self, lead: Lead, opportunity: Opportunity, customer: uuid.UUID | None) -> uuid.UUID:
        stage = self.pipeline_named(opportunity.pipeline).stage(opportunity.stage)
        deal = attrs.evolve(
            opportunity,
            customer_id=opportunity.customer_id or customer,
            lead_id=lead.id,
            campaign=opportunity.campaign or lead.campaign,
            source=opportunity.source or lead.source,
            owner=opportunity.owner or lead.owner,
            probability=stage.probability if opportunity.probability is None else opportunity.probability,
            forecast=opportunity.forecast or stage.forecast,
        )
        stored = self._crm.records(Opportunity).add(deal)
        self._after_write("opportunity")
        return stored.id

    def disqualify(self, lead_id: uuid.UUID, reason: str) -> Lead:
        """Mark an open or working lead disqualified, with the reason; a converted lead is refused."""
        text_of("reason", reason)
        leads = self._crm.records(Lead)
        with self._crm.transaction():
            lead = leads.get(lead_id)
            if lead.status is LeadStatus.CONVERTED:
                raise ConflictError(
                    f"lead {lead_id} is converted and cannot be disqualified", entity="leads", key=lead_id
                )
            return leads.update(attrs.evolve(lead, status=LeadStatus.DISQUALIFIED, disqualified_reason=reason))

    # ----------------------------------------------------------------- moving deals

    def move(
        self,
        opportunity_id: uuid.UUID,
        stage: str,
        *,
        pipeline: str | None = None,
        reason: str | None = None,
        lost_reason: str | None = None,
    ) -> Opportunity:
        """Move a deal to a stage (of another pipeline with ``pipeline=``), taking the stage's defaults.

        Going back needs a ``reason``; a lost stage keeps ``lost_reason`` (or the reason);
        reopening a lost deal clears it. The history row carries the reason.
        """
        text_of("stage", stage)
        if reason is not None:
            text_of("reason", reason)
        crm = self._crm
        deals = crm.records(Opportunity)
        with crm.transaction():
            deal = deals.get(opportunity_id)
            target = self.pipeline_named(pipeline if pipeline is not None else deal.pipeline)
            new = target.stage(stage)
            old: PipelineStage | None = None
            if target.key == deal.pipeline:
                keys = [s.key for s in target.stages]
                if deal.stage in keys:
                    old = target.stages[keys.index(deal.stage)]
                    if keys.index(stage) < keys.index(deal.stage) and reason is None:
                        raise ValidationError("reason", f"moving back from {deal.stage} to {stage} needs a reason")
            else:
                try:
                    old = self.pipeline_named(deal.pipeline).stage(deal.stage)
                except (NotFound, ValidationError):
                    old = None
            # open again, or won: the lost reason no longer holds
            lost = (lost_reason or reason or deal.lost_reason) if new.closed and not new.won else None
            moved = attrs.evolve(
                deal,
                pipeline=target.key,
                stage=new.key,
                probability=new.probability,
                forecast=new.forecast,
                lost_reason=lost,
            )
            if old is not None and old.key == new.key and target.key == deal.pipeline and moved == deal:
                return deal
            note_reason(crm, deal.id, reason)
            return deals.update(moved)

    # ----------------------------------------------------------------- quotes and orders

    def accept(self, quote_id: uuid.UUID) -> Order:
        """Accept a quote: the order copies its lines and the deal moves to its pipeline's won stage."""
        crm = self._crm
        quotes = crm.records(Quote)
        with crm.transaction():
            quote = quotes.get(quote_id)
            if quote.status not in (QuoteStatus.DRAFT, QuoteStatus.SENT):
                raise ConflictError(
                    f"quote {quote_id} is {quote.status.value} and cannot be accepted", entity="quotes", key=quote_id
                )
            quotes.update(attrs.evolve(quote, status=QuoteStatus.ACCEPTED))
            customer = quote.customer_id
            if quote.opportunity_id is not None:
                deal = crm.records(Opportunity).get(quote.opportunity_id)
                customer = customer or deal.customer_id
                won = self.pipeline_named(deal.pipeline).won_stage()
                self.move(deal.id, won.key, reason=f"quote {quote.id} accepted")
            names = [fd.name for fd in declared_fields(QuoteLine)]
            lines = tuple(OrderLine(**{name: getattr(line, name) for name in names}) for line in quote.lines)
            return crm.records(Order).add(
                Order(
                    currency=quote.currency,
                    quote_id=quote.id,
                    opportunity_id=quote.opportunity_id,
                    customer_id=customer,
                    ordered_at=crm.now(),
                    lines=lines,
                )
            )

    def activate(self, order_id: uuid.UUID) -> Order:
        """Activate a draft order: its lines can no longer change."""
        orders = self._crm.records(Order)
        with self._crm.transaction():
            order = orders.get(order_id)
            if order.status is not OrderStatus.DRAFT:
                raise ConflictError(f"order {order_id} is {order.status.value}", entity="orders", key=order_id)
            return orders.update(attrs.evolve(order, status=OrderStatus.ACTIVATED))

    # ----------------------------------------------------------------- payments

    def record_payment(
        self,
        order_id: uuid.UUID,
        amount: Decimal | None = None,
        *,
        kind: TransactionKind = "purchase",
        occurred_at: dt.datetime | None = None,
        external_id: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> Transaction:
        """Record money paid for an order (``kind="refund"``: paid back) as a transaction naming it.

        The transaction is the order customer's, in the order's currency, with ``order_id``
        set: purchase summaries, RFM, historic and predicted value count it as revenue like
        any other purchase. ``amount`` defaults to what is still due (a refund's, to all that
        was paid); more than is due, or a refund of more than was paid, is refused, as is
        an amount finer than the currency's minor unit. ``occurred_at`` defaults to now;
        ``external_id`` (the payment provider's id, say) makes a repeated import a
        ``ConflictError`` rather than a second payment. One transaction with the check.
        """
        if not isinstance(order_id, uuid.UUID):
            raise ValidationError("order_id", "must be a uuid.UUID", order_id)
        if kind not in ("purchase", "refund"):
            raise ValidationError("kind", "must be purchase or refund", kind)
        crm = self._crm
        with crm.transaction():
            order = crm.records(Order).get(order_id)
            if order.customer_id is None:
                raise ValidationError("order_id", f"order {order_id} has no customer to record money for", order_id)
            if kind == "purchase" and order.status is OrderStatus.CANCELLED:
                raise ConflictError(f"order {order_id} is cancelled", entity="orders", key=order_id)
            balance = self.balance(order_id)
            room = balance.due if kind == "purchase" else balance.paid
            payment = Transaction(
                customer_id=order.customer_id,
                occurred_at=crm.now() if occurred_at is None else occurred_at,
                amount=room if amount is None else amount,
                currency=order.currency,
                kind=kind,
                attributes={} if attributes is None else attributes,
                external_id=external_id,
                order_id=order_id,
            )
            if round_to_currency(payment.amount, order.currency) != payment.amount:
                raise ValidationError("amount", f"has more places than {order.currency} amounts have", payment.amount)
            if payment.amount == 0:
                raise ValidationError("amount", f"nothing to record: {room} {order.currency} left", payment.amount)
            if payment.amount > room:
                what = "due on" if kind == "purchase" else "paid for"
                raise ValidationError(
                    "amount", f"is more than the {room} {order.currency} {what} order {order_id}", payment.amount
                )
            return crm.transactions.add(payment)

    def balance(self, order_id: uuid.UUID) -> OrderBalance:
        """The order's total and the money its transactions (in its currency) paid and refunded, summed in the store."""
        if not isinstance(order_id, uuid.UUID):
            raise ValidationError("order_id", "must be a uuid.UUID", order_id)
        order = self._crm.records(Order).get(order_id)
        report = self._crm.transactions.aggregate(
            (F("order_id") == order_id) & (F("currency") == order.currency), group_by="kind", count=True, sum="amount"
        )
        sums = {row["kind"]: (row.count or 0, row["sum(amount)"] or Decimal(0)) for row in report}
        bought, paid = sums.get("purchase", (0, Decimal(0)))
        returned, refunded = sums.get("refund", (0, Decimal(0)))
        zero = round_to_currency(Decimal(0), order.currency)
        return OrderBalance(
            order_id=order_id,
            currency=order.currency,
            total=order.total,
            paid=paid - refunded + zero,
            refunded=refunded + zero,
            transactions=bought + returned,
        )

    # ----------------------------------------------------------------- forecasts

    def forecast(
        self, *, by: str = "month", currency: str, pipeline: str | None = None, where: Where = None
    ) -> list[ForecastRow]:
        """Deals of one currency by close-date period and forecast category, summed in the store.

        ``amount`` is the sum of their amounts and ``weighted`` the sum of amount x
        probability (each deal's ``expected_revenue``), both exact; deals without an amount
        count but add nothing. ``by`` is day, week, month, quarter or year (periods start on
        the date shown); ``pipeline`` and ``where`` narrow the deals. Amounts of different
        currencies are never added together.
        """
        if by not in _PERIODS:
            raise ValidationError("by", f"must be one of {', '.join(_PERIODS)}", by)
        if not isinstance(currency, str) or not currency:
            raise ValidationError("currency", "must be an ISO 4217 currency code such as EUR", currency)
        condition: Expr = F("currency") == currency
        if pipeline is not None:
            condition = condition & (F("pipeline") == text_of("pipeline", pipeline))
        if where is not None:
            condition = condition & bind(where, Opportunity.__crmkit_spec__)  # type: ignore[attr-defined]
        period = f"{by}(close_date)"
        report = self._crm.records(Opportunity).aggregate(
            condition, group_by=(period, "forecast"), count=True, sum=("amount", "expected_revenue")
        )
        zero = round_to_currency(Decimal(0), currency)
        return [
            ForecastRow(
                period=row[period],
                category=None if row["forecast"] is None else ForecastCategory(row["forecast"]),
                count=row.count or 0,
                amount=row["sum(amount)"] or zero,
                weighted=row["sum(expected_revenue)"] or zero,
            )
            for row in report
        ]

    # ----------------------------------------------------------------- reports

    def performance(self, *, currency: str, pipeline: str | None = None) -> list[Performance]:
        """Per pipeline, the deals of one currency: open, won and lost deals, win rate, average deal
        size, sales cycle length and pipeline velocity, from group-bys in the store (``Performance``)."""
        return _reports.performance(self._crm, currency=currency, pipeline=pipeline)

    def funnel(self, pipeline: str) -> list[FunnelStep]:
        """Stage-to-stage conversion of a pipeline: per stage that is not lost, the deals that entered
        it, moved on to a later stage, or were lost from it, counted in the store (``FunnelStep``)."""
        return _reports.funnel(self._crm, pipeline)

    def time_in_stage(self, *, pipeline: str | None = None) -> list[StageTime]:
        """Per stage, how many stays in it ended and their mean length in days, summed in the store."""
        return _reports.time_in_stage(self._crm, pipeline)

    def win_model(
        self,
        *,
        fields: Sequence[str] = _predict.DEFAULT_FIELDS,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        min_deals: int = 30,
    ) -> WinModel:
        """Learn a win probability from the closed deals created in [since, until): won and lost counts
        per value of each field, counted in the store (``WinModel``; ``model.probability(deal)``)."""
        return _predict.train(self._crm, fields=fields, since=since, until=until, min_deals=min_deals)

    def evaluate_win_model(
        self, model: WinModel, *, since: dt.datetime | None = None, until: dt.datetime | None = None, bins: int = 10
    ) -> WinEvaluation:
        """AUC, Brier score and calibration of ``model`` on the closed deals created in [since, until),
        which should be held out from its training (train with ``until=t``, evaluate with ``since=t``)."""
        return _predict.evaluate(self._crm, model, since=since, until=until, bins=bins)

    # ----------------------------------------------------------------- history

    def history(self, opportunity_id: uuid.UUID) -> list[OpportunityHistory]:
        """The deal's changes of stage, amount, probability, close date and forecast category, oldest first."""
        if not isinstance(opportunity_id, uuid.UUID):
            raise ValidationError("opportunity_id", "must be a uuid.UUID", opportunity_id)
        return list(
            self._crm.records(OpportunityHistory).stream(F("opportunity_id") == opportunity_id, order_by=("at", "id"))
        )

    def pipeline(self, *, as_of: dt.datetime | None = None, pipeline: str | None = None) -> list[PipelineEntry]:
        """The open deals (stage not closed), as they stood at ``as_of`` (now by default), by id.

        A deal's state at a moment is the previous values of its first history row after it,
        or the deal as it is when none came after; deals created later are left out.
        """
        crm = self._crm
        where: Expr = ALL if pipeline is None else F("pipeline") == pipeline
        at = None if as_of is None else utc(as_of, "as_of")
        if at is not None:
            where = F("created_at") <= at if pipeline is None else where & (F("created_at") <= at)
        deals = {d.id: PipelineEntry.of(d) for d in crm.records(Opportunity).stream(where, order_by="id")}
        if at is not None and deals:
            later = crm.records(OpportunityHistory).stream(F("at") > at, order_by=("at", "id"))
            seen: set[uuid.UUID] = set()
            for row in later:
                if row.opportunity_id in seen or row.opportunity_id not in deals:
                    continue
                seen.add(row.opportunity_id)
                entry = deals[row.opportunity_id]
                deals[row.opportunity_id] = attrs.evolve(
                    entry,
                    pipeline=row.prev_pipeline or entry.pipeline,
                    stage=row.prev_stage or entry.stage,
                    amount=row.prev_amount,
                    probability=row.prev_probability,
                    close_date=row.prev_close_date,
                    forecast=row.prev_forecast,
                )
        closed = {(p.key, s.key) for p in crm.records(Pipeline).stream() for s in p.stages if s.closed}
        if pipeline is not None:
            return [e for e in deals.values() if (e.pipeline, e.stage) not in closed and e.pipeline == pipeline]
        return [e for e in deals.values() if (e.pipeline, e.stage) not in closed]


class Tasks(Records[Task]):
    """``crm.tasks``: the records of tasks, and the open tasks due before a moment."""

    def due(self, *, assignee: str | None = None, before: dt.datetime) -> list[Task]:
        """Open tasks (of ``assignee``, when given) due before ``before``, soonest first; found in the store."""
        when = utc(before, "before")
        where = (F("status") == TaskStatus.OPEN) & (F("due_at") < when)
        if assignee is not None:
            where = where & (F("assignee") == text_of("assignee", assignee))
        return list(self.stream(where, order_by=("due_at", "id")))
