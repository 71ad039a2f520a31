"""What a new user hit, beyond currencies: error messages that name what was given and what is wrong."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import numpy as np
import pytest

from crmkit import Transaction, ValidationError

models = pytest.importorskip("crmkit.value.models")

WHEN = dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("12.50", "not the string '12.50'"),
        (12.5, "not the float 12.5"),
        (None, "is required"),
        ([1], "not list"),
    ],
)
def test_an_amount_that_is_not_money_says_what_was_given(amount: object, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        Transaction(customer_id=uuid.uuid4(), occurred_at=WHEN, amount=amount, currency="EUR")  # type: ignore[arg-type]
    assert info.value.field == "amount"
    assert says in info.value.message
    if isinstance(amount, str):
        assert "floats" not in info.value.message  # the old message blamed floats for a string
    assert Transaction(customer_id=uuid.uuid4(), occurred_at=WHEN, amount=Decimal("12.50"), currency="EUR").amount


def steady_buyers(n: int = 300, seed: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Everyone buys at one rate and nobody has left: drop-out is not identified."""
    rng = np.random.default_rng(seed)
    T = rng.uniform(20, 40, n)
    x = rng.poisson(0.3 * T).astype(float)
    tx = np.where(x > 0, T * rng.beta(np.maximum(x, 1), 1), 0.0)
    return x, tx, T


@pytest.mark.parametrize("model", ["ParetoNBD", "BetaGeo"])
def test_an_undetermined_fit_names_the_parameter(model: str) -> None:
    x, tx, T = steady_buyers()
    cls = getattr(models, model)
    with pytest.raises(ValidationError) as info:
        cls().fit(x, tx, T)
    assert info.value.field in cls._param_names  # not "frequency": which parameter the data leave free
    assert f"parameter {info.value.field} " in info.value.message
    assert info.value.field in info.value.value  # the estimates reached, keyed by name
