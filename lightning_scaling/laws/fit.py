r"""Fit a learning curve :math:`\varepsilon(m)`, with its regions, intervals and predictions.

The default estimator follows Hestness et al. 2017: the power law
:math:`\varepsilon(m) = \alpha m^{\beta} + \gamma` fitted by least squares on :math:`\log\varepsilon`
(so each point counts by its relative error), from a grid of starting points, under the bounds
:math:`\beta < 0` and :math:`0 \le \gamma < \min \varepsilon`. What makes it robust:

* **Small-data region.** Points near best-guess error bend the curve and spoil the exponent. The
  start of the power-law region is chosen by *held-out extrapolation*: for each candidate start the
  law is fitted without the largest sizes (the last 20% of the log-size range) and scored on them; the
  start used is the median of the five best candidates (one law, and a stable choice). On the public
  Alabdulmohsin et al. 2022 benchmark this cuts extrapolation error by more than half
  (``benchmarks/fit_extrapolation.py``).
* **Seeds and weights.** ``errors`` may hold one column per seed; the curve is fitted to the
  per-size mean with inverse-variance weights (a size run with fewer seeds, or with one, takes the
  seed variance pooled over the others: its mean counts in proportion to its seeds), and intervals
  resample the seeds.
* **Intervals** are bootstrap percentiles: every parameter, every prediction, every data-needed
  figure comes with one.
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
from lightning_scaling.laws.forms import Context, Form, Hestness, PowerLaw, get_form

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "DataNeeded",
    "LearningCurveFit",
    "Prediction",
    "extrapolation_error",
    "fit_learning_curve",
    "select_form",
]

Resample = Literal["auto", "points", "seeds"]

#: fraction of the log-size range held out when scoring a candidate by extrapolation
HOLDOUT_FRACTION = 0.2
#: candidate starts of the power-law region, as fractions of the points
_START_GRID = np.arange(0.0, 0.76, 0.05)
_TOP_STARTS = 5


@dataclass(frozen=True)
class Prediction:
    """A predicted value with its bootstrap interval (arrays for array input)."""

    value: Any
    lower: Any
    upper: Any
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": _jsonable(self.value), "lower": _jsonable(self.lower), "upper": _jsonable(self.upper),
                "confidence": self.confidence}


def _positive_sizes(sizes: Any, what: str = "sizes") -> np.ndarray:
    """``sizes`` as a 1-d float array, every one positive and finite (where a law is evaluated)."""
    x = np.atleast_1d(np.asarray(sizes, dtype=float))
    bad = ~np.isfinite(x) | (x <= 0)
    if np.any(bad):
        raise ValueError(f"{what} to predict at must be positive and finite, got {x[bad]}")
    return x


def _prediction(scalar: bool, value: np.ndarray, lo: np.ndarray, hi: np.ndarray, confidence: float) -> Prediction:
    """A :class:`Prediction` of floats when ``scalar`` (the caller asked at one size), else of arrays."""
    if scalar:
        return Prediction(float(value[0]), float(lo[0]), float(hi[0]), confidence)
    return Prediction(value, lo, hi, confidence)


@dataclass(frozen=True)
class DataNeeded(Prediction):
    """Training-set size needed for a target error, with interval; ``inf`` where it is unreachable."""

    target: float = math.nan
    floor: float = math.nan

    @property
    def reachable(self) -> bool:
        """Whether the fitted curve reaches the target at any size."""
        return bool(np.isfinite(self.value))

    def __str__(self) -> str:
        if not self.reachable:
            return (f"unreachable: target {self.target:.4g} is at or below the fitted floor "
                    f"(irreducible error {self.floor:.4g})")
        upper = "unbounded" if not np.isfinite(self.upper) else f"{self.upper:.4g}"
        return f"{self.value:.4g} [{self.lower:.4g}, {upper}] ({self.confidence:.0%} interval)"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "target": self.target, "reachable": self.reachable, "floor": self.floor}


@dataclass
class LearningCurveFit:
    """A fitted learning curve: parameters with intervals, regions, and predictions.

    Build one with :func:`fit_learning_curve`. ``boot`` holds the bootstrap replicates of the
    parameters; every interval here is a percentile interval over them.
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
        if not self.floor > 0:
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

    # -- predictions -----------------------------------------------------------------------------
    def predict(self, sizes: float | Sequence[float] | np.ndarray) -> Prediction:
        """Predicted error at ``sizes``, with its bootstrap interval.

        >>> import numpy as np
        >>> m = np.geomspace(100, 100_000, 8)
        >>> fit = fit_learning_curve(m, 3.0 * m**-0.3 + 0.05, bootstrap=200)
        >>> round(float(fit.predict(1e6).value), 4)  # 3 * 1e6**-0.3 + 0.05
        0.0975
        """
        x = _positive_sizes(sizes)
        value = self.form.predict(self._vector(), x)
        lo, hi = self._band(self.form.predict(self.boot, x))
        return _prediction(np.ndim(sizes) == 0, value, lo, hi, self.confidence)

    def data_needed(self, target: float) -> DataNeeded:
        """Training-set size at which the error reaches ``target``, with interval.

        Targets at or below the fitted floor are unreachable: the value is ``inf`` and ``str()``
        says so. The upper end is ``inf`` when some bootstrap replicates cannot reach the target.
        """
        if not (isinstance(target, int | float | np.floating) and math.isfinite(target) and target > 0):
            raise ValueError(f"target must be a positive, finite error, got {target!r}")
        value = float(self.form.size_for(self._vector(), target)[0])
        reps = self.form.size_for(self.boot, float(target))
        lo, hi = self._band(reps[:, None])
        if not math.isfinite(value):
            lo, hi = np.array([math.inf]), np.array([math.inf])
        return DataNeeded(value, float(lo[0]), float(hi[0]), self.confidence, target=float(target), floor=self.floor)

    def _band(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = samples[~np.isnan(samples).any(axis=1)]
        if len(ok) == 0:
            nan = np.full(samples.shape[1], np.nan)
            return nan, nan
        return _percentiles(ok, self.confidence)

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
            "regions": {k: [_jsonable(a), _jsonable(b)] for k, (a, b) in self.regions.items()},
            "power_law_start": self.power_law_start,
            "start_index": self.start_index,
            "sizes": self.sizes.tolist(),
            "errors": self.errors.tolist(),
            "loss": self.loss,
            "resample": self.resample,
            "n_bootstrap": len(self.boot),
            "rmsle": self.rmsle,
        }
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def plot(self, ax: Axes | None = None, *, extrapolate: float = 10.0, label: str | None = None) -> Axes:
        """Paper-style log-log figure: points, fit, interval band, regions shaded."""
        from lightning_scaling.laws.plot import plot_fit

        return plot_fit(self, ax=ax, extrapolate=extrapolate, label=label)


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval along axis 0; order statistics where replicates are infinite."""
    tail = 50.0 * (1.0 - confidence)
    # interpolating between two infinite replicates gives nan; an order statistic stays inf
    method = "inverted_cdf" if np.isinf(samples).any() else "linear"
    return (np.percentile(samples, tail, axis=0, method=method),
            np.percentile(samples, 100.0 - tail, axis=0, method=method))


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_jsonable(u) for u in v.tolist()]
    if isinstance(v, float | np.floating):
        v = float(v)
        return v if math.isfinite(v) else ("inf" if v > 0 else "-inf" if v < 0 else None)
    return v


# -- estimators --------------------------------------------------------------------------------------
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


def extrapolation_error(
    form: Form | str, sizes: np.ndarray, errors: np.ndarray, *, holdout: float = HOLDOUT_FRACTION,
    weights: np.ndarray | None = None, huber: float | None = None,
) -> float:
    """RMSLE of ``form`` fitted without the largest sizes and scored on them.

    The held-out points are those in the last ``holdout`` of the log-size range (at least two).
    """
    f = get_form(form)
    x, y = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    h = _holdout_count(x, holdout, f.n_params)
    if h == 0:
        raise ValueError(f"{len(x)} sizes are too few to hold any out for {f.name} ({f.n_params} parameters)")
    return _heldout_rmsle(f, x, y, h, None if weights is None else np.asarray(weights), huber)


def _heldout_rmsle(form: Form, x: np.ndarray, y: np.ndarray, h: int, w: np.ndarray | None,
                   huber: float | None) -> float:
    """Fit on all but the last ``h`` points, RMSLE on those ``h``."""
    p, _ = fit_form(form, x[:-h], y[:-h], weights=None if w is None else w[:-h], huber=huber)
    return float(np.sqrt(np.mean((form.log_predict(p, x[-h:]) - np.log(y[-h:])) ** 2)))


def _holdout_count(x: np.ndarray, holdout: float, n_params: int) -> int:
    lx = np.log(x)
    h = max(2, int(np.sum(lx > lx[-1] - holdout * (lx[-1] - lx[0]))))
    return max(0, min(h, len(x) - n_params - 1))


def _detect_start(form: Form, x: np.ndarray, y: np.ndarray, w: np.ndarray, huber: float | None) -> int:
    """Start of the power-law region: the median of the best starts by held-out extrapolation."""
    n = len(x)
    h = _holdout_count(x, HOLDOUT_FRACTION, form.n_params)
    if h == 0:
        return 0
    scored = []
    for k in sorted({round(float(f) * n) for f in _START_GRID}):
        if n - h - k < form.n_params + 1:
            break
        scored.append((_heldout_rmsle(form, x[k:], y[k:], h, w[k:], huber), k))
    if not scored:
        return 0
    scored.sort()
    return int(np.median([k for _, k in scored[:_TOP_STARTS]]))


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
    r"""Fit a learning curve with bootstrap intervals and the paper's regions.

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
        bootstrap: number of bootstrap replicates for the intervals (0 disables intervals).
        resample: ``"points"`` resamples sizes, ``"seeds"`` resamples seeds within each size,
            ``"auto"`` uses seeds when every size has at least two.
        confidence: level of every interval.
        seed: seed of the bootstrap; results are deterministic given it.

    Returns:
        A :class:`LearningCurveFit`.

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
    x, y_all = as_curve(sizes, errors, n_params=f.n_params)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not (isinstance(bootstrap, int | np.integer) and bootstrap >= 0):
        raise ValueError(f"bootstrap must be a non-negative integer number of replicates, got {bootstrap!r}")
    if loss not in ("squared", "huber"):
        raise ValueError(f"loss must be 'squared' or 'huber', got {loss!r}")
    if resample not in ("auto", "points", "seeds"):
        raise ValueError(f"resample must be 'auto', 'points' or 'seeds', got {resample!r}")
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
    huber = huber_delta if loss == "huber" else None

    if start is not None:
        k = int(np.searchsorted(x, start))
        if k >= len(x) or len(x) - k < f.n_params:
            raise ValueError(f"start={start} leaves {len(x) - k} sizes; the {f.name} form needs {f.n_params}")
    elif detect_small_data and isinstance(f, Hestness | PowerLaw):
        k = _detect_start(f, x, y, w, huber)
    else:
        k = 0

    xs, ys, ws = x[k:], y[k:], w[k:]
    ctx = Context.of(xs, ys)
    params, _ = fit_form(f, xs, ys, weights=ws, huber=huber, ctx=ctx)
    rmsle = float(np.sqrt(np.mean((f.log_predict(params, xs) - np.log(ys)) ** 2)))

    rng = np.random.default_rng(seed)
    if bootstrap == 0:
        boot = params[None, :].copy()
    elif method == "points":
        counts = rng.multinomial(len(xs), np.full(len(xs), 1.0 / len(xs)), size=bootstrap)
        boot = refit_many(f, xs, np.log(ys), counts * ws, params, ctx, huber=huber)
    else:
        ys_seeds = y_all[k:]
        reps = np.empty((bootstrap, len(xs), ys_seeds.shape[1]))
        reps.fill(np.nan)
        for i, row in enumerate(ys_seeds):
            ok = row[np.isfinite(row)]
            draw = ok[rng.integers(0, len(ok), size=(bootstrap, len(ok)))]
            # resampled means spread by sqrt((n-1)/n) of the mean's true spread; undo that, or a
            # curve measured with few seeds gets intervals that are too narrow
            centre = ok.mean()
            reps[:, i, : len(ok)] = centre + math.sqrt(len(ok) / (len(ok) - 1)) * (draw - centre)
        reps = np.maximum(reps, 1e-12 * ys.min())
        rw = np.broadcast_to(ws, (bootstrap, len(xs))) if w_user is not None else _seed_weights(reps)
        reps = np.nanmean(reps, axis=2)
        boot = refit_many(f, xs, np.log(reps), rw, params, ctx, huber=huber)

    lo, hi = _percentiles(boot[~np.isnan(boot).any(axis=1)], confidence)
    intervals = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(f.params)}
    return LearningCurveFit(
        form=f,
        params={name: float(v) for name, v in zip(f.params, params)},
        intervals=intervals,
        sizes=x,
        errors=y,
        start_index=k,
        confidence=confidence,
        boot=boot,
        seed_errors=y_all if y_all.ndim == 2 else None,
        loss=loss,
        resample=method,
        rmsle=rmsle,
    )


