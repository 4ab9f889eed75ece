"""Multi-start fitting of one form to one curve, shared by every estimator in this package."""

from __future__ import annotations

import numpy as np

from lightning_scaling.laws._solver import batched_lm
from lightning_scaling.laws.forms import Context, Form


def fit_form(
    form: Form,
    x: np.ndarray,
    y: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    huber: float | None = None,
    ctx: Context | None = None,
    starts: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Fit ``form`` to ``(x, y)`` in log-error space from its grid of starts; return the best.

    Args:
        form: the functional form.
        x: sizes, increasing.
        y: errors, positive.
        weights: per-point weights (e.g. inverse variance of the log error over seeds).
        huber: Huber threshold on log residuals, ``None`` for least squares.
        ctx: parameterisation context; defaults to the one of ``(x, y)``.
        starts: starting parameters ``(S, p)`` in the user's units to use instead of the form's grid
            (e.g. the fits of nearly the same curve).

    Returns:
        ``(params, cost)`` with ``params`` in the user's units.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ctx = ctx or Context.of(x, y)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    logy = np.log(y)
    theta0 = form.starts(x, y, ctx) if starts is None else form.unconstrained(np.atleast_2d(starts), ctx)

    def fun(theta: np.ndarray) -> np.ndarray:
        return form.residuals(theta, x, logy, ctx)

    theta, cost = batched_lm(fun, theta0, w, huber=huber)
    best = int(np.argmin(cost))
    if not np.isfinite(cost[best]):
        raise RuntimeError(f"the {form.name} fit found no feasible parameters for this curve")
    return form.natural(theta[best], ctx), float(cost[best])


def refit_many(
    form: Form,
    x: np.ndarray,
    logy: np.ndarray,
    weights: np.ndarray,
    params0: np.ndarray,
    ctx: Context,
    *,
    huber: float | None = None,
    max_iter: int = 100,
) -> np.ndarray:
    """Refit ``B`` perturbed problems (bootstrap replicates) warm-started at ``params0``.

    ``logy`` and ``weights`` are ``(B, n)`` (or broadcastable); returns ``(B, p)`` parameters,
    ``nan`` rows where a replicate has no feasible fit.
    """
    logy = np.asarray(logy, dtype=float)
    weights = np.asarray(weights, dtype=float)
    batch = max(logy.shape[0] if logy.ndim == 2 else 1, weights.shape[0] if weights.ndim == 2 else 1)
    theta0 = np.repeat(form.unconstrained(np.asarray(params0, dtype=float), ctx)[None], batch, axis=0)

    def fun(theta: np.ndarray) -> np.ndarray:
        return form.residuals(theta, x, logy, ctx)

    theta, cost = batched_lm(fun, theta0, weights, huber=huber, max_iter=max_iter)
    out = form.natural(theta, ctx)
    out[~np.isfinite(cost)] = np.nan
    return out


#: solver steps from every start before each subset keeps only its best one (:func:`fit_form_subsets`)
SCREEN_STEPS = 10


def fit_form_subsets(
    form: Form,
    x: np.ndarray,
    y: np.ndarray,
    masks: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    huber: float | None = None,
    ctx: Context | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``form`` to several subsets of one curve's points in one batched solve.

    The candidate starts of the power-law region are each a fit to a subset of the same points;
    solving them together costs about as much as one fit. Each subset is a row of ``masks``
    (``(B, n)`` booleans) and gets the form's grid of starts computed from its own points; all share
    ``ctx`` (default: the one of every point), so each floor stays below the smallest error of the
    points ``ctx`` was built from.

    Returns:
        ``(params, cost)``: ``(B, p)`` in the user's units (``nan`` rows where no start was feasible)
        and ``(B,)``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    masks = np.asarray(masks, dtype=bool)
    ctx = ctx or Context.of(x, y)
    grids = [form.starts(x[m], y[m], ctx) for m in masks]
    rows = np.repeat(np.arange(len(masks)), [len(g) for g in grids])
    keep = masks[rows]
    w = (np.ones_like(y) if weights is None else np.asarray(weights, dtype=float))[None] * keep
    logy = np.log(y)

    def fun(theta: np.ndarray) -> np.ndarray:
        # a point outside a subset may overflow under that subset's parameters: it must not count
        with np.errstate(over="ignore", invalid="ignore"):
            return np.where(keep, form.residuals(theta, x, logy, ctx), 0.0)

    # a few steps from every start show each subset's basin; only its best start is solved to the end
    theta, cost = batched_lm(fun, np.concatenate(grids), w, huber=huber, max_iter=SCREEN_STEPS)
    best = np.array([np.flatnonzero(rows == b)[int(np.argmin(cost[rows == b]))] for b in range(len(masks))])
    keep, w = masks, w[best]  # ``fun`` reads ``keep`` when called: now one row per subset
    theta, cost = batched_lm(fun, theta[best], w, huber=huber)
    params = np.where(np.isfinite(cost)[:, None], form.natural(theta, ctx), np.nan)
    return params, cost
