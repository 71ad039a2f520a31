"""BG/NBD (Fader, Hardie and Lee 2005) and MBG/NBD (Batislam, Denizel and Filiztekin 2007).

Both describe non-contractual repeat buying in continuous time: while alive a customer buys
as a Poisson process of rate ``lambda ~ Gamma(r, alpha)``; the BG/NBD customer drops out
after each repeat purchase with probability ``p ~ Beta(a, b)``, the MBG/NBD customer also
right after the first purchase (time 0), so that MBG/NBD customers without repeat purchases
are not all alive. Formulas are in ``docs/value_models.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
from scipy.special import betainc, betaln, digamma, expit, gammaln, polygamma

from crmkit._errors import ValidationError
from crmkit.value.models._base import MLEModel
from crmkit.value.models._numerics import bgnbd_future
from crmkit.value.models._rfm import RFMData, default_rate_scale, prepare_rfm, sample_rfm
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

__all__ = ["BetaGeo", "ModifiedBetaGeo"]

_B = TypeVar("_B", bound="_BetaGeoBase")


class _BetaGeoBase(MLEModel):
    _param_names: ClassVar[tuple[str, ...]] = ("r", "alpha", "a", "b")
    _modified: ClassVar[bool] = False
    _label: ClassVar[str] = "BG/NBD"

    # -------------------------------------------------------------- likelihood
    def _loglik(self, params: FloatArray, d: RFMData) -> tuple[float, FloatArray]:
        """Total log-likelihood and its gradient in (r, alpha, a, b)."""
        ll, grad, _ = self._loglik_terms(params, d, hessian=False)
        return ll, grad

    def _loglik_hessian(self, params: FloatArray, d: RFMData) -> tuple[float, FloatArray, FloatArray]:
        """Total log-likelihood, its gradient and its Hessian in (r, alpha, a, b)."""
        ll, grad, hess = self._loglik_terms(params, d, hessian=True)
        assert hess is not None
        return ll, grad, hess

    def _loglik_terms(
        self, params: FloatArray, d: RFMData, *, hessian: bool
    ) -> tuple[float, FloatArray, FloatArray | None]:
        """The log-likelihood, written per customer as

            log L = [log G(r+x) - log G(r) + r log alpha + log B(a, b+x') - log B(a, b)]
                    - (r+x) log(alpha+T) + softplus(delta),
            delta = log(a/c) + (r+x) log((alpha+T)/(alpha+t_x)),

        with x' = x (BG/NBD) or x+1 (MBG/NBD) and c = b+x-1 (BG/NBD, x > 0) or b+x (MBG/NBD):
        softplus(delta) = log(1 + e^delta) adds the "dropped out after the last purchase"
        branch to the "still alive" one. The bracket depends on the frequency alone and is
        computed once per distinct frequency. Every derivative follows in closed form, with
        sigma = logistic(delta) (the probability of the dead branch) and digamma/trigamma
        for the Gamma and Beta functions.
        """
        r, alpha, a, b = (float(v) for v in params)
        modified = self._modified
        shift = 1.0 if modified else 0.0
        ux, wx, n = d.ux, d.wx, d.n_obs
        bx = b + ux + shift
        log_alpha = float(np.log(alpha))
        ll = float(dot(wx, gammaln(r + ux) + betaln(a, bx)) + n * (r * log_alpha - gammaln(r) - betaln(a, b)))
        psi_ab = float(digamma(a + b))
        psi_abx = digamma(a + bx)
        g_r = float(dot(wx, digamma(r + ux)) + n * (log_alpha - digamma(r)))
        g_alpha = n * r / alpha
        g_a = float(n * psi_ab - dot(wx, psi_abx))
        g_b = float(dot(wx, digamma(bx) - psi_abx) + n * (psi_ab - digamma(b)))
        h = np.zeros((4, 4)) if hessian else None
        if h is not None:
            tri_ab = float(polygamma(1, a + b))
            tri_abx = polygamma(1, a + bx)
            h[0, 0] = dot(wx, polygamma(1, r + ux)) - n * float(polygamma(1, r))
            h[0, 1] = n / alpha
            h[1, 1] = -n * r / alpha**2
            h[2, 2] = h[2, 3] = n * tri_ab - dot(wx, tri_abx)
            h[3, 3] = dot(wx, polygamma(1, bx) - tri_abx) - n * (float(polygamma(1, b)) - tri_ab)

        if modified:  # every customer may have dropped out after their last purchase
            x, tx, tt, w, where = d.x, d.tx, d.T, d.w, d.ix
            c_by_x = b + ux
        else:  # customers without repeat purchases are alive for sure: one term only
            inv0 = 1.0 / (alpha + d.T0)
            ll -= r * dot(d.w0, np.log(alpha + d.T0))
            g_r -= dot(d.w0, np.log(alpha + d.T0))
            q0 = dot(d.w0, inv0)
            g_alpha -= r * q0
            if h is not None:
                h[0, 1] -= q0
                h[1, 1] += r * dot(d.w0, inv0 * inv0)
            x, tx, tt, w, where = d.x1, d.tx1, d.T1, d.w1, d.ix1
            c_by_x = np.where(ux > 0, b + ux - 1, 1.0)
        log_c = np.log(c_by_x)[where]
        inv_c = (1.0 / c_by_x)[where]
        m = r + x
        inv_t = 1.0 / (alpha + tt)
        inv_x = 1.0 / (alpha + tx)
        log_at = np.log(alpha + tt)
        u = np.log1p((tt - tx) * inv_x)  # log((alpha+T)/(alpha+t_x)) >= 0
        delta = (np.log(a) - log_c) + m * u
        e = np.exp(-np.abs(delta))
        softplus = np.maximum(delta, 0.0) + np.log1p(e)
        sigma = np.where(delta > 0, 1.0, e) / (1.0 + e)
        wm = w * m
        ws = w * sigma
        diff = inv_t - inv_x
        ll += dot(w, softplus) - dot(wm, log_at)
        g_r += dot(ws, u) - dot(w, log_at)
        g_alpha += dot(wm, sigma * diff - inv_t)
        s_sigma = float(ws.sum())
        g_a += s_sigma / a
        g_b -= dot(ws, inv_c)
        if h is not None:
            wv = ws * (1.0 - sigma)  # w sigma (1 - sigma): the curvature of softplus
            md = m * diff
            wvu = wv * u
            wvmd = wv * md
            s_v = float(wv.sum())
            h[0, 0] += dot(wvu, u)
            h[0, 1] += dot(wvu, md) + dot(ws, diff) - dot(w, inv_t)
            h[1, 1] += dot(wm, inv_t * inv_t) + dot(wvmd, md) + dot(ws * m, inv_x * inv_x - inv_t * inv_t)
            h[0, 2] += float(wvu.sum()) / a
            h[0, 3] -= dot(wvu, inv_c)
            h[1, 2] += float(wvmd.sum()) / a
            h[1, 3] -= dot(wvmd, inv_c)
            h[2, 2] += (s_v - s_sigma) / a**2
            h[2, 3] -= dot(wv, inv_c) / a
            h[3, 3] += dot(wv + ws, inv_c * inv_c)
            h = np.triu(h) + np.triu(h, 1).T
        return ll, np.array([g_r, g_alpha, g_a, g_b]), h

    def fit(
        self: _B,
        frequency: Any,
        recency: Any,
        T: Any,
        weights: Any = None,
        *,
        initial_params: Mapping[str, float] | None = None,
    ) -> _B:
        """Maximum-likelihood fit; returns the fitted model.

        ``frequency``: repeat purchases; ``recency``: age at the last purchase; ``T``: age
        at the end of observation (same time unit). ``weights``: customers per row.
        """
        data = prepare_rfm(frequency, recency, T, weights, model=self._label)
        default = np.array([1.0, default_rate_scale(data), 1.0, 1.0])
        start = self._start(initial_params, default)
        part = sample_rfm(data)
        sample = None if part is None else (lambda p: self._loglik(p, part), part.n_obs)
        self._maximize(
            lambda p: self._loglik(p, data),
            start,
            data.n_obs,
            sample=sample,
            curvature=lambda p: self._loglik_hessian(p, data),
        )
        return self

    def log_likelihood_of(self, frequency: Any, recency: Any, T: Any, weights: Any = None) -> float:
        """Total log-likelihood of the given data under the current parameters."""
        params = self._require_params()
        data = prepare_rfm(frequency, recency, T, weights, model=self._label)
        return self._loglik(params, data)[0]

    # ------------------------------------------------------------- predictions
    def _log_odds_dead(self, params: FloatArray, x: FloatArray, tx: FloatArray, tt: FloatArray) -> FloatArray:
        """log of P(dead-path) / P(alive-path) per customer; -inf where the customer must be alive."""
        r, alpha, a, b = params
        if self._modified:
            c = b + x
            eligible = np.ones(x.shape, dtype=bool)
        else:
            eligible = x > 0
            c = np.where(eligible, b + x - 1, 1.0)
        ratio = np.log1p((tt - tx) / (alpha + tx))  # log((alpha+T)/(alpha+t_x))
        return np.asarray(np.where(eligible, np.log(a) - np.log(c) + (r + x) * ratio, -np.inf), dtype=np.float64)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> float | FloatArray:
        """P(the customer is still alive at age T | frequency, recency, T)."""
        params = self._require_params()
        x, tx, tt = rfm_arrays(frequency, recency, T, fit=False)
        return result(np.asarray(expit(-self._log_odds_dead(params, x, tx, tt)), dtype=np.float64))

    def expected_purchases(self, t: Any) -> float | FloatArray:
        """E[X(t)]: expected repeat purchases of a new customer in the first ``t`` time units."""
        r, alpha, a, b = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt)
        ones = np.ones_like(tt)
        if self._modified:
            val = b / (a + b) * bgnbd_future(a, ones * (b + 1), ones * r, ones * alpha, tt, b + 1 - r)
        else:
            val = bgnbd_future(a, ones * b, ones * r, ones * alpha, tt, b - r)
        return result(val)

    def _future(self, t: FloatArray, x: FloatArray, age: FloatArray) -> FloatArray:
        """Expected purchases in ``(T, T+t]`` of a customer known to be alive at T (flat arrays)."""
        r, alpha, a, b = self._require_params()
        shift = 1.0 if self._modified else 0.0
        (ux, ua, ut), inverse = group_rows([x, age, t])
        fut = bgnbd_future(a, b + ux + shift, r + ux, alpha + ua, ut, b + shift - r)
        return fut[inverse]

    def conditional_expected_purchases(self, t: Any, frequency: Any, recency: Any, T: Any) -> float | FloatArray:
        """E[Y(t) | frequency, recency, T]: expected purchases in the next ``t`` time units."""
        params = self._require_params()
        tt = as_array("t", t)
        check_nonnegative("t", tt)
        x, tx, age = rfm_arrays(frequency, recency, T, fit=False)
        try:
            tt, x, tx, age = np.broadcast_arrays(tt, x, tx, age)
        except ValueError:
            raise ValidationError("t", "shape does not broadcast with the customer data", tt.shape) from None
        shape = x.shape
        xf, txf, af, tf = (v.reshape(-1) for v in (x, tx, age, tt))
        alive = expit(-self._log_odds_dead(params, xf, txf, af))
        return result(np.asarray(alive * self._future(tf, xf, af), dtype=np.float64).reshape(shape))

    def _expected_purchase_curve(self, times: FloatArray, frequency: Any, recency: Any, T: Any) -> FloatArray:
        """Conditional expected purchases at each of ``times`` (rows) for each customer (columns)."""
        params = self._require_params()
        r, alpha, a, b = params
        x, tx, age = rfm_arrays(frequency, recency, T, fit=False)
        shape = x.shape
        xf, txf, af = (v.reshape(-1) for v in (x, tx, age))
        alive = expit(-self._log_odds_dead(params, xf, txf, af))
        shift = 1.0 if self._modified else 0.0
        (ux, ua), inverse = group_rows([xf, af])
        fut = bgnbd_future(
            a, (b + ux + shift)[None, :], (r + ux)[None, :], (alpha + ua)[None, :], times[:, None], b + shift - r
        )
        return np.asarray(fut[:, inverse] * alive[None, :], dtype=np.float64).reshape(times.size, *shape)

    def probability_of_purchases(self, n: Any, t: Any) -> float | FloatArray:
        """P(X(t) = n): probability that a new customer makes exactly ``n`` repeat purchases by ``t``."""
        r, alpha, a, b = self._require_params()
        nn, tt = counts_and_times(n, t)
        shift = 1.0 if self._modified else 0.0
        with np.errstate(divide="ignore"):
            log_z = np.log(tt) - np.log(alpha + tt)  # log(t/(alpha+t)), -inf at t = 0
            log_nb = (
                gammaln(r + nn)
                - gammaln(r)
                - gammaln(nn + 1)
                - r * np.log1p(tt / alpha)
                + nn * np.where(nn > 0, log_z, 0.0)
            )
            # still alive after n purchases
            alive_term = np.exp(betaln(a, b + nn + shift) - betaln(a, b) + log_nb)
            # died right after the n-th purchase, which happened before t
            pos = nn > 0
            nsafe = np.where(pos, nn, 1.0)
            tail = betainc(nsafe, r, tt / (alpha + tt))  # P(NB(r, alpha/(alpha+t)) >= n)
            dead_term = np.where(pos, np.exp(betaln(a + 1, b + nsafe - 1 + shift) - betaln(a, b)) * tail, 0.0)
        val = alive_term + dead_term
        if self._modified:
            val = val + np.where(nn == 0, a / (a + b), 0.0)
        return result(np.asarray(val, dtype=np.float64))


class BetaGeo(_BetaGeoBase):
    """BG/NBD model: parameters ``r, alpha`` (purchase rates) and ``a, b`` (drop-out)."""

    _modified = False
    _label = "BG/NBD"


class ModifiedBetaGeo(_BetaGeoBase):
    """MBG/NBD model: the BG/NBD with a possible drop-out right after the first purchase."""

    _modified = True
    _label = "MBG/NBD"
