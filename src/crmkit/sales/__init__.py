"""Sales: leads and their conversion, pipelines as data with a derived stage history, products,
quotes and orders, tasks and notes: every aggregate declared once, no backend code.

::

    crm.pipelines.add(Pipeline(key="new", name="New business", stages=(PipelineStage("qualify"), ...)))
    conv = crm.sales.convert(lead.id, idempotency_key="form-8812", opportunity=Opportunity(...))
    crm.sales.move(conv.opportunity_id, "proposal", reason="demo done")
    crm.sales.history(conv.opportunity_id)
    crm.sales.forecast(by="month", currency="EUR")  # summed in the store

``crm.leads``, ``crm.pipelines``, ``crm.opportunities``, ``crm.products``, ``crm.quotes``,
``crm.orders``, ``crm.tasks`` and ``crm.notes`` are the records of each aggregate;
``crm.sales`` holds the operations that span them.
"""

from crmkit.sales._model import (
    AGGREGATES,
    ForecastCategory,
    Lead,
    LeadConversion,
    LeadStatus,
    Note,
    Opportunity,
    OpportunityContact,
    OpportunityHistory,
    Order,
    OrderLine,
    OrderStatus,
    Pipeline,
    PipelineStage,
    Priority,
    Product,
    Quote,
    QuoteLine,
    QuoteStatus,
    Task,
    TaskStatus,
)
from crmkit.sales._money import minor_units, round_to_currency
from crmkit.sales._service import ForecastRow, PipelineEntry, Sales, Tasks

Task.__crmkit_records__ = Tasks  # type: ignore[attr-defined]  # crm.tasks is a Tasks (crm.tasks.due)

__all__ = [
    "AGGREGATES",
    "ForecastCategory",
    "ForecastRow",
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
    "PipelineEntry",
    "PipelineStage",
    "Priority",
    "Product",
    "Quote",
    "QuoteLine",
    "QuoteStatus",
    "Sales",
    "Task",
    "TaskStatus",
    "Tasks",
    "minor_units",
    "round_to_currency",
]
