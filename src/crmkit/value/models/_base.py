"""Maximum-likelihood machinery shared by every model.

Each model supplies its total log-likelihood and its analytic gradient in the natural
parameters. The optimiser works on ``theta = log(param / start)``, which keeps every
parameter positive and makes the problem scale-free (a time scale in days or weeks only
moves ``log(alpha)``). BFGS does the bulk of the work; a few Newton steps with a
Hessian taken by forward differences of the analytic gradient then polish the optimum
to the last digits, and the same Hessian gives the covariance matrix (inverse observed
information).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, NoReturn, TypeVar

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtri

from crmkit._errors import CRMError, ValidationError
from crmkit.value.models._validation import FloatArray

__all__ = ["ConvergenceWarning", "MLEModel", "NotFittedError"]

_M = TypeVar("_M", bound="MLEModel")

# log-parameters are bounded to start * exp(+-_BOUND); beyond _DIVERGED the estimate is
# running off to 0 or infinity, i.e. the data cannot pin that parameter down.
_BOUND = 30.0
_DIVERGED = 25.0
_HESSIAN_STEP = 1e-6
_UNDETERMINED = 10.0  # standard error of log(parameter) beyond which the data say nothing


class NotFittedError(CRMError, RuntimeError):
    """A model was used before ``fit`` (or before parameters were given)."""

    def __init__(self, model: str, what: str) -> None:
        self.model = model
        super().__init__(f"{model} {what}")


class ConvergenceWarning(UserWarning):
    """The optimiser stopped without meeting its tolerance; check the estimates."""


@dataclass(frozen=True)
class FitSummary:
    """What a fit leaves behind besides the parameters."""

    log_likelihood: float
    covariance: FloatArray
    n_observations: float
    converged: bool
    evaluations: int  # of the log-likelihood of all rows (a sample's are not counted)


Objective = Callable[[FloatArray], tuple[float, FloatArray]]
Curvature = Callable[[FloatArray], tuple[float, FloatArray, FloatArray]]


class MLEModel:
    """Base class: parameters, fit bookkeeping, standard errors, information criteria."""

    _param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, penalizer_coef: float = 0.0) -> None:
        if (
            isinstance(penalizer_coef, bool)
            or not isinstance(penalizer_coef, (int, float))
            or not math.isfinite(penalizer_coef)
            or penalizer_coef < 0
        ):
            raise ValidationError("penalizer_coef", "must be a finite number >= 0", penalizer_coef)
        #: L2 penalty on the parameters: the fit minimises -LL/n + penalizer_coef * sum(params**2).
        self.penalizer_coef = float(penalizer_coef)
        self._params: FloatArray | None = None
        self._summary: FitSummary | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_params(cls: type[_M], **params: float) -> _M:
        """A model with known parameters (e.g. published ones): predicts, but has no fit."""
        model = cls()
        model._params = model._check_params(params, "params")
        return model

    def _check_params(self, params: Mapping[str, float], field: str) -> FloatArray:
        names = self._param_names
        if set(params) != set(names):
            raise ValidationError(field, f"expected exactly the parameters {', '.join(names)}", dict(params))
        values = np.array([float(params[n]) for n in names], dtype=np.float64)
        bad = ~np.isfinite(values) | (values <= 0)
        if np.any(bad):
            name = names[int(np.flatnonzero(bad)[0])]
            raise ValidationError(field, f"parameter {name} must be a finite number > 0", params[name])
        return values

    # ------------------------------------------------------------------- accessors
    def _require_params(self) -> FloatArray:
        if self._params is None:
            raise NotFittedError(type(self).__name__, "is not fitted: call fit() first")
        return self._params

    def _require_fit(self) -> FitSummary:
        self._require_params()
        if self._summary is None:
            raise NotFittedError(
                type(self).__name__, "was built from parameters, not fitted: it has no likelihood or errors"
            )
        return self._summary

    @property
    def is_fitted(self) -> bool:
        return self._params is not None

    @property
    def params(self) -> dict[str, float]:
        """The estimates, as plain floats keyed by the papers' names."""
        values = self._require_params()
        return {n: float(v) for n, v in zip(self._param_names, values, strict=True)}

    @property
    def log_likelihood(self) -> float:
        """Total log-likelihood of the fitted data at the optimum (not a mean)."""
        return self._require_fit().log_likelihood

    @property
    def n_observations(self) -> float:
        """Number of customers (sum of the weights) the model was fitted on."""
        return self._require_fit().n_observations

    @property
    def converged(self) -> bool:
        return self._require_fit().converged

    @property
    def covariance(self) -> FloatArray:
        """Covariance matrix of the estimates (inverse observed information), in ``params`` order."""
        return np.array(self._require_fit().covariance, dtype=np.float64)

    @property
    def standard_errors(self) -> dict[str, float]:
        cov = self._require_fit().covariance
        se = np.sqrt(np.diag(cov))
        return {n: float(v) for n, v in zip(self._param_names, se, strict=True)}

    def confidence_intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        """Wald intervals built on the log scale (so they stay positive): est * exp(+-z se/est)."""
        if not (isinstance(level, (int, float)) and 0 < level < 1):
            raise ValidationError("level", "must be strictly between 0 and 1", level)
        z = float(ndtri(0.5 + level / 2))
        out: dict[str, tuple[float, float]] = {}
        se = self.standard_errors
        for name, est in self.params.items():
            spread = math.exp(z * se[name] / est) if np.isfinite(se[name]) else math.inf
            out[name] = (est / spread, est * spread)
        return out

    @property
    def aic(self) -> float:
        return 2.0 * len(self._param_names) - 2.0 * self.log_likelihood

    @property
    def bic(self) -> float:
        return len(self._param_names) * math.log(self.n_observations) - 2.0 * self.log_likelihood

    def __repr__(self) -> str:
        if self._params is None:
            return f"{type(self).__name__}(not fitted)"
        if self.penalizer_coef:
            inner = ", ".join(f"{n}={v:.6g}" for n, v in self.params.items())
            return f"{type(self).__name__}({inner}, penalizer_coef={self.penalizer_coef:g})"
        inner = ", ".join(f"{n}={v:.6g}" for n, v in self.params.items())
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------------------ fit
    def _start(self, initial_params: Mapping[str, float] | None, default: FloatArray) -> FloatArray:
        if initial_params is None:
            return default
        return self._check_params(initial_params, "initial_params")

    def _maximize(
        self,
        loglik: Callable[[FloatArray], tuple[float, FloatArray]],
        start: FloatArray,
        n_obs: float,
        *,
        final: Callable[[FloatArray], tuple[float, FloatArray]] | None = None,
        sample: tuple[Callable[[FloatArray], tuple[float, FloatArray]], float] | None = None,
        curvature: Callable[[FloatArray], tuple[float, FloatArray, FloatArray]] | None = None,
    ) -> None:
        """Maximise ``loglik`` (total LL and its gradient in natural params) from ``start``.

        ``final``, when given, is a more precise version of ``loglik`` used for the
        polishing Newton steps and the reported optimum (the Pareto/NBD uses it).

        ``sample``, when given, is ``(loglik of a random sample of the rows, its weight)``:
        BFGS runs on the sample, whose optimum lies within a few standard errors of the
        full one, and Newton steps on all rows (with a Hessian from differences of the
        analytic gradient) finish the job in a handful of full evaluations. Should they
        not converge, BFGS on all rows takes over from there.

        ``curvature``, when given, is ``loglik`` with its analytic Hessian: the Newton steps
        then use it instead of finite differences (and the covariance too).
        """
        scale = start.copy()
        evaluations = 0
        penalty = self.penalizer_coef

        def make(
            fn: Callable[[FloatArray], tuple[float, FloatArray]], n_obs: float = n_obs, *, counted: bool = True
        ) -> Objective:
            last: list[tuple[FloatArray, tuple[float, FloatArray]]] = []

            def objective(theta: FloatArray) -> tuple[float, FloatArray]:
                nonlocal evaluations
                if last and np.array_equal(last[0][0], theta):
                    return last[0][1]
                evaluations += counted  # evaluations of all rows (not of the sample)
                # the box keeps exp() finite; past its walls the parameter is not identified
                inside = np.clip(theta, -_BOUND, _BOUND)
                p = scale * np.exp(inside)
                ll, grad = fn(p)
                if not np.isfinite(ll) or not np.all(np.isfinite(grad)):
                    out: tuple[float, FloatArray] = (math.inf, np.zeros_like(theta))
                else:
                    # outside the box, a gentle slope leads back in
                    outside = theta - inside
                    out = (-ll / n_obs + float(np.sum(outside**2)), -(grad * p) / n_obs + 2 * outside)
                    if penalty:  # L2 penalty on the natural parameters, as in lifetimes
                        out = (out[0] + penalty * float(np.sum(p**2)), out[1] + 2 * penalty * p**2)
                last[:] = [(theta.copy(), out)]
                return out

            return objective

        def make_exact(fn: Callable[[FloatArray], tuple[float, FloatArray, FloatArray]]) -> Curvature:
            def objective(theta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
                nonlocal evaluations
                evaluations += 1
                inside = np.clip(theta, -_BOUND, _BOUND)
                p = scale * np.exp(inside)
                ll, gp, hp = fn(p)
                if not (np.isfinite(ll) and np.all(np.isfinite(gp)) and np.all(np.isfinite(hp))):
                    return math.inf, np.zeros_like(theta), np.eye(theta.size)
                outside = theta - inside
                free = (outside == 0).astype(np.float64)  # clipped coordinates do not move p
                gp, hp = gp * free, hp * np.outer(free, free)
                f = -ll / n_obs + float(np.sum(outside**2))
                g = -(gp * p) / n_obs + 2 * outside
                h = -(hp * np.outer(p, p) + np.diag(gp * p)) / n_obs + np.diag(2.0 * (1.0 - free))
                if penalty:
                    f += penalty * float(np.sum(p**2))
                    g = g + 2 * penalty * p**2 * free
                    h = h + np.diag(4 * penalty * p**2 * free)
                return f, g, h

            return objective

        coarse = make(loglik)
        fine = make(final) if final is not None else coarse
        exact = None if curvature is None else make_exact(curvature)

        def polish(theta: FloatArray) -> tuple[FloatArray, float, FloatArray, FloatArray]:
            if exact is not None:
                out = self._newton_exact(exact, theta)
                if out is not None:
                    return out
            return self._newton_polish(fine, theta)

        k = start.size
        theta = np.zeros(k)
        first = coarse if sample is None else make(sample[0], sample[1], counted=False)
        f0, _ = first(theta)
        if not np.isfinite(f0):
            raise ValidationError("initial_params", "the log-likelihood is not finite at the start", self._named(start))
        done = False
        if sample is not None:
            res = minimize(first, theta, jac=True, method="BFGS", options={"maxiter": 3000, "gtol": 1e-5})
            near = np.asarray(res.x, dtype=np.float64)
            if np.all(np.abs(near) < _DIVERGED):  # else the full data must say whether it is identified
                theta = near
                theta, f, grad, hess = polish(theta)
                done = bool(np.max(np.abs(grad)) < 1e-5)
        if not done:
            # Dense BFGS: with 2 to 4 parameters its algebra is trivial and, unlike L-BFGS-B, it
            # makes no BLAS calls that BLAS hands to its thread pool (very costly on a busy machine).
            res = minimize(coarse, theta, jac=True, method="BFGS", options={"maxiter": 3000, "gtol": 1e-5})
            theta = np.asarray(res.x, dtype=np.float64)
            self._check_identified(scale * np.exp(theta), theta)
            theta, f, grad, hess = polish(theta)
        self._check_identified(scale * np.exp(theta), theta)
        converged = bool(np.max(np.abs(grad)) < 1e-5)
        if not converged:
            warnings.warn(
                f"{type(self).__name__}: the optimiser stopped with gradient {np.max(np.abs(grad)):.2e}; "
                "the estimates may be inaccurate",
                ConvergenceWarning,
                stacklevel=3,
            )
        params = scale * np.exp(theta)
        cov = self._covariance(hess * n_obs, params)
        log_likelihood = float(-f * n_obs)
        if penalty:  # report the log-likelihood itself, without the penalty
            log_likelihood = float((final or loglik)(params)[0])
        self._params = params
        self._summary = FitSummary(
            log_likelihood=log_likelihood,
            covariance=cov,
            n_observations=float(n_obs),
            converged=converged,
            evaluations=evaluations,
        )

    def _named(self, values: FloatArray) -> dict[str, float]:
        return {n: float(v) for n, v in zip(self._param_names, values, strict=True)}

    def _check_identified(self, params: FloatArray, theta: FloatArray) -> None:
        far = np.abs(theta) > _DIVERGED
        if np.any(far):
            i = int(np.flatnonzero(far)[0])
            direction = "infinity" if theta[i] > 0 else "zero"
            raise ValidationError(
                self._param_names[i],
                f"the data cannot identify the {type(self).__name__} model: parameter "
                f"{self._param_names[i]} runs off to {direction} (estimate {params[i]:.3g})"
                + self._penalty_hint(theta[i] > 0),
                self._named(params),
            )

    def _penalty_hint(self, large: bool) -> str:
        """Advice for data that leave a parameter free: an L2 penalty reins in large values."""
        if large and not self.penalizer_coef:
            return "; a penalizer_coef > 0 (e.g. 0.001) keeps the parameters finite"
        return ""

    @staticmethod
    def _hessian(fn: Objective, theta: FloatArray, grad: FloatArray) -> FloatArray:
        """Forward differences of the analytic gradient (relative error ~1e-6, ample for errors)."""
        k = theta.size
        hess = np.empty((k, k))
        for j in range(k):
            step = np.zeros(k)
            step[j] = _HESSIAN_STEP
            _, gp = fn(theta + step)
            hess[:, j] = (gp - grad) / _HESSIAN_STEP
        return np.asarray((hess + hess.T) / 2, dtype=np.float64)

    @staticmethod
    def _newton_exact(fn: Curvature, theta: FloatArray) -> tuple[FloatArray, float, FloatArray, FloatArray] | None:
        """Newton's method with the analytic Hessian; None if it is not positive definite at the start."""
        f, grad, hess = fn(theta)
        if not np.isfinite(f):
            return None
        for _ in range(40):
            try:
                chol = np.linalg.cholesky(hess)
            except np.linalg.LinAlgError:
                return None
            if np.max(np.abs(grad)) < 1e-9:  # the next step would move the log-likelihood by ~1e-18
                break
            step = -np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
            if np.max(np.abs(step)) < 1e-12:
                break
            t = 1.0
            for _ in range(30):
                cand = np.clip(theta + t * step, -_BOUND, _BOUND)
                fc, gc, hc = fn(cand)
                # near the optimum f is flat to rounding, so a smaller gradient also counts
                if np.isfinite(fc) and (
                    fc < f or (fc <= f + 1e-13 * abs(f) and np.max(np.abs(gc)) < np.max(np.abs(grad)))
                ):
                    break
                t /= 2
            else:
                break
            small = np.max(np.abs(cand - theta)) < 1e-10
            theta, f, grad, hess = cand, fc, gc, hc
            if small:
                break
        return theta, f, grad, hess

    def _newton_polish(self, fn: Objective, theta: FloatArray) -> tuple[FloatArray, float, FloatArray, FloatArray]:
        """Newton steps with one finite-difference Hessian, re-taken only if the point moved."""
        f, grad = fn(theta)
        hess = self._hessian(fn, theta, grad)
        try:
            chol = np.linalg.cholesky(hess)
        except np.linalg.LinAlgError:
            return theta, f, grad, hess
        moved = 0.0
        for _ in range(8):
            step = -np.linalg.solve(chol.T, np.linalg.solve(chol, grad))
            if np.max(np.abs(step)) < 1e-10:
                break
            t = 1.0
            accepted = False
            for _ in range(12):
                cand = np.clip(theta + t * step, -_BOUND, _BOUND)
                fc, gc = fn(cand)
                # near the optimum f is flat to rounding, so a smaller gradient also counts
                if np.isfinite(fc) and (
                    fc < f or (fc <= f + 1e-13 * abs(f) and np.max(np.abs(gc)) < np.max(np.abs(grad)))
                ):
                    accepted = True
                    break
                t /= 2
            if not accepted:
                break
            moved = max(moved, float(np.max(np.abs(cand - theta))))
            theta, f, grad = cand, fc, gc
        if moved > 1e-2:  # closer than that, the Hessian barely changes (errors to ~1e-3)
            hess = self._hessian(fn, theta, grad)
        return theta, f, grad, hess

    def _covariance(self, hess_theta: FloatArray, params: FloatArray) -> FloatArray:
        """Covariance of the estimates; the data do not identify the model when the observed
        information is singular or leaves a parameter undetermined within a factor e**10."""
        try:
            np.linalg.cholesky(hess_theta)
            cov_theta = np.linalg.inv(hess_theta)
            se_log = np.sqrt(np.diag(cov_theta))
        except np.linalg.LinAlgError:
            _, vectors = np.linalg.eigh(hess_theta)
            worst = int(np.argmax(np.abs(vectors[:, 0])))
            self._unidentified(worst, params, "the likelihood has no proper maximum along it")
        if not np.all(np.isfinite(se_log)) or np.max(se_log) > _UNDETERMINED:
            worst = int(np.argmax(np.nan_to_num(se_log, nan=np.inf)))
            self._unidentified(worst, params, f"its standard error spans a factor e**{se_log[worst]:.3g}")
        return np.asarray(cov_theta * np.outer(params, params), dtype=np.float64)

    def _unidentified(self, index: int, params: FloatArray, why: str) -> NoReturn:
        raise ValidationError(
            self._param_names[index],
            f"the data cannot identify the {type(self).__name__} model: parameter "
            f"{self._param_names[index]} (estimate {params[index]:.3g}) is not determined ({why})"
            + self._penalty_hint(params[index] > 1),
            self._named(params),
        )
