"""How a sweep's result is told: a fitted curve only as a law where the data support one, numbers
rounded to what the data support, the under-trained check and the per-size table.

:class:`ReportedFit` is the :class:`~lightning_scaling.laws.LearningCurveFit` a
:class:`~lightning_scaling.sweep.SweepResult` holds: the same fit, its intervals made to contain their
point estimates, and ``reason`` set where no power law is supported (the exponent sits at 0 or its
interval reaches 0, the error did not fall, the bootstrap could not move the exponent, the floor is at
the level of the data). Such a fit prints, serialises and plots as "no power law" in words, with no
exponent.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from lightning_scaling.laws import LearningCurveFit
from lightning_scaling.laws.intervals import misses
from lightning_scaling.sweep.record import FAILED, OK

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "BEYOND",
    "ReportedFit",
    "csv_text",
    "flatten",
    "format_count",
    "format_size",
    "html_table",
    "law_problem",
    "prediction_lines",
    "sig",
    "size_rows",
    "text_table",
    "undertrained_note",
]

#: a predicted size beyond this multiple of the largest size measured is not given as a number
BEYOND = 1000.0
#: significant digits of a reported number
DIGITS = 3


def sig(value: float | None, digits: int = DIGITS, *, scale: float | None = None) -> str:
    """``value`` to ``digits`` significant digits; ``0`` when it is below a thousandth of ``scale``.

    >>> sig(0.0312345), sig(-9.86e-305, scale=1.0), sig(65432.1), sig(float("inf")), sig(None)
    ('0.0312', '0', '6.54e+04', 'inf', '?')
    """
    if value is None or not isinstance(value, int | float | np.floating) or math.isnan(value):
        return "?"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if scale is not None and abs(value) < 1e-3 * abs(scale):
        return "0"
    return f"{float(value):.{digits}g}"


def format_count(value: float) -> str:
    """A measured size: whole numbers with thousands separators below 1e7, else 3 significant digits.

    >>> format_count(1600.0), format_count(2.5e9)
    ('1,600', '2.5e+09')
    """
    return f"{round(value):,}" if math.isfinite(value) and abs(value) < 1e7 else sig(value)


def format_size(value: float, largest: float) -> str:
    """A predicted training-set size, or "beyond 1000x the largest size measured" past :data:`BEYOND`.

    >>> format_size(2.5e4, 1e4), format_size(6.5e13, 1e4)
    ('2.5e+04', 'beyond 1000x the largest size measured')
    """
    if math.isfinite(value) and value > BEYOND * largest:
        return f"beyond {BEYOND:.0f}x the largest size measured"
    return sig(value)


def law_problem(fit: LearningCurveFit) -> str | None:
    """Why ``fit`` supports no power law, or ``None`` where it does."""
    said = getattr(fit, "supported", None)
    if said is False:  # the fit says so itself
        notes = getattr(fit, "notes", None) or ()
        return "; ".join(str(n) for n in notes) or "the fit reports no supported power law"
    beta = fit.exponent
    lo, hi = fit.intervals.get(fit.form.exponent, (beta, beta))
    used = np.asarray(fit.errors[fit.start_index:], dtype=float)
    if not beta < -1e-3:
        return "the error does not fall with data (exponent at its bound 0), so there is no power law to report"
    if len(used) >= 2 and not used[-1] < used[0]:
        return "the error did not fall from the smallest to the largest size fitted"
    if len(getattr(fit, "boot", ())) > 1:
        if hi >= -1e-3:
            return (f"the exponent's {fit.confidence:.0%} interval reaches 0: the data do not show the error "
                    "falling as a power law")
        # an exact fit leaves nothing to resample; a noisy one whose replicates all agree is stuck on a bound
        if hi - lo <= 1e-9 * abs(beta) and not fit.rmsle < 1e-6:
            return "the bootstrap could not move the exponent (a degenerate interval): the fit is not identified"
    if fit.floor > 0 and fit.floor >= 0.99 * float(np.min(used)):
        return "the fitted floor is at the level of the data: the curve is flat where it was measured"
    return None


@dataclass
class ReportedFit(LearningCurveFit):
    """A sweep's fitted learning curve as it is reported (see the module docstring).

    Attributes:
        reason: why no power law is supported, or ``None`` where one is.
    """

    reason: str | None = None

    @classmethod
    def of(cls, fit: LearningCurveFit) -> ReportedFit:
        """``fit`` as reported: every interval widened to contain its point estimate, ``reason`` judged.

        A percentile interval of replicates that all sit off a bound can miss an estimate on that bound by
        rounding; a wider miss is said in a note, not hidden by the widening.
        """
        kept = {f.name: getattr(fit, f.name) for f in fields(fit) if f.init and f.name != "reason"}
        kept["intervals"], kept["notes"] = {}, list(fit.notes)
        for k, (lo, hi) in fit.intervals.items():
            kept["intervals"][k] = (lo, hi)
            if k in fit.params:
                value = fit.params[k]
                kept["intervals"][k] = (min(lo, value), max(hi, value))
                if misses(value, lo, hi, float(np.min(fit.errors))):
                    kept["notes"].append(f"{k} = {sig(value)} lay outside its bootstrap interval "
                                         f"[{sig(lo)}, {sig(hi)}], which is widened to contain it")
        out = cls(**kept)
        out.reason = law_problem(out)
        return out

    @property
    def supported(self) -> bool:
        """Whether the data support a power law."""
        return self.reason is None

    def equation(self) -> str:
        if not self.supported:
            return "no power law"
        p, scale = self.params, float(np.min(self.errors))
        if set(p) == {"alpha", "beta", "gamma"}:
            return f"eps(m) = {sig(p['alpha'])} * m^{sig(p['beta'])} + {sig(p['gamma'], scale=scale)}"
        return super().equation()

    def __str__(self) -> str:
        if not self.supported:
            return f"no power law: {self.reason} ({len(self.sizes)} sizes measured)"
        scale = float(np.min(self.errors))
        level = f"{self.confidence:.0%}"
        lines = [f"{self.equation()}  ({self.form.name}, {len(self.sizes) - self.start_index} points fitted)"]
        for name, value in self.params.items():
            lo, hi = self.intervals[name]
            s = None if name == self.form.exponent else scale
            lines.append(f"  {name:>6} = {sig(value, scale=s)}  [{sig(lo, scale=s)}, {sig(hi, scale=s)}]  {level}")
        largest = float(self.sizes[-1])
        end = self.regions["power_law"][1]
        start = (f"small-data < {sig(self.power_law_start)} <= power-law" if self.start_index
                 else "no small-data region in the data; power-law")
        irreducible = ("no irreducible-error region within 1000x the largest size measured"
                       if not (math.isfinite(end) and end <= BEYOND * largest) else f"< {sig(end)} <= irreducible")
        lines.append(f"  regions: {start} {irreducible}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.supported:
            return {**out, "law_supported": True}
        # no exponent, no parameters, no regions: nothing a reader could take for a law
        drop = {*self.params, "exponent", "floor", "intervals", "regions", "power_law_start", "equation"}
        return {"law_supported": False, "reason": self.reason, "equation": self.equation(),
                **{k: v for k, v in out.items() if k not in drop}}

    def plot(self, ax: Axes | None = None, *, extrapolate: float = 10.0, label: str | None = None) -> Axes:
        if self.supported:
            return super().plot(ax=ax, extrapolate=extrapolate, label=label)
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
        ax.scatter(self.sizes, self.errors, s=22, edgecolor="k", linewidths=0.5, zorder=3,
                   label=label or "measured points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"no power law: {self.reason}", fontsize=8, wrap=True)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        return ax


def undertrained_note(records: Sequence[Mapping[str, Any]]) -> str | None:
    """A note when most finished runs reached their best monitored value at their last step."""
    measured = [r for r in records if r.get("status") == OK and isinstance(r.get("best_step"), int)
                and isinstance(r.get("steps"), int) and r["steps"] > 0]
    last = [r for r in measured if r["best_step"] >= r["steps"]]
    if len(measured) < 2 or 2 * len(last) <= len(measured):
        return None
    return (f"{len(last)} of {len(measured)} runs reached their best value at their last step: the runs look "
            "under-trained (their error was still falling), so the law describes the training budget as much as "
            "the data; raise the Trainer's max_epochs (or max_steps, whichever ends training) and run the study "
            "again in a new folder")


def text_table(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned with spaces, a header line first."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(cols)]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [cols, *rows])


def html_table(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table as HTML (values escaped)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def size_rows(runs: Sequence[Mapping[str, Any]], best: Sequence[Mapping[str, Any]],
              amount_of: Any) -> tuple[list[str], list[list[str]]]:
    """The per-size table: size, best grid point, its mean +- sd over seeds, runs ok/failed at the size."""
    cols = ["size", "train size", "best grid point", "error mean +- sd", "seeds", "ok", "failed"]
    counts: dict[Any, list[int]] = {}
    for r in runs:
        c = counts.setdefault(amount_of(r), [0, 0])
        c[0] += r.get("status") == OK
        c[1] += r.get("status") == FAILED
    rows = []
    for b in best:
        errs = np.asarray(b["errors"], dtype=float)
        sd = f" +- {sig(float(np.std(errs, ddof=1)), 2)}" if len(errs) > 1 else ""
        grid = ", ".join(f"{k}={v}" for k, v in sorted((b.get("params") or {}).items())) or "-"
        ok, failed = counts.get(b["amount"], [0, 0])
        rows.append([f"{b['amount']:g}" if isinstance(b["amount"], float) else str(b["amount"]),
                     format_count(b["train_size"]), grid, f"{sig(float(errs.mean()))}{sd}", str(len(errs)), str(ok),
                     str(failed)])
    return cols, rows


def prediction_lines(law: ReportedFit | None, size_unit: str, monitor: str, targets: Sequence[float]) -> list[str]:
    """Data to halve the largest run's error and each target's data need: rounded, within range, in words."""
    if law is None:
        return []
    if not law.supported:
        return [f"  targets {', '.join(f'{t:g}' for t in targets)}: no data need is predicted without a power law"
                ] if targets else []
    largest = float(law.sizes[-1])

    def told(need: Any) -> str:
        if not need.reachable:
            maybe = (f"; within the interval a run may reach it from {sig(need.lower)} on"
                     if need.lower <= BEYOND * largest else "")
            return f"unreachable (at or below the fitted floor {sig(need.floor)}){maybe}"
        if need.value > BEYOND * largest:
            return format_size(need.value, largest)
        upper = format_size(need.upper, largest) if math.isfinite(need.upper) else "unbounded"
        return f"{sig(need.value)} [{sig(need.lower)}, {upper}]"

    out = [f"  data ({size_unit}) to halve the error of the largest run: "
           f"{told(law.data_needed(float(law.errors[-1]) / 2))}"]
    out += [f"  target {monitor} error {t:g}: data ({size_unit}) needed {told(law.data_needed(t))}" for t in targets]
    return out


def flatten(prefix: str, d: Mapping[str, Any]) -> dict[str, Any]:
    """Nested dicts as ``"prefix/key"`` keys; ``intervals`` as ``<name>_lower`` / ``<name>_upper``; lists left out."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "intervals":
            for name, (lo, hi) in v.items():
                out[f"{prefix}/{name}_lower"], out[f"{prefix}/{name}_upper"] = lo, hi
        elif isinstance(v, Mapping):
            out.update(flatten(f"{prefix}/{k}", v))
        elif not isinstance(v, list):
            out[f"{prefix}/{k}"] = v
    return out


def csv_text(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table as CSV text (``None`` as an empty cell)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return buf.getvalue()
