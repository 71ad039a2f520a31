"""Numerical kernels: every quantity is formed in log space or from a cancellation-free form.

Two kernels carry the hard parts:

* ``bgnbd_future`` - the BG/NBD expected number of purchases of a living customer,
  ``E_p[(1 - (alpha / (alpha + p t))**r) / p]`` with ``p ~ Beta(a, b)``. The textbook form
  ``(1 - (alpha/(alpha+t))**r * 2F1(r, b; a+b-1; t/(alpha+t)))`` overflows once ``r`` (which
  grows with the customer's frequency) is large, because the 2F1 is then astronomically
  large and the power astronomically small. We use Euler's transformation, which folds the
  power into the function: ``(1-z)**(a-1) * 2F1(a+b-1-r, a-1; a+b-1; z)``; Pfaff's
  transformation ``2F1(r, a-1; a+b-1; -t/alpha)`` is the second choice. Both are
  ``(a+b-1)/(a-1) * (1 - something)`` and cancel badly when the result is far below
  ``(a+b-1)/(a-1)`` (short horizons, huge ``b``): there a series in the moments of ``p``
  converges fast and is used first. Adaptive quadrature of the defining integral is the
  last resort. A candidate must lie inside the proven bounds ``[h(1), r t / alpha]`` and
  have a small estimated rounding error to be accepted.

* ``pareto_dead_integral`` - the Pareto/NBD likelihood written without differences of
  hypergeometric functions::

      L = C * [ (alpha+T)**-(r+x) * (beta+T)**-s
                + s * Integral_{t_x}^{T} (alpha+tau)**-(r+x) * (beta+tau)**-(s+1) dtau ]

  (the second term is "the customer died at tau, between the last purchase and T"). The
  integrand is positive, so nothing cancels. With ``v = log(g + tau)``, ``g = min(alpha,
  beta)``, its log is concave in ``v`` and analytic in a strip of half-width pi, so
  Gauss-Legendre converges geometrically. We truncate the range where the integrand has
  fallen by ``exp(-45)`` and pick 16 to 256 nodes per row from the decay over the range.
  The same nodes give the gradient, since the limits do not depend on the parameters.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings

import numpy as np
import numpy.typing as npt
from scipy.integrate import IntegrationWarning, quad
from scipy.special import betaln, hyp2f1, log_expit, logsumexp, polygamma

from crmkit.value.models._validation import FloatArray

__all__ = [
    "bgnbd_future",
    "expm1_ratio",
    "gauss_legendre01",
    "pareto_dead_integral",
    "pareto_purchase_integral",
]

_GL_SIZES = (8, 12, 16, 24, 32, 64, 128, 256)
# Largest half-range decay ``lambda`` (the integrand's log falls by at most 2 lambda over the
# range) and largest range length in ``v`` each rule resolves to about 1e-14: the error of
# an n-point rule is about (lambda/2)**(2n)/(2n)! for the exponential decay, and rho**(-2n)
# with rho = b + sqrt(1 + b**2), b = 2 pi / length, for the singularities at distance pi.
_LAMBDA_LIMITS = (2.0, 5.0, 9.0, 17.0, 26.0, 70.0, 160.0)
_RANGE_LIMITS = (2.0, 3.5, 5.0, 8.0, 12.0, 30.0, 60.0)
_CUT = 45.0  # the dropped tail of the Pareto/NBD death integral is below exp(-45) of it
_CHUNK = 1 << 20  # rows x nodes per block, to bound memory on large data


@functools.cache
def gauss_legendre01(n: int) -> tuple[FloatArray, FloatArray]:
    """Gauss-Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(n)
    return (x + 1) / 2, w / 2


def expm1_ratio(c: FloatArray | float, length: FloatArray) -> FloatArray:
    """``(1 - exp(-c L)) / c``, continuous at ``c = 0`` where it equals ``L``."""
    c_arr = np.asarray(c, dtype=np.float64)
    cl = c_arr * length
    small = np.abs(cl) < 1e-8
    safe_c = np.where(small, 1.0, c_arr)
    with np.errstate(over="ignore"):
        general = -np.expm1(-cl) / safe_c
    return np.asarray(np.where(small, length * (1 - cl / 2), general), dtype=np.float64)


