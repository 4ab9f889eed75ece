r"""Held-out extrapolation: where the power-law region starts, which form extrapolates best.

Every choice here is scored the way a user is judged: fit without the largest sizes, predict them.
The held-out residuals of those fits are kept, because they also measure how fast this curve's
extrapolation error grows with distance (the prediction interval's extrapolation term, see
:mod:`lightning_scaling.laws.intervals`).

The start of the power-law region is uncertain, and a held-out score on the two or three largest
sizes is a noisy judge of it, so the default fit does not pick one start: it averages the candidate
starts (:func:`start_candidates`), each weighted by

.. math::
    w_k = \frac{\rho}{K} + (1 - \rho)\,\frac{e^{-(s_k^2 - s_{\min}^2) / (2 T^2 s_{\min}^2)}}
          {\sum_j e^{-(s_j^2 - s_{\min}^2) / (2 T^2 s_{\min}^2)}}

where :math:`s_k` is the held-out RMSLE of start :math:`k`, :math:`\rho` = :data:`START_PRIOR` the
share of the weight spread evenly over the :math:`K` candidates, and :math:`T` =
:data:`START_TEMPERATURE` how many times the best score a candidate may lose by and keep weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lightning_scaling.laws._core import fit_form, fit_form_subsets
from lightning_scaling.laws._validation import as_curve
from lightning_scaling.laws.forms import Context, Form, get_form

__all__ = ["HOLDOUT_FRACTION", "START_PRIOR", "START_TEMPERATURE", "FormScores", "Holdout", "StartCandidate",
           "extrapolation_error", "reported_start", "select_form", "start_candidates", "start_weights"]

#: fraction of the log-size range held out when scoring a candidate by extrapolation
HOLDOUT_FRACTION = 0.2
#: candidate starts of the power-law region, as fractions of the points
START_GRID = np.arange(0.0, 0.76, 0.05)
#: the held-out residuals of this many best-scoring starts describe the curve's extrapolation error
TOP_STARTS = 5
#: share of the weight of the candidate starts spread evenly over them (the rest follows held-out error);
#: chosen where both development sets were flat (docs/fitting.md), not at either set's optimum
START_PRIOR = 0.5
#: a start whose held-out RMSLE is this many times the best one's keeps about exp(-1/2) of the best's weight
START_TEMPERATURE = 4.0


@dataclass
class Holdout:
    """Held-out log residuals of fits without the largest sizes, and how far each point lay beyond.

    ``distance`` is the extrapolation distance of each held-out point: its log size beyond the last
    fitted size, in units of the fitted log-size range (0 inside the data, 1 one range beyond).
    """

    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distance: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def extend(self, other: Holdout) -> Holdout:
        return Holdout(np.r_[self.residuals, other.residuals], np.r_[self.distance, other.distance])


def holdout_count(x: np.ndarray, holdout: float, n_params: int) -> int:
    """How many of the largest sizes lie in the last ``holdout`` of the log-size range (>= 2), leaving
    enough to fit ``n_params`` parameters with one point to spare; 0 when that is impossible."""
    lx = np.log(x)
    h = max(2, int(np.sum(lx > lx[-1] - holdout * (lx[-1] - lx[0]))))
    return max(0, min(h, len(x) - n_params - 1))


def heldout_fit(form: Form, x: np.ndarray, y: np.ndarray, h: int, w: np.ndarray | None,
                huber: float | None) -> Holdout:
    """Fit on all but the last ``h`` points; the residuals on those ``h`` (``nan`` when infeasible)."""
    try:
        p: np.ndarray | None = fit_form(form, x[:-h], y[:-h], weights=None if w is None else w[:-h], huber=huber)[0]
    except RuntimeError:
        p = None
    return holdout_of(form, p, x, y, h)


def holdout_of(form: Form, params: np.ndarray | None, x: np.ndarray, y: np.ndarray, h: int) -> Holdout:
    """The residuals on the last ``h`` points of parameters fitted without them (``nan`` when ``params``
    is ``None`` or not finite), with their distances beyond the fitted range ``x[:-h]``."""
    if params is None or not np.all(np.isfinite(params)):
        r = np.full(h, np.nan)
    else:
        r = form.log_predict(params, x[-h:]) - np.log(y[-h:])
    lx = np.log(x)
    span = max(lx[-h - 1] - lx[0], 1e-12)
    return Holdout(r, (lx[-h:] - lx[-h - 1]) / span)


def _rmsle(res: np.ndarray) -> float:
    out = float(np.sqrt(np.mean(res**2)))
    return out if np.isfinite(out) else np.inf


def extrapolation_error(
    form: Form | str, sizes: np.ndarray, errors: np.ndarray, *, holdout: float = HOLDOUT_FRACTION,
    weights: np.ndarray | None = None, huber: float | None = None,
) -> float:
    """RMSLE of ``form`` fitted without the largest sizes and scored on them.

    The held-out points are those in the last ``holdout`` of the log-size range (at least two).
    """
    f = get_form(form)
    x, y = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    h = holdout_count(x, holdout, f.n_params)
    if h == 0:
        raise ValueError(f"{len(x)} sizes are too few to hold any out for {f.name} ({f.n_params} parameters)")
    res = heldout_fit(f, x, y, h, None if weights is None else np.asarray(weights), huber).residuals
    if not np.all(np.isfinite(res)):
        raise RuntimeError(f"the {f.name} fit found no feasible parameters without the largest sizes")
    return _rmsle(res)


@dataclass
class StartCandidate:
    """One candidate start of the power-law region: its index, held-out score and weight."""

    start: int
    score: float
    weight: float
    held: Holdout


def start_weights(scores: np.ndarray) -> np.ndarray:
    """Weights of candidate starts from their held-out RMSLEs (module docstring); ``inf`` scores get
    only the prior's share, and with no finite score every candidate weighs the same.

    >>> start_weights(np.array([0.1, 0.1, np.inf])).round(3).tolist()
    [0.417, 0.417, 0.167]
    """
    s = np.asarray(scores, dtype=float)
    even = np.full(len(s), 1.0 / max(len(s), 1))
    ok = np.isfinite(s)
    if not ok.any():
        return even
    best = float(s[ok].min())
    scale = START_TEMPERATURE * max(best, 1e-3)  # 1e-3: a noiseless curve does not make one start win
    with np.errstate(invalid="ignore"):
        logw = np.where(ok, -0.5 * (s**2 - best**2) / scale**2, -np.inf)
    fit = np.exp(logw - logw[ok].max())
    return START_PRIOR * even + (1.0 - START_PRIOR) * fit / fit.sum()


def start_candidates(form: Form, x: np.ndarray, y: np.ndarray, w: np.ndarray, huber: float | None
                     ) -> list[StartCandidate]:
    """Every candidate start of the power-law region, scored by held-out extrapolation and weighted.

    Candidates are the starts in :data:`START_GRID` (fractions of the points) that leave the form
    one point more than it has parameters; each is fitted without the largest sizes and scored on
    them where enough points remain. Empty when the curve is too short to hold any point out.
    Non-finite scores (and late starts without one) are never ranked: they keep the prior's share.
    """
    n = len(x)
    h = holdout_count(x, HOLDOUT_FRACTION, form.n_params)
    if h == 0:
        return []
    starts = [k for k in sorted({round(float(f) * n) for f in START_GRID}) if n - k >= form.n_params + 1]
    # a late start leaves too few points to hold any out: it has no score, only the prior's share
    scored = [k for k in starts if n - h - k >= form.n_params + 1]
    idx = np.arange(n)
    masks = np.array([(idx >= k) & (idx < n - h) for k in scored]).reshape(len(scored), n)
    # the floor's bound comes from the fitted points only, not from the held-out ones
    params, _ = fit_form_subsets(form, x, y, masks, weights=w, huber=huber, ctx=Context.of(x[:n - h], y[:n - h]))
    out: list[StartCandidate] = []
    for k in starts:
        held = holdout_of(form, params[scored.index(k)], x[k:], y[k:], h) if k in scored else Holdout()
        out.append(StartCandidate(k, _rmsle(held.residuals) if len(held.residuals) else np.inf, 0.0, held))
    for c, weight in zip(out, start_weights(np.array([c.score for c in out]))):
        c.weight = float(weight)
    return out


def _best(cands: Sequence[StartCandidate]) -> list[StartCandidate]:
    return sorted((c for c in cands if np.isfinite(c.score)), key=lambda c: (c.score, c.start))[:TOP_STARTS]


def reported_start(cands: Sequence[StartCandidate]) -> int:
    """Where the power-law region is reported to start: the median of the :data:`TOP_STARTS`
    best-scoring candidates (0 without a finite score). The regions, the parameter intervals and the
    averaged law's grid start there."""
    best = _best(cands)
    return int(np.median([c.start for c in best])) if best else 0


