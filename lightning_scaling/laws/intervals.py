r"""Predictions with intervals: the result types, and the spread of a new run's error.

A fitted law's :class:`Prediction` is a **95% prediction interval** (at the default level) for the
error a new run at that size would measure, in log-error space:

.. math::
    \log\hat\varepsilon(m) \pm z\,\sqrt{\sigma_\theta^2(m) + \sigma_n^2 + \kappa^2 d(m)^2 + \sigma_s^2(m)}

* :math:`\sigma_\theta^2(m)`: parameter uncertainty (Laplace: the fit's Jacobian and residual variance);
* :math:`\sigma_n^2`: the noise of one run (seed variance where there are seeds, else the fit's
  residual variance shrunk toward a prior);
* :math:`\kappa^2 d(m)^2`: the extrapolation error, growing with the distance :math:`d(m)` beyond the
  largest size (in units of the fitted log-size range). :math:`\kappa` is measured on the curve's own
  past: the held-out residuals of the fits that chose the start of the power-law region (rolling
  origin over the best candidate starts, so it carries the uncertainty of the start and of the
  form's adequacy), shrunk toward a prior :data:`KAPPA_PRIOR`;
* :math:`\sigma_s^2(m)`: the uncertainty of where the power-law region starts: the weighted spread of
  the fits from each candidate start around the reported law (:mod:`~lightning_scaling.laws.averaging`).

The constants were set on the development sets (docs/fitting.md records which and the coverage
reached). Bootstrap percentile intervals remain for parameters (``fit.intervals``) and as the
*confidence interval of the mean curve* (``fit.predict(m, interval="confidence")``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from lightning_scaling.laws.forms import Context, Form

__all__ = ["KAPPA_PRIOR", "KAPPA_WEIGHT", "NOISE_PRIOR", "DataNeeded", "Prediction", "PredictiveSpread", "misses"]

#: prior extrapolation-error rate (log error per fitted log-size range), and its weight in squared
#: distance units; set on the development sets (docs/fitting.md)
KAPPA_PRIOR = 0.25
KAPPA_WEIGHT = 4.0
#: prior per-run noise (log error) for curves with few residual degrees of freedom, and its weight
NOISE_PRIOR = 0.02
NOISE_WEIGHT = 2.0
#: no interval is wider than this many log units either side (a factor of e^3 ~ 20)
MAX_SD = 1.5


@dataclass(frozen=True)
class Prediction:
    """A predicted value with its interval (arrays for array input).

    ``kind`` says what the interval is: ``"prediction"`` (where a new run would land) or
    ``"confidence"`` (where the mean curve lies).
    """

    value: Any
    lower: Any
    upper: Any
    confidence: float
    kind: str = "prediction"

    def to_dict(self) -> dict[str, Any]:
        return {"value": jsonable(self.value), "lower": jsonable(self.lower), "upper": jsonable(self.upper),
                "confidence": self.confidence, "interval": self.kind}


@dataclass(frozen=True)
class DataNeeded(Prediction):
    """Training-set size needed for a target error, with interval; ``inf`` where it is unreachable.

    ``note`` says what the number means when it is not a plain extrapolation (a target already
    reached, one below the floor).
    """

    target: float = math.nan
    floor: float = math.nan
    note: str = ""

    @property
    def reachable(self) -> bool:
        """Whether the fitted curve reaches the target at any size."""
        return bool(np.isfinite(self.value))

    def __str__(self) -> str:
        if not self.reachable:
            out = (f"unreachable: target {self.target:.4g} is at or below the fitted floor "
                   f"(irreducible error {self.floor:.4g})")
            if np.isfinite(self.lower):
                out += (f"; within the {self.confidence:.0%} {self.kind} interval a run may reach it from "
                        f"{self.lower:.4g} on")
            return out
        upper = "unbounded" if not np.isfinite(self.upper) else f"{self.upper:.4g}"
        out = f"{self.value:.4g} [{self.lower:.4g}, {upper}] ({self.confidence:.0%} {self.kind} interval)"
        return f"{out}: {self.note}" if self.note else out

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "target": self.target, "reachable": self.reachable, "floor": self.floor,
                "note": self.note}


def jsonable(v: Any) -> Any:
    """Floats and arrays as JSON values; non-finite floats as ``"inf"``/``"-inf"``/``None``."""
    if isinstance(v, np.ndarray):
        return [jsonable(u) for u in v.tolist()]
    if isinstance(v, float | np.floating):
        v = float(v)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else None)
    return v


def positive_sizes(sizes: Any, what: str = "sizes") -> np.ndarray:
    """``sizes`` as a 1-d float array, every one positive and finite (where a law is evaluated)."""
    x = np.atleast_1d(np.asarray(sizes, dtype=float))
    bad = ~np.isfinite(x) | (x <= 0)
    if np.any(bad):
        raise ValueError(f"{what} to predict at must be positive and finite, got {x[bad]}")
    return x


def make_prediction(scalar: bool, value: np.ndarray, lo: np.ndarray, hi: np.ndarray, confidence: float,
                    kind: str = "prediction") -> Prediction:
    """A :class:`Prediction` of floats when ``scalar`` (the caller asked at one size), else of arrays."""
    if scalar:
        return Prediction(float(value[0]), float(lo[0]), float(hi[0]), confidence, kind)
    return Prediction(value, lo, hi, confidence, kind)


def percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval along axis 0; order statistics where replicates are infinite."""
    tail = 50.0 * (1.0 - confidence)
    # interpolating between two infinite replicates gives nan; an order statistic stays inf
    if np.isinf(samples).any():
        return (np.percentile(samples, tail, axis=0, method="inverted_cdf"),
                np.percentile(samples, 100.0 - tail, axis=0, method="inverted_cdf"))
    return np.percentile(samples, tail, axis=0), np.percentile(samples, 100.0 - tail, axis=0)


