r"""Laws fitted across several curves: a shared exponent, the model-size law, and :math:`L(N, D)`.

* :func:`fit_shared_exponent`: Hestness et al. found that architectures on one task share the
  learning-curve exponent and differ only in :math:`\alpha`. Fits
  :math:`\varepsilon_k(m) = \alpha_k m^{\beta} + \gamma_k` jointly and tests it against separate
  exponents with an F-test on the log residuals (nested models).
* :func:`fit_model_size_law`: the best model size grows sublinearly with data,
  :math:`p(m) = \sigma m^{\beta_p}`; a log-log regression with bootstrap intervals.
* :func:`fit_joint_law`: the Chinchilla form :math:`L(N, D) = E + A/N^{a} + B/D^{b}`, fitted as
  Hoffmann et al. 2022 do (Huber loss on :math:`\log L`, L-BFGS from a grid of initialisations).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from lightning_scaling.laws._core import fit_form
from lightning_scaling.laws._solver import batched_lm
from lightning_scaling.laws._validation import as_curve
from lightning_scaling.laws.forms import Context, Hestness
from lightning_scaling.laws.intervals import Prediction, bootstrap_band, make_prediction, percentiles, positive_sizes

__all__ = [
    "JointLawFit",
    "ModelSizeLaw",
    "SharedExponentFit",
    "fit_joint_law",
    "fit_model_size_law",
    "fit_shared_exponent",
]


# -- shared exponent ---------------------------------------------------------------------------------
@dataclass
class SharedExponentFit:
    """Curves fitted with one shared exponent, and the test against one exponent per curve."""

    beta: float
    beta_interval: tuple[float, float]
    alphas: dict[str, float]
    gammas: dict[str, float]
    separate_betas: dict[str, float]
    f_statistic: float
    p_value: float
    rss_shared: float
    rss_separate: float
    confidence: float
    significance: float = 0.05
    alpha_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    gamma_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def same_exponent(self) -> bool:
        """True when separate exponents do not fit significantly better (the paper's finding)."""
        return bool(self.p_value >= self.significance)

    def to_dict(self) -> dict[str, Any]:
        return {
            "beta": self.beta, "beta_interval": list(self.beta_interval), "alphas": self.alphas,
            "gammas": self.gammas, "alpha_intervals": {k: list(v) for k, v in self.alpha_intervals.items()},
            "gamma_intervals": {k: list(v) for k, v in self.gamma_intervals.items()},
            "separate_betas": self.separate_betas, "f_statistic": self.f_statistic,
            "p_value": self.p_value, "same_exponent": self.same_exponent, "significance": self.significance,
            "confidence": self.confidence,
        }

    def __str__(self) -> str:
        lo, hi = self.beta_interval
        verdict = "consistent with one shared exponent" if self.same_exponent else "exponents differ"
        return (f"shared beta = {self.beta:.4g} [{lo:.4g}, {hi:.4g}]; separate: "
                + ", ".join(f"{k}={v:.3g}" for k, v in self.separate_betas.items())
                + f"; F = {self.f_statistic:.3g}, p = {self.p_value:.3g}: {verdict}")


def fit_shared_exponent(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    bootstrap: int = 500,
    confidence: float = 0.95,
    significance: float = 0.05,
    seed: int = 0,
) -> SharedExponentFit:
    r"""Fit curves with one shared exponent and test it against separate exponents.

    One function on purpose (~80 lines): the residual, the starts, the F-test and the bootstrap are
    closures over one stacked layout of every curve's points and one parameter vector
    (``[log(-beta), (log alpha_k, logit gamma_k) per curve]``); split apart, each would take that
    layout as arguments.

    Args:
        curves: ``{name: (sizes, errors)}``, at least two curves of at least four sizes each.
        bootstrap: replicates (resampling points within each curve) for the intervals of the shared
            exponent and of every curve's ``alpha`` and ``gamma``.
        confidence: level of the interval.
        significance: level of the F-test; ``same_exponent`` is ``p_value >= significance``.
        seed: bootstrap seed.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> m = np.geomspace(1e2, 1e5, 10)
        >>> noise = lambda: np.exp(rng.normal(0, 0.02, m.size))
        >>> fit = fit_shared_exponent({"small": (m, (5 * m**-0.3 + 0.01) * noise()),
        ...                            "large": (m, (3 * m**-0.3 + 0.01) * noise())}, bootstrap=100)
        >>> round(fit.beta, 1), fit.same_exponent
        (-0.3, True)
    """
    if not isinstance(curves, Mapping) or len(curves) < 2:
        raise ValueError("curves must map at least two names to (sizes, errors) pairs")
    form = Hestness()
    names = list(curves)
    data = []
    for name in names:
        x, y = as_curve(*curves[name], n_params=4)
        data.append((x, np.nanmean(y, axis=1) if y.ndim == 2 else y))
    separate = [fit_form(form, x, y) for x, y in data]
    rss_sep = 2.0 * sum(cost for _, cost in separate)

    ctxs = [Context.of(x, y) for x, y in data]
    xs = np.concatenate([x for x, _ in data])
    logy = np.concatenate([np.log(y) for _, y in data])
    seg = np.repeat(np.arange(len(data)), [len(x) for x, _ in data])
    lrefs = np.array([math.log(c.x_ref) for c in ctxs])[seg]
    ymins = np.array([c.y_min for c in ctxs])[seg]

    def residuals(theta: np.ndarray, logy: np.ndarray = logy) -> np.ndarray:
        # theta: [log(-beta), then (log alpha'_k, logit gamma_k/ymin_k) per curve]
        lb = theta[..., 0:1]
        la = np.take(theta[..., 1::2], seg, axis=-1)
        lg = np.take(theta[..., 2::2], seg, axis=-1)
        term = la - np.exp(np.clip(lb, -50, 50)) * (np.log(xs) - lrefs)
        floor = np.log(ymins) - np.logaddexp(0.0, -lg)
        return np.logaddexp(term, floor) - logy

    def to_theta(beta: float, params: Sequence[np.ndarray]) -> list[float]:
        th = [math.log(-beta)]
        for (x, y), c, p in zip(data, ctxs, params):
            alpha_ref = float(np.mean(np.log(np.maximum(y - p[2], 1e-12 * c.y_min)) - beta * np.log(x / c.x_ref)))
            th += [alpha_ref, float(special.logit(np.clip(p[2] / c.y_min, 1e-6, 1 - 1e-6)))]
        return th

    betas = [p[1] for p, _ in separate]
    starts = [to_theta(b, [p for p, _ in separate]) for b in {float(np.median(betas)), *map(float, betas)}]
    theta, cost = batched_lm(residuals, np.array(starts), np.ones_like(logy))
    best = theta[int(np.argmin(cost))]
    rss_shared = 2.0 * float(cost.min())
    beta = -math.exp(best[0])

    k, n = len(data), len(xs)
    df1, df2 = k - 1, n - 3 * k
    if df2 <= 0:
        raise ValueError(f"{n} points in {k} curves are too few for the test; it needs more than {3 * k}")
    f_stat = max(0.0, (rss_shared - rss_sep) / df1) / max(rss_sep / df2, 1e-300)
    p_value = float(stats.f.sf(f_stat, df1, df2))

    x_refs = np.array([c.x_ref for c in ctxs])
    y_mins = np.array([c.y_min for c in ctxs])

    def natural(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # (beta, alphas, gammas) in the user's units, for rows of theta
        b = -np.exp(theta[..., 0])
        with np.errstate(over="ignore"):  # extreme replicates give inf, which the percentiles keep
            a = np.exp(theta[..., 1::2]) * x_refs ** (-b[..., None])
        return b, a, y_mins * special.expit(theta[..., 2::2])

    beta_hat, alpha_hat, gamma_hat = natural(best)
    rng = np.random.default_rng(seed)
    if bootstrap:
        counts = np.concatenate(
            [rng.multinomial(len(x), np.full(len(x), 1 / len(x)), size=bootstrap) for x, _ in data], axis=1)
        bt, bc = batched_lm(residuals, np.repeat(best[None], bootstrap, axis=0), counts, max_iter=100)
        b_rep, a_rep, g_rep = natural(bt[np.isfinite(bc)])
        lo, hi = percentiles(np.column_stack([b_rep, a_rep, g_rep]), confidence)
    else:
        lo = hi = np.concatenate([[beta_hat], alpha_hat, gamma_hat])
    k = len(names)
    return SharedExponentFit(
        beta=beta, beta_interval=(float(lo[0]), float(hi[0])),
        alphas={name: float(v) for name, v in zip(names, alpha_hat)},
        gammas={name: float(v) for name, v in zip(names, gamma_hat)},
        alpha_intervals={name: (float(lo[1 + i]), float(hi[1 + i])) for i, name in enumerate(names)},
        gamma_intervals={name: (float(lo[1 + k + i]), float(hi[1 + k + i])) for i, name in enumerate(names)},
        separate_betas={name: float(p[1]) for name, (p, _) in zip(names, separate)},
        f_statistic=float(f_stat), p_value=p_value, rss_shared=rss_shared, rss_separate=rss_sep,
        confidence=confidence, significance=significance,
    )


# -- model-size law ---------------------------------------------------------------------------------
@dataclass
class ModelSizeLaw:
    r"""Best model size against data size, :math:`p(m) = \sigma m^{\beta_p}`."""

    sigma: float
    beta_p: float
    intervals: dict[str, tuple[float, float]]
    confidence: float
    sizes: np.ndarray = field(repr=False)
    params: np.ndarray = field(repr=False)
    boot: np.ndarray | None = field(default=None, repr=False)
    """Bootstrap replicates ``(B, 2)`` of ``(sigma, beta_p)``; ``None`` without a bootstrap."""

    def predict(self, sizes: float | Sequence[float] | np.ndarray) -> Prediction:
        """Best model size (parameters) at data size(s), with its bootstrap (confidence) interval.

        >>> law = fit_model_size_law([1e3, 1e4, 1e5, 1e6], [2e4, 1e5, 5e5, 2.5e6], bootstrap=200)
        >>> p = law.predict(1e7)
        >>> round(p.value), bool(p.lower <= p.value <= p.upper)
        (12500000, True)
        """
        x = positive_sizes(sizes)
        value = self.sigma * x**self.beta_p
        reps = None if self.boot is None else self.boot[:, :1] * x[None] ** self.boot[:, 1:2]
        lo, hi = bootstrap_band(reps, value, self.confidence)
        return make_prediction(np.ndim(sizes) == 0, value, lo, hi, self.confidence, "confidence")

    def to_dict(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "beta_p": self.beta_p,
                "intervals": {k: list(v) for k, v in self.intervals.items()}, "confidence": self.confidence,
                "sizes": self.sizes.tolist(), "params": self.params.tolist()}

    def __str__(self) -> str:
        lo, hi = self.intervals["beta_p"]
        return f"params(m) = {self.sigma:.4g} * m^{self.beta_p:.4g}  (beta_p in [{lo:.4g}, {hi:.4g}])"


def fit_model_size_law(
    sizes: Sequence[float] | np.ndarray,
    params: Sequence[float] | np.ndarray,
    *,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ModelSizeLaw:
    r"""Fit :math:`p(m) = \sigma m^{\beta_p}` to the best model size at each data size.

    A least-squares line in log-log space; intervals resample the points.

    >>> fit = fit_model_size_law([1e3, 1e4, 1e5, 1e6], [2e4, 1e5, 5e5, 2.5e6], bootstrap=200)
    >>> round(fit.beta_p, 3)
    0.699
    """
    x, p = as_curve(sizes, params, n_params=2, what="params")
    if p.ndim != 1:
        raise ValueError("params must be 1-D: the best model's parameter count at each size")
    lx, lp = np.log(x), np.log(p)
    slope, intercept = np.polyfit(lx, lp, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(bootstrap, len(x)))
    bx, bp = lx[idx], lp[idx]
    bxm, bpm = bx.mean(axis=1, keepdims=True), bp.mean(axis=1, keepdims=True)
    sxx = np.sum((bx - bxm) ** 2, axis=1)
    ok = sxx > 0  # a replicate that drew one size only has no slope
    slopes = np.sum((bx - bxm) * (bp - bpm), axis=1)[ok] / sxx[ok]
    inter = bpm[ok, 0] - slopes * bxm[ok, 0]
    boot = np.stack([np.exp(inter), slopes], axis=1)
    if len(slopes):
        lo, hi = percentiles(boot, confidence)
    else:
        lo = hi = np.array([math.exp(intercept), slope])
    return ModelSizeLaw(
        sigma=float(math.exp(intercept)), beta_p=float(slope),
        intervals={"sigma": (float(lo[0]), float(hi[0])), "beta_p": (float(lo[1]), float(hi[1]))},
        confidence=confidence, sizes=x, params=p, boot=boot,
    )


# -- L(N, D) ----------------------------------------------------------------------------------------
@dataclass
class JointLawFit:
    r""":math:`L(N, D) = E + A/N^{a} + B/D^{b}` with bootstrap intervals."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float
    intervals: dict[str, tuple[float, float]]
    confidence: float
    boot: np.ndarray | None = field(default=None, repr=False)
    """Bootstrap replicates ``(B, 5)`` of ``(A, B, E, alpha, beta)``; ``None`` without a bootstrap."""

    def predict(self, n_params: Any, n_tokens: Any) -> Prediction:
        """Loss at model sizes ``n_params`` and data sizes ``n_tokens``, with its bootstrap (confidence) interval."""
        n = positive_sizes(n_params, "n_params")
        d = positive_sizes(n_tokens, "n_tokens")
        n, d = np.broadcast_arrays(n, d)
        value = self.E + self.A / n**self.alpha + self.B / d**self.beta
        reps = None
        if self.boot is not None:
            a, b, e, al, be = (self.boot[:, i : i + 1] for i in range(5))
            reps = e + a / n[None] ** al + b / d[None] ** be
        lo, hi = bootstrap_band(reps, value, self.confidence)
        scalar = np.ndim(n_params) == 0 and np.ndim(n_tokens) == 0
        return make_prediction(scalar, value, lo, hi, self.confidence, "confidence")

    def compute_optimal(self, flops: float) -> tuple[float, float]:
        """Compute-optimal ``(N, D)`` for a FLOP budget ``C = 6 N D`` (Hoffmann et al., eq. 4)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n = g * (flops / 6.0) ** (self.beta / (self.alpha + self.beta))
        return float(n), float(flops / (6.0 * n))

    def to_dict(self) -> dict[str, Any]:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta,
                "objective": self.objective, "intervals": {k: list(v) for k, v in self.intervals.items()},
                "confidence": self.confidence}

    def __str__(self) -> str:
        return (f"L(N, D) = {self.E:.4g} + {self.A:.4g}/N^{self.alpha:.4g} + {self.B:.4g}/D^{self.beta:.4g}")


def _joint_objective(theta: np.ndarray, ln: np.ndarray, ld: np.ndarray, ll: np.ndarray, delta: float):
    a, b, e, al, be = theta
    terms = np.stack([a - al * ln, b - be * ld, np.full_like(ln, e)])
    lse = special.logsumexp(terms, axis=0)
    r = lse - ll
    absr = np.abs(r)
    loss = np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))
    dr = np.clip(r, -delta, delta)
    soft = np.exp(terms - lse)
    grad = np.array([
        np.sum(dr * soft[0]), np.sum(dr * soft[1]), np.sum(dr * soft[2]),
        np.sum(dr * soft[0] * -ln), np.sum(dr * soft[1] * -ld),
    ])
    return float(loss.sum()), grad


