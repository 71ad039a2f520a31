"""crm.value over every storage backend gives what the pure functions give (CDNOW data)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.servers import unique_name

import crmkit
from crmkit.summaries import summarize
from crmkit.value import cohort_retention, customer_summary, profitability, rfm_scores
from crmkit.value.datasets import (
    CDNOW_CALIBRATION_END,
    CDNOW_OBSERVATION_END,
    cdnow_customers,
    cdnow_transactions,
)

AS_OF = dt.datetime(1998, 7, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql", "mongodb"])
def crm(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        url = f"sqlite:///{(tmp_path / 'crm.db').as_posix()}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = request.getfixturevalue("mongo_url")
    with crmkit.connect(url, tenant=unique_name("value")) as crm:
        crm.customers.add_many(cdnow_customers())
        crm.transactions.add_many(cdnow_transactions())
        yield crm


def test_value_calculations_agree_with_the_pure_functions(crm: crmkit.CRM) -> None:
    for unit in ("week", "month"):
        kwargs = {"unit": unit, "calibration_end": CDNOW_CALIBRATION_END, "observation_end": CDNOW_OBSERVATION_END}
        assert crm.value.summary(**kwargs) == customer_summary(cdnow_transactions(), **kwargs)  # type: ignore[arg-type]
    assert crm.value.rfm(as_of=AS_OF) == rfm_scores(summarize(cdnow_transactions()), as_of=AS_OF)
    cohorts = {"unit": "month", "observation_end": CDNOW_OBSERVATION_END}
    assert crm.value.cohorts(**cohorts) == cohort_retention(cdnow_transactions(), **cohorts)  # type: ignore[arg-type]
    costs = {"unit": "month", "margin": Decimal("0.3"), "acquisition_cost": Decimal(25),
             "observation_end": CDNOW_OBSERVATION_END}
    assert crm.value.profitability(**costs) == profitability(cdnow_transactions(), **costs)  # type: ignore[arg-type]
