"""Customer value: summaries, RFM, cohorts, historic value, profitability and payback (pure Python).

Every function here takes plain iterables of crmkit records and needs no numpy; the same
calculations run over a store as ``crm.value.summary(...)``, ``crm.value.rfm(...)`` and
so on, aggregating inside the store where the backend can. The probabilistic models
(BG/NBD, Pareto/NBD, Gamma-Gamma...) live in ``crmkit.value.models`` and need the
``models`` extra (numpy, scipy). See docs/value.md.
"""

from crmkit.value._store import CRMValue
from crmkit.value.cohorts import CohortCell, CohortTable, cohort_retention
from crmkit.value.historic import HistoricValue, ValueMetrics, historic_values, value_metrics
from crmkit.value.periods import PERIOD_UNITS, SUMMARY_UNITS, PeriodUnit, SummaryUnit, period_of
from crmkit.value.profitability import (
    AcquisitionCost,
    CohortPayback,
    CostToServe,
    CustomerProfit,
    Decile,
    Profitability,
    WhaleCurve,
    profitability,
    whale_curve,
)
from crmkit.value.rfm import SEGMENTS, RFMScore, RFMTable, rfm_scores, rfm_segment
from crmkit.value.rules import ProbabilityAliveRule, probability_alive
from crmkit.value.summary import CustomerSummary, Summary, customer_summary, summary_from_purchases

__all__ = [
    "PERIOD_UNITS",
    "SEGMENTS",
    "SUMMARY_UNITS",
    "AcquisitionCost",
    "CRMValue",
    "CohortCell",
    "CohortPayback",
    "CohortTable",
    "CostToServe",
    "CustomerProfit",
    "CustomerSummary",
    "Decile",
    "HistoricValue",
    "PeriodUnit",
    "ProbabilityAliveRule",
    "Profitability",
    "RFMScore",
    "RFMTable",
    "Summary",
    "SummaryUnit",
    "ValueMetrics",
    "WhaleCurve",
    "cohort_retention",
    "customer_summary",
    "historic_values",
    "period_of",
    "probability_alive",
    "profitability",
    "rfm_scores",
    "rfm_segment",
    "summary_from_purchases",
    "value_metrics",
    "whale_curve",
]