# --------------------------------------------------------------------------- BG/NBD
def bgnbd_future(
    a: float,
    b_post: FloatArray,
    r_post: FloatArray,
    alpha_post: FloatArray,
    t: FloatArray,
    b_minus_r: float,
) -> FloatArray:
    """``E[(1 - (alpha'/(alpha' + p t))**r') / p]`` for ``p ~ Beta(a, b')``; arrays broadcast.

    This is the expected number of purchases in ``(0, t]`` of a BG/NBD customer who is alive
    at time 0 with gamma(r', alpha') purchase-rate and beta(a, b') drop-out posteriors.
    ``b_minus_r`` is ``b' - r'`` given exactly (it does not depend on the frequency).
    """
    if abs(a - 1.0) < 1e-5:
        # The closed forms divide by (a - 1); the function is smooth in a, so average the
        # two sides (error O(1e-10), far below the data's precision).
        lo = bgnbd_future(1.0 - 2e-5, b_post, r_post, alpha_post, t, b_minus_r)
        hi = bgnbd_future(1.0 + 2e-5, b_post, r_post, alpha_post, t, b_minus_r)
        return (lo + hi) / 2
    bp, rp, al, tt = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(b_post, r_post, alpha_post, t))
    out = np.zeros(bp.shape, dtype=np.float64)
    todo = tt > 0
    if not np.any(todo):
        return out
    bp, rp, al, tt = bp[todo], rp[todo], al[todo], tt[todo]
    q = tt / al
    lq = np.log1p(q)
    c = (a - 1.0) + bp
    scale = np.abs(c / (a - 1.0))  # the closed forms are scale * (1 - something)
    eps = np.finfo(np.float64).eps
    with np.errstate(all="ignore"):
        lower = -np.expm1(-rp * lq) * (1 - 1e-9)
        upper = rp * q
        if a > 1:
            upper = np.minimum(upper, c / (a - 1.0))
        upper = upper * (1 + 1e-9)

        def good(v: FloatArray, rel_err: FloatArray, lo: FloatArray, hi: FloatArray) -> npt.NDArray[np.bool_]:
            return np.asarray(np.isfinite(v) & (v >= lo) & (v <= hi) & (rel_err < 1e-8), dtype=np.bool_)

        val = np.full(q.shape, np.nan)
        # 1. moment series: h(p) = sum_k (-1)^k (r')_(k+1) q^(k+1)/(k+1)! p^k with E[p^k] of the
        #    beta law. Used where its terms shrink at least geometrically (short horizons, or
        #    a drop-out probability concentrated near 0), exactly where 2. and 3. cancel.
        k_max = 60
        ratio_bound = (rp + k_max) * q * (a + k_max) / (2 * (a + bp))
        series = ratio_bound < 0.5
        if np.any(series):
            rs, qs, bs = rp[series], q[series], bp[series]
            term = rs * qs
            total = term.copy()
            for k in range(k_max):
                term = -term * (rs + k + 1) * qs / (k + 2) * (a + k) / (a + bs + k)
                total += term
            val[series] = total
        # 2. Euler transformation
        need = ~series
        if np.any(need):
            z = q[need] / (1 + q[need])
            f = hyp2f1((a - 1.0) + b_minus_r, a - 1.0, c[need], z)
            lu = -(a - 1.0) * lq[need] + np.log(f)
            v2 = c[need] / (a - 1.0) * -np.expm1(lu)
            err = 16 * eps * scale[need] * np.exp(lu) * (1 + np.abs((a - 1.0) * lq[need]) + np.abs(np.log(f)))
            val[need] = np.where(good(v2, err / np.abs(v2), lower[need], upper[need]), v2, np.nan)
        bad = np.isnan(val)
        # 3. Pfaff transformation
        if np.any(bad):
            f2 = hyp2f1(rp[bad], a - 1.0, c[bad], -q[bad])
            v3 = c[bad] / (a - 1.0) * (1 - f2)
            err = 16 * eps * scale[bad] * (1 + np.abs(f2))
            val[bad] = np.where(good(v3, err / np.abs(v3), lower[bad], upper[bad]), v3, np.nan)
            bad = np.isnan(val)
    # 4. adaptive quadrature of the defining integral (rare corners)
    for i in np.flatnonzero(bad):
        val[i] = _bgnbd_future_quad(a, float(bp[i]), float(rp[i]), float(q[i]))
    out[todo] = val
    return out


