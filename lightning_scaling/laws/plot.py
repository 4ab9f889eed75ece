"""Paper-style log-log figures of learning curves and model-size laws (matplotlib, imported only to plot)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lightning_scaling.laws.fit import LearningCurveFit
    from lightning_scaling.laws.joint import ModelSizeLaw


def _y_limits(fit: LearningCurveFit, lower: np.ndarray, upper: np.ndarray) -> tuple[float, float]:
    """Log-axis limits from the measured points and the band over them, not from a fitted floor far below.

    The band may widen the view by at most a decade beyond the points: a floor fitted at 1e-6 under
    errors near 1 must not squeeze the data into the top of the figure.
    """
    points = np.concatenate([np.ravel(fit.errors), np.ravel(fit.seed_errors if fit.seed_errors is not None else [])])
    points = points[np.isfinite(points) & (points > 0)]
    lo, hi = float(points.min()), float(points.max())
    band = np.concatenate([np.ravel(lower), np.ravel(upper)])
    band = band[np.isfinite(band) & (band > 0)]
    if band.size:
        lo, hi = max(min(lo, float(band.min())), lo / 10), min(max(hi, float(band.max())), hi * 10)
    pad = (hi / lo) ** 0.05 if hi > lo else 1.5
    return lo / pad, hi * pad


def plot_fit(
    fit: LearningCurveFit, ax: Axes | None = None, *, extrapolate: float = 10.0, label: str | None = None
) -> Axes:
    """Draw points, the fitted curve with its interval band, and the three regions shaded.

    Args:
        fit: the fitted curve.
        ax: axes to draw on; a new figure when ``None``.
        extrapolate: draw the curve up to this multiple of the largest measured size.
        label: legend label of the points (the fit's equation labels the curve).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    x = fit.sizes
    # the law claims nothing below the power-law start; beyond the data it is an extrapolation
    grid = np.geomspace(fit.power_law_start, x[-1] * max(extrapolate, 1.0), 300)
    pred = fit.predict(grid)
    used = np.arange(len(x)) >= fit.start_index
    inside = grid <= x[-1]
    # the curve is drawn over the points: on a dense curve the markers would hide it
    (line,) = ax.plot(grid[inside], pred.value[inside], lw=2, zorder=4, label=fit.equation())
    color = line.get_color()
    if (~inside).any():
        ax.plot(grid[~inside], pred.value[~inside], lw=2, ls="--", color=color, zorder=4, label="extrapolation")
    ax.fill_between(grid, pred.lower, pred.upper, color=color, alpha=0.2, lw=0,
                    label=f"{fit.confidence:.0%} interval")
    if fit.seed_errors is not None:
        for col in fit.seed_errors.T:
            ax.scatter(x, col, s=8, color="0.6", zorder=2)
    ax.scatter(x[used], fit.errors[used], s=22, color=color, alpha=0.5, edgecolor="k", linewidths=0.5, zorder=3,
               label=label or "fitted points")
    if (~used).any():
        ax.scatter(x[~used], fit.errors[~used], s=22, facecolor="none", edgecolor="k", linewidths=0.8, zorder=3,
                   label="not fitted")
    regions = fit.regions
    if fit.start_index > 0:
        ax.axvspan(x[0], fit.power_law_start, color="0.85", alpha=0.5, lw=0, label="small-data region")
    if math.isfinite(regions["irreducible"][0]) and regions["irreducible"][0] < grid[-1]:
        ax.axvspan(regions["irreducible"][0], grid[-1], color="tab:red", alpha=0.08, lw=0,
                   label="irreducible-error region (within 10% of floor)")
    if fit.floor > 0:
        ax.axhline(fit.floor, color="tab:red", ls=":", lw=1, label=f"fitted floor (irreducible error) {fit.floor:.3g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(*_y_limits(fit, pred.lower[inside], pred.upper[inside]))
    ax.set_xlabel("training set size")
    ax.set_ylabel("generalisation error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_model_size_law(
    law: ModelSizeLaw, ax: Axes | None = None, *, extrapolate: float = 10.0, size_unit: str = "samples"
) -> Axes:
    r"""The paper's model-size figure: the best model's parameter count against data, log-log.

    Draws the best model at each data size, the fitted line :math:`\sigma m^{\beta_p}` (dashed beyond
    the data) and its bootstrap interval band.

    Args:
        law: the fitted model-size law.
        ax: axes to draw on; a new figure when ``None``.
        extrapolate: draw the line up to this multiple of the largest measured size.
        size_unit: the unit of the data sizes (the x-axis label).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    x = law.sizes
    grid = np.geomspace(x[0], x[-1] * max(extrapolate, 1.0), 300)
    pred = law.predict(grid)
    inside = grid <= x[-1]
    lo, hi = law.intervals["beta_p"]
    (line,) = ax.plot(grid[inside], pred.value[inside], lw=2, zorder=4,
                      label=f"params(m) = {law.sigma:.3g} m^{law.beta_p:.3f}  (beta_p in [{lo:.3f}, {hi:.3f}])")
    color = line.get_color()
    if (~inside).any():
        ax.plot(grid[~inside], pred.value[~inside], lw=2, ls="--", color=color, zorder=4, label="extrapolation")
    ax.fill_between(grid, pred.lower, pred.upper, color=color, alpha=0.2, lw=0, label=f"{law.confidence:.0%} interval")
    ax.scatter(x, law.params, s=28, color=color, edgecolor="k", linewidths=0.5, zorder=5, label="best model per size")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"training set size ({size_unit})")
    ax.set_ylabel("parameters of the best model")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax
