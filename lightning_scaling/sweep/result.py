"""From run records to the paper's answers: best model per size, learning curves, model-size law.

Pure Python over :mod:`lightning_scaling.laws` (no torch, no Lightning), so results can be
re-analysed from a sweep folder anywhere: ``SweepResult.load("scaling_sweeps/my_sweep")``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lightning_scaling.laws import (
    LearningCurveFit,
    ModelSizeLaw,
    SharedExponentFit,
    fit_learning_curve,
    fit_model_size_law,
    fit_shared_exponent,
)
from lightning_scaling.sweep.store import json_default

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["SweepResult", "to_error"]

_OK = ("ok",)


def to_error(value: float, mode: str) -> float:
    """The monitored value as an error to fit (positive, lower is better).

    ``mode="min"`` metrics (losses, error rates) are used as they are; ``mode="max"`` metrics must be
    accuracies in ``[0, 1]`` and become ``1 - value``.
    """
    if mode == "min":
        return value
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"mode='max' monitors {value}, which is not an accuracy in [0, 1]; monitor an error or "
                         "loss with mode='min', or pass ScalingSweep(to_error=lambda v: ...) to turn it into one")
    return 1.0 - value


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(sorted(params.items())), sort_keys=True) if params else "{}"


def _label(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "model"


@dataclass
class SweepResult:
    """Everything a sweep produced: its runs, the fitted laws and predictions.

    Attributes:
        runs: every run record (``status`` ok, diverged or failed).
        law: the learning curve of the best model at each size (the paper's envelope), or ``None``.
        per_grid: the learning curve of each grid point, where it has enough sizes.
        best: the best grid point at each data size, with its seeds' errors.
        model_size_law: ``params(m) = sigma m^beta_p`` of the best model per size, when the grid
            changes the parameter count.
        shared_exponent: the test of one exponent across grid points.
        notes: why a law was not fitted, when it was not.
    """

    runs: list[dict[str, Any]]
    size_unit: str = "samples"
    monitor: str = "val_loss"
    law: LearningCurveFit | None = None
    per_grid: dict[str, LearningCurveFit] = field(default_factory=dict)
    best: list[dict[str, Any]] = field(default_factory=list)
    model_size_law: ModelSizeLaw | None = None
    shared_exponent: SharedExponentFit | None = None
    notes: list[str] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        monitor: str,
        mode: str,
        to_error_fn: Callable[[float], float] | None = None,
        bootstrap: int = 1000,
        seed: int = 0,
    ) -> SweepResult:
        """Aggregate finished runs and fit the laws (the sweep's last step, also usable alone)."""
        convert = to_error_fn or (lambda v: to_error(v, mode))
        runs = [dict(r) for r in records]
        ok = [r for r in runs if r.get("status") in _OK and _finite(r.get("best_value"))]
        for r in ok:
            # a stream that was never sized reports samples only; a run with neither cannot be placed
            if not _finite(r.get("train_size")):
                r["train_size"] = r.get("num_samples")
        unplaced = [r["run_id"] for r in ok if not (_finite(r.get("train_size")) and r["train_size"] > 0)]
        ok = [r for r in ok if r["run_id"] not in unplaced]
        unit = next((r.get("size_unit") for r in ok if r.get("size_unit")), "samples")
        res = cls(runs=runs, size_unit=unit, monitor=monitor)
        if unplaced:
            res.notes.append(f"runs without a training-set size were left out of the laws: {unplaced}")
        if not ok:
            res.notes.append("no run finished with a finite monitored value: no law was fitted")
            return res

        # errors[size][grid point] -> list over seeds; sizes in the user's unit (mean over seeds)
        by_amount: dict[Any, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in ok:
            amount = r.get("fraction") if r.get("fraction") is not None else r.get("size")
            by_amount[amount][_key(r.get("params", {}))].append(r)
        amounts = sorted(by_amount, key=lambda a: np.mean([x["train_size"] for g in by_amount[a].values() for x in g]))
        best_rows = []
        for a in amounts:
            groups = by_amount[a]
            scored = {k: float(np.mean([convert(x["best_value"]) for x in v])) for k, v in groups.items()}
            winner = min(scored, key=scored.__getitem__)
            rows = groups[winner]
            best_rows.append({
                "amount": a, "train_size": float(np.mean([x["train_size"] for x in rows])),
                "params": rows[0].get("params", {}), "error": scored[winner],
                "errors": [convert(x["best_value"]) for x in rows], "seeds": [x["seed"] for x in rows],
                "trainable_params": rows[0].get("trainable_params"),
                "candidates": {k: v for k, v in scored.items()},
            })
        res.best = best_rows

        sizes = np.array([b["train_size"] for b in best_rows])
        res.law = res._fit(sizes, _seed_matrix([b["errors"] for b in best_rows]), "best model per size", bootstrap,
                           seed)

        grid_keys = sorted({_key(r.get("params", {})) for r in ok})
        curves = {}
        for gk in grid_keys:
            pts = []
            for a in amounts:
                rows = by_amount[a].get(gk)
                if rows:
                    pts.append((float(np.mean([x["train_size"] for x in rows])),
                                [convert(x["best_value"]) for x in rows]))
            label = _label(json.loads(gk))
            if len(grid_keys) > 1 and len(pts) >= 4:
                fit = res._fit(np.array([p for p, _ in pts]), _seed_matrix([e for _, e in pts]), label, bootstrap,
                               seed)
                if fit is not None:
                    res.per_grid[label] = fit
                    curves[label] = (fit.sizes[fit.start_index:], fit.errors[fit.start_index:])
        if len(curves) >= 2:
            try:
                res.shared_exponent = fit_shared_exponent(curves, bootstrap=min(bootstrap, 300), seed=seed)
            except ValueError as exc:
                res.notes.append(f"no shared-exponent test: {exc}")

        counts = [b["trainable_params"] for b in best_rows]
        if len(grid_keys) > 1 and all(isinstance(c, int | float) and c > 0 for c in counts):
            if len(set(counts)) > 1:
                try:
                    res.model_size_law = fit_model_size_law(sizes, counts, bootstrap=bootstrap, seed=seed)
                except ValueError as exc:
                    res.notes.append(f"no model-size law: {exc}")
            else:
                res.notes.append("no model-size law: the same model size was best at every data size")
        res._predict()
        return res

    def _fit(self, x: np.ndarray, y: np.ndarray, label: str, bootstrap: int, seed: int) -> LearningCurveFit | None:
        try:
            return fit_learning_curve(x, y, bootstrap=bootstrap, seed=seed)
        except (ValueError, RuntimeError) as exc:
            self.notes.append(f"no learning curve for {label}: {exc}")
            return None

    def _predict(self) -> None:
        if self.law is None:
            return
        largest = float(self.law.sizes[-1])
        err = float(self.law.errors[-1])
        self.predictions = {
            "error_at_10x_data": {"size": 10 * largest, **self.law.predict(10 * largest).to_dict()},
            "data_to_halve_error": self.law.data_needed(err / 2).to_dict(),
        }

    # -- output ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "size_unit": self.size_unit,
            "runs": self.runs,
            "n_runs": len(self.runs),
            "n_ok": sum(r.get("status") == "ok" for r in self.runs),
            "n_failed": sum(r.get("status") == "failed" for r in self.runs),
            "n_diverged": sum(r.get("status") == "diverged" for r in self.runs),
            "best": self.best,
            "law": self.law.to_dict() if self.law else None,
            "per_grid": {k: v.to_dict() for k, v in self.per_grid.items()},
            "model_size_law": self.model_size_law.to_dict() if self.model_size_law else None,
            "shared_exponent": self.shared_exponent.to_dict() if self.shared_exponent else None,
            "predictions": self.predictions,
            "notes": self.notes,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), default=json_default, **kwargs)

    def summary(self) -> str:
        lines = [f"{sum(r.get('status') == 'ok' for r in self.runs)}/{len(self.runs)} runs ok"]
        if self.law is not None:
            lines.append(str(self.law))
            need = self.law.data_needed(float(self.law.errors[-1]) / 2)
            lines.append(f"  data ({self.size_unit}) to halve the error of the largest run: {need}")
        for label, fit in self.per_grid.items():
            lo, hi = fit.intervals[fit.form.exponent]
            lines.append(f"  [{label}] beta = {fit.exponent:.4g} [{lo:.4g}, {hi:.4g}]")
        if self.shared_exponent is not None:
            lines.append(f"  {self.shared_exponent}")
        if self.model_size_law is not None:
            lines.append(f"  {self.model_size_law}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def plot(self, ax: Axes | None = None) -> Axes:
        """The envelope's paper-style figure, with each grid point's curve beside it."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
        for label, fit in self.per_grid.items():
            ax.plot(fit.sizes, fit.errors, marker=".", lw=0.8, alpha=0.6, label=label)
        if self.law is not None:
            self.law.plot(ax=ax, label="best model per size")
        ax.set_xlabel(f"training set size ({self.size_unit})")
        ax.set_ylabel(f"error ({self.monitor})")
        return ax

    def save(self, root: str | Path, *, figure: bool = True) -> None:
        """Write ``result.json`` (and ``learning_curve.png``) into the sweep folder."""
        from lightning_scaling.sweep.store import SweepStore

        store = SweepStore(root)
        store.write_result(json.loads(self.to_json()))
        if figure and self.law is not None:
            import matplotlib

            if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "cairo"):
                matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            ax = self.plot()
            ax.figure.savefig(store.figure_path, dpi=130)
            plt.close(ax.figure)

    @classmethod
    def load(cls, root: str | Path, **kwargs: Any) -> SweepResult:
        """Re-analyse a sweep folder from its run records."""
        from lightning_scaling.sweep.store import SweepStore

        store = SweepStore(root)
        plan = store.read_plan()
        if plan is None:
            raise FileNotFoundError(f"{root} holds no sweep.json: not a sweep folder")
        planned = {r["run_id"] for r in plan["runs"]}
        records = [r for k, r in store.records().items() if k in planned]
        return cls.from_records(records, monitor=plan["monitor"], mode=plan["mode"], **kwargs)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _seed_matrix(errors: Sequence[Sequence[float]]) -> np.ndarray:
    """Errors per size as ``(n_sizes, n_seeds)``, ``nan`` for missing seeds; 1-D when each size has one."""
    width = max(len(e) for e in errors)
    out = np.full((len(errors), width), np.nan)
    for i, e in enumerate(errors):
        out[i, : len(e)] = e
    return out if width > 1 else out[:, 0]
