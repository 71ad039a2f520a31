"""Gamma-Gamma spend model (Colombo and Jiang 1999; Fader, Hardie and Lee 2005, "RFM and CLV").

A customer's transaction values are Gamma(p, nu) with a customer-specific scale ``nu ~
Gamma(q, v)``; the model is fitted to each repeat customer's number of repeat
transactions ``x`` and their average value ``zbar``. Spend is assumed independent of
the purchase process, which is why it combines with BG/NBD or Pareto/NBD in a CLV; ``fit``
checks the correlation of spend and frequency and warns (``SpendFrequencyWarning``) when
it is far from 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from scipy.special import digamma, gammaln

from crmkit._errors import ValidationError
from crmkit.value.models._base import MLEModel
from crmkit.value.models._validation import (
    FloatArray,
    as_array,
    check_integer,
    check_nonnegative,
    check_same_length,
    check_same_shape,
    compress_rows,
    dot,
    result,
    weights_array,
)

if TYPE_CHECKING:
    from crmkit.value.models.bgnbd import BetaGeo, ModifiedBetaGeo
    from crmkit.value.models.paretonbd import ParetoNBD

__all__ = ["INDEPENDENCE_THRESHOLD", "GammaGamma", "SpendFrequencyWarning"]

#: |correlation| of repeat customers' frequency and mean spend from which ``fit`` warns.
INDEPENDENCE_THRESHOLD = 0.3


class SpendFrequencyWarning(UserWarning):
    """Spend and purchase frequency are correlated: the Gamma-Gamma model assumes they are not."""


def _spend_arrays(frequency: Any, monetary_value: Any, *, fit: bool) -> tuple[FloatArray, FloatArray]:
    x = as_array("frequency", frequency, one_dimensional=fit)
    z = as_array("monetary_value", monetary_value, one_dimensional=fit)
    if fit:
        check_same_length("frequency", x, "monetary_value", z)
    else:
        check_same_shape("frequency", x, "monetary_value", z)
        x, z = np.broadcast_arrays(x, z)
    check_nonnegative("frequency", x)
    check_integer("frequency", x)
    check_nonnegative("monetary_value", z)
    return x, z


class GammaGamma(MLEModel):
    """Gamma-Gamma model of average transaction value: parameters ``p, q, v``."""

    _param_names: ClassVar[tuple[str, ...]] = ("p", "q", "v")
    #: Correlation of frequency and mean spend of the repeat customers of the last fit (None unchecked).
    spend_correlation: float | None = None

    @staticmethod
    def _prepare(frequency: Any, monetary_value: Any, weights: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
        x, z = _spend_arrays(frequency, monetary_value, fit=True)
        w = weights_array(weights, "frequency", x)
        repeat = (x > 0) & (w > 0)
        if not np.any(repeat):
            raise ValidationError(
                "frequency", "no customer made a repeat purchase: the Gamma-Gamma model needs repeat spend", 0
            )
        bad = repeat & (z <= 0)
        if np.any(bad):
            row = int(np.flatnonzero(bad)[0])
            raise ValidationError(
                "monetary_value", "must be > 0 for customers with repeat purchases", float(z[row]), row=row
            )
        (x, z), w = compress_rows([x[repeat], z[repeat]], w[repeat])
        if np.all(z == z[0]):
            raise ValidationError(
                "monetary_value",
                "every repeat customer has the same average spend: the data cannot identify the Gamma-Gamma model",
                float(z[0]),
            )
        return x, z, w

    @staticmethod
    def _loglik(params: FloatArray, x: FloatArray, z: FloatArray, w: FloatArray) -> tuple[float, FloatArray]:
        p, q, v = (float(c) for c in params)
        px = p * x
        log_vz = np.log(v + x * z)
        log_x, log_z = np.log(x), np.log(z)
        psi = digamma(px + q)
        ll = float(
            dot(w, gammaln(px + q) - gammaln(px) + px * log_x + (px - 1) * log_z - (px + q) * log_vz)
            + w.sum() * (q * np.log(v) - gammaln(q))
        )
        d_p = float(dot(w, x * (psi - digamma(px) + log_x + log_z - log_vz)))
        d_q = float(dot(w, psi - log_vz) + w.sum() * (np.log(v) - digamma(q)))
        d_v = float(w.sum() * q / v - dot(w, (px + q) / (v + x * z)))
        return ll, np.array([d_p, d_q, d_v])

    def fit(
        self,
        frequency: Any,
        monetary_value: Any,
        weights: Any = None,
        *,
        initial_params: Mapping[str, float] | None = None,
        check_independence: bool = True,
    ) -> GammaGamma:
        """Fit on repeat customers: ``frequency`` (repeat transactions) and ``monetary_value``
        (their average value). Customers with frequency 0 are ignored.

        With ``check_independence`` (the default) the weighted Pearson correlation of the
        repeat customers' frequency and mean spend is computed first (``spend_correlation``
        afterwards); beyond +-``INDEPENDENCE_THRESHOLD`` a ``SpendFrequencyWarning`` says the
        model's assumption of independent spend does not hold for these data."""
        x, z, w = self._prepare(frequency, monetary_value, weights)
        self.spend_correlation = None
        if check_independence:
            self.spend_correlation = _weighted_correlation(x, z, w)
            if abs(self.spend_correlation) >= INDEPENDENCE_THRESHOLD:
                warnings.warn(
                    f"GammaGamma: mean spend and frequency of the repeat customers are correlated "
                    f"(Pearson r = {self.spend_correlation:.2f}); the model assumes spend does not depend on "
                    "frequency, so its spend and CLV predictions are biased for these data",
                    SpendFrequencyWarning,
                    stacklevel=2,
                )
        mean_z = float(dot(w, z) / w.sum())
        start = self._start(initial_params, np.array([1.0, 2.0, mean_z]))
        self._maximize(lambda prm: self._loglik(prm, x, z, w), start, float(w.sum()))
        return self

    def log_likelihood_of(self, frequency: Any, monetary_value: Any, weights: Any = None) -> float:
        """Total log-likelihood of the repeat customers' average spends under the current parameters."""
        params = self._require_params()
        x, z, w = self._prepare(frequency, monetary_value, weights)
        return self._loglik(params, x, z, w)[0]

    def customer_lifetime_value(
        self,
        transaction_model: BetaGeo | ModifiedBetaGeo | ParetoNBD,
        frequency: Any,
        recency: Any,
        T: Any,
        monetary_value: Any,
        *,
        horizon: int,
        time_unit: str,
        discount_rate: float,
        period: str = "month",
        margin: float = 1.0,
    ) -> float | FloatArray:
        """Discounted CLV with this spend model: ``customer_lifetime_value(transaction_model, self, ...)``."""
        from crmkit.value.models.clv import customer_lifetime_value

        return customer_lifetime_value(
            transaction_model,
            self,
            frequency,
            recency,
            T,
            monetary_value,
            horizon=horizon,
            time_unit=time_unit,
            discount_rate=discount_rate,
            period=period,
            margin=margin,
        )

    def expected_spend(self) -> float:
        """Population mean transaction value ``p v / (q - 1)`` (infinite when ``q <= 1``)."""
        p, q, v = self._require_params()
        return float(p * v / (q - 1)) if q > 1 else float("inf")

    def conditional_expected_spend(self, frequency: Any, monetary_value: Any) -> float | FloatArray:
        """E[Z | x, zbar] = p (v + x zbar) / (p x + q - 1): a weighted mean of the population
        mean and the customer's own average. Customers with frequency 0 get the population
        mean. The value is infinite where ``p x + q <= 1`` (no finite mean exists)."""
        p, q, v = self._require_params()
        x, z = _spend_arrays(frequency, monetary_value, fit=False)
        z = np.where(x > 0, z, 0.0)
        denom = p * x + q - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            val = np.where(denom > 0, p * (v + x * z) / np.where(denom > 0, denom, 1.0), np.inf)
        return result(np.asarray(val, dtype=np.float64))


def _weighted_correlation(x: FloatArray, z: FloatArray, w: FloatArray) -> float:
    """Pearson correlation of ``x`` and ``z`` with row weights (NaN when either is constant)."""
    total = float(w.sum())
    dx = x - dot(w, x) / total
    dz = z - dot(w, z) / total
    denom = math.sqrt(dot(w, dx * dx) * dot(w, dz * dz))
    return dot(w, dx * dz) / denom if denom > 0 else math.nan
