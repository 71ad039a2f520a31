"""Sales: leads and their conversion, pipelines as data with a derived stage history, products,
quotes and orders, tasks and notes: every aggregate declared once, no backend code.

::

    crm.pipelines.add(Pipeline(key="new", name="New business", stages=(PipelineStage("qualify"), ...)))
    conv = crm.sales.convert(lead.id, idempotency_key="form-8812", opportunity=Opportunity(...))
    crm.sales.move(conv.opportunity_id, "proposal", reason="demo done")
    crm.sales.history(conv.opportunity_id)
    crm.sales.forecast(by="month", currency="EUR")  # summed in the store
    crm.sales.record_payment(order.id)  # a transaction naming the order: revenue for value models

``crm.leads``, ``crm.pipelines``, ``crm.opportunities``, ``crm.products``, ``crm.quotes``,
``crm.orders``, ``crm.tasks`` and ``crm.notes`` are the records of each aggregate;
``crm.sales`` holds the operations that span them.
"""

from crmkit.sales import _model
from crmkit.sales._model import *  # noqa: F403  # the aggregates and their enums, listed once in _model.__all__
from crmkit.sales._money import minor_units, round_to_currency
from crmkit.sales._predict import Calibration, WinEvaluation, WinModel
from crmkit.sales._reports import FunnelStep, Performance, StageTime
from crmkit.sales._service import ForecastRow, OrderBalance, PipelineEntry, Sales, Tasks

_model.Task.__crmkit_records__ = Tasks  # type: ignore[attr-defined]  # crm.tasks is a Tasks (crm.tasks.due)

__all__ = [
    "Calibration",
    "ForecastRow",
    "FunnelStep",
    "OrderBalance",
    "Performance",
    "PipelineEntry",
    "Sales",
    "StageTime",
    "Tasks",
    "WinEvaluation",
    "WinModel",
    "minor_units",
    "round_to_currency",
]
__all__ += _model.__all__
