"""Shifted-beta-geometric (sBG) model of contractual retention (Fader and Hardie 2007).

Each customer renews at the end of every period with a constant probability ``1 - theta``
(their churn probability ``theta`` is theirs alone) and ``theta ~ Beta(alpha, beta)``
across customers. The lifetime T (the period in which the customer churns) then has

    P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta),   t = 1, 2, ...
    S(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta)

and the aggregate retention rate ``S(t)/S(t-1) = (beta + t - 1)/(alpha + beta + t - 1)``
rises over time, because high-churn customers leave first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from scipy.special import betaln, digamma, hyp2f1

from crmkit._errors import ValidationError
from crmkit.value.models._base import MLEModel
from crmkit.value.models._validation import (
    FloatArray,
    as_array,
    check_integer,
    check_nonnegative,
    check_same_length,
    compress_rows,
    dot,
    result,
    weights_array,
)

__all__ = ["ShiftedBetaGeometric"]


class ShiftedBetaGeometric(MLEModel):
    """sBG retention model: parameters ``alpha, beta`` of the beta churn-probability law."""

    _param_names: ClassVar[tuple[str, ...]] = ("alpha", "beta")

    @staticmethod
    def _prepare(periods: Any, churned: Any, weights: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
        t = as_array("periods", periods, one_dimensional=True)
        check_nonnegative("periods", t)
        check_integer("periods", t)
        if churned is None:
            c = np.ones_like(t)
        else:
            c = as_array("churned", churned, one_dimensional=True)
            check_same_length("periods", t, "churned", c)
            bad = (c != 0) & (c != 1)
            if np.any(bad):
                row = int(np.flatnonzero(bad)[0])
                raise ValidationError("churned", "must be true/false (1/0)", float(c[row]), row=row)
        zero = (c == 1) & (t < 1)
        if np.any(zero):
            row = int(np.flatnonzero(zero)[0])
            raise ValidationError("periods", "a churn happens in period 1 or later", float(t[row]), row=row)
        w = weights_array(weights, "periods", t)
        (t, c), w = compress_rows([t, c], w)
        if not np.any(c == 1):
            raise ValidationError("churned", "no customer churned: the data cannot identify the sBG model", 0)
        if not np.any((c == 0) & (t > 0)) and not np.any((c == 1) & (t > 1)):
            raise ValidationError(
                "periods", "every customer churned in period 1: the data cannot identify the sBG model", 1
            )
        return t, c, w

    @staticmethod
    def _loglik(params: FloatArray, t: FloatArray, c: FloatArray, w: FloatArray) -> tuple[float, FloatArray]:
        al, be = (float(v) for v in params)
        churn = c == 1
        base = betaln(al, be)
        # churned in period t: B(alpha+1, beta+t-1); still active after t periods: B(alpha, beta+t)
        ll_rows = np.where(churn, betaln(al + 1, be + t - 1), betaln(al, be + t)) - base
        psi_end = digamma(al + be + t)
        d_al = np.where(churn, digamma(al + 1) - digamma(al), 0.0) - psi_end
        d_be = np.where(churn, digamma(np.where(churn, be + t - 1, 1.0)), digamma(be + t)) - psi_end
        psi_ab = digamma(al + be)
        ll = float(dot(w, ll_rows))
        grad = np.array(
            [float(dot(w, d_al)) + w.sum() * psi_ab, float(dot(w, d_be)) + w.sum() * (psi_ab - digamma(be))]
        )
        return ll, grad

    def fit(
        self,
        periods: Any,
        churned: Any = None,
        weights: Any = None,
        *,
        initial_params: Mapping[str, float] | None = None,
    ) -> ShiftedBetaGeometric:
        """Fit on churn-period data.

        ``periods[i]``: the period in which customer i churned (1, 2, ...) or, where
        ``churned[i]`` is false, the number of periods they have renewed through so far
        (right-censored). ``churned`` defaults to all true. ``weights``: customers per row.
        """
        t, c, w = self._prepare(periods, churned, weights)
        start = self._start(initial_params, np.ones(2))
        self._maximize(lambda p: self._loglik(p, t, c, w), start, float(w.sum()))
        return self

    def fit_survivors(
        self, survivors: Any, *, initial_params: Mapping[str, float] | None = None
    ) -> ShiftedBetaGeometric:
        """Fit on a cohort's survivor counts: ``survivors[0]`` customers at the start,
        ``survivors[t]`` still active after t periods (non-increasing)."""
        n = as_array("survivors", survivors, one_dimensional=True)
        check_nonnegative("survivors", n)
        if n.size < 2:
            raise ValidationError("survivors", "needs the cohort size and at least one later count", n.size)
        if n[0] <= 0:
            raise ValidationError("survivors", "the cohort is empty", float(n[0]), row=0)
        rising = np.flatnonzero(np.diff(n) > 0)
        if rising.size:
            row = int(rising[0]) + 1
            raise ValidationError("survivors", "counts must not increase over time", float(n[row]), row=row)
        k = n.size - 1
        periods = np.concatenate([np.arange(1, k + 1, dtype=np.float64), [float(k)]])
        churned = np.concatenate([np.ones(k), [0.0]])
        weights = np.concatenate([-np.diff(n), [n[-1]]])
        return self.fit(periods, churned, weights, initial_params=initial_params)

    def log_likelihood_of(self, periods: Any, churned: Any = None, weights: Any = None) -> float:
        """Total log-likelihood of the given churn data under the current parameters."""
        params = self._require_params()
        t, c, w = self._prepare(periods, churned, weights)
        return self._loglik(params, t, c, w)[0]

    # ------------------------------------------------------------- predictions
    def survival(self, t: Any) -> float | FloatArray:
        """S(t): share of a new cohort still active after ``t`` periods."""
        al, be = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt)
        return result(np.asarray(np.exp(betaln(al, be + tt) - betaln(al, be)), dtype=np.float64))

    def churn_probability(self, t: Any) -> float | FloatArray:
        """P(T = t): share of a new cohort that churns in period ``t`` (t >= 1)."""
        al, be = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt, strict=True)
        return result(np.asarray(np.exp(betaln(al + 1, be + tt - 1) - betaln(al, be)), dtype=np.float64))

    def retention_rate(self, t: Any) -> float | FloatArray:
        """r(t) = S(t) / S(t-1) = (beta + t - 1) / (alpha + beta + t - 1), t >= 1."""
        al, be = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt, strict=True)
        return result(np.asarray((be + tt - 1) / (al + be + tt - 1), dtype=np.float64))

    def discounted_expected_lifetime(self, discount_rate: float) -> float:
        """DEL = sum_{t>=0} S(t) / (1+d)**t = 2F1(1, beta; alpha+beta; 1/(1+d)) (Fader and
        Hardie 2010): the discounted number of payments of a new customer who pays at the
        start of every period while active, ``d`` being the discount rate per period."""
        al, be = self._require_params()
        d = float(as_array("discount_rate", discount_rate))
        if d < 0:
            raise ValidationError("discount_rate", "must be >= 0", d)
        if d == 0 and al <= 1:
            return float("inf")
        return float(hyp2f1(1.0, be, al + be, 1.0 / (1.0 + d)))
