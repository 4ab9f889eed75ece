"""Held-out extrapolation: where the power-law region starts, which form extrapolates best.

Every choice here is scored the way a user is judged: fit without the largest sizes, predict them.
The held-out residuals of those fits are kept, because they also measure how fast this curve's
extrapolation error grows with distance (the prediction interval's extrapolation term, see
:mod:`lightning_scaling.laws.intervals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lightning_scaling.laws._core import fit_form
from lightning_scaling.laws._validation import as_curve
from lightning_scaling.laws.forms import Form, get_form

__all__ = ["HOLDOUT_FRACTION", "FormScores", "Holdout", "extrapolation_error", "select_form"]

#: fraction of the log-size range held out when scoring a candidate by extrapolation
HOLDOUT_FRACTION = 0.2
#: candidate starts of the power-law region, as fractions of the points
START_GRID = np.arange(0.0, 0.76, 0.05)
#: the start used is the median of this many best-scoring candidates
TOP_STARTS = 5


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
        p, _ = fit_form(form, x[:-h], y[:-h], weights=None if w is None else w[:-h], huber=huber)
        r = form.log_predict(p, x[-h:]) - np.log(y[-h:])
    except RuntimeError:
        r = np.full(h, np.nan)
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


def detect_start(form: Form, x: np.ndarray, y: np.ndarray, w: np.ndarray, huber: float | None
                 ) -> tuple[int, Holdout]:
    """Start of the power-law region: the median of the best starts by held-out extrapolation.

    Returns the start index and the held-out residuals of the best candidates (their spread over
    starts is part of the prediction interval). Candidates with a non-finite score are never ranked.
    """
    n = len(x)
    h = holdout_count(x, HOLDOUT_FRACTION, form.n_params)
    if h == 0:
        return 0, Holdout()
    scored: list[tuple[float, int, Holdout]] = []
    for k in sorted({round(float(f) * n) for f in START_GRID}):
        if n - h - k < form.n_params + 1:
            break
        held = heldout_fit(form, x[k:], y[k:], h, w[k:], huber)
        score = _rmsle(held.residuals)
        if np.isfinite(score):
            scored.append((score, k, held))
    if not scored:
        return 0, Holdout()
    scored.sort(key=lambda s: (s[0], s[1]))
    best = scored[:TOP_STARTS]
    pool = Holdout()
    for _, _, held in best:
        pool = pool.extend(held)
    return int(np.median([k for _, k, _ in best])), pool


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
