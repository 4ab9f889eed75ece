r"""The default fit's law: an average over the candidate starts of the power-law region.

Where the small-data region ends is uncertain, and choosing one start by a held-out score on two or
three points throws away what the other starts say. The default fit therefore fits the form from
every candidate start :math:`k` (weights :math:`w_k` from
:func:`~lightning_scaling.laws.selection.start_weights`) and averages their log predictions,

.. math::
    \log\bar\varepsilon(m) = \sum_k w_k \log\hat\varepsilon_k(m),

then reports the one law of the form closest to that average (least squares in log error on a grid
from the reported start, :func:`~lightning_scaling.laws.selection.reported_start`, to one fitted
log-size range beyond the data, a floor below the lowest error from that start), so that the equation,
``predict`` and ``data_needed`` agree. The members' spread around the reported law,
:math:`\sum_k w_k (\log\hat\varepsilon_k(m) - \log\hat\varepsilon(m))^2`, enters the prediction
interval as the uncertainty of the start (:class:`~lightning_scaling.laws.intervals.PredictiveSpread`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from lightning_scaling.laws._core import fit_form, fit_form_subsets
from lightning_scaling.laws.forms import Context, Form
from lightning_scaling.laws.selection import StartCandidate, reported_start

__all__ = ["StartAverage", "average_starts"]

#: points of the grid the average is projected on, and how far beyond the data it reaches (fitted ranges)
GRID_POINTS = 40
GRID_BEYOND = 1.0


@dataclass(frozen=True)
class StartAverage:
    """The law closest to the average over starts, with the members it averages.

    ``members`` the parameters fitted from each candidate start, ``(K, p)``, with their ``weights``.
    """

    params: np.ndarray
    members: np.ndarray
    weights: np.ndarray


def average_starts(form: Form, x: np.ndarray, y: np.ndarray, w: np.ndarray, huber: float | None,
                   cands: Sequence[StartCandidate]) -> StartAverage | None:
    """Fit ``form`` from every candidate start and return the law closest to their weighted average.

    ``None`` when no candidate could be fitted (the caller falls back to one fit from the start).
    """
    if not cands:
        return None
    idx = np.arange(len(x))
    params, _ = fit_form_subsets(form, x, y, np.array([idx >= c.start for c in cands]), weights=w, huber=huber)
    ok = np.all(np.isfinite(params), axis=1)
    if not ok.any():
        return None
    members = params[ok]
    weights = np.array([c.weight for c in cands])[ok]
    weights = weights / weights.sum()
    start = reported_start(cands)
    lx0, lx1 = np.log(x[start]), np.log(x[-1])
    grid = np.exp(np.linspace(lx0, lx1 + GRID_BEYOND * (lx1 - lx0), GRID_POINTS))
    average = weights @ form.log_predict(members, grid)
    # the reported law keeps the form's bounds on the points it reports (a floor below their lowest
    # error): a later start's floor can sit above an earlier point, and so could the average's
    ctx = Context.of(grid, np.exp(average))
    ctx = replace(ctx, y_min=min(ctx.y_min, float(np.min(y[start:]))))
    try:
        # every member is a start: the average lies among them
        params, _ = fit_form(form, grid, np.exp(average), ctx=ctx, starts=members)
    except RuntimeError:
        params = fit_form(form, x[start:], y[start:], weights=w[start:], huber=huber, ctx=ctx)[0]
    return StartAverage(params, members, weights)
