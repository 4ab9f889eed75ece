r"""Fit a learning curve :math:`\varepsilon(m)`, with its regions, intervals and predictions.

The default estimator follows Hestness et al. 2017: the power law
:math:`\varepsilon(m) = \alpha m^{\beta} + \gamma` fitted by least squares on :math:`\log\varepsilon`
(so each point counts by its relative error), from a grid of starting points, under the bounds
:math:`\beta < 0` and :math:`0 \le \gamma < \min \varepsilon`. What makes it robust:

* **Small-data region.** Points near best-guess error bend the curve and spoil the exponent. Where
  the power-law region starts is judged by *held-out extrapolation*: for each candidate start the
  law is fitted without the largest sizes and scored on them
  (:func:`~lightning_scaling.laws.selection.start_candidates`). No single start is trusted: the law
  reported is the one closest to the average of the fits from every candidate start, weighted by
  their scores and an even prior (:mod:`~lightning_scaling.laws.averaging`); the start reported is
  the median of the five best-scoring candidates.
* **Seeds and weights.** ``errors`` may hold one column per seed; the curve is fitted to the
  per-size mean with inverse-variance weights (a size with fewer seeds takes the pooled seed
  variance: its mean counts in proportion to its seeds).
* **Intervals.** ``predict`` and ``data_needed`` give prediction intervals for a new run
  (:mod:`~lightning_scaling.laws.intervals`); parameters get bootstrap percentile intervals.
* **Hostile curves.** Constant errors give a flat law and a note; an error that rises at the
  largest sizes gives a note, and predictions beyond the data are not taken below the level
  measured last.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lightning_scaling.laws._core import fit_form, refit_many
from lightning_scaling.laws._validation import as_curve
from lightning_scaling.laws.averaging import average_starts
from lightning_scaling.laws.forms import Context, Form, Hestness, PowerLaw, get_form
from lightning_scaling.laws.intervals import (
    DataNeeded,
    Prediction,
    PredictiveSpread,
    bootstrap_band,
    jsonable,
    make_prediction,
    percentiles,
    positive_sizes,
    z_value,
)
from lightning_scaling.laws.selection import (
    HOLDOUT_FRACTION,
    Holdout,
    best_holdout,
    heldout_fit,
    holdout_count,
    reported_start,
    start_candidates,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["LearningCurveFit", "fit_learning_curve"]

Resample = Literal["auto", "points", "seeds"]
Interval = Literal["prediction", "confidence"]


@dataclass
class LearningCurveFit:
    """A fitted learning curve: parameters with intervals, regions, and predictions.

    Build one with :func:`fit_learning_curve`. ``boot`` holds the bootstrap replicates of the
    parameters (their percentiles are ``intervals``); ``spread`` the terms of the prediction
    interval; ``notes`` what a user should know about this curve (flat, rising tail).
    """

    form: Form
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    sizes: np.ndarray
    errors: np.ndarray
    start_index: int
    confidence: float
    boot: np.ndarray = field(repr=False)
    seed_errors: np.ndarray | None = field(default=None, repr=False)
    loss: str = "squared"
    resample: str = "points"
    rmsle: float = math.nan
    spread: PredictiveSpread | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    tail_level: float = 0.0
    """Predictions beyond the largest size are not below this (the level measured last on a rising tail)."""
    constant: bool = False

    # -- the law ---------------------------------------------------------------------------------
    @property
    def exponent(self) -> float:
        """The fitted power-law exponent (``beta`` for the paper's form)."""
        return self.params[self.form.exponent]

    @property
    def floor(self) -> float:
        """The fitted irreducible error (0 for forms without a floor)."""
        return self.params.get(self.form.floor, 0.0) if self.form.floor else 0.0

    @property
    def power_law_start(self) -> float:
        """Smallest size used for the fit: where the power-law region starts."""
        return float(self.sizes[self.start_index])

    @property
    def floor_start(self) -> float:
        """Size where the irreducible-error region starts: the error is within 10% of the floor.

        For the paper's form :math:`m^* = (0.1\\gamma/\\alpha)^{1/\\beta}`; beyond it, even unlimited
        data removes less than a tenth of the error. ``inf`` for curves without a floor.
        """
        if not self.floor > 0 or self.constant:
            return math.inf
        return float(self.form.size_for(self._vector(), 1.1 * self.floor)[0])

    @property
    def regions(self) -> dict[str, tuple[float, float]]:
        """The paper's three regions as size ranges: small-data, power-law, irreducible-error."""
        return {
            "small_data": (float(self.sizes[0]), self.power_law_start),
            "power_law": (self.power_law_start, self.floor_start),
            "irreducible": (self.floor_start, math.inf),
        }

    def _vector(self) -> np.ndarray:
        return np.array([self.params[k] for k in self.form.params])

    def _value(self, x: np.ndarray) -> np.ndarray:
        value = self.form.predict(self._vector(), x)
        beyond = x > self.sizes[-1]
        return np.where(beyond, np.maximum(value, self.tail_level), value)

    def _band(self, x: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.spread is None:
            return value, value
        half = z_value(self.confidence) * self.spread.sd(x)
        return value * np.exp(-half), value * np.exp(half)

    # -- predictions -----------------------------------------------------------------------------
    def predict(self, sizes: float | Sequence[float] | np.ndarray, *, interval: Interval = "prediction") -> Prediction:
        """Predicted error at ``sizes``, with its interval.

        Args:
            sizes: training-set size(s).
            interval: ``"prediction"`` (default): where a new run at that size would land, with the
                fit's ``confidence``; ``"confidence"``: the bootstrap percentile interval of the
                mean curve (parameter uncertainty only).

        >>> import numpy as np
        >>> m = np.geomspace(100, 100_000, 8)
        >>> fit = fit_learning_curve(m, 3.0 * m**-0.3 + 0.05, bootstrap=200)
        >>> p = fit.predict(1e6)
        >>> round(float(p.value), 4), bool(p.lower < p.value < p.upper)  # 3 * 1e6**-0.3 + 0.05
        (0.0975, True)
        """
        x = positive_sizes(sizes)
        value = self._value(x)
        if interval == "confidence":
            lo, hi = bootstrap_band(None if self.constant else self.form.predict(self.boot, x), value,
                                    self.confidence)
        elif interval == "prediction":
            lo, hi = self._band(x, value)
        else:
            raise ValueError(f"interval must be 'prediction' or 'confidence', got {interval!r}")
        return make_prediction(np.ndim(sizes) == 0, value, lo, hi, self.confidence, interval)

    def data_needed(self, target: float) -> DataNeeded:
        """Training-set size at which the error reaches ``target``, with its prediction interval.

        The interval runs from the size beyond which the interval's lower edge stays below the
        target to the size beyond which its upper edge does (``inf`` when it never does). Targets at or
        below the fitted floor (or below the level of a rising tail) are unreachable by the fitted
        curve: the value is ``inf`` and ``str()`` says so, but the interval still starts where a new
        run could plausibly reach the target (``lower``), since the floor itself is uncertain; a
        target above every measured error says it is reached already.
        """
        if not (isinstance(target, int | float | np.floating) and math.isfinite(target) and target > 0):
            raise ValueError(f"target must be a positive, finite error, got {target!r}")
        target = float(target)
        note = ""
        if self.constant:
            value = float(self.sizes[0]) if target >= self.params["gamma"] else math.inf
        else:
            value = float(self.form.size_for(self._vector(), target)[0])
        if target < self.tail_level:
            value, note = math.inf, "below the level measured last on a rising tail; the data support no lower error"
        if target >= float(np.max(self.errors)):
            note = (f"the target is above every measured error (the largest, {np.max(self.errors):.4g}): "
                    f"reached already at the smallest size measured, {self.sizes[0]:.4g}")
            value = min(value, float(self.sizes[0]))
        lo, hi = self._size_interval(target, value)
        return DataNeeded(value, lo, hi, self.confidence, target=target, floor=self.floor, note=note)

    def _size_interval(self, target: float, value: float) -> tuple[float, float]:
        # an unreachable value (a target below the fitted floor) still has an interval: from where
        # the interval's lower edge reaches the target, unbounded above
        lx0 = math.log(self.sizes[0]) - 5.0
        lx1 = max(math.log(value) if 0 < value < math.inf else -math.inf, math.log(self.sizes[-1])) + 20.0
        grid = np.exp(np.linspace(lx0, lx1, 2000))
        lower, upper = self._band(grid, self._value(grid))
        # each edge is where that side of the band crosses the target for the last time: below the
        # small-data region the band may widen again, and a crossing there says nothing
        return min(self._last_crossing(grid, lower > target), value), max(self._last_crossing(grid, upper > target),
                                                                          value)

    @staticmethod
    def _last_crossing(grid: np.ndarray, above: np.ndarray) -> float:
        """The grid size from which ``above`` stays false (``inf`` if it never does)."""
        idx = np.flatnonzero(above)
        if not len(idx):
            return float(grid[0])
        return math.inf if idx[-1] == len(grid) - 1 else float(grid[idx[-1] + 1])

    # -- reporting -------------------------------------------------------------------------------
    def __str__(self) -> str:
        level = f"{self.confidence:.0%}"
        lines = [f"{self.equation()}  ({self.form.name}, {len(self.sizes) - self.start_index} points fitted)"]
        for name, value in self.params.items():
            lo, hi = self.intervals[name]
            lines.append(f"  {name:>6} = {value:.4g}  [{lo:.4g}, {hi:.4g}]  {level}")
        r = self.regions
        start = (f"small-data < {r['power_law'][0]:.4g} <= power-law" if self.start_index
                 else "no small-data region in the data; power-law")
        lines.append(f"  regions: {start} < {r['power_law'][1]:.4g} <= irreducible")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def equation(self) -> str:
        """The law in the paper's notation with the fitted values."""
        p = self.params
        if isinstance(self.form, Hestness):
            return f"eps(m) = {p['alpha']:.4g} * m^{p['beta']:.4g} + {p['gamma']:.4g}"
        return f"eps(m) = {self.form.name}({self.form.describe(self._vector())})"

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to report or rebuild the fit, as plain JSON types."""
        out: dict[str, Any] = {
            "form": self.form.name,
            "equation": self.equation(),
            **{k: float(v) for k, v in self.params.items()},
            "intervals": {k: [float(a), float(b)] for k, (a, b) in self.intervals.items()},
            "confidence": self.confidence,
            "exponent": self.exponent,
            "floor": self.floor,
            "regions": {k: [jsonable(a), jsonable(b)] for k, (a, b) in self.regions.items()},
            "power_law_start": self.power_law_start,
            "start_index": self.start_index,
            "sizes": self.sizes.tolist(),
            "errors": self.errors.tolist(),
            "loss": self.loss,
            "resample": self.resample,
            "n_bootstrap": len(self.boot),
            "rmsle": self.rmsle,
            "notes": list(self.notes),
        }
        if self.spread is not None:
            out["prediction_interval"] = {"noise_sd": self.spread.noise_sd, "kappa": self.spread.kappa}
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def plot(self, ax: Axes | None = None, *, extrapolate: float = 10.0, label: str | None = None) -> Axes:
        """Paper-style log-log figure: points, fit, interval band, regions shaded."""
        from lightning_scaling.laws.plot import plot_fit

        return plot_fit(self, ax=ax, extrapolate=extrapolate, label=label)
# -- estimators -------------------------------------------------------------------------------------
def _seed_weights(y: np.ndarray) -> np.ndarray:
    """Inverse-variance weights of each size's mean log error, from its seeds.

    A variance from a handful of seeds is itself noisy, and weighting by it lets a lucky size take all
    the weight (and the intervals too little width); each size's variance is therefore shrunk toward
    the pooled variance, as much as if the pool were worth four more seeds. A size with one seed has
    no variance of its own and takes the pooled one (an adaptive study, or a sweep where a run
    failed, has sizes with fewer seeds than others: their means count for less, not the same).
    """
    logy = np.log(y)
    count = np.sum(np.isfinite(logy), axis=-1)
    dof = np.maximum(count - 1, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one seed: no degrees of freedom, no variance
        var = np.where(dof > 0, np.nanvar(logy, axis=-1, ddof=1), 0.0)
    pooled = np.sum(var * dof, axis=-1, keepdims=True) / np.maximum(np.sum(dof, axis=-1, keepdims=True), 1)
    shrunk = (dof * var + 4.0 * pooled) / (dof + 4.0)
    w = count / np.maximum(shrunk, 1e-300)
    return w / w.mean(axis=-1, keepdims=True)


def _reduce_seeds(y: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-size mean error and weights (the user's, else inverse variance over seeds, else equal)."""
    if y.ndim == 1:
        return y, np.ones_like(y) if weights is None else weights
    mean = np.nanmean(y, axis=1)
    if weights is not None:
        return mean, weights
    if np.any(np.sum(np.isfinite(y), axis=1) >= 2):
        return mean, _seed_weights(y)
    return mean, np.ones_like(mean)


def _run_noise(y_all: np.ndarray) -> float | None:
    """One run's noise in log error, pooled over the sizes with two or more seeds; ``None`` without seeds."""
    if y_all.ndim != 2:
        return None
    logy = np.log(y_all)
    dof = np.maximum(np.sum(np.isfinite(logy), axis=1) - 1, 0)
    if not dof.any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        var = np.where(dof > 0, np.nanvar(logy, axis=1, ddof=1), 0.0)
    return float(math.sqrt(np.sum(var * dof) / np.sum(dof)))


def _rising_tail(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """``(level, note)`` when the error rises at the largest sizes beyond its noise, else ``(0, "")``.

    The noise is the spread of second differences of log error (a smooth decreasing curve has
    almost none); a rise of more than twice that and more than 2% counts.
    """
    ly = np.log(y)
    j = int(np.argmin(ly))
    if j == len(y) - 1 or len(y) < 3:
        return 0.0, ""
    noise = 1.4826 * float(np.median(np.abs(np.diff(ly, 2)))) / math.sqrt(6.0) if len(y) >= 4 else 0.0
    if ly[-1] - ly[j] <= max(math.log(1.02), 2.0 * noise):
        return 0.0, ""
    level = float(np.exp(np.mean(ly[max(j + 1, len(y) - 2):])))
    kind = "peaks and falls again" if ly[-1] < np.max(ly[j:]) - max(math.log(1.02), 2.0 * noise) else "rises"
    return level, (f"the error {kind} at the largest sizes (from {y[j]:.4g} at {x[j]:.4g} to {y[-1]:.4g} at "
                   f"{x[-1]:.4g}): no power law holds there, so predictions beyond the data are held at the level "
                   f"measured last ({level:.4g}) instead of falling")


def _constant_fit(x: np.ndarray, y_all: np.ndarray, confidence: float, seed_errors: np.ndarray | None
                  ) -> LearningCurveFit:
    """A flat law for errors that are the same at every size, with a note saying so."""
    y = np.nanmean(y_all, axis=1) if y_all.ndim == 2 else y_all
    level = float(np.mean(y))
    form = Hestness()
    params = np.array([0.0, 0.0, level])
    noise = _run_noise(y_all)
    spread = PredictiveSpread.estimate(form, np.zeros(0), Context.of(x, y), x, np.log(y), np.ones_like(y),
                                       residuals=np.zeros(0), distance=np.zeros(0), run_noise=noise)
    note = (f"errors are constant ({level:.6g} at every size): there is no learning curve to fit, so the "
            "prediction is flat; check that training used the data fraction and that the monitored metric changes")
    return LearningCurveFit(
        form=form, params=dict(zip(form.params, params.tolist())),
        intervals={k: (float(v), float(v)) for k, v in zip(form.params, params)}, sizes=x, errors=y,
        start_index=0, confidence=confidence, boot=params[None], seed_errors=seed_errors, rmsle=0.0,
        spread=spread, notes=[note], constant=True)


def _check_options(confidence: float, bootstrap: int, loss: str, resample: str) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (isinstance(bootstrap, int | np.integer) and bootstrap >= 0):
        raise ValueError(f"bootstrap must be a non-negative integer number of replicates, got {bootstrap!r}")
    if loss not in ("squared", "huber"):
        raise ValueError(f"loss must be 'squared' or 'huber', got {loss!r}")
    if resample not in ("auto", "points", "seeds"):
        raise ValueError(f"resample must be 'auto', 'points' or 'seeds', got {resample!r}")


def _bootstrap(f: Form, xs: np.ndarray, ys: np.ndarray, ws: np.ndarray, ys_seeds: np.ndarray | None,
               params: np.ndarray, ctx: Context, *, n: int, method: str, user_weights: bool,
               huber: float | None, rng: np.random.Generator) -> np.ndarray:
    """``n`` bootstrap replicates of the parameters, resampling points or each size's seeds."""
    if n == 0:
        return params[None, :].copy()
    if method == "points" or ys_seeds is None:
        counts = rng.multinomial(len(xs), np.full(len(xs), 1.0 / len(xs)), size=n)
        return refit_many(f, xs, np.log(ys), counts * ws, params, ctx, huber=huber)
    reps = np.full((n, len(xs), ys_seeds.shape[1]), np.nan)
    for i, row in enumerate(ys_seeds):
        ok = row[np.isfinite(row)]
        draw = ok[rng.integers(0, len(ok), size=(n, len(ok)))]
        # resampled means spread by sqrt((n-1)/n) of the mean's true spread; undo that, or a
        # curve measured with few seeds gets intervals that are too narrow
        centre = ok.mean()
        reps[:, i, : len(ok)] = centre + math.sqrt(len(ok) / (len(ok) - 1)) * (draw - centre)
    reps = np.maximum(reps, 1e-12 * ys.min())
    rw = np.broadcast_to(ws, (n, len(xs))) if user_weights else _seed_weights(reps)
    return refit_many(f, xs, np.log(np.nanmean(reps, axis=2)), rw, params, ctx, huber=huber)


def _pooled_with_average(f: Form, boot: np.ndarray, fitted: np.ndarray, reported: np.ndarray, ctx: Context
                         ) -> np.ndarray:
    """Bootstrap replicates of the one fit from the reported start, every second one moved to centre
    on the ``reported`` law, the average over starts (as many replicates as were asked for).

    The bootstrap refits one start, and its replicates alone can all miss the reported law (its
    intervals then did not contain its own estimate); moved alone, they would miss what that start
    says (a plateau the average half-includes biases it). Pooled, the intervals carry the sampling
    noise and the gap between the two. The move is made in the unconstrained parameterisation, so every
    replicate stays valid.
    """
    shift = f.unconstrained(reported, ctx) - f.unconstrained(fitted, ctx)
    out = boot.copy()
    out[1::2] = f.natural(f.unconstrained(boot[1::2], ctx) + shift, ctx)
    return out


def fit_learning_curve(
    sizes: Sequence[float] | np.ndarray,
    errors: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
    *,
    form: str | Form = "hestness",
    detect_small_data: bool = True,
    start: float | None = None,
    loss: Literal["squared", "huber"] = "squared",
    huber_delta: float = 0.05,
    weights: Sequence[float] | np.ndarray | None = None,
    bootstrap: int = 1000,
    resample: Resample = "auto",
    confidence: float = 0.95,
    seed: int = 0,
) -> LearningCurveFit:
    r"""Fit a learning curve with prediction intervals, bootstrap parameter intervals and the paper's regions.

    Args:
        sizes: training-set sizes ``m`` (samples, tokens, ...), increasing, each once.
        errors: generalisation error at each size, ``(n,)``; or ``(n, n_seeds)`` with one column per
            seed (``nan`` for a missing run): then the mean is fitted with inverse-variance weights.
        form: ``"hestness"`` (:math:`\alpha m^\beta + \gamma`, default), ``"power_law"``, ``"m4"``,
            ``"broken_power_law"``, or a :class:`~lightning_scaling.laws.forms.Form`.
        detect_small_data: find where the power-law region starts and leave earlier points out
            (only when ``start`` is not given; forms that model the small-data region use all points).
        start: smallest size to fit, overriding detection.
        loss: ``"squared"`` or ``"huber"`` on log-error residuals (Huber resists outlier runs).
        huber_delta: Huber threshold in log-error units (0.05 = a 5% relative error).
        weights: per-size weights (override the seed-variance weights).
        bootstrap: bootstrap replicates for the parameter intervals and the mean curve's confidence
            interval (0 disables them; prediction intervals need none).
        resample: ``"points"`` resamples sizes, ``"seeds"`` resamples seeds within each size,
            ``"auto"`` uses seeds when every size has at least two.
        confidence: level of every interval.
        seed: seed of the bootstrap; results are deterministic given it.

    Returns:
        A :class:`LearningCurveFit`. Errors that are the same at every size give a flat fit with a note.

    Example:
        >>> import numpy as np
        >>> m = np.geomspace(1e3, 1e6, 12)
        >>> rng = np.random.default_rng(0)
        >>> eps = (2.0 * m**-0.3 + 0.02) * np.exp(rng.normal(0, 0.01, m.size))
        >>> fit = fit_learning_curve(m, eps)
        >>> round(fit.params["beta"], 2)
        -0.3
        >>> lo, hi = fit.intervals["beta"]
        >>> bool(lo < -0.3 < hi)
        True
    """
    f = get_form(form)
    x, y_all = as_curve(sizes, errors, n_params=f.n_params, allow_constant=True)
    _check_options(confidence, bootstrap, loss, resample)
    seeds_available = y_all.ndim == 2 and bool(np.all(np.sum(np.isfinite(y_all), axis=1) >= 2))
    if resample == "seeds" and not seeds_available:
        raise ValueError("resample='seeds' needs errors of shape (n_sizes, n_seeds) with >= 2 seeds at every size; "
                         "use resample='points'")
    method = "seeds" if resample == "seeds" or (resample == "auto" and seeds_available) else "points"
    w_user = None
    if weights is not None:
        w_user = np.asarray(weights, dtype=float)
        if w_user.shape != x.shape or not np.all(np.isfinite(w_user)) or np.any(w_user < 0) or not w_user.any():
            raise ValueError(f"weights must be {len(x)} finite, non-negative values, not all zero")
    y, w = _reduce_seeds(y_all, w_user)
    if np.ptp(y) <= 1e-12 * np.abs(y).max():
        return _constant_fit(x, y_all, confidence, y_all if y_all.ndim == 2 else None)
    huber = huber_delta if loss == "huber" else None

    held, average = Holdout(), None
    if start is not None:
        k = int(np.searchsorted(x, start))
        if k >= len(x) or len(x) - k < f.n_params:
            raise ValueError(f"start={start} leaves {len(x) - k} sizes; the {f.name} form needs {f.n_params}")
    elif detect_small_data and isinstance(f, Hestness | PowerLaw):
        cands = start_candidates(f, x, y, w, huber)
        held, average, k = best_holdout(cands), average_starts(f, x, y, w, huber, cands), reported_start(cands)
    else:
        k = 0
    xs, ys, ws = x[k:], y[k:], w[k:]
    if not len(held.residuals) and (h := holdout_count(xs, HOLDOUT_FRACTION, f.n_params)):
        held = heldout_fit(f, xs, ys, h, ws, huber)  # the curve's own past, for the interval

    ctx = Context.of(xs, ys)
    if average is None:
        params = fit_form(f, xs, ys, weights=ws, huber=huber, ctx=ctx)[0]
        single, members, member_weights = params, params[None], np.ones(1)
    else:
        params, members, member_weights = average.params, average.members, average.weights
        # the one fit from the reported start, which the bootstrap refits (average_starts does not keep it)
        single = fit_form(f, xs, ys, weights=ws, huber=huber, ctx=ctx)[0] if bootstrap else params
    rmsle = float(np.sqrt(np.mean((f.log_predict(params, xs) - np.log(ys)) ** 2)))
    theta = f.unconstrained(params, ctx)
    spread = PredictiveSpread.estimate(f, theta, ctx, xs, np.log(ys), ws, residuals=held.residuals,
                                       distance=held.distance, run_noise=_run_noise(y_all[k:]),
                                       members=members, member_weights=member_weights)
    boot = _bootstrap(f, xs, ys, ws, y_all[k:] if y_all.ndim == 2 else None, single, ctx, n=bootstrap,
                      method=method, user_weights=w_user is not None, huber=huber, rng=np.random.default_rng(seed))
    if average is not None and bootstrap:
        boot = _pooled_with_average(f, boot, single, params, ctx)
    lo, hi = percentiles(boot[~np.isnan(boot).any(axis=1)], confidence)
    level, note = _rising_tail(x, y)
    return LearningCurveFit(
        form=f, params={name: float(v) for name, v in zip(f.params, params)},
        intervals={name: (float(lo[i]), float(hi[i])) for i, name in enumerate(f.params)},
        sizes=x, errors=y, start_index=k, confidence=confidence, boot=boot,
        seed_errors=y_all if y_all.ndim == 2 else None, loss=loss, resample=method, rmsle=rmsle,
        spread=spread, notes=[note] if note else [], tail_level=level,
    )
