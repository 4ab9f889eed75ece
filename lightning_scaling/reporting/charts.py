"""What one update of the controller's W&B run logs: the runs table, charts on log10 axes, the figure.

W&B's built-in charts have no log axes, so every chart plots log10 values; every chart stays under
W&B's sampling limit of 1,500 points.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_scaling.sweep.result import SweepResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["MAX_CHART_POINTS", "chart_payload"]

MAX_CHART_POINTS = 1500  # W&B samples a chart's points above this


def chart_payload(result: SweepResult, figure: Path | None, *, extrapolate: float, curve_points: int
                  ) -> dict[str, Any]:
    """The ``run.log`` payload of ``result``: ``scaling/runs`` (+ ``runs_chart``), and with a law
    ``scaling/curve``, ``learning_curve``, ``per_grid_chart`` and ``figure`` (``figure``'s file, else
    drawn now). The fitted curve reaches ``extrapolate`` times the largest size in ``curve_points``."""
    import wandb

    payload: dict[str, Any] = {}
    cols, rows = result.runs_table()
    # list(): a copy typed as wandb.Table wants its columns (list[str | int])
    payload["scaling/runs"] = wandb.Table(columns=list(cols), data=rows)
    ix, iy, iid = cols.index("log10_train_size"), cols.index("log10_error"), cols.index("run_id")
    points = [[r[ix], r[iy], r[iid]] for r in rows if r[ix] is not None and r[iy] is not None]
    unit = result.size_unit
    if points:
        table = wandb.Table(columns=["log10_train_size", "log10_error", "run_id"], data=points[-MAX_CHART_POINTS:])
        payload["scaling/runs_chart"] = wandb.plot.scatter(
            table, "log10_train_size", "log10_error", title=f"every run: log10 error vs log10 {unit}")
    if result.law is not None:
        ccols, crows = result.curve_table(extrapolate=extrapolate, points=curve_points)
        payload["scaling/curve"] = wandb.Table(columns=list(ccols), data=crows)
        col = {c: [r[ccols.index(c)] for r in crows] for c in ccols}
        best_x = [math.log10(b["train_size"]) for b in result.best]
        best_y = [math.log10(b["error"]) if b["error"] > 0 else None for b in result.best]
        level = f"{result.law.confidence:.0%}"
        payload["scaling/learning_curve"] = wandb.plot.line_series(
            xs=[best_x, col["log10_train_size"], col["log10_train_size"], col["log10_train_size"]],
            ys=[best_y, col["log10_fit"], col["log10_lower"], col["log10_upper"]],
            keys=["best model per size", result.law.equation(), f"lower {level}", f"upper {level}"],
            title=f"learning curve (log10 error vs log10 {unit})", xname=f"log10 {unit}")
        if result.per_grid:
            labels = list(result.per_grid)
            payload["scaling/per_grid_chart"] = wandb.plot.line_series(
                xs=[[math.log10(x) for x in result.per_grid[k].sizes] for k in labels],
                ys=[[math.log10(y) if y > 0 else None for y in result.per_grid[k].errors] for k in labels],
                keys=labels, title=f"each grid point (log10 error vs log10 {unit})", xname=f"log10 {unit}")
        payload["scaling/figure"] = wandb.Image(str(figure) if figure is not None else _png(result))
    size_figure = result.model_size_figure()
    if size_figure is not None:
        payload["scaling/model_size_figure"] = wandb.Image(_png(size_figure))
    return payload


def _png(result: SweepResult | Figure) -> Any:
    from PIL import Image

    buf = io.BytesIO()
    (result.figure() if isinstance(result, SweepResult) else result).savefig(buf, format="png", dpi=110)
    buf.seek(0)
    return Image.open(buf)