def best_holdout(cands: Sequence[StartCandidate]) -> Holdout:
    """Held-out residuals of the :data:`TOP_STARTS` best-scoring candidates with a finite score, pooled."""
    pool = Holdout()
    for c in _best(cands):
        pool = pool.extend(c.held)
    return pool


class FormScores(dict):
    """``{form name: held-out RMSLE}``, with ``notes`` on the forms that were skipped and why."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []


def select_form(
    sizes: Sequence[float] | np.ndarray,
    errors: Sequence[float] | np.ndarray,
    forms: Sequence[str | Form] = ("hestness", "power_law", "m4", "broken_power_law"),
    *,
    holdout: float = HOLDOUT_FRACTION,
) -> tuple[str, FormScores]:
    """Choose among forms by held-out extrapolation, not in-sample fit.

    Each form is fitted without the largest sizes (the last ``holdout`` of the log-size range) and
    scored by RMSLE on them; more flexible forms win only if they extrapolate better.

    Returns:
        ``(best form name, {form name: held-out RMSLE})``. A form with too many parameters for the
        data, or whose fit fails or scores ``nan``/``inf``, is left out of the scores and named in
        the scores' ``notes``.

    >>> import numpy as np
    >>> m = np.geomspace(10, 1e5, 15)
    >>> best, scores = select_form(m, 5 * m**-0.4 + 0.1, forms=("power_law", "hestness"))
    >>> best, scores["hestness"] < scores["power_law"]
    ('hestness', True)
    >>> best, scores = select_form(m[:5], 5 * m[:5]**-0.4 + 0.1, forms=("hestness", "broken_power_law"))
    >>> scores.notes
    ['broken_power_law skipped: 6 parameters cannot be fitted and scored on 5 sizes']
    """
    x, y = as_curve(sizes, errors, n_params=2)
    if y.ndim == 2:
        y = np.nanmean(y, axis=1)
    scores = FormScores()
    for form in forms:
        f = get_form(form)
        if holdout_count(x, holdout, f.n_params) == 0:
            scores.notes.append(f"{f.name} skipped: {f.n_params} parameters cannot be fitted and scored on "
                                f"{len(x)} sizes")
            continue
        try:
            score = extrapolation_error(f, x, y, holdout=holdout)
        except (RuntimeError, ValueError, FloatingPointError) as exc:
            scores.notes.append(f"{f.name} skipped: {exc}")
            continue
        if not np.isfinite(score):
            scores.notes.append(f"{f.name} skipped: its held-out error is not finite")
            continue
        scores[f.name] = score
    if not scores:
        raise ValueError(f"{len(x)} sizes are too few to compare forms by held-out extrapolation; measure more sizes"
                         + (f" ({'; '.join(scores.notes)})" if scores.notes else ""))
    return min(scores, key=scores.__getitem__), scores
