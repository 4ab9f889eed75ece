"""Adaptive scaling study: the decisions, as plain functions of the records (no torch, no Lightning).

The full grid (every data size x grid point x seed, trained to the end) stays the reference. An
adaptive study answers one question, a *target* (the error at a size, or the data needed for an
error), and spends compute where it narrows that target's interval most:

* **Model-size search by successive halving.** At each data size every grid point starts on a
  short budget (rung 0, e.g. a third of the Trainer's epochs). After a rung, grid points are ranked
  by their mean monitored error over seeds; the best ``ceil(n / eta)`` go on, and so does any other
  point that is not *clearly* worse than the best (within a margin that grows with the seeds'
  noise). The others are stopped, with the reason recorded. Survivors continue from the checkpoint
  their rung wrote, up to the full budget (the last rung), whose record is the run's final record.
* **Data-size selection.** The study starts with ``initial`` sizes (the smallest but one, then the
  largest whose first rung the budget affords: an extrapolation needs the far end, and its cost,
  extrapolated from the small sizes, is measured before the rest of it runs), fits the law, and then picks
  the next size by the expected shrinkage of the target's interval per unit of
  compute (a delta-method estimate, :func:`width_ratio`, over the size's expected cost), until the
  interval's relative width is at most ``tolerance`` or the next size would exceed ``budget``
  device-seconds.

Everything is decided from the records in the sweep folder (and the sizes chosen so far, kept in
``adaptive.json``), so a restarted study continues where it stopped and never reruns a finished rung.

Run ids: the last rung of a run has the grid run's own id (its record is interchangeable with a full
grid run's); an earlier rung ``r`` has ``<run_id>_r<r>``, and its checkpoint is
``checkpoints/<run_id>_r<r>.ckpt``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from lightning_scaling.sweep.plan import RunSpec, SweepPlan
from lightning_scaling.sweep.record import OK, RECORDED, grid_key, record_amount
from lightning_scaling.sweep.store import fitted_records

__all__ = [
    "AdaptiveConfig",
    "AdaptiveState",
    "CostModel",
    "Decision",
    "Target",
    "choose_next_size",
    "device_seconds",
    "expected_width",
    "promote",
    "relative_width",
    "rung_id",
    "width_ratio",
]

WIDTH_CAP = 1e3  # an unbounded interval counts as this relative width when comparing candidates


@dataclass(frozen=True)
class Target:
    """What an adaptive study predicts: ``error_at`` a training-set size, or ``data_needed`` for an error.

    >>> Target.error_at(65536), Target.data_needed(0.05).kind
    (Target(kind='error_at', value=65536.0), 'data_needed')
    """

    kind: Literal["error_at", "data_needed"]
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("error_at", "data_needed"):
            raise ValueError(f"target kind must be 'error_at' or 'data_needed', got {self.kind!r}")
        if not (isinstance(self.value, int | float) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"the target's value must be a positive, finite number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def error_at(cls, size: float) -> Target:
        """The error at ``size`` (in the sweep's size unit, e.g. samples)."""
        return cls("error_at", size)

    @classmethod
    def data_needed(cls, error: float) -> Target:
        """The training-set size at which the error reaches ``error``."""
        return cls("data_needed", error)

    @classmethod
    def parse(cls, target: Target | Mapping[str, float] | tuple[str, float]) -> Target:
        """A :class:`Target` from itself, ``{"error_at": 65536}`` or ``("data_needed", 0.05)``."""
        if isinstance(target, Target):
            return target
        if isinstance(target, Mapping) and len(target) == 1:
            ((kind, value),) = target.items()
            return cls(kind, value)  # type: ignore[arg-type]
        if isinstance(target, tuple) and len(target) == 2:
            return cls(*target)  # type: ignore[arg-type]
        raise ValueError(f"target must be Target.error_at(size), Target.data_needed(error), {{'error_at': size}} or "
                         f"{{'data_needed': error}}, got {target!r}")

    def predict(self, fit: Any) -> Any:
        """The target's prediction (value, lower, upper) under a ``LearningCurveFit``."""
        return fit.predict(self.value) if self.kind == "error_at" else fit.data_needed(self.value)

    def describe(self) -> str:
        return (f"error at size {self.value:g}" if self.kind == "error_at"
                else f"data needed for error {self.value:g}")


@dataclass(frozen=True)
class AdaptiveConfig:
    """Settings of an adaptive study.

    Args:
        target: what to predict (:class:`Target`).
        tolerance: stop when the target's interval is at most this wide, relative to its value
            (``(upper - lower) / value``); ``None``: only the budget stops the study.
        budget: device-seconds the study may spend (runs' wall time x devices); ``None``: no cap.
        rungs: the training budget of each rung as a fraction of the full one (the Trainer's
            ``max_epochs``, or ``max_steps`` when set), increasing and ending at 1.
        eta: successive halving keeps the best ``ceil(n / eta)`` grid points after each rung.
        margin: a grid point within ``margin`` (relative) of the best is never stopped.
        noise_z: ... nor one within ``noise_z`` standard errors of the best (seed noise, pooled).
        initial: number of sizes run before the first fit (at least 4): the ``initial - 1`` smallest
            candidates, then the largest one whose first rung fits in the budget (the largest of all
            without a budget; when none fits, the cheapest, the largest of equally cheap ones): a far
            extrapolation needs the far end of the range. Its later rungs (like those of every size
            chosen after it) start only when their cost, measured by its first rung, fits what is left.
        start_seeds: how many of the sweep's seeds a newly chosen size runs (its successive
            halving); ``None``: all. Another seed at a size is then one more candidate of the size
            selection (it reruns only the size's surviving grid points, at the full budget), chosen
            when it narrows the target's interval more per device-second than a new size does.
        bootstrap: bootstrap replicates of the fits that decide (the controller uses the result's own fit).
    """

    target: Target
    tolerance: float | None = None
    budget: float | None = None
    rungs: tuple[float, ...] = (1 / 3, 1.0)
    eta: float = 3.0
    margin: float = 0.05
    noise_z: float = 2.0
    initial: int = 4
    start_seeds: int | None = 1
    bootstrap: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Target.parse(self.target))
        if self.tolerance is None and self.budget is None:
            raise ValueError("an adaptive study needs a stopping rule: tolerance= (relative interval width, e.g. 0.2) "
                             "and/or budget= (device-seconds)")
        for name in ("tolerance", "budget"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")
        r = tuple(float(x) for x in self.rungs)
        if not r or r[-1] != 1.0 or any(not 0 < x <= 1 for x in r) or any(a >= b for a, b in itertools.pairwise(r)):
            raise ValueError(f"rungs must be increasing fractions of the full training budget ending at 1.0, "
                             f"e.g. (1/3, 1.0); got {self.rungs!r}")
        object.__setattr__(self, "rungs", r)
        if not self.eta > 1:
            raise ValueError(f"eta must be > 1, got {self.eta!r}")
        if self.margin < 0 or self.noise_z < 0:
            raise ValueError("margin and noise_z must be >= 0")
        if not (isinstance(self.initial, int) and self.initial >= 4):
            raise ValueError(f"initial must be an integer >= 4 (a law with an interval needs 4 sizes), "
                             f"got {self.initial!r}")
        if self.start_seeds is not None and not (isinstance(self.start_seeds, int) and self.start_seeds >= 1):
            raise ValueError(f"start_seeds must be a positive number of seeds or None (all), got {self.start_seeds!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"target": {self.target.kind: self.target.value}, "tolerance": self.tolerance, "budget": self.budget,
                "rungs": list(self.rungs), "eta": self.eta, "margin": self.margin, "noise_z": self.noise_z,
                "initial": self.initial, "start_seeds": self.start_seeds, "bootstrap": self.bootstrap}


def rung_id(run_id: str, rung: int, n_rungs: int) -> str:
    """The record id of ``rung`` of a run: the run's own id for the last rung, ``<id>_r<rung>`` before it.

    >>> rung_id("f0.25_s0_abc", 0, 2), rung_id("f0.25_s0_abc", 1, 2)
    ('f0.25_s0_abc_r0', 'f0.25_s0_abc')
    """
    return run_id if rung == n_rungs - 1 else f"{run_id}_r{rung}"


def device_seconds(record: Mapping[str, Any]) -> float:
    """Compute a record spent: its wall time x its devices (a CPU slot counts as one device)."""
    wall = record.get("wall_time_s")
    if not isinstance(wall, int | float) or not math.isfinite(wall):
        return 0.0
    devices = str(record.get("devices") or "")
    count = len([d for d in devices.split(",") if d.strip()]) or 1
    return float(wall) * count


def relative_width(pred: Any) -> float:
    """``(upper - lower) / |value|`` of a prediction, ``inf`` when unbounded or undefined."""
    v, lo, hi = (float(np.asarray(x).ravel()[0]) for x in (pred.value, pred.lower, pred.upper))
    if not all(math.isfinite(x) for x in (v, lo, hi)) or v == 0:
        return math.inf
    return (hi - lo) / abs(v)


# -- successive halving ------------------------------------------------------------------------------
def promote(
    scores: Mapping[str, Sequence[float]], *, eta: float, margin: float, noise_z: float,
) -> tuple[list[str], dict[str, str]]:
    """Which grid points go on to the next rung, and why the others stop.

    ``scores`` maps each grid point to its seeds' errors at the rung (lower is better; a diverged or
    failed seed is ``inf``). Errors are compared as ratios, on a log scale, because seed noise grows
    with the error itself (a gap of 0.02 is noise between 0.30 and 0.32, not between 0.01 and 0.03). With
    ``d = mean(log err) - mean(log err of the best)``, the best ``ceil(n / eta)`` grid points go on,
    and so does any other point with ``d <= max(log(1 + margin), noise_z * se)``, where ``se`` is
    the standard error of a difference of two means from the seeds' pooled variance of log errors
    (0 with one seed: then the margin alone decides). A point with no finite error is always
    stopped. (Errors that are not all positive, e.g. a loss that can be negative, are compared as
    plain differences, the margin relative to the best.)

    >>> keep, why = promote({"w8": [0.30, 0.32], "w32": [0.12, 0.13], "w128": [0.11, 0.12]}, eta=3, margin=0.05,
    ...                     noise_z=2.0)
    >>> keep, sorted(why)   # w32 is within two standard errors of the seeds' noise of the best: it goes on
    (['w128', 'w32'], ['w8'])
    """
    finite_all = [x for v in scores.values() for x in v if math.isfinite(x)]
    use_log = bool(finite_all) and min(finite_all) > 0

    def tr(x: float) -> float:
        return math.log(x) if use_log else x

    values = {k: ([tr(x) for x in v] if v and all(math.isfinite(x) for x in v) else None) for k, v in scores.items()}
    means = {k: (float(np.mean(v)) if v is not None else math.inf) for k, v in values.items()}
    ranked = sorted(means, key=lambda k: (means[k], k))
    finite = [k for k in ranked if math.isfinite(means[k])]
    if not finite:
        return [], {k: "no finite error at this rung (diverged or failed)" for k in ranked}
    best = means[finite[0]]
    groups = [np.asarray(values[k], float) for k in finite if len(values[k] or []) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    pooled = math.sqrt(sum(float(np.sum((g - g.mean()) ** 2)) for g in groups) / dof) if dof else 0.0
    n_seeds = min(len(scores[k]) for k in finite)
    se = pooled * math.sqrt(2.0 / n_seeds)
    rel = math.log1p(margin) if use_log else margin * abs(best)
    slack = max(rel, noise_z * se)
    top = max(1, math.ceil(len(scores) / eta))
    unit = "log error" if use_log else "error"
    keep, why = [], {}
    for rank, k in enumerate(ranked):
        m = means[k]
        if not math.isfinite(m):
            why[k] = "no finite error at this rung (diverged or failed)"
        elif rank < top or m - best <= slack:
            keep.append(k)
        else:
            shown = math.exp(m) if use_log else m
            ref = math.exp(best) if use_log else best
            why[k] = (f"rank {rank + 1}/{len(ranked)}: {'geometric ' if use_log else ''}mean error {shown:.4g} vs best "
                      f"{ref:.4g}, worse by {m - best:.3g} in {unit} > margin {slack:.3g} (relative {margin:g}, "
                      f"{noise_z:g} x seed s.e. {se:.3g})")
    return keep, why


# -- data-size selection -----------------------------------------------------------------------------
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


# -- compute -----------------------------------------------------------------------------------------
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


def _fit_cost(x: np.ndarray, t: np.ndarray, columns: Sequence[int]) -> CostModel:
    """:class:`CostModel` with the coefficients ``columns`` (of fixed, per_budget, per_sample) fitted to
    ``t`` by :func:`_nnls`, the others 0; their covariance ``s^2 (X'X)^-1`` where there are more runs
    than coefficients (the non-negativity bounds left out: an approximation at a bound)."""
    coef = _nnls(x, t)
    full = [0.0, 0.0, 0.0]
    for c, v in zip(columns, coef, strict=True):
        full[c] = v
    n, p = x.shape
    if n <= p:
        return CostModel(*full)
    s2 = float(np.sum((t - x @ np.asarray(coef)) ** 2)) / (n - p)
    cov = np.zeros((3, 3))
    cov[np.ix_(columns, columns)] = s2 * np.linalg.pinv(x.T @ x)
    return CostModel(*full, cov=tuple(tuple(float(v) for v in row) for row in cov))


# -- the study's state, rebuilt from records ---------------------------------------------------------
@dataclass
class Decision:
    """What the controller does next: launch ``launch`` (may be empty), or stop when ``done``."""

    launch: list[RunSpec] = field(default_factory=list)
    done: bool = False
    reason: str = ""


@dataclass
class AdaptiveState:
    """The adaptive study's state: sizes chosen so far, rung decisions, compute spent, stop reason.

    Rebuilt from the records and the chosen sizes in ``adaptive.json``; :meth:`decide` is
    deterministic given them, so a restarted study takes the same decisions again.
    """

    plan: SweepPlan
    config: AdaptiveConfig
    chosen: list[Any] = field(default_factory=list)
    added_seeds: list[Any] = field(default_factory=list)  # one entry (the size) per seed added at a size
    choices: list[dict[str, Any]] = field(default_factory=list)
    stopped: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    # -- the plan's pieces -------------------------------------------------------------------------
    def amount(self, spec: RunSpec) -> Any:
        return record_amount(spec)

    @property
    def amounts(self) -> list[Any]:
        """Candidate sizes (fractions or sample counts), smallest first."""
        return sorted(self.plan.fractions or self.plan.sizes or [])

    @property
    def start_seeds(self) -> list[int]:
        """The seeds a newly chosen size runs (its successive halving)."""
        k = self.config.start_seeds
        return list(self.plan.seeds if k is None else self.plan.seeds[:k])

    def seeds_at(self, amount: Any) -> list[int]:
        """The seeds run at a size: the start seeds, then one more per seed the study added there."""
        return list(self.plan.seeds[: len(self.start_seeds) + self.added_seeds.count(amount)])

    def specs_at(self, amount: Any) -> list[RunSpec]:
        return [s for s in self.plan.runs if self.amount(s) == amount]

    @property
    def first_rung(self) -> int:
        """0, or the last rung when the grid has one point (nothing to choose between: no short rungs)."""
        return 0 if len(self.plan.grid_points) > 1 else len(self.config.rungs) - 1

    def rung_spec(self, spec: RunSpec, rung: int, root: str) -> RunSpec:
        """The spec of ``rung`` of a grid run: its budget, the checkpoint it writes, the one it resumes."""
        n = len(self.config.rungs)
        ckpt = f"{root}/checkpoints/{spec.run_id}_r{{}}.ckpt"
        return replace(spec, run_id=rung_id(spec.run_id, rung, n), base_id=spec.run_id, rung=rung,
                       budget=self.config.rungs[rung],
                       save_checkpoint=ckpt.format(rung) if rung < n - 1 else None,
                       resume_from=ckpt.format(rung - 1) if rung > self.first_rung else None)

    def full_spec(self, spec: RunSpec) -> RunSpec:
        """An added seed of a surviving grid point: the last rung's record, trained from scratch to the end."""
        n = len(self.config.rungs)
        return replace(spec, run_id=spec.run_id, base_id=spec.run_id, rung=n - 1, budget=1.0,
                       save_checkpoint=None, resume_from=None)

    # -- decisions ---------------------------------------------------------------------------------
    def size_progress(self, amount: Any, records: Mapping[str, Mapping[str, Any]], root: str
                      ) -> tuple[list[RunSpec], bool]:
        """Runs to launch now at one size (successive halving over the start seeds, then the surviving
        grid points for any added seed), and whether the size is complete."""
        n = len(self.config.rungs)
        start = set(self.start_seeds)
        specs = [s for s in self.specs_at(amount) if s.seed in start]
        alive = {grid_key(s.params) for s in specs}
        for rung in range(self.first_rung, n):
            todo = [self.rung_spec(s, rung, root) for s in specs if grid_key(s.params) in alive]
            todo_left = [t for t in todo if (records.get(t.run_id) or {}).get("status") not in RECORDED]
            if todo_left:
                return todo_left, False
            if rung == n - 1:
                break
            scores: dict[str, list[float]] = {}
            for t in todo:
                rec = records[t.run_id]
                v = rec.get("best_value") if rec.get("status") == OK else None
                ok = isinstance(v, int | float) and math.isfinite(v)
                err = (1.0 - float(v) if self.plan.mode == "max" else float(v)) if ok else math.inf
                scores.setdefault(grid_key(t.params), []).append(err)
            keep, why = promote(scores, eta=self.config.eta, margin=self.config.margin, noise_z=self.config.noise_z)
            for k, reason in why.items():
                self.stopped[f"{amount}|{k}"] = {"size": amount, "params": k, "rung": rung,
                                                 "budget": self.config.rungs[rung], "reason": reason}
            alive = set(keep)
        added = set(self.seeds_at(amount)) - start
        extra = [self.full_spec(s) for s in self.specs_at(amount) if s.seed in added and grid_key(s.params) in alive]
        extra_left = [t for t in extra if (records.get(t.run_id) or {}).get("status") not in RECORDED]
        return extra_left, not extra_left

    def decide(self, records: Mapping[str, Mapping[str, Any]], root: str, law: Any | Callable[[], Any],
               spent: float, slots: int | Callable[[], int] = 1) -> Decision:
        """The next step: runs to launch, or stop (with the reason).

        ``law`` is the current law (the result's ``LearningCurveFit`` of the best model per size, with
        its bootstrap replicates: the decisions use the same fit and interval that are reported), or
        a callable computing it (called only when a decision needs it); ``spent`` is the
        device-seconds spent so far. ``slots``: runs that can start now (or a callable returning it,
        called only when needed); with a budget, when the chosen step launches fewer, further
        members of the budget's plan start with it (they were going to be run, and a slot would
        otherwise idle until the next decision).
        """
        cfg = self.config
        if not self.chosen:
            self.chosen = self.amounts[: cfg.initial - 1]
        launch: list[RunSpec] = []
        held: tuple[Any, float] | None = None
        committed = 0.0  # expected cost of the continued rungs launched so far
        for i, a in enumerate(self.chosen):
            todo, _ = self.size_progress(a, records, root)
            rest = self.continue_cost(todo, records) if cfg.budget is not None else 0.0
            if rest and i >= cfg.initial - 1 and spent + committed + rest > cfg.budget:
                # a size chosen under the budget continues from its checkpoints only while what it has left
                # fits: its cost is known from its own first rung by now, not extrapolated from smaller sizes
                held = held or (a, rest)
                continue
            launch += todo
            committed += rest
        if launch:
            return Decision(launch=launch)
        if held:
            a, rest = held
            return self._stop(f"budget: the next rung of size {_key_label(a)} would cost ~{rest:.1f} device-seconds, "
                              f"{spent:.1f} of {cfg.budget:g} are spent; its grid points count through their last "
                              f"rung (a larger budget= continues them from their checkpoints)")
        if len(self.chosen) < cfg.initial:
            # the last initial size: the largest affordable candidate (an extrapolation needs the far end). Its
            # cost is extrapolated from runs of a few tenths of a second, 16x beyond them (the teacher benchmark
            # priced 8,192 samples at 6-17 device-s from 128-512; they cost 7-9.5): the size is taken when its
            # first rung fits (with the margin) and the whole of it may (the low end of the cost model's
            # range); the rest runs once its first rung has measured it and it fits (the budget check above)
            left = [a for a in self.amounts if a not in self.chosen]
            margin = self.cost_margin(records)
            room = math.inf if cfg.budget is None else cfg.budget - spent
            first = {a: self.rung_costs(a, records)[self.first_rung] for a in left}
            fits = [a for a in left if first[a] * margin <= room and self.cost_low(a, records) <= room]
            if not fits:
                # the law needs a fourth size all the same: the cheapest, and of equally cheap ones (every size
                # costs the same under max_steps) the largest, not the smallest
                cost = {a: self.expected_cost(a, records) for a in left}
                fits = [a for a in left if cost[a] <= min(cost.values()) * (1 + 1e-9)]
            self.chosen.append(max(fits))
            return self.decide(records, root, law, spent, slots)
        if self.stop_reason:
            return Decision(done=True, reason=self.stop_reason)
        fit = law() if callable(law) else law
        if fit is None:
            return self._stop("no law could be fitted to the sizes run (see the result's notes)")
        pred = cfg.target.predict(fit)
        width = relative_width(pred)
        self.history.append({"sizes_run": list(self.chosen), "width": width, "spent_s": spent,
                             "value": float(np.asarray(pred.value).ravel()[0])})
        if cfg.tolerance is not None and width <= cfg.tolerance:
            return self._stop(f"tolerance met: the {cfg.target.describe()} has relative interval width "
                              f"{width:.3g} <= {cfg.tolerance:g}")
        if cfg.budget is not None and spent >= cfg.budget:
            return self._stop(f"budget spent: {spent:.1f} of {cfg.budget:g} device-seconds "
                              f"(interval width {width:.3g})")
        left = [a for a in self.amounts if a not in self.chosen]
        costs: dict[Any, float] = {a: self.expected_cost(a, records) for a in left}
        # another seed at a size already run: one more measurement there, for its surviving grid points only
        costs.update({("seed", a): self.seed_cost(a, records) for a in self.chosen
                      if len(self.seeds_at(a)) < len(self.plan.seeds)})
        if not costs:
            return self._stop(f"every candidate size has been run with every seed (interval width {width:.3g})")
        if cfg.budget is not None:
            # the budget is a cap: plan with the cost model's upper estimate (run times scatter around it)
            margin = self.cost_margin(records)
            costs = {k: c * margin for k, c in costs.items()}
            affordable = {a: c for a, c in costs.items() if spent + c <= cfg.budget}
            if not affordable:
                cheapest = min(costs.values())
                return self._stop(f"budget: the cheapest remaining size or seed would cost ~{cheapest:.1f} "
                                  f"device-seconds, {spent:.1f} of {cfg.budget:g} are spent (interval width "
                                  f"{width:.3g})")
            costs = affordable
        train = self.train_sizes(records)
        candidates = {k: self._size_in(_size_of(k), train) for k in costs}
        remaining = None if cfg.budget is None else cfg.budget - spent
        best, table = choose_next_size(fit, candidates, costs, cfg.target, remaining)
        self.choices.append({"after": list(self.chosen), "added_seeds": list(self.added_seeds), "width": width,
                             "candidates": {_key_label(k): v for k, v in table.items()},
                             "chosen": None if best is None else _key_label(best)})
        if best is None:
            return self._stop(f"no remaining size or seed is expected to narrow the interval (width {width:.3g})")
        self._take(best)
        decision = self.decide(records, root, fit, spent)
        if remaining is not None and not decision.done:
            slots = slots() if callable(slots) else slots
            plan = sorted((k for k in table if table[k].get("in_plan") and k != best),
                          key=lambda k: (-table[k]["gain"], table[k]["cost"], _key_label(k)))
            also = []
            for key in plan:
                if len(decision.launch) >= slots:
                    break
                self._take(key)
                also.append(_key_label(key))
                decision.launch += self.size_progress(_size_of(key), records, root)[0]
            if also:
                self.choices[-1]["also_started"] = also
        return decision

    def _take(self, key: Any) -> None:
        if isinstance(key, tuple):
            self.added_seeds.append(key[1])
        else:
            self.chosen.append(key)

    def _stop(self, reason: str) -> Decision:
        self.stop_reason = reason
        return Decision(done=True, reason=reason)

    # -- costs ---------------------------------------------------------------------------------------
    def train_sizes(self, records: Mapping[str, Mapping[str, Any]]) -> dict[Any, float]:
        out: dict[Any, float] = {}
        for r in records.values():
            a = record_amount(r)
            if isinstance(r.get("train_size"), int | float):
                out[a] = float(r["train_size"])
        return out

    def _size_in(self, amount: Any, known: Mapping[Any, float]) -> float:
        """The training-set size of a candidate: measured by its runs, else estimated."""
        return known[amount] if amount in known else self._guess_train_size(amount, known)

    def _guess_train_size(self, amount: Any, known: Mapping[Any, float]) -> float:
        if self.plan.sizes:
            return float(amount)
        per_fraction = [v / k for k, v in known.items() if isinstance(k, int | float) and k]
        return float(amount) * (float(np.mean(per_fraction)) if per_fraction else 1.0)

    def _trained(self, r: Mapping[str, Any]) -> float:
        """The share of the full training budget a record trained (a continued rung: only its extra)."""
        rung, budget = r.get("rung"), float(r.get("budget") or 1.0)
        if r.get("resumed_from") and isinstance(rung, int) and 0 < rung <= len(self.config.rungs):
            return budget - self.config.rungs[rung - 1]
        return budget

    def cost_model(self, records: Mapping[str, Mapping[str, Any]]) -> CostModel:
        """Device-seconds of one run, fitted to the records by non-negative least squares (:class:`CostModel`).

        Rungs limited by the Trainer's ``max_steps`` (their records say so) train as many steps at
        every data size: their model has no per-sample term, which a few sizes' timing noise would
        otherwise supply and a far extrapolation would multiply.
        """
        used = [r for r in records.values() if isinstance(r.get("train_size"), int | float) and r.get("wall_time_s")]
        pts = [(self._trained(r), float(r["train_size"]), device_seconds(r)) for r in used]
        if not pts:
            return CostModel(0.0, 0.0, 1.0)
        trained, m, t = np.array(pts).T
        if all(str(r.get("budget_limit") or "").startswith("max_steps=") for r in used):
            return _fit_cost(np.column_stack([np.ones_like(t), trained]), t, [0, 1])
        if len(set(m.tolist())) < 2:
            # one size cannot tell a per-step cost from a per-sample one: assume the cost grows with the
            # data (the cautious extrapolation to the larger sizes still to choose)
            return _fit_cost(np.column_stack([np.ones_like(t), trained * m]), t, [0, 2])
        return _fit_cost(np.column_stack([np.ones_like(t), trained, trained * m]), t, [0, 1, 2])

    def cost_margin(self, records: Mapping[str, Mapping[str, Any]]) -> float:
        """``1 + 2 x`` the relative scatter of run costs around :meth:`cost_model` (at most 1.5): the
        factor a budgeted study multiplies expected costs by, so that it stays within the budget."""
        model = self.cost_model(records)
        rel = []
        for r in records.values():
            if isinstance(r.get("train_size"), int | float) and r.get("wall_time_s"):
                expected = model(self._trained(r), float(r["train_size"]))
                if expected > 0:
                    rel.append(device_seconds(r) / expected - 1.0)
        if len(rel) < 3:
            return 1.0
        return 1.0 + min(2.0 * float(np.sqrt(np.mean(np.square(rel)))), 0.5)

    def survivors(self, rung: int, records: Mapping[str, Mapping[str, Any]]) -> float:
        """Grid points expected to run ``rung``: the mean over the sizes that reached it, else
        ``ceil(n / eta)`` per earlier rung."""
        n = len(self.config.rungs)
        counts = []
        for a in self.chosen:
            ids = {rung_id(s.run_id, rung, n) for s in self.specs_at(a)}
            points = {grid_key(records[i].get("params") or {}) for i in ids if i in records}
            if points:
                counts.append(len(points))
        if counts:
            return float(np.mean(counts))
        alive = len(self.plan.grid_points)
        for _ in range(rung):
            alive = max(1, math.ceil(alive / self.config.eta))
        return float(alive)

    def _size_runs(self, amount: Any, records: Mapping[str, Mapping[str, Any]]) -> list[tuple[float, float, float]]:
        """One size's rungs as ``(runs, trained, m)``: the survivors per rung seen so far times the start
        seeds, the share of the budget each trains (a continued rung pays only its extra), its data size."""
        m = self._size_in(amount, self.train_sizes(records))
        seeds = len(self.start_seeds)
        out, prev = [], 0.0
        for rung, frac in enumerate(self.config.rungs):
            if rung < self.first_rung:
                out.append((0.0, 0.0, m))
                continue
            out.append((self.survivors(rung, records) * seeds, frac - prev, m))
            prev = frac
        return out

    def rung_costs(self, amount: Any, records: Mapping[str, Mapping[str, Any]]) -> list[float]:
        """Expected device-seconds of each rung of one size under successive halving (0 before the first
        rung), from the cost model and the survivors per rung seen so far."""
        model = self.cost_model(records)
        return [n * model(tr, m) if n else 0.0 for n, tr, m in self._size_runs(amount, records)]

    def cost_low(self, amount: Any, records: Mapping[str, Mapping[str, Any]]) -> float:
        """The low end of one size's expected cost: :meth:`expected_cost` less two standard errors of
        the cost model's coefficients (:meth:`CostModel.sd`); the expected cost when the runs fit it exactly."""
        sd = self.cost_model(records).sd(self._size_runs(amount, records))
        return max(self.expected_cost(amount, records) - 2.0 * sd, 0.0)

    def expected_cost(self, amount: Any, records: Mapping[str, Mapping[str, Any]]) -> float:
        """Expected device-seconds of one size, every rung (:meth:`rung_costs`)."""
        return float(sum(self.rung_costs(amount, records)))

    def continue_cost(self, specs: Sequence[RunSpec], records: Mapping[str, Mapping[str, Any]]) -> float:
        """Expected device-seconds of the rungs in ``specs`` that continue from a checkpoint (their extra budget)."""
        cont = [s for s in specs if s.resume_from and isinstance(s.rung, int) and s.rung > 0]
        if not cont:
            return 0.0
        model, train = self.cost_model(records), self.train_sizes(records)
        return float(sum(model(self.config.rungs[s.rung] - self.config.rungs[s.rung - 1],
                               self._size_in(self.amount(s), train)) for s in cont))

    def seed_cost(self, amount: Any, records: Mapping[str, Mapping[str, Any]]) -> float:
        """Expected device-seconds of one more seed at a size run: its surviving grid points, full budget."""
        m = self._size_in(amount, self.train_sizes(records))
        n = len(self.config.rungs)
        ids = {s.run_id for s in self.specs_at(amount)}
        points = {grid_key(r.get("params") or {}) for k, r in records.items() if k in ids and r.get("rung") == n - 1}
        return max(len(points), 1) * self.cost_model(records)(1.0, m)

    def grid_cost(self, records: Mapping[str, Mapping[str, Any]]) -> float:
        """Estimated device-seconds of the full grid (every planned run at the full budget)."""
        model = self.cost_model(records)
        train = self.train_sizes(records)
        return float(sum(model(1.0, self._size_in(self.amount(s), train)) for s in self.plan.runs))

    # -- records ---------------------------------------------------------------------------------
    def study_records(self, records: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """Every rung record of the sizes this study chose (the probe and other studies' records left out)."""
        planned = {s.run_id for s in self.plan.runs}
        chosen = set(self.chosen)
        return [r for r in records.values()
                if record_amount(r) in chosen
                and (r.get("base_id") or r.get("run_id")) in planned]

    def spent(self, records: Mapping[str, Mapping[str, Any]]) -> float:
        """Device-seconds spent so far: every rung of every run, finished or failed."""
        return float(sum(device_seconds(r) for r in self.study_records(records)))

    def final_records(self, records: Mapping[str, Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The records the law is fitted to: every run's last rung (the grid run's own id), and for a grid
        point stopped early, the rung where it stopped (:func:`~lightning_scaling.sweep.store.fitted_records`)."""
        return fitted_records(records, {s.run_id for s in self.plan.runs})

    def law(self, records: Mapping[str, Mapping[str, Any]]) -> Any:
        """The law of the best model per size, fitted as the result fits it (``config.bootstrap`` replicates)."""
        from lightning_scaling.sweep.result import SweepResult

        final = self.final_records(records)
        if not final:
            return None
        return SweepResult.from_records(final, monitor=self.plan.monitor, mode=self.plan.mode,
                                        bootstrap=self.config.bootstrap).law

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "chosen": self.chosen, "added_seeds": self.added_seeds,
                "stop_reason": self.stop_reason,
                "stopped": list(self.stopped.values()), "choices": self.choices, "history": self.history}

    def summary(self, records: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """:meth:`to_dict` with the compute spent and the full grid's estimated cost (``adaptive.json``)."""
        spent = self.spent(records)
        grid = self.grid_cost(records)
        return {**self.to_dict(), "device_seconds": spent, "grid_device_seconds_estimate": grid,
                "fraction_of_grid": spent / grid if grid > 0 else math.nan,
                "runs": len(self.study_records(records))}


def _size_of(key: Any) -> Any:
    """The size of a candidate key: a size, or ``("seed", size)`` for another seed there."""
    return key[1] if isinstance(key, tuple) else key


def _key_label(key: Any) -> str:
    return f"{key[1]} (+1 seed)" if isinstance(key, tuple) else str(key)
