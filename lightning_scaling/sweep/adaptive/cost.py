"""The compute an adaptive study spends and expects to spend: device-seconds and the cost model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CostModel", "device_seconds", "fit_cost"]


def device_seconds(record: Mapping[str, Any]) -> float:
    """Compute a record spent: its wall time x its devices (a CPU slot counts as one device)."""
    wall = record.get("wall_time_s")
    if not isinstance(wall, int | float) or not math.isfinite(wall):
        return 0.0
    devices = str(record.get("devices") or "")
    count = len([d for d in devices.split(",") if d.strip()]) or 1
    return float(wall) * count


@dataclass(frozen=True)
class CostModel:
    """Device-seconds of one run that trains a share ``trained`` of the full budget on ``m`` samples:
    ``fixed + per_budget * trained + per_sample * trained * m``.

    Both growth terms are needed: a Trainer limited by ``max_steps`` costs the same at every data
    size (its cost grows with the budget only; :meth:`AdaptiveState.cost_model` then fits no
    per-sample term), one limited by ``max_epochs`` costs in proportion to the data. A single
    ``trained * m`` term read a step-limited task's longer rungs as growth with the data, and priced
    its largest size out of a budget that could afford it.

    ``cov`` is the covariance of ``(fixed, per_budget, per_sample)`` from the runs' scatter around
    the fit (``None``: not estimated), for :meth:`sd`.

    >>> CostModel(fixed=0.5, per_budget=1.0, per_sample=0.0)(1.0, 300)   # steps: no growth with m
    1.5
    """

    fixed: float
    per_budget: float
    per_sample: float
    cov: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)

    def __call__(self, trained: float, m: float) -> float:
        return self.fixed + self.per_budget * trained + self.per_sample * trained * m

    def sd(self, runs: Sequence[tuple[float, float, float]]) -> float:
        """Standard error of the expected total cost of ``runs``, each ``(count, trained, m)``, from the
        uncertainty of the fitted coefficients (0 without ``cov``). Large for sizes far beyond the
        ones measured: a slope fitted to runs of a few tenths of a second is uncertain."""
        if self.cov is None:
            return 0.0
        f = np.sum([[n, n * tr, n * tr * m] for n, tr, m in runs], axis=0)
        return float(np.sqrt(max(float(f @ np.asarray(self.cov) @ f), 0.0)))


def _nnls(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Non-negative least squares, columns scaled first (a per-sample column is ~1e4 times the others)."""
    from scipy.optimize import nnls

    scale = np.linalg.norm(x, axis=0)
    scale[scale == 0] = 1.0
    coef, _ = nnls(x / scale, y)
    return [float(c) for c in coef / scale]


def fit_cost(x: np.ndarray, t: np.ndarray, columns: Sequence[int]) -> CostModel:
    """:class:`CostModel` with the coefficients ``columns`` (of fixed, per_budget, per_sample) fitted to
    ``t`` by :func:`_nnls`, the others 0; their covariance ``s^2 (X'X)^-1`` where there are more runs
    than coefficients (the non-negativity bounds left out: an approximation at a bound)."""
    coef = _nnls(x, t)
    full = [0.0, 0.0, 0.0]
    for c, v in zip(columns, coef, strict=True):
        full[c] = v
    n, p = x.shape
    if n <= p:
        return CostModel(full[0], full[1], full[2])
    s2 = float(np.sum((t - x @ np.asarray(coef)) ** 2)) / (n - p)
    cov = np.zeros((3, 3))
    cov[np.ix_(columns, columns)] = s2 * np.linalg.pinv(x.T @ x)
    return CostModel(full[0], full[1], full[2], cov=tuple(tuple(float(v) for v in row) for row in cov))
