"""Batched Levenberg-Marquardt for small nonlinear least-squares problems.

Scaling-law fits are tiny (3-6 parameters, tens of points) but are solved many times: dozens of
starts for one fit, a thousand bootstrap replicates for its intervals. ``scipy.optimize.least_squares``
solves one problem per call, and its per-call overhead (~1-3 ms) dominates at this size. Here all
problems of a batch advance together, one vectorised numpy step at a time, so a fit plus 1,000
bootstrap replicates takes a fraction of a second (``benchmarks/fit_extrapolation.py`` times it against
one ``scipy.optimize.least_squares`` call per replicate).

Robust losses use iteratively reweighted least squares: the Huber weight
``min(1, delta / |r|)`` turns the Gauss-Newton step into the Huber-loss step, and the reported cost
is the Huber cost itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ResidualFn = Callable[[np.ndarray], np.ndarray]
"""Maps parameters ``(..., B, p)`` to residuals ``(..., B, n)``, broadcasting over leading axes;
non-finite residuals mark infeasible parameters."""


def robust_cost(r: np.ndarray, w: np.ndarray, huber: float | None) -> np.ndarray:
    """Per-problem cost ``sum_i w_i rho(r_i)`` with ``rho`` squared (``huber=None``) or Huber."""
    # a trial step may overflow; its cost is then inf and the step is rejected, which is the intent
    with np.errstate(over="ignore", invalid="ignore"):
        if huber is None:
            rho = 0.5 * r * r
        else:
            a = np.abs(r)
            rho = np.where(a <= huber, 0.5 * r * r, huber * (a - 0.5 * huber))
        cost = np.sum(w * rho, axis=-1)
    return np.where(np.isfinite(cost), cost, np.inf)


def _jacobian(fun: ResidualFn, theta: np.ndarray, r0: np.ndarray) -> np.ndarray:
    p = theta.shape[1]
    step = 1e-6 * np.maximum(1.0, np.abs(theta))
    # one stacked call of p perturbed copies keeps everything vectorised
    pert = np.repeat(theta[None], p, axis=0)
    idx = np.arange(p)
    pert[idx, :, idx] += step.T
    rp = fun(pert)
    return np.moveaxis((rp - r0[None]) / step.T[:, :, None], 0, -1)


def batched_lm(
    fun: ResidualFn,
    theta0: np.ndarray,
    weights: np.ndarray,
    *,
    huber: float | None = None,
    max_iter: int = 200,
    tol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``sum_i w_i rho(r_i(theta))`` for every row of ``theta0`` at once.

    Args:
        fun: residual function, vectorised over the batch.
        theta0: starting points, shape ``(B, p)``.
        weights: non-negative per-point weights, shape ``(n,)`` or ``(B, n)``.
        huber: Huber threshold on the residual; ``None`` for plain least squares.
        max_iter: iteration cap; problems stop individually once their relative decrease is below ``tol``.
        tol: relative cost decrease below which a problem counts as converged.

    Returns:
        ``(theta, cost)``: the solutions ``(B, p)`` and their costs ``(B,)`` (``inf`` where infeasible).
    """
    theta = np.array(theta0, dtype=float, copy=True)
    batch, p = theta.shape
    r = fun(theta)
    w = np.broadcast_to(np.asarray(weights, dtype=float), r.shape)
    cost = robust_cost(r, w, huber)
    lam = np.full(batch, 1e-3)
    active = np.isfinite(cost)
    eye = np.eye(p)
    # every row is evaluated each step, so a residual function may close over per-row data
    # (bootstrap replicates of y); finished rows are simply no longer updated
    for _ in range(max_iter):
        if not active.any():
            break
        ra = np.where(np.isfinite(r), r, 0.0)
        wa = w if huber is None else w * np.minimum(1.0, huber / np.maximum(np.abs(ra), 1e-300))
        jac = _jacobian(fun, theta, ra)
        jac = np.where(np.isfinite(jac), jac, 0.0)
        jtw = jac * wa[:, :, None]
        a = np.einsum("bnp,bnq->bpq", jtw, jac)
        g = np.einsum("bnp,bn->bp", jtw, ra)
        diag = np.maximum(np.einsum("bpp->bp", a), 1e-12)
        lhs = a + lam[:, None, None] * (diag[:, :, None] * eye) + 1e-12 * eye
        delta = np.linalg.solve(lhs, -g[:, :, None])[:, :, 0]
        cand = theta + delta
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            rc = fun(cand)
            cc = robust_cost(rc, w, huber)
            rel = (cost - cc) / np.maximum(cost, 1e-300)
        better = active & (cc < cost)
        finished = (better & (rel < tol)) | (active & ~better & (lam > 1e10))
        theta[better], r[better], cost[better] = cand[better], rc[better], cc[better]
        lam = np.where(better, np.maximum(lam / 3.0, 1e-12), np.where(active, lam * 4.0, lam))
        active &= ~finished
    return theta, cost