def bootstrap_band(samples: np.ndarray | None, value: np.ndarray, confidence: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile band of bootstrap replicates ``(B, n)`` of a prediction; rows with ``nan`` are dropped,
    and without replicates the band is the value itself."""
    if samples is None:
        return value, value
    ok = samples[~np.isnan(samples).any(axis=1)]
    if len(ok) == 0:
        return value, value
    return percentiles(ok, confidence)


def z_value(confidence: float) -> float:
    """Two-sided standard-normal quantile of ``confidence`` (1.96 at 0.95)."""
    return float(stats.norm.ppf(0.5 + 0.5 * confidence))


def log_jacobian(form: Form, theta: np.ndarray, x: np.ndarray, ctx: Context) -> np.ndarray:
    """``d log eps_hat(x) / d theta`` in the form's unconstrained parameters, ``(len(x), p)``."""
    zero = np.zeros(len(x))
    base = form.residuals(theta[None], x, zero, ctx)[0]
    step = 1e-6 * np.maximum(1.0, np.abs(theta))
    pert = theta[None] + np.diag(step)
    with np.errstate(over="ignore", invalid="ignore"):
        jac = (form.residuals(pert, x, zero, ctx) - base[None]) / step[:, None]
    return np.where(np.isfinite(jac), jac, 0.0).T


@dataclass(frozen=True)
class PredictiveSpread:
    """Standard deviation of a new run's log error around the fitted law, at any size.

    Args:
        form: the fitted form.
        theta: its parameters, unconstrained (the optimiser's).
        ctx: the fit's parameterisation context.
        cov: covariance of ``theta`` (Laplace).
        noise_sd: one run's noise, in log error.
        kappa: extrapolation-error rate per fitted log-size range.
        log_last: log of the largest fitted size.
        log_span: fitted log-size range (largest over smallest used).
        members: parameters ``(K, p)`` of the fits the law summarises (one per candidate start of the
            power-law region); their weighted spread around the law is the start's uncertainty.
        member_weights: their weights, summing to 1.
    """

    form: Form
    theta: np.ndarray
    ctx: Context
    cov: np.ndarray
    noise_sd: float
    kappa: float
    log_last: float
    log_span: float
    members: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    member_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Extrapolation distance beyond the largest fitted size, in fitted log-size ranges."""
        return np.maximum(np.log(x) - self.log_last, 0.0) / self.log_span

    def sd(self, x: np.ndarray) -> np.ndarray:
        """``sqrt(param variance + noise variance + (kappa * distance)^2)`` at sizes ``x``, capped."""
        var_param = np.zeros(len(x))
        if self.cov.size:  # a flat law (constant errors) has no parameters to be uncertain about
            jac = log_jacobian(self.form, self.theta, x, self.ctx)
            var_param = np.einsum("np,pq,nq->n", jac, self.cov, jac)
        total = (np.maximum(var_param, 0.0) + self.noise_sd**2 + (self.kappa * self.distance(x)) ** 2
                 + self.start_variance(x))
        return np.minimum(np.sqrt(total), MAX_SD)

    def start_variance(self, x: np.ndarray) -> np.ndarray:
        """Weighted spread of the members' log predictions around the law: the start's uncertainty."""
        if len(self.members) < 2:
            return np.zeros(len(x))
        law = self.form.log_predict(self.form.natural(self.theta, self.ctx), x)
        with np.errstate(invalid="ignore", over="ignore"):
            dev = self.form.log_predict(self.members, x) - law
        return np.nan_to_num(self.member_weights @ dev**2, nan=0.0, posinf=MAX_SD**2)

    @classmethod
    def estimate(
        cls, form: Form, theta: np.ndarray, ctx: Context, x: np.ndarray, logy: np.ndarray, w: np.ndarray, *,
        residuals: np.ndarray, distance: np.ndarray, run_noise: float | None = None,
        members: np.ndarray | None = None, member_weights: np.ndarray | None = None,
    ) -> PredictiveSpread:
        """Estimate every term from a fit to ``(x, log y)`` with weights ``w`` and held-out residuals.

        Args:
            residuals: held-out log residuals of fits on the curve's own past (rolling origin).
            distance: their extrapolation distances (fitted log-size ranges).
            run_noise: one run's noise where seeds measured it; else the residual noise is used.
            members: the fits from each candidate start that the law summarises, with ``member_weights``.
        """
        n, p = len(x), len(theta)
        w = w / max(float(np.mean(w)), 1e-300)
        res = form.residuals(theta[None], x, logy, ctx)[0] if p else logy - np.mean(logy)
        dof = max(n - p, 0)
        s2_hat = float(np.sum(w * res**2) / dof) if dof else 0.0
        s2 = (dof * s2_hat + NOISE_WEIGHT * NOISE_PRIOR**2) / (dof + NOISE_WEIGHT)
        cov = np.zeros((0, 0))
        if p:
            jac = log_jacobian(form, theta, x, ctx)
            cov = s2 * np.linalg.pinv(jac.T @ (w[:, None] * jac), rcond=1e-10)
        noise2 = s2 if run_noise is None else run_noise**2
        ok = np.isfinite(residuals) & np.isfinite(distance)
        r, d = residuals[ok], distance[ok]
        excess = np.maximum(r**2 - noise2, 0.0)
        kappa2 = (float(np.sum(excess)) + KAPPA_WEIGHT * KAPPA_PRIOR**2) / (float(np.sum(d**2)) + KAPPA_WEIGHT)
        lx = np.log(x)
        return cls(form, np.asarray(theta, float), ctx, cov, math.sqrt(noise2), math.sqrt(kappa2), float(lx[-1]),
                   float(max(lx[-1] - lx[0], 1e-12)),
                   np.zeros((0, p)) if members is None else np.asarray(members, float),
                   np.zeros(0) if member_weights is None else np.asarray(member_weights, float))


def misses(value: float, lo: float, hi: float, scale: float) -> bool:
    """Whether a parameter estimate ``value`` lies outside its interval ``[lo, hi]`` by more than rounding
    at a bound, at the scale of the errors (``scale``, their lowest value).

    >>> misses(0.0, 3.7e-10, 2.0e-9, scale=0.01), misses(2.0, 0.5, 1.5, scale=0.01)
    (False, True)
    """
    if math.isnan(lo) or math.isnan(hi):  # no interval, nothing to miss
        return False
    tol = 1e-6 * max(abs(value), abs(lo), abs(hi), scale)
    return not lo - tol <= value <= hi + tol