def _bgnbd_future_quad(a: float, bp: float, rp: float, q: float) -> float:
    """The BG/NBD future-purchases integral by adaptive quadrature in ``u = log p``."""
    lb = float(betaln(a, bp))

    def integrand(u: float) -> float:
        p = math.exp(u)
        # (1 - (1 + p q)^-r') / p, the expected purchases of a customer with drop-out p
        h = -math.expm1(-rp * math.log1p(p * q)) / p if p > 1e-300 else rp * q
        return math.exp(a * u + (bp - 1) * math.log1p(-min(p, 1 - 1e-300)) - lb) * h

    mode = math.log(a / (a + bp))
    sd = math.sqrt(max(float(polygamma(1, a) - polygamma(1, a + bp)), 1e-300))
    cuts = sorted({mode - 20 * sd, mode, min(mode + 20 * sd, 0.0)})
    cuts = [c for c in cuts if c <= 0.0]
    edges = [-math.inf, *cuts, 0.0]
    total = 0.0
    with warnings.catch_warnings():
        # QUADPACK may report that roundoff stops it short of 1e-10; the result is still
        # accurate to far better than the inputs' precision
        warnings.simplefilter("ignore", IntegrationWarning)
        for lo, hi in itertools.pairwise(edges):
            if hi > lo:
                total += quad(integrand, lo, hi, limit=200, epsabs=0.0, epsrel=1e-10)[0]
    return total


# ------------------------------------------------------------------------ Pareto/NBD
def _rule_index(lam: FloatArray, span: FloatArray, precise: bool) -> npt.NDArray[np.int64]:
    idx = np.zeros(lam.shape, dtype=np.int64)
    for limit in _LAMBDA_LIMITS:
        idx += lam > limit
    idx_range = np.zeros(span.shape, dtype=np.int64)
    for limit in _RANGE_LIMITS:
        idx_range += span > limit
    idx = np.maximum(idx, idx_range) + (1 if precise else 0)
    return np.asarray(np.minimum(idx, len(_GL_SIZES) - 1), dtype=np.int64)


