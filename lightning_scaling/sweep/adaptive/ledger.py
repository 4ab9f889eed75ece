"""What an adaptive study has chosen and run, and what its sizes cost (the cost model over its records).

:class:`StudyLedger` is the bookkeeping half of :class:`~lightning_scaling.sweep.adaptive.AdaptiveState`:
the plan's pieces per size, the expected device-seconds of a size, a rung or a seed
(:class:`~lightning_scaling.sweep.adaptive.cost.CostModel` fitted to the records), and the compute spent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightning_scaling.sweep.adaptive.cost import CostModel, device_seconds, fit_cost
from lightning_scaling.sweep.adaptive.halving import rung_id
from lightning_scaling.sweep.adaptive.strategy import Adaptive
from lightning_scaling.sweep.plan import RunSpec, SweepPlan
from lightning_scaling.sweep.record import grid_key, record_amount
from lightning_scaling.sweep.store import fitted_records

__all__ = ["StudyLedger"]

Records = Mapping[str, Mapping[str, Any]]


@dataclass
class StudyLedger:
    """The sizes an adaptive study chose, the seeds it added, and the compute they cost and will cost.

    Args:
        plan: the sweep's plan (its sizes are the study's candidates).
        config: the study's settings.
        chosen: the sizes chosen so far, in the order chosen.
        added_seeds: one entry (the size) per seed the study added at a size.
    """

    plan: SweepPlan
    config: Adaptive
    chosen: list[Any] = field(default_factory=list)
    added_seeds: list[Any] = field(default_factory=list)

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

    # -- costs ---------------------------------------------------------------------------------------
    def train_sizes(self, records: Records) -> dict[Any, float]:
        out: dict[Any, float] = {}
        for r in records.values():
            a = record_amount(r)
            if isinstance(r.get("train_size"), int | float):
                out[a] = float(r["train_size"])
        return out

    def train_size(self, amount: Any, known: Mapping[Any, float]) -> float:
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

    def cost_model(self, records: Records) -> CostModel:
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
            return fit_cost(np.column_stack([np.ones_like(t), trained]), t, [0, 1])
        if len(set(m.tolist())) < 2:
            # one size cannot tell a per-step cost from a per-sample one: assume the cost grows with the
            # data (the cautious extrapolation to the larger sizes still to choose)
            return fit_cost(np.column_stack([np.ones_like(t), trained * m]), t, [0, 2])
        return fit_cost(np.column_stack([np.ones_like(t), trained, trained * m]), t, [0, 1, 2])

    def cost_margin(self, records: Records) -> float:
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

    def survivors(self, rung: int, records: Records) -> float:
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

    def _size_runs(self, amount: Any, records: Records) -> list[tuple[float, float, float]]:
        """One size's rungs as ``(runs, trained, m)``: the survivors per rung seen so far times the start
        seeds, the share of the budget each trains (a continued rung pays only its extra), its data size."""
        m = self.train_size(amount, self.train_sizes(records))
        seeds = len(self.start_seeds)
        out, prev = [], 0.0
        for rung, frac in enumerate(self.config.rungs):
            if rung < self.first_rung:
                out.append((0.0, 0.0, m))
                continue
            out.append((self.survivors(rung, records) * seeds, frac - prev, m))
            prev = frac
        return out

    def rung_costs(self, amount: Any, records: Records) -> list[float]:
        """Expected device-seconds of each rung of one size under successive halving (0 before the first
        rung), from the cost model and the survivors per rung seen so far."""
        model = self.cost_model(records)
        return [n * model(tr, m) if n else 0.0 for n, tr, m in self._size_runs(amount, records)]

    def cost_low(self, amount: Any, records: Records) -> float:
        """The low end of one size's expected cost: :meth:`expected_cost` less two standard errors of
        the cost model's coefficients (:meth:`CostModel.sd`); the expected cost when the runs fit it exactly."""
        sd = self.cost_model(records).sd(self._size_runs(amount, records))
        return max(self.expected_cost(amount, records) - 2.0 * sd, 0.0)

    def expected_cost(self, amount: Any, records: Records) -> float:
        """Expected device-seconds of one size, every rung (:meth:`rung_costs`)."""
        return float(sum(self.rung_costs(amount, records)))

    def continue_cost(self, specs: Sequence[RunSpec], records: Records) -> float:
        """Expected device-seconds of the rungs in ``specs`` that continue from a checkpoint (their extra budget)."""
        model, train, rungs = None, self.train_sizes(records), self.config.rungs
        total = 0.0
        for s in specs:
            if s.resume_from and isinstance(s.rung, int) and s.rung > 0:
                model = model or self.cost_model(records)
                total += model(rungs[s.rung] - rungs[s.rung - 1], self.train_size(self.amount(s), train))
        return float(total)

    def seed_cost(self, amount: Any, records: Records) -> float:
        """Expected device-seconds of one more seed at a size run: its surviving grid points, full budget."""
        m = self.train_size(amount, self.train_sizes(records))
        n = len(self.config.rungs)
        ids = {s.run_id for s in self.specs_at(amount)}
        points = {grid_key(r.get("params") or {}) for k, r in records.items() if k in ids and r.get("rung") == n - 1}
        return max(len(points), 1) * self.cost_model(records)(1.0, m)

    def grid_cost(self, records: Records) -> float:
        """Estimated device-seconds of the full grid (every planned run at the full budget)."""
        model = self.cost_model(records)
        train = self.train_sizes(records)
        return float(sum(model(1.0, self.train_size(self.amount(s), train)) for s in self.plan.runs))

    # -- records ---------------------------------------------------------------------------------
    def study_records(self, records: Records) -> list[Mapping[str, Any]]:
        """Every rung record of the sizes this study chose (the probe and other studies' records left out)."""
        planned = {s.run_id for s in self.plan.runs}
        chosen = set(self.chosen)
        return [r for r in records.values()
                if record_amount(r) in chosen
                and (r.get("base_id") or r.get("run_id")) in planned]

    def spent(self, records: Records) -> float:
        """Device-seconds spent so far: every rung of every run, finished or failed."""
        return float(sum(device_seconds(r) for r in self.study_records(records)))

    def final_records(self, records: Records) -> list[Mapping[str, Any]]:
        """The records the law is fitted to: every run's last rung (the grid run's own id), and for a grid
        point stopped early, the rung where it stopped (:func:`~lightning_scaling.sweep.store.fitted_records`)."""
        return fitted_records(records, {s.run_id for s in self.plan.runs})
