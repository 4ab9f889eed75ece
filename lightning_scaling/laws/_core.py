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
) -> tuple[np.ndarray, float]:
    """Fit ``form`` to ``(x, y)`` in log-error space from its grid of starts; return the best.

    Args:
        form: the functional form.
        x: sizes, increasing.
        y: errors, positive.
        weights: per-point weights (e.g. inverse variance of the log error over seeds).
        huber: Huber threshold on log residuals, ``None`` for least squares.
        ctx: parameterisation context; defaults to the one of ``(x, y)``.

    Returns:
        ``(params, cost)`` with ``params`` in the user's units.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ctx = ctx or Context.of(x, y)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    logy = np.log(y)
    theta0 = form.starts(x, y, ctx)

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
