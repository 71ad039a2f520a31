"""Pareto/NBD (Schmittlein, Morrison and Colombo 1987; likelihood as in Fader, Hardie and Lee 2005).

While alive a customer buys as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``; the
unobserved lifetime is exponential with rate ``mu ~ Gamma(s, beta)``. The likelihood is
computed from a positive integral (see ``_numerics.pareto_dead_integral``) instead of the
usual difference of Gauss hypergeometric functions, which is what makes analytic gradients,
and hence a fast and exact fit, possible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from scipy.special import digamma, gammaln

from crmkit._errors import ValidationError
from crmkit.value.models._base import MLEModel
from crmkit.value.models._numerics import expm1_ratio, pareto_dead_integral, pareto_purchase_integral
from crmkit.value.models._rfm import RFMData, default_rate_scale, prepare_rfm
from crmkit.value.models._validation import (
    FloatArray,
    as_array,
    check_nonnegative,
    counts_and_times,
    dot,
    group_rows,
    result,
    rfm_arrays,
)

__all__ = ["ParetoNBD"]


class ParetoNBD(MLEModel):
    """Pareto/NBD model: ``r, alpha`` (purchase rates) and ``s, beta`` (lifetimes)."""

    _param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "s", "beta")

    @staticmethod
    def _row_terms(
        params: FloatArray, x: FloatArray, tx: FloatArray, tt: FloatArray, *, gradient: bool, precise: bool
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
        """Per row: log of the alive part, log of the bracket, weight of the dead part, moments."""
        r, alpha, s, beta = (float(v) for v in params)
        m = r + x
        log_alive = -m * np.log(alpha + tt) - s * np.log(beta + tt)
        log_i, moments = pareto_dead_integral(m, s + 1, alpha, beta, tx, tt, gradient=gradient, precise=precise)
        log_dead = np.log(s) + log_i
        log_bracket = np.logaddexp(log_alive, log_dead)
        w_dead = np.exp(log_dead - log_bracket)
        return log_alive, log_bracket, w_dead, moments

    def _loglik(self, params: FloatArray, d: RFMData, precise: bool = False) -> tuple[float, FloatArray]:
        r, alpha, s, beta = (float(v) for v in params)
        ux, wx = d.ux, d.wx
        ll = float(dot(wx, gammaln(r + ux)) + d.n_obs * (r * np.log(alpha) + s * np.log(beta) - gammaln(r)))
        d_r = float(dot(wx, digamma(r + ux)) + d.n_obs * (np.log(alpha) - digamma(r)))
        d_alpha = d.n_obs * r / alpha
        d_s = d.n_obs * float(np.log(beta))
        d_beta = d.n_obs * s / beta

        x, tx, tt, w = d.x, d.tx, d.T, d.w
        _, log_bracket, w_dead, moments = self._row_terms(params, x, tx, tt, gradient=True, precise=precise)
        assert moments is not None
        w_alive = 1 - w_dead
        m = r + x
        log_at = np.log(alpha + tt)
        log_bt = np.log(beta + tt)
        ll += float(dot(w, log_bracket))
        d_r -= float(dot(w, w_alive * log_at + w_dead * moments[0]))
        d_alpha -= float(dot(w, m * (w_alive / (alpha + tt) + w_dead * moments[1])))
        d_s += float(dot(w, -w_alive * log_bt + w_dead * (1 / s - moments[2])))
        d_beta -= float(dot(w, w_alive * s / (beta + tt) + w_dead * (s + 1) * moments[3]))
        return ll, np.array([d_r, d_alpha, d_s, d_beta])

    def fit(
        self,
        frequency: Any,
        recency: Any,
        T: Any,
        weights: Any = None,
        *,
        initial_params: Mapping[str, float] | None = None,
    ) -> ParetoNBD:
        """Maximum-likelihood fit; returns the fitted model (arguments as for ``BetaGeo.fit``)."""
        data = prepare_rfm(frequency, recency, T, weights, model="Pareto/NBD")
        scale = default_rate_scale(data)
        default = np.array([1.0, scale, 1.0, scale])
        start = self._start(initial_params, default)
        self._maximize(
            lambda p: self._loglik(p, data),
            start,
            data.n_obs,
            final=lambda p: self._loglik(p, data, precise=True),
        )
        return self

    def log_likelihood_of(self, frequency: Any, recency: Any, T: Any, weights: Any = None) -> float:
        """Total log-likelihood of the given data under the current parameters."""
        params = self._require_params()
        data = prepare_rfm(frequency, recency, T, weights, model="Pareto/NBD")
        return self._loglik(params, data, precise=True)[0]

    # ------------------------------------------------------------- predictions
    def _alive(self, x: FloatArray, tx: FloatArray, tt: FloatArray) -> FloatArray:
        """P(alive) per customer; the quadrature runs once per distinct (x, t_x, T)."""
        params = self._require_params()
        (ux, utx, ut), inverse = group_rows([v.reshape(-1) for v in (x, tx, tt)])
        log_alive, log_bracket, _, _ = self._row_terms(params, ux, utx, ut, gradient=False, precise=False)
        return np.exp(log_alive - log_bracket)[inverse].reshape(x.shape)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> float | FloatArray:
        """P(the customer is still alive at age T | frequency, recency, T)."""
        self._require_params()
        x, tx, tt = rfm_arrays(frequency, recency, T, fit=False)
        return result(self._alive(x, tx, tt))

    def expected_purchases(self, t: Any) -> float | FloatArray:
        """E[X(t)] = r beta / (alpha (s-1)) * (1 - (beta/(beta+t))**(s-1)) for a new customer."""
        r, alpha, s, beta = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt)
        return result(r / alpha * beta * expm1_ratio(s - 1, np.log1p(tt / beta)))

    def conditional_expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> float | FloatArray:
        """E[Y(t) | frequency, recency, T]: expected purchases in the next ``t`` time units."""
        r, alpha, s, beta = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt)
        x, tx, age = rfm_arrays(frequency, recency, T, fit=False)
        try:
            tt, x, tx, age = np.broadcast_arrays(tt, x, tx, age)
        except ValueError:
            raise ValidationError("t", "shape does not broadcast with the customer data", tt.shape) from None
        alive = self._alive(x, tx, age)
        rate = (r + x) / (alpha + age)
        life = (beta + age) * expm1_ratio(s - 1, np.log1p(tt / (beta + age)))
        return result(np.asarray(alive * rate * life, dtype=np.float64))

    def _expected_purchase_curve(self, times: FloatArray, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """Conditional expected purchases at each of ``times`` (rows) for each customer (columns)."""
        r, alpha, s, beta = self._require_params()
        x, tx, age = rfm_arrays(frequency, recency, T, fit=False)
        alive_rate = (self._alive(x, tx, age) * (r + x) / (alpha + age)).reshape(-1)
        ages, inverse = np.unique(age.reshape(-1), return_inverse=True)
        life = (beta + ages)[None, :] * expm1_ratio(s - 1, np.log1p(times[:, None] / (beta + ages)[None, :]))
        return np.asarray(life[:, inverse] * alive_rate[None, :], dtype=np.float64).reshape(times.size, *x.shape)

    def probability_of_purchases(self, n: Any, t: Any) -> float | FloatArray:
        """P(X(t) = n) for a new customer (alive-at-t part plus died-before-t part)."""
        r, alpha, s, beta = self._require_params()
        nn, tt = counts_and_times(n, t)
        out = np.where(nn == 0, 1.0, 0.0)  # at t = 0 nothing has happened yet
        pos = tt > 0
        if np.any(pos):
            n1, t1 = nn[pos], tt[pos]
            coef = gammaln(r + n1) - gammaln(r) - gammaln(n1 + 1)
            log_nb = coef - r * np.log1p(t1 / alpha) + n1 * (np.log(t1) - np.log(alpha + t1))
            alive = np.exp(log_nb - s * np.log1p(t1 / beta))
            log_j = pareto_purchase_integral(n1, r, s, alpha, beta, t1)
            dead = np.exp(coef + np.log(s) + s * np.log(beta) + np.log(alpha) + log_j)
            out = out.astype(np.float64)
            out[pos] = alive + dead
        return result(np.asarray(out, dtype=np.float64))