def fit_joint_law(
    n_params: Sequence[float] | np.ndarray,
    n_tokens: Sequence[float] | np.ndarray,
    loss: Sequence[float] | np.ndarray,
    *,
    huber_delta: float = 1e-3,
    grid: str | np.ndarray = "hoffmann",
    polish: int = 16,
    bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> JointLawFit:
    r"""Fit :math:`L(N, D) = E + A/N^{a} + B/D^{b}` as Hoffmann et al. 2022 (App. D.2) do.

    One function on purpose (~65 lines): the grid search, the polish and the bootstrap share one
    Huber objective over one parameter layout, kept as closures rather than passed around.

    Minimises the Huber loss (``huber_delta`` on :math:`\log L`) of
    :math:`\log L - \operatorname{LSE}(\log A - a\log N, \log B - b\log D, \log E)` with L-BFGS.
    Hoffmann et al. start L-BFGS from every point of a 4,500-point grid; here every grid point is
    scored and the ``polish`` best are run to convergence, which reaches the same optimum far faster
    (``benchmarks/fit_extrapolation.py`` checks it against the published replication).

    Args:
        n_params: model sizes ``N``.
        n_tokens: training tokens ``D``.
        loss: final losses ``L`` (> 0).
        huber_delta: Huber threshold on log-loss residuals.
        grid: ``"hoffmann"`` (their grid) or an array of starts ``(S, 5)`` as
            ``(log A, log B, log E, a, b)``.
        polish: how many of the best grid points L-BFGS runs from.
        bootstrap: point-resampling replicates for the intervals (0 disables them).
        confidence: interval level.
        seed: bootstrap seed.
    """
    n = np.asarray(n_params, dtype=float)
    d = np.asarray(n_tokens, dtype=float)
    L = np.asarray(loss, dtype=float)
    if not (n.shape == d.shape == L.shape and n.ndim == 1):
        raise ValueError(f"n_params, n_tokens and loss must be 1-D of one length, got {n.shape}, {d.shape}, {L.shape}")
    for name, v in (("n_params", n), ("n_tokens", d), ("loss", L)):
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"{name} must be positive and finite")
    if len(L) < 6:
        raise ValueError(f"{len(L)} points cannot determine the 5 parameters of L(N, D); give at least 6")
    if np.ptp(L) <= 1e-12 * L.max():
        raise ValueError(f"loss is constant ({L[0]:.6g} at every point): there is no scaling law to fit")
    for name, v in (("n_params", n), ("n_tokens", d)):
        if np.ptp(v) == 0:
            raise ValueError(f"{name} is {v[0]:.6g} at every point: L(N, D) needs runs at several values of it")
    ln, ld, ll = np.log(n), np.log(d), np.log(L)
    if isinstance(grid, str):
        if grid != "hoffmann":
            raise ValueError(f"grid must be 'hoffmann' or an array of starts, got {grid!r}")
        starts = np.array(list(itertools.product(
            np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
            np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))), dtype=float)
    else:
        starts = np.atleast_2d(np.asarray(grid, dtype=float))

    def solve(ll_: np.ndarray, ln_: np.ndarray, ld_: np.ndarray, starts_: np.ndarray) -> tuple[np.ndarray, float]:
        terms = np.stack([starts_[:, 0:1] - starts_[:, 3:4] * ln_, starts_[:, 1:2] - starts_[:, 4:5] * ld_,
                          np.repeat(starts_[:, 2:3], len(ln_), axis=1)])
        r = special.logsumexp(terms, axis=0) - ll_
        ar = np.abs(r)
        score = np.where(ar <= huber_delta, 0.5 * r * r, huber_delta * (ar - 0.5 * huber_delta)).sum(axis=1)
        # the best grid point stands in should every polish fail (a nan objective)
        best_theta, best_val = starts_[int(np.argmin(score))], math.inf
        for i in np.argsort(score)[:polish]:
            # the objective is ~1e-3 in size: scipy's default tolerances would stop a warm start
            # (a bootstrap replicate) before its first step
            res = optimize.minimize(_joint_objective, starts_[i], args=(ln_, ld_, ll_, huber_delta), jac=True,
                                    method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000})
            if res.fun < best_val:
                best_theta, best_val = res.x, float(res.fun)
        return best_theta, best_val

    theta, value = solve(ll, ln, ld, starts)
    names = ("A", "B", "E", "alpha", "beta")

    def natural(t: np.ndarray) -> np.ndarray:
        return np.array([math.exp(t[0]), math.exp(t[1]), math.exp(t[2]), t[3], t[4]])

    point = natural(theta)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(bootstrap):
        idx = rng.integers(0, len(L), len(L))
        t, _ = solve(ll[idx], ln[idx], ld[idx], theta[None])
        reps.append(natural(t))
    boot = np.array(reps).reshape(-1, 5)
    if reps:
        lo, hi = percentiles(boot, confidence)
    else:
        lo = hi = point
    return JointLawFit(
        E=point[2], A=point[0], B=point[1], alpha=point[3], beta=point[4], objective=value,
        intervals={k: (float(lo[i]), float(hi[i])) for i, k in enumerate(names)}, confidence=confidence,
        boot=boot,
    )