def select_form(
    sizes: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    forms: Sequence[str | Form] = ("hestness", "power_law", "m4", "broken_power_law"),
    *,
    holdout: float = HOLDOUT_FRACTION,
) -> tuple[str, dict[str, float]]:
    """Choose among forms by held-out extrapolation, not in-sample fit.

    Each form is fitted without the largest sizes (the last ``holdout`` of the log-size range) and
    scored by RMSLE on them; more flexible forms win only if they extrapolate better.

    Returns:
        ``(best form name, {form name: held-out RMSLE})``; forms with too many parameters for the
        data are left out of the scores.

    >>> import numpy as np
    >>> m = np.geomspace(10, 1e5, 15)
    >>> best, scores = select_form(m, 5 * m**-0.4 + 0.1, forms=("power_law", "hestness"))
    >>> best, scores["hestness"] < scores["power_law"]
    ('hestness', True)
    """
    x, y = as_curve(sizes, errors, n_params=2)
    if y.ndim == 2:
        y = np.nanmean(y, axis=1)
    scores: dict[str, float] = {}
    for form in forms:
        f = get_form(form)
        if _holdout_count(x, holdout, f.n_params) == 0:
            continue
        try:
            scores[f.name] = extrapolation_error(f, x, y, holdout=holdout)
        except RuntimeError:
            continue
    if not scores:
        raise ValueError(f"{len(x)} sizes are too few to compare forms by held-out extrapolation; measure more sizes")
    return min(scores, key=scores.__getitem__), scores
