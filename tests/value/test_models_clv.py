"""customer_lifetime_value: discounted expected purchases per period times expected spend."""

from __future__ import annotations

from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("scipy")

from crmkit.value.models import BetaGeo, GammaGamma, ParetoNBD, customer_lifetime_value, datasets  # noqa: E402

BG = BetaGeo.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
PN = ParetoNBD.from_params(r=0.553, alpha=10.578, s=0.606, beta=11.669)
GG = GammaGamma.from_params(p=6.25, q=3.74, v=15.44)
MONTH_IN_WEEKS = 365.25 / 12 / 7


@pytest.mark.parametrize("model", [BG, PN])
def test_clv_is_the_discounted_sum_of_expected_purchases_times_spend(model: Any) -> None:
    x, tx, T, z = 2, 30.43, 38.86, 22.35
    value = customer_lifetime_value(
        model, GG, x, tx, T, z, horizon=12, time_unit="week", discount_rate=0.01, margin=0.3
    )
    cumulative = [0.0] + [model.conditional_expected_purchases(i * MONTH_IN_WEEKS, x, tx, T) for i in range(1, 13)]
    by_hand = sum((cumulative[i] - cumulative[i - 1]) / 1.01**i for i in range(1, 13))
    assert value == pytest.approx(0.3 * GG.conditional_expected_spend(x, z) * by_hand, rel=1e-10)


def test_without_discounting_clv_is_expected_purchases_times_spend() -> None:
    value = customer_lifetime_value(BG, GG, 2, 30.43, 38.86, 22.35, horizon=6, time_unit="week", discount_rate=0.0)
    purchases = BG.conditional_expected_purchases(6 * MONTH_IN_WEEKS, 2, 30.43, 38.86)
    assert value == pytest.approx(purchases * GG.conditional_expected_spend(2, 22.35), rel=1e-10)
    assert customer_lifetime_value(BG, GG, 2, 30.43, 38.86, 22.35, horizon=0, time_unit="week", discount_rate=0.0) == 0


def test_the_time_unit_of_the_data_is_honoured() -> None:
    # the same customers and model, once with weeks and once with days
    weekly = customer_lifetime_value(BG, GG, 2, 30.43, 38.86, 22.35, horizon=12, time_unit="week", discount_rate=0.01)
    bg_days = BetaGeo.from_params(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
    daily = customer_lifetime_value(
        bg_days, GG, 2, 30.43 * 7, 38.86 * 7, 22.35, horizon=12, time_unit="day", discount_rate=0.01
    )
    assert daily == pytest.approx(weekly, rel=1e-9)
    # yearly steps at the equivalent yearly rate give about the same value as monthly ones
    yearly = customer_lifetime_value(
        BG, GG, 2, 30.43, 38.86, 22.35, horizon=1, time_unit="week", discount_rate=0.0, period="year"
    )
    no_discount = customer_lifetime_value(BG, GG, 2, 30.43, 38.86, 22.35, horizon=12, time_unit="week", discount_rate=0)
    assert yearly == pytest.approx(no_discount, rel=1e-9)


def test_clv_for_a_whole_customer_base() -> None:
    d = datasets.load_cdnow_summary_with_monetary_value()
    args = (d["frequency"], d["recency"], d["T"], d["monetary_value"])
    values = customer_lifetime_value(BG, GG, *args, horizon=24, time_unit="week", discount_rate=0.01)
    assert values.shape == (2357,)
    assert np.all(np.isfinite(values) & (values >= 0))
    cheaper = customer_lifetime_value(BG, GG, *args, horizon=24, time_unit="week", discount_rate=0.05)
    assert np.all(cheaper <= values) and cheaper.sum() < values.sum()
    longer = customer_lifetime_value(BG, GG, *args, horizon=36, time_unit="week", discount_rate=0.01)
    assert np.all(longer >= values)
    # one customer at a time gives the same numbers
    for i in (0, 1, 5, 100):
        single = customer_lifetime_value(
            BG, GG, *(a[i] for a in args), horizon=24, time_unit="week", discount_rate=0.01
        )
        assert single == pytest.approx(values[i], rel=1e-10)