def pareto_dead_integral(
    m: FloatArray,
    n: float,
    alpha: float,
    beta: float,
    tx: FloatArray,
    T: FloatArray,
    *,
    gradient: bool,
    precise: bool = False,
) -> tuple[FloatArray, FloatArray | None]:
    """``log Integral_{tx}^{T} (alpha+tau)**-m (beta+tau)**-n dtau`` per row.

    With ``gradient=True`` also returns, per row, the means of ``log(alpha+tau)``,
    ``1/(alpha+tau)``, ``log(beta+tau)`` and ``1/(beta+tau)`` under the normalised
    integrand (shape ``(4, rows)``): the derivatives of the log-integral with respect to
    ``m``, ``alpha``, ``n`` and ``beta`` follow from them. Rows with ``T == tx`` give
    ``-inf`` and zero means.
    """
    g = min(alpha, beta)
    base0 = g + tx
    span = np.log1p((T - tx) / base0)
    rate0 = m * base0 / (alpha + tx) + n * base0 / (beta + tx) - 1
    with np.errstate(divide="ignore"):
        cut = np.where(rate0 > 0, _CUT / np.where(rate0 > 0, rate0, 1.0), np.inf)
    veff = np.minimum(span, cut)
    empty = veff <= 0
    veff = np.where(empty, 1.0, veff)
    lam = np.maximum(m + n - 1, 1.0) * veff / 2
    rule = _rule_index(lam, veff, precise)
    log_i = np.empty(m.shape)
    moments = np.empty((4, m.size)) if gradient else None
    alpha_is_base = alpha <= beta
    # layout (nodes, rows): numpy reduces over the short node axis far faster this way
    for ri in np.unique(rule):
        rows = np.flatnonzero(rule == ri)
        nodes, weights = gauss_legendre01(_GL_SIZES[ri])
        col_nodes = nodes[:, None]
        log_w = np.log(weights)[:, None]
        step = max(1, _CHUNK // nodes.size)
        for start in range(0, rows.size, step):
            sel = rows[start : start + step]
            mm = m[sel]
            b0 = base0[sel]
            u = col_nodes * veff[sel]
            offset = b0 * np.expm1(u)  # tau - tx
            log_b0u = np.log(b0) + u  # log(g + tau)
            if alpha_is_base:
                a_tau = b0 + offset
                la = log_b0u
                b_tau = (beta + tx[sel]) + offset
                lb = np.log(b_tau)
                ell = (1 - mm) * la - n * lb + log_w
            else:
                b_tau = b0 + offset
                lb = log_b0u
                a_tau = (alpha + tx[sel]) + offset
                la = np.log(a_tau)
                ell = (1 - n) * lb - mm * la + log_w
            top = ell.max(axis=0)
            p = np.exp(ell - top)
            total = p.sum(axis=0)
            log_i[sel] = top + np.log(total) + np.log(veff[sel])
            if moments is not None:
                moments[0, sel] = np.einsum("ij,ij->j", p, la) / total
                moments[1, sel] = np.einsum("ij,ij->j", p, 1 / a_tau) / total
                moments[2, sel] = np.einsum("ij,ij->j", p, lb) / total
                moments[3, sel] = np.einsum("ij,ij->j", p, 1 / b_tau) / total
    log_i[empty] = -np.inf
    if moments is not None:
        moments[:, empty] = 0.0
    return log_i, moments


@functools.cache
def _tanh_sinh(step: float, half_range: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    u = np.arange(-half_range, half_range + step / 2, step)
    s = np.pi / 2 * np.sinh(u)
    log_left = log_expit(2 * s)  # log of p / P
    log_right = log_expit(-2 * s)  # log of (P - p) / P
    log_jac = math.log(2 * step) + log_left + log_right + np.log(np.pi / 2 * np.cosh(u))
    return log_left, log_right, log_jac


def pareto_purchase_integral(n: FloatArray, r: float, s: float, alpha: float, beta: float, t: FloatArray) -> FloatArray:
    """``log Integral_0^P p**n (1-p)**(r+s-1) (beta + (alpha-beta) p)**-(s+1) dp``, ``P = t/(alpha+t)``.

    This is the "died before t" part of the Pareto/NBD P(X(t) = n) after the substitution
    ``p = tau / (alpha + tau)``. Tanh-sinh quadrature copes with the endpoint behaviour
    (``(1-p)**(r+s-1)`` may be singular when ``t >> alpha``). Needs ``t > 0``.
    """
    log_left, log_right, log_jac = _tanh_sinh(1.0 / 32.0, 4.5)
    n_, t_ = np.broadcast_arrays(np.asarray(n, dtype=np.float64), np.asarray(t, dtype=np.float64))
    flat_n, flat_t = n_.reshape(-1, 1), t_.reshape(-1, 1)
    log_p_max = np.log(flat_t) - np.log(alpha + flat_t)  # log P
    log_one_minus_p_max = -np.log1p(flat_t / alpha)  # log(1 - P)
    log_p = log_p_max + log_left[None, :]
    log_q = np.logaddexp(log_one_minus_p_max, log_p_max + log_right[None, :])  # log(1 - p)
    log_mix = np.logaddexp(math.log(beta) + log_q, math.log(alpha) + log_p)
    ell = flat_n * log_p + (r + s - 1) * log_q - (s + 1) * log_mix + log_p_max + log_jac[None, :]
    return np.asarray(logsumexp(ell, axis=1).reshape(n_.shape), dtype=np.float64)
