"""BG/BB model for discrete-time non-contractual data (Fader, Hardie and Shang 2010).

Each of ``n`` transaction opportunities (periods) brings a purchase with probability
``p ~ Beta(alpha, beta)`` while the customer is alive; at the start of each period after
the first the customer dies with probability ``theta ~ Beta(gamma, delta)``. Data per
customer: ``frequency`` x (periods with a purchase), ``recency`` t_x (the last such
period, 0 if none) and ``n_periods`` n.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, digamma, expm1, gammaln, polygamma

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
    fail_where,
    result,
    weights_array,
)

__all__ = ["BetaGeoBetaBinom"]

_CHUNK = 1 << 20


def _bgbb_arrays(
    frequency: Any, recency: Any, n_periods: Any, *, fit: bool
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = as_array("frequency", frequency, one_dimensional=fit)
    tx = as_array("recency", recency, one_dimensional=fit)
    n = as_array("n_periods", n_periods, one_dimensional=fit)
    if fit:
        check_same_length("frequency", x, "recency", tx)
        check_same_length("frequency", x, "n_periods", n)
    else:
        try:
            x, tx, n = np.broadcast_arrays(x, tx, n)
        except ValueError:
            raise ValidationError("recency", "shapes of frequency, recency and n_periods do not match", None) from None
    for name, arr in (("frequency", x), ("recency", tx), ("n_periods", n)):
        check_nonnegative(name, arr)
        check_integer(name, arr)
    fail_where("frequency", "must not exceed recency (one purchase per period at most)", x, x > tx)
    fail_where("recency", "must not exceed n_periods", tx, tx > n)
    fail_where("recency", "must be 0 exactly when frequency is 0", tx, (x == 0) != (tx == 0))
    return x, tx, n


def _sum_survival(gamma: float, delta: FloatArray, k: FloatArray) -> FloatArray:
    """``sum_{t=1..k} B(gamma, delta + t) / B(gamma, delta)`` (expected alive periods), stable near gamma = 1."""
    eps = gamma - 1.0
    if abs(eps) >= 1e-4:
        a = gammaln(gamma + delta) - gammaln(1 + delta) + gammaln(1 + delta + k) - gammaln(gamma + delta + k)
        return np.asarray(delta / eps * -expm1(a), dtype=np.float64)
    d1 = digamma(1 + delta + k) - digamma(1 + delta)
    if eps == 0.0:
        return np.asarray(delta * d1, dtype=np.float64)
    d2 = polygamma(1, 1 + delta) - polygamma(1, 1 + delta + k)
    a = -eps * d1 + eps**2 / 2 * d2
    return np.asarray(delta / eps * -expm1(a), dtype=np.float64)


class BetaGeoBetaBinom(MLEModel):
    """BG/BB model: ``alpha, beta`` (purchase probability) and ``gamma, delta`` (drop-out)."""

    _param_names: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma", "delta")

    @staticmethod
    def _prepare(frequency: Any, recency: Any, n_periods: Any, weights: Any) -> tuple[FloatArray, ...]:
        x, tx, n = _bgbb_arrays(frequency, recency, n_periods, fit=True)
        w = weights_array(weights, "frequency", x)
        (x, tx, n), w = compress_rows([x, tx, n], w)
        if not np.any(x > 0):
            raise ValidationError(
                "frequency", "no customer made a purchase: the data cannot identify the BG/BB model", 0
            )
        if not np.any(n > 0):
            raise ValidationError("n_periods", "no customer had a transaction opportunity", 0)
        return x, tx, n, w

    @staticmethod
    def _log_terms(
        params: FloatArray, x: FloatArray, tx: FloatArray, n: FloatArray
    ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """Log of the alive term (rows) and of the died-after-period-t_x+i terms (rows x i)."""
        al, be, ga, de = params
        base = betaln(al, be) + betaln(ga, de)
        log_alive = betaln(al + x, be + n - x) + betaln(ga, de + n) - base
        width = int(np.max(n - tx)) if n.size else 0
        i = np.arange(max(width, 1), dtype=np.float64)[None, :]
        valid = i < (n - tx)[:, None]
        xc, tc = x[:, None], tx[:, None]
        log_dead = np.where(valid, betaln(al + xc, be + tc - xc + i) + betaln(ga + 1, de + tc + i) - base, -np.inf)
        return np.asarray(log_alive, dtype=np.float64), np.asarray(log_dead, dtype=np.float64), valid

    def _loglik(
        self, params: FloatArray, x: FloatArray, tx: FloatArray, n: FloatArray, w: FloatArray
    ) -> tuple[float, FloatArray]:
        al, be, ga, de = (float(c) for c in params)
        total = 0.0
        grad = np.zeros(4)
        width = max(int(np.max(n - tx)), 1)
        step = max(1, _CHUNK // width)
        psi_ab, psi_a, psi_b = digamma(al + be), digamma(al), digamma(be)
        psi_gd, psi_g, psi_d = digamma(ga + de), digamma(ga), digamma(de)
        for s0 in range(0, x.size, step):
            sl = slice(s0, s0 + step)
            xs, ts, ns, ws = x[sl], tx[sl], n[sl], w[sl]
            log_alive, log_dead, valid = self._log_terms(params, xs, ts, ns)
            top = np.maximum(log_alive, log_dead.max(axis=1))
            ea = np.exp(log_alive - top)
            ed = np.exp(log_dead - top[:, None])
            norm = ea + ed.sum(axis=1)
            total += float(dot(ws, top + np.log(norm)))
            pa = ea / norm  # share of the alive term
            pd = ed / norm[:, None]  # shares of the dead terms
            xc, tc = xs[:, None], ts[:, None]
            i = np.arange(log_dead.shape[1], dtype=np.float64)[None, :]
            safe = np.where(valid, 1.0, 0.0)
            # d/d alpha, beta: alive term uses (x, n - x), dead terms (x, t_x - x + i)
            psi_ax = digamma(al + xs)
            g_al = pa * (psi_ax - digamma(al + be + ns)) + (pd * (psi_ax[:, None] - digamma(al + be + tc + i))).sum(1)
            g_be = pa * (digamma(be + ns - xs) - digamma(al + be + ns)) + (
                pd * (digamma(be + tc - xc + i * safe) - digamma(al + be + tc + i))
            ).sum(1)
            g_ga = pa * (psi_g - digamma(ga + de + ns)) + (pd * (digamma(ga + 1) - digamma(ga + de + tc + i + 1))).sum(
                1
            )
            g_de = pa * (digamma(de + ns) - digamma(ga + de + ns)) + (
                pd * (digamma(de + tc + i) - digamma(ga + de + tc + i + 1))
            ).sum(1)
            wsum = ws.sum()
            grad[0] += float(dot(ws, g_al)) + wsum * (psi_ab - psi_a)
            grad[1] += float(dot(ws, g_be)) + wsum * (psi_ab - psi_b)
            grad[2] += float(dot(ws, g_ga)) + wsum * (psi_gd - psi_g)
            grad[3] += float(dot(ws, g_de)) + wsum * (psi_gd - psi_d)
        return total, grad

    def fit(
        self,
        frequency: Any,
        recency: Any,
        n_periods: Any,
        weights: Any = None,
        *,
        initial_params: Mapping[str, float] | None = None,
    ) -> BetaGeoBetaBinom:
        """Maximum-likelihood fit; ``weights`` counts the customers behind each row."""
        x, tx, n, w = self._prepare(frequency, recency, n_periods, weights)
        start = self._start(initial_params, np.ones(4))
        self._maximize(lambda p: self._loglik(p, x, tx, n, w), start, float(w.sum()))
        return self

    def log_likelihood_of(self, frequency: Any, recency: Any, n_periods: Any, weights: Any = None) -> float:
        """Total log-likelihood of the given data under the current parameters."""
        params = self._require_params()
        x, tx, n, w = self._prepare(frequency, recency, n_periods, weights)
        return self._loglik(params, x, tx, n, w)[0]

    # ------------------------------------------------------------- predictions
    def _log_l(self, params: FloatArray, x: FloatArray, tx: FloatArray, n: FloatArray) -> FloatArray:
        flat = [v.reshape(-1) for v in (x, tx, n)]
        log_alive, log_dead, _ = self._log_terms(params, *flat)
        both = np.concatenate([log_alive[:, None], log_dead], axis=1)
        top = both.max(axis=1, keepdims=True)
        return np.asarray(top[:, 0] + np.log(np.exp(both - top).sum(axis=1)), dtype=np.float64).reshape(x.shape)

    def probability_alive(self, frequency: Any, recency: Any, n_periods: Any) -> float | FloatArray:
        """P(alive in period n+1 | x, t_x, n), as in Fader, Hardie and Shang (2010)."""
        params = self._require_params()
        al, be, ga, de = params
        x, tx, n = _bgbb_arrays(frequency, recency, n_periods, fit=False)
        log_num = betaln(al + x, be + n - x) - betaln(al, be) + betaln(ga, de + n + 1) - betaln(ga, de)
        return result(np.asarray(np.exp(log_num - self._log_l(params, x, tx, n)), dtype=np.float64))

    def expected_purchases(self, n: Any) -> float | FloatArray:
        """E[X(n)]: expected purchases of a new customer in the first ``n`` periods."""
        al, be, ga, de = self._require_params()
        k = as_array("n", n)
        check_nonnegative("n", k)
        check_integer("n", k)
        return result(al / (al + be) * _sum_survival(ga, np.full(k.shape, de), k))

    def conditional_expected_purchases(
        self, n_future: Any, frequency: Any, recency: Any, n_periods: Any
    ) -> float | FloatArray:
        """Expected purchases in periods n+1 .. n+n_future given (x, t_x, n)."""
        params = self._require_params()
        al, be, ga, de = params
        k = as_array("n_future", n_future)
        check_nonnegative("n_future", k)
        check_integer("n_future", k)
        x, tx, n = _bgbb_arrays(frequency, recency, n_periods, fit=False)
        try:
            k, x, tx, n = np.broadcast_arrays(k, x, tx, n)
        except ValueError:
            raise ValidationError("n_future", "shape does not broadcast with the customer data", k.shape) from None
        log_alive_n = betaln(al + x, be + n - x) - betaln(al, be) + betaln(ga, de + n) - betaln(ga, de)
        p_alive_n = np.exp(log_alive_n - self._log_l(params, x, tx, n))
        mean_p = (al + x) / (al + be + n)
        return result(np.asarray(p_alive_n * mean_p * _sum_survival(ga, de + n, k), dtype=np.float64))

    def probability_of_purchases(self, x: Any, n: Any) -> float | FloatArray:
        """P(X(n) = x): probability that a new customer buys in exactly ``x`` of the first ``n`` periods."""
        al, be, ga, de = self._require_params()
        xx = as_array("x", x)
        nn = as_array("n", n)
        for name, arr in (("x", xx), ("n", nn)):
            check_nonnegative(name, arr)
            check_integer(name, arr)
        xx, nn = np.broadcast_arrays(xx, nn)
        base = betaln(al, be) + betaln(ga, de)

        def log_choose(a: FloatArray, b: FloatArray) -> FloatArray:
            return np.asarray(gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1), dtype=np.float64)

        ok = xx <= nn
        xs, ns = np.where(ok, xx, 0.0), np.where(ok, nn, 0.0)
        alive = log_choose(ns, xs) + betaln(al + xs, be + ns - xs) + betaln(ga, de + ns) - base
        width = int(np.max(ns)) if ns.size else 0
        i = np.arange(max(width, 1), dtype=np.float64)
        xf, nf = xs.reshape(-1, 1), ns.reshape(-1, 1)
        valid = (i[None, :] >= xf) & (i[None, :] < nf)
        ii = np.where(valid, i[None, :], xf)
        dead = np.where(
            valid, log_choose(ii, xf) + betaln(al + xf, be + ii - xf) + betaln(ga + 1, de + ii) - base, -np.inf
        )
        both = np.concatenate([alive.reshape(-1, 1), dead], axis=1)
        top = both.max(axis=1, keepdims=True)
        val = np.exp(top[:, 0]) * np.exp(both - top).sum(axis=1)
        return result(np.asarray(np.where(ok, val.reshape(xx.shape), 0.0), dtype=np.float64))
