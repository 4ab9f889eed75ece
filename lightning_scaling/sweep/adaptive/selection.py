"""Data-size selection: how much one more size (or seed) is expected to narrow the target's interval.

A delta-method estimate around the current fit (:func:`width_ratio`), weighed against each
candidate's expected cost (:func:`choose_next_size`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lightning_scaling.sweep.adaptive.strategy import Target

__all__ = ["WIDTH_CAP", "choose_next_size", "expected_width", "relative_width", "width_ratio"]

WIDTH_CAP = 1e3  # an unbounded interval counts as this relative width when comparing candidates


def relative_width(pred: Any) -> float:
    """``(upper - lower) / |value|`` of a prediction, ``inf`` when unbounded or undefined."""
    v, lo, hi = (float(np.asarray(x).ravel()[0]) for x in (pred.value, pred.lower, pred.upper))
    if not all(math.isfinite(x) for x in (v, lo, hi)) or v == 0:
        return math.inf
    return (hi - lo) / abs(v)


def _grad(fn: Any, theta: np.ndarray) -> np.ndarray:
    """Central finite differences of a scalar function of the law's parameters."""
    out = np.empty_like(theta)
    for i in range(len(theta)):
        h = 1e-5 * max(abs(float(theta[i])), 1e-3)
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        out[i] = (fn(up) - fn(down)) / (2 * h)
    return out


def _target_log(fit: Any, target: Target, theta: np.ndarray) -> float:
    if target.kind == "error_at":
        return float(fit.form.log_predict(theta, np.array([target.value]))[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.log(fit.form.size_for(theta, target.value)[0]))


def width_ratio(fit: Any, candidate: float | Sequence[float], target: Target) -> float:
    """How much one more point at size ``candidate`` (or one at each of several sizes) is expected to
    narrow the target's interval.

    A delta-method (Fisher information) approximation around the current fit: with ``J`` the
    Jacobian of the log error at the fitted sizes with respect to the law's parameters and ``g``
    the gradient of the log target, the target's variance is proportional to
    ``g^T (J^T W J)^-1 g``, with ``W`` each size's number of seeds (one seed's noise level cancels
    in the ratio; a size's mean over ``k`` seeds counts ``k`` times, as in the fit's weights); a run
    at ``candidate`` adds one seed's row ``j(candidate)`` (another seed at a size already run adds to
    that size's count). Returns ``sqrt(var_after / var_now)`` (1: no narrowing). A target
    the fit cannot reach (data needed below the floor) is replaced by the error at the largest
    candidate extrapolated from it, the nearest question the fit can answer.
    """
    new_sizes = [float(c) for c in np.atleast_1d(np.asarray(candidate, float))]
    theta = np.array([fit.params[k] for k in fit.form.params], float)
    xs = np.asarray(fit.sizes[fit.start_index:], float)

    def row(x: float) -> np.ndarray:
        return _grad(lambda t: float(fit.form.log_predict(t, np.array([x]))[0]), theta)

    rows = np.array([row(x) for x in xs])
    seeds = getattr(fit, "seed_errors", None)
    counts = (np.sum(np.isfinite(np.asarray(seeds, float)[fit.start_index:]), axis=1).astype(float)
              if seeds is not None and np.ndim(seeds) == 2 else np.ones(len(xs)))
    g = _grad(lambda t: _target_log(fit, target, t), theta)
    if not np.all(np.isfinite(g)):
        g = row(max(new_sizes))
    info = rows.T @ (counts[:, None] * rows)
    extra = sum((np.outer(j, j) for j in (row(x) for x in new_sizes)), np.zeros_like(info))
    scale = np.maximum(np.sqrt(np.diag(info)), 1e-12)  # precondition: parameters differ by orders of magnitude
    d = np.diag(1.0 / scale)
    v_now = float(g @ d @ np.linalg.pinv(d @ info @ d) @ d @ g)
    v_new = float(g @ d @ np.linalg.pinv(d @ (info + extra) @ d) @ d @ g)
    if not (math.isfinite(v_now) and math.isfinite(v_new)) or v_now <= 0:
        return 1.0
    return float(math.sqrt(max(v_new, 0.0) / v_now))


def expected_width(fit: Any, candidate: float, target: Target) -> float:
    """The target's expected relative interval width if one more size, ``candidate``, were measured:
    the fit's bootstrap width (capped at ``WIDTH_CAP``) times :func:`width_ratio`."""
    now = min(relative_width(target.predict(fit)), WIDTH_CAP)
    return now * width_ratio(fit, candidate, target)


def choose_next_size(
    fit: Any, candidates: Mapping[Any, float], costs: Mapping[Any, float], target: Target,
    remaining: float | None = None,
) -> tuple[Any | None, dict[Any, dict[str, float]]]:
    """The next size: the largest expected narrowing of the target's interval per unit of cost.

    ``fit`` is the current law (a ``LearningCurveFit`` with bootstrap replicates); ``candidates``
    maps a size key (fraction or sample count) to its training-set size, ``costs`` the same keys to
    their expected device-seconds. The expected narrowing is the current bootstrap width times
    ``1 -`` :func:`width_ratio`; the score divides it by the cost.

    With a budget (``remaining`` device-seconds left), greedy gain per cost can spend it on cheap
    sizes and leave too little for the one that matters (a far size narrows an extrapolation most).
    So every set of candidates that fits in ``remaining`` is scored by its joint
    :func:`width_ratio`; the choice is the best-scoring member of the set expected to leave the
    narrowest interval (the cheaper set on a tie), the member that narrows it most, and the decision
    is taken again after it.

    Returns the key (``None`` when no candidate is expected to narrow the interval) and every
    candidate's ``width``, ``gain``, ``cost``, ``score`` and (with a budget) ``in_plan``.
    """
    current = min(relative_width(target.predict(fit)), WIDTH_CAP)
    table: dict[Any, dict[str, float]] = {}
    for key, m in candidates.items():
        w = current * width_ratio(fit, m, target)
        gain = current - w
        table[key] = {"size": float(m), "width": w, "gain": gain, "cost": float(costs[key]),
                      "score": gain / max(float(costs[key]), 1e-9)}
    useful = [k for k in table if table[k]["gain"] > 1e-12]
    if not useful:
        return None, table
    pool = useful
    if remaining is not None:
        keys = sorted(useful, key=lambda k: table[k]["size"])[-10:]  # at most 1,023 sets
        best_set: tuple[float, float, list[Any]] | None = None
        for mask in range(1, 2 ** len(keys)):
            subset = [k for i, k in enumerate(keys) if mask >> i & 1]
            cost = sum(table[k]["cost"] for k in subset)
            if cost > remaining:
                continue
            ratio = width_ratio(fit, [table[k]["size"] for k in subset], target)
            if best_set is None or (round(ratio, 6), cost) < (round(best_set[0], 6), best_set[1]):
                best_set = (ratio, cost, subset)
        if best_set is not None:
            pool = best_set[2]
            for k in table:
                table[k]["in_plan"] = float(k in pool)
    if remaining is not None:
        # the plan's member that narrows most goes first: a cost estimate that grows later (more survivors
        # than expected) then takes a minor size off the plan, not the one the extrapolation needs
        return max(pool, key=lambda k: (table[k]["gain"], -table[k]["cost"])), table
    return max(pool, key=lambda k: table[k]["score"]), table
