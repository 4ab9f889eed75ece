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

from lightning_scaling._checks import require_int
from lightning_scaling.laws import (
    ModelSizeLaw,
    SharedExponentFit,
    fit_learning_curve,
    fit_model_size_law,
    fit_shared_exponent,
)
from lightning_scaling.sweep.aggregate import best_per_size, seed_matrix
from lightning_scaling.sweep.plan import check_select
from lightning_scaling.sweep.record import OK, grid_key, missing_value, missing_value_message, record_amount, run_value
from lightning_scaling.sweep.report import (
    ReportedFit,
    csv_text,
    flatten,
    html_table,
    prediction_lines,
    sig,
    size_rows,
    text_table,
    undertrained_note,
)
from lightning_scaling.sweep.store import json_default

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["MODEL_SIZE_FIGURE", "SweepResult", "analysis", "to_error"]

MODEL_SIZE_FIGURE = "model_size_law.png"  # next to learning_curve.png in the sweep folder


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


def analysis(
    *,
    monitor: str,
    mode: str,
    to_error_fn: Callable[[float], float] | None = None,
    bootstrap: int = 1000,
    targets: Sequence[float] = (),
    select: str = "best",
) -> Callable[[Sequence[Mapping[str, Any]]], SweepResult]:
    """The sweep's analysis as one callable: records in, :class:`SweepResult` out (:meth:`SweepResult.from_records`).

    The controller fits with it at the end (and, with fewer bootstrap replicates, for live reports).

    >>> analyse = analysis(monitor="val_err", mode="min", bootstrap=0)
    >>> analyse([{"run_id": "a", "status": "failed"}]).law is None
    True
    """
    def analyse(records: Sequence[Mapping[str, Any]]) -> SweepResult:
        return SweepResult.from_records(records, monitor=monitor, mode=mode, to_error_fn=to_error_fn,
                                        bootstrap=bootstrap, targets=targets, select=select)

    return analyse


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
        predictions: the error at 10x the largest size, the data that halves the largest run's error,
            and the data needed for each of ``targets``.
    """

    runs: list[dict[str, Any]]
    size_unit: str = "samples"
    monitor: str = "val_loss"
    law: ReportedFit | None = None
    per_grid: dict[str, ReportedFit] = field(default_factory=dict)
    best: list[dict[str, Any]] = field(default_factory=list)
    model_size_law: ModelSizeLaw | None = None
    shared_exponent: SharedExponentFit | None = None
    notes: list[str] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    targets: list[float] = field(default_factory=list)
    adaptive: dict[str, Any] = field(default_factory=dict)
    # planned data sizes without a finished run (sweep/completeness.py); empty when the study is complete
    missing_sizes: list[float] = field(default_factory=list)
    # which monitored value of each run was used: "best" (over training) or "last" (its last validation)
    select: str = "best"

    @property
    def complete(self) -> bool:
        """``False`` when a planned data size has no finished run (the laws rest on fewer sizes; see notes)."""
        return not self.missing_sizes

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
        targets: Sequence[float] = (),
        metric: str | None = None,
        select: str = "best",
    ) -> SweepResult:
        """Aggregate finished runs and fit the laws (the sweep's last step, also usable alone).

        ``targets`` are errors whose data needs are predicted (``predictions["data_needed"]``).
        ``metric`` fits another logged metric instead of the monitor: its value at each run's best
        monitored step (``metrics_at_best`` of the records), e.g. top-5 error of a top-1 sweep.
        ``select="last"`` uses each run's last validation instead (``final_value``,
        ``metrics_at_final``); a record without it (written before it was recorded) raises a
        ValueError naming the runs, rather than silently dropping them or using their best value.

        >>> recs = [{"run_id": f"r{m}", "status": "ok", "size": m, "train_size": m, "best_value": 2 * m**-0.3,
        ...          "metrics_at_best": {"top5": m**-0.5}, "seed": 0} for m in (100, 1000, 10_000, 100_000)]
        >>> res = SweepResult.from_records(recs, monitor="top1", mode="min", metric="top5", bootstrap=0)
        >>> round(res.law.exponent, 2)
        -0.5
        """
        convert = to_error_fn or (lambda v: to_error(v, mode))
        targets = check_targets(targets)
        check_select(select)
        runs = [dict(r) for r in records]
        lacking = missing_value(runs, select)
        if lacking:
            raise ValueError(missing_value_message(lacking, select))
        fitted = None if metric in (None, monitor) else metric

        ok = [r for r in runs if r.get("status") == OK and _finite(run_value(r, select, fitted))]
        for r in ok:
            r["error"], r["select"] = convert(run_value(r, select, fitted)), select
        for r in ok:
            # a stream that was never sized reports samples only; a run with neither cannot be placed
            if not _finite(r.get("train_size")):
                r["train_size"] = r.get("num_samples")
        unplaced = [r["run_id"] for r in ok if not (_finite(r.get("train_size")) and r["train_size"] > 0)]
        ok = [r for r in ok if r["run_id"] not in unplaced]
        unit = str(next((r.get("size_unit") for r in ok if r.get("size_unit")), "samples"))
        res = cls(runs=runs, size_unit=unit, monitor=metric or monitor, targets=list(targets), select=select)
        if unplaced:
            res.notes.append(f"runs without a training-set size were left out of the laws: {unplaced}")
        if not ok:
            res.notes.append(f"no run finished with a finite {metric or 'monitored'} value: no law was fitted")
            return res

        # errors[size][grid point] -> list over seeds; sizes in the user's unit (mean over seeds)
        by_amount: dict[Any, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in ok:
            by_amount[record_amount(r)][grid_key(r.get("params"))].append(r)
        amounts = sorted(by_amount, key=lambda a: np.mean([x["train_size"] for g in by_amount[a].values() for x in g]))
        res.best = best_rows = best_per_size(by_amount, amounts)

        sizes = np.array([b["train_size"] for b in best_rows])
        res.law = res._fit(sizes, seed_matrix([b["errors"] for b in best_rows]), "best model per size", bootstrap,
                           seed)

        grid_keys = sorted({grid_key(r.get("params")) for r in ok}, key=_natural)
        res._fit_per_grid(by_amount, amounts, grid_keys, bootstrap, seed)
        if len(grid_keys) > 1:
            res._fit_model_size_law(sizes, [b["trainable_params"] for b in best_rows], bootstrap, seed)
        res._predict()
        note = undertrained_note(runs)
        if note:
            res.notes.append(note)
        return res

    def _fit_per_grid(self, by_amount: Mapping[Any, Mapping[str, list[dict[str, Any]]]], amounts: list[Any],
                      grid_keys: list[str], bootstrap: int, seed: int) -> None:
        """Each grid point's own learning curve (full-budget runs only), then the shared-exponent test."""
        curves: dict[str, tuple[Any, Any]] = {}
        for gk in grid_keys:
            pts = []
            for a in amounts:
                # a grid point an adaptive study stopped early counts at its size's best, not on its own curve
                rows = [x for x in by_amount[a].get(gk, []) if _num(x.get("budget")) in (None, 1.0)]
                if rows:
                    pts.append((float(np.mean([x["train_size"] for x in rows])),
                                [x["error"] for x in rows]))
            label = _label(json.loads(gk))
            if len(grid_keys) > 1 and len(pts) >= 4:
                fit = self._fit(np.array([p for p, _ in pts]), seed_matrix([e for _, e in pts]), label, bootstrap,
                                seed, keep_flat=False)
                if fit is not None:
                    self.per_grid[label] = fit
                    if fit.supported:  # only curves that are laws enter the shared-exponent test
                        curves[label] = (fit.sizes[fit.start_index:], fit.errors[fit.start_index:])
        if len(curves) >= 2:
            try:
                self.shared_exponent = fit_shared_exponent(curves, bootstrap=min(bootstrap, 300), seed=seed)
            except ValueError as exc:
                self.notes.append(f"no shared-exponent test: {exc}")

    def _fit_model_size_law(self, sizes: np.ndarray, counts: list[Any], bootstrap: int, seed: int) -> None:
        """The paper's second law, ``params(m) = sigma m^beta_p``, over the best model's size at each data size."""
        if all(isinstance(c, int | float) and c > 0 for c in counts):
            if len(set(counts)) > 1:
                try:
                    self.model_size_law = fit_model_size_law(sizes, counts, bootstrap=bootstrap, seed=seed)
                    lo, hi = self.model_size_law.intervals["beta_p"]
                    if bootstrap and lo <= 0 <= hi:
                        self.notes.append("the model-size exponent's interval includes 0: the best model size may "
                                          "not change with data (the winners may differ only by noise)")
                except ValueError as exc:
                    self.notes.append(f"no model-size law: {exc}")
            else:
                self.notes.append("no model-size law: the same model size was best at every data size")

    def _fit(self, x: np.ndarray, y: np.ndarray, label: str, bootstrap: int, seed: int,
             keep_flat: bool = True) -> ReportedFit | None:
        try:
            fit = ReportedFit.of(fit_learning_curve(x, y, bootstrap=bootstrap, seed=seed))
        except (ValueError, RuntimeError) as exc:
            self.notes.append(f"no learning curve for {label}: {exc}")
            return None
        self.notes += [f"{label}: {note}" for note in fit.notes]  # a flat curve, a rising tail
        if not fit.supported:
            self.notes.append(f"{label}: {fit.reason}" + ("" if keep_flat else "; left out of the comparison"))
            # a grid point whose error does not fall at all has no curve to show; one whose law is merely not
            # supported keeps its points, marked
            return fit if keep_flat or fit.exponent < -1e-6 else None
        return fit

    def _predict(self) -> None:
        if self.law is None or not getattr(self.law, "supported", True):
            return  # no law, no predictions from it
        largest = float(self.law.sizes[-1])
        err = float(self.law.errors[-1])
        self.predictions = {
            "error_at_10x_data": {"size": 10 * largest, **self.law.predict(10 * largest).to_dict()},
            "data_to_halve_error": self.law.data_needed(err / 2).to_dict(),
        }
        if self.targets:
            self.predictions["data_needed"] = {f"{t:g}": self.law.data_needed(t).to_dict() for t in self.targets}

    # -- tables: the same rows go to runs.csv / curve.csv and to W&B ------------------------------------
    def runs_table(self) -> tuple[list[str], list[list[Any]]]:
        """Every run as one row: status, sizes, grid values, seed, parameter count, best and fitted error.

        ``log10_*`` columns are there for charts without log axes (W&B's built-in ones).
        """
        grid = sorted({k for r in self.runs for k in (r.get("params") or {})})
        cols = ["run_id", "status", "fraction", "size", "train_size", "log10_train_size", "num_samples", *grid,
                "seed", "trainable_params", "best_value", "final_value", "error", "log10_error", "best_step", "steps",
                "wall_time_s", "reason"]
        rows = []
        for r in sorted(self.runs, key=lambda r: (_num(r.get("train_size")) or 0.0, str(r.get("run_id")))):
            params = r.get("params") or {}
            rows.append([
                r.get("run_id"), r.get("status"), r.get("fraction"), r.get("size"), _num(r.get("train_size")),
                _log10(r.get("train_size")), r.get("num_samples"), *[_cell(params.get(k)) for k in grid],
                r.get("seed"), r.get("trainable_params"), _num(r.get("best_value")), _num(r.get("final_value")),
                _num(r.get("error")),
                _log10(r.get("error")), r.get("best_step"), r.get("steps"), r.get("wall_time_s"),
                (r.get("reason") or "").splitlines()[0] if r.get("reason") else None,
            ])
        return cols, rows

    def curve_table(self, *, extrapolate: float = 10.0, points: int = 200) -> tuple[list[str], list[list[Any]]]:
        """The fitted law with its interval band, from the power-law start to ``extrapolate`` x the data."""
        if self.law is None:
            return [], []
        require_int("points", points, 2)
        if not (math.isfinite(extrapolate) and extrapolate >= 1):
            raise ValueError(f"extrapolate must be a finite multiple >= 1 of the largest size, got {extrapolate!r}")
        x = np.geomspace(self.law.power_law_start, float(self.law.sizes[-1]) * extrapolate, points)
        pred = self.law.predict(x)
        cols = ["train_size", "fit", "lower", "upper", "extrapolated", "log10_train_size", "log10_fit",
                "log10_lower", "log10_upper"]
        rows = [[float(m), float(v), float(lo), float(hi), bool(m > self.law.sizes[-1]), _log10(m), _log10(v),
                 _log10(lo), _log10(hi)] for m, v, lo, hi in zip(x, pred.value, pred.lower, pred.upper)]
        return cols, rows

    def flat_summary(self) -> dict[str, Any]:
        """The fitted laws and predictions as flat ``"law/beta"``-style keys (W&B run summary).

        Values are those of :meth:`to_dict` (and so of ``result.json``); intervals become
        ``<name>_lower`` / ``<name>_upper``; per-point lists are left out.
        """
        d = json.loads(self.to_json())
        out: dict[str, Any] = {k: d[k] for k in ("n_runs", "n_ok", "n_failed", "n_diverged", "size_unit", "monitor",
                                                 "select")}
        if d["law"]:
            out.update(flatten("law", {k: v for k, v in d["law"].items()
                                        if k not in ("sizes", "errors", "regions", "start_index")}))
        for label, fit in d["per_grid"].items():
            if not fit["law_supported"]:
                out.update({f"per_grid/{label}/law_supported": False, f"per_grid/{label}/reason": fit["reason"]})
                continue
            lo, hi = fit["intervals"][self.per_grid[label].form.exponent]
            out.update({f"per_grid/{label}/exponent": fit["exponent"], f"per_grid/{label}/exponent_lower": lo,
                        f"per_grid/{label}/exponent_upper": hi})
        if d["model_size_law"]:
            out.update(flatten("model_size_law", {k: v for k, v in d["model_size_law"].items()
                                                   if k not in ("sizes", "params")}))
        if d["shared_exponent"]:
            se = d["shared_exponent"]
            out.update(flatten("shared_exponent", {
                "beta": se["beta"], "intervals": {"beta": se["beta_interval"]}, "p_value": se["p_value"],
                "f_statistic": se["f_statistic"], "same_exponent": se["same_exponent"]}))
        out.update(flatten("predictions", d["predictions"]))
        return out

    # -- output ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "select": self.select,
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
            **({"adaptive": self.adaptive} if self.adaptive else {}),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), default=json_default, **kwargs)

    def summary(self) -> str:
        """The study in words: runs, the law (or why there is none), predictions, the per-size table, notes."""
        lines = [self._counts()]
        if self.law is not None:
            lines.append(str(self.law))
            lines += self._prediction_lines()
        for label, fit in self.per_grid.items():
            lo, hi = fit.intervals[fit.form.exponent]
            lines.append(f"  [{label}] beta = {sig(fit.exponent)} [{sig(lo)}, {sig(hi)}]" if fit.supported
                         else f"  [{label}] no power law")
        if self.shared_exponent is not None:
            lines.append(f"  {self.shared_exponent}")
        if self.model_size_law is not None:
            lines.append(f"  {self.model_size_law}")
        if self.best:
            lines += ["", text_table(*self.table())]
        # the law's own reason is said above, with the law
        told = {f"best model per size: {self.law.reason}"} if self.law is not None else set()
        lines += [f"  note: {n}" for n in self.notes if n not in told]
        if self.adaptive:
            a = self.adaptive
            lines.append(f"  adaptive study: {a.get('stop_reason')}; {a.get('device_seconds', 0):.1f} device-seconds "
                         f"(~{a.get('fraction_of_grid', math.nan):.0%} of the full grid's "
                         f"~{a.get('grid_device_seconds_estimate', math.nan):.1f}); sizes run: {a.get('chosen')}; "
                         f"{len(a.get('stopped', []))} grid points stopped early")
        return "\n".join(lines)

    def _counts(self) -> str:
        n = {s: sum(r.get("status") == s for r in self.runs) for s in ("ok", "failed", "diverged")}
        extra = ", ".join(f"{v} {k}" for k, v in n.items() if k != "ok" and v)
        chosen = "; each run's last validation (select='last')" if self.select == "last" else ""
        return f"{n['ok']}/{len(self.runs)} runs ok" + (f" ({extra})" if extra else "") + chosen

    def _prediction_lines(self) -> list[str]:
        return prediction_lines(self.law, self.size_unit, self.monitor, self.targets)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """One row per size: the best grid point, its error mean +- sd over seeds, runs ok and failed there."""
        return size_rows(self.runs, self.best, record_amount)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        law = "no law" if self.law is None else self.law.equation()
        return f"<SweepResult {self.monitor}: {self._counts()}; {law}>"

    def _repr_html_(self) -> str:
        """A notebook's view: the counts, the law (or why there is none), the per-size table, the notes."""
        import html

        law = "no law fitted" if self.law is None else str(self.law).splitlines()[0]
        parts = [f"<p><b>SweepResult</b> ({html.escape(self.monitor)}): {html.escape(self._counts())}<br>"
                 f"{html.escape(law)}</p>"]
        parts += [f"<p>{html.escape(line.strip())}</p>" for line in self._prediction_lines()]
        if self.best:
            parts.append(html_table(*self.table()))
        parts += [f"<p>note: {html.escape(n)}</p>" for n in self.notes]
        return "\n".join(parts)

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

    def figure(self) -> Figure:
        """The paper-style figure on a new matplotlib Figure (no pyplot: safe off the main thread)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4.8), layout="constrained")
        self.plot(ax=fig.add_subplot())
        return fig

    def model_size_figure(self) -> Figure | None:
        """The model-size law's figure (best parameters vs data, log-log, fit and band), if it was fitted."""
        if self.model_size_law is None:
            return None
        from matplotlib.figure import Figure

        from lightning_scaling.laws.plot import plot_model_size_law

        fig = Figure(figsize=(7, 4.8), layout="constrained")
        plot_model_size_law(self.model_size_law, ax=fig.add_subplot(), size_unit=self.size_unit)
        return fig

    def save(self, root: str | Path, *, figure: bool = True) -> None:
        """Write ``result.json``, ``runs.csv``, ``curve.csv``, ``learning_curve.png`` and (when the
        model-size law was fitted) ``model_size_law.png`` into the sweep folder."""
        from lightning_scaling.sweep.store import SweepStore, atomic_write_text

        store = SweepStore(root)
        store.write_result(json.loads(self.to_json()))
        atomic_write_text(store.root / "runs.csv", csv_text(*self.runs_table()))
        if self.law is not None:
            atomic_write_text(store.root / "curve.csv", csv_text(*self.curve_table()))
            if figure:
                self.figure().savefig(store.figure_path, dpi=130)
        size_figure = self.model_size_figure() if figure else None
        if size_figure is not None:
            size_figure.savefig(store.root / MODEL_SIZE_FIGURE, dpi=130)

    @classmethod
    def load(cls, root: str | Path, **kwargs: Any) -> SweepResult:
        """Re-analyse a sweep folder from its run records."""
        from lightning_scaling.sweep.store import SweepStore, fitted_records

        store = SweepStore(root)
        plan = store.read_plan()
        if plan is None:
            raise FileNotFoundError(f"{root} holds no sweep.json: not a sweep folder")
        records = fitted_records(store.records(), {r["run_id"] for r in plan["runs"]})
        kwargs.setdefault("select", plan.get("select", "best"))
        res = cls.from_records(records, monitor=plan["monitor"], mode=plan["mode"], **kwargs)
        from lightning_scaling.sweep.store import read_json

        res.adaptive = read_json(store.root / "adaptive.json") or {}
        return res


def check_targets(targets: Sequence[float]) -> list[float]:
    out = []
    for t in targets:
        if not (isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) and t > 0):
            raise ValueError(f"targets must be positive, finite errors (e.g. targets=[0.05]), got {t!r}")
        out.append(float(t))
    return out


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _log10(v: Any) -> float | None:
    return math.log10(v) if _finite(v) and v > 0 else None


def _cell(v: Any) -> Any:
    return v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v)


def _natural(key: str) -> list[tuple[int, Any]]:
    """Sort grid points by their values, numbers as numbers (``hidden=16`` before ``hidden=256``)."""
    return [(0, v) if isinstance(v, int | float) and not isinstance(v, bool) else (1, str(v))
            for _, v in sorted(json.loads(key).items())]


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)
