"""The adaptive study's decisions: what to launch next, which size to add, when to stop.

:meth:`AdaptiveState.decide` is the one entry point the controller calls after every wave of runs;
it is deterministic given the records and the sizes chosen so far (``adaptive.json``), so a
restarted study takes the same decisions again. Its steps, in order:

1. :meth:`~AdaptiveState.launch_chosen`: the next rungs of the sizes already chosen (successive
   halving, :meth:`~AdaptiveState.size_progress`), within the budget;
2. :meth:`~AdaptiveState.far_initial_size`: the last of the initial sizes, the far end of the range;
3. :meth:`~AdaptiveState.stop_rule`: tolerance met or budget spent;
4. :meth:`~AdaptiveState.choose`: the next size or seed, by expected narrowing of the target's
   interval per device-second (:func:`~lightning_scaling.sweep.adaptive.selection.choose_next_size`);
5. :meth:`~AdaptiveState.start_more`: with a budget and free slots, further members of its plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lightning_scaling.sweep.adaptive.halving import promote, rung_id
from lightning_scaling.sweep.adaptive.ledger import Records, StudyLedger
from lightning_scaling.sweep.adaptive.selection import choose_next_size, relative_width
from lightning_scaling.sweep.adaptive.strategy import Adaptive
from lightning_scaling.sweep.plan import RunSpec, SweepPlan
from lightning_scaling.sweep.record import OK, RECORDED, grid_key, run_value
from lightning_scaling.sweep.result import SweepResult, to_error

__all__ = ["AdaptiveState", "Decision"]



@dataclass
class Decision:
    """What the controller does next: launch ``launch`` (may be empty), or stop when ``done``."""

    launch: list[RunSpec] = field(default_factory=list)
    done: bool = False
    reason: str = ""


@dataclass
class _Choice:
    """A candidate chosen by :meth:`AdaptiveState.choose`: its key, every candidate's table, its log entry."""

    key: Any
    table: dict[Any, dict[str, float]]
    entry: dict[str, Any]
    budgeted: bool


@dataclass
class AdaptiveState(StudyLedger):
    """The adaptive study's state: sizes chosen so far, rung decisions, compute spent, stop reason.

    Args:
        plan: the sweep's plan; config: the study's :class:`~lightning_scaling.Adaptive` settings.
        chosen, added_seeds: the sizes chosen and seeds added so far (``adaptive.json``).
        choices, stopped, stop_reason, history: the decisions' log.
        to_error: turns a monitored value into the error the law is fitted on (default: the value for
            ``mode="min"``, ``1 - value`` for ``mode="max"``); successive halving ranks on it too.
    """

    choices: list[dict[str, Any]] = field(default_factory=list)
    stopped: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop_reason: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    to_error: Callable[[float], float] | None = None

    @classmethod
    def restore(cls, plan: SweepPlan, config: Adaptive, saved: Mapping[str, Any],
                to_error: Callable[[float], float] | None = None) -> AdaptiveState:
        """The state of a study from its ``adaptive.json`` (``saved``; ``{}`` for a new one): the sizes chosen
        and seeds added that are still candidates of ``plan``, and the choices logged."""
        candidates = plan.fractions or plan.sizes or []
        return cls(plan, config, chosen=[c for c in saved.get("chosen", []) if c in candidates],
                   added_seeds=[c for c in saved.get("added_seeds", []) if c in candidates],
                   choices=list(saved.get("choices", [])), to_error=to_error)

    def error_of(self, value: float) -> float:
        """A monitored value as the error the law is fitted on (``to_error``, else the result's default)."""
        return self.to_error(value) if self.to_error is not None else to_error(value, self.plan.mode)

    def law(self, records: Records, analyse: Callable[[list[dict[str, Any]]], SweepResult]) -> Any:
        """The current law: ``analyse`` (the sweep's result analysis) of :meth:`final_records`, or ``None``.

        The decisions use the fit and interval the result reports.
        """
        final = self.final_records(records)
        return analyse([dict(r) for r in final]).law if final else None

    # -- specs -------------------------------------------------------------------------------------
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

    # -- one size: successive halving ----------------------------------------------------------------
    def size_progress(self, amount: Any, records: Records, root: str) -> tuple[list[RunSpec], bool]:
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
            alive = self._promote(amount, rung, todo, records)
        added = set(self.seeds_at(amount)) - start
        extra = [self.full_spec(s) for s in self.specs_at(amount) if s.seed in added and grid_key(s.params) in alive]
        extra_left = [t for t in extra if (records.get(t.run_id) or {}).get("status") not in RECORDED]
        return extra_left, not extra_left

    def _promote(self, amount: Any, rung: int, done: Sequence[RunSpec], records: Records) -> set[str]:
        """The grid points of a finished rung that go on (ranked on the errors the law is fitted on); logs the
        others in :attr:`stopped`."""
        scores: dict[str, list[float]] = {}
        for t in done:
            rec = records[t.run_id]
            v = run_value(rec, self.plan.select) if rec.get("status") == OK else None
            err = self.error_of(float(v)) if isinstance(v, int | float) and math.isfinite(v) else math.inf
            scores.setdefault(grid_key(t.params), []).append(err)
        keep, why = promote(scores, eta=self.config.eta, margin=self.config.margin, noise_z=self.config.noise_z)
        for k, reason in why.items():
            self.stopped[f"{amount}|{k}"] = {"size": amount, "params": k, "rung": rung,
                                             "budget": self.config.rungs[rung], "reason": reason}
        return set(keep)

    # -- the decision ------------------------------------------------------------------------------
    def decide(self, records: Records, root: str, law: Any | Callable[[], Any], spent: float,
               slots: int | Callable[[], int] = 1) -> Decision:
        """The next step: runs to launch, or stop (with the reason).

        ``law`` is the current law (the result's ``LearningCurveFit`` of the best model per size, with
        its bootstrap replicates: the decisions use the same fit and interval that are reported), or
        a callable computing it (called only when a decision needs it); ``spent`` is the
        device-seconds spent so far. ``slots``: runs that can start now (or a callable returning it,
        called only when needed); with a budget, when the chosen step launches fewer, further
        members of the budget's plan start with it (they were going to be run, and a slot would
        otherwise idle until the next decision).
        """
        if not self.chosen:
            self.chosen = self.amounts[: self.config.initial_sizes - 1]
        taken: list[_Choice] = []  # the choices of this decision, first to last
        decision: Decision | None = None
        while decision is None:
            decision = self.launch_chosen(records, root, spent)
            if decision is None and len(self.chosen) < self.config.initial_sizes:
                self.chosen.append(self.far_initial_size(records, spent))
                continue
            if decision is None and self.stop_reason is None:
                law = law() if callable(law) else law
                step = self.choose(law, records, spent)
                if isinstance(step, _Choice):
                    self._take(step.key)
                    taken.append(step)
                    continue
                decision = step
            if decision is None:
                decision = Decision(done=True, reason=self.stop_reason or "")
        if not decision.done:
            # the first choice may fill every free slot, a further one (taken when the first launched nothing)
            # one slot: as when each choice was a decision of its own
            for i, choice in reversed(list(enumerate(taken))):
                if choice.budgeted:
                    self.start_more(choice, decision, records, root, slots if i == 0 else 1)
        return decision

    def launch_chosen(self, records: Records, root: str, spent: float) -> Decision | None:
        """Step 1: the runs the chosen sizes have left now (a Decision to launch them), the budget's stop
        when a chosen size's next rung no longer fits, or ``None`` when every chosen size is complete."""
        cfg = self.config
        launch: list[RunSpec] = []
        held: tuple[Any, float] | None = None
        committed = 0.0  # expected cost of the continued rungs launched so far
        for i, a in enumerate(self.chosen):
            todo, _ = self.size_progress(a, records, root)
            rest = self.continue_cost(todo, records) if cfg.budget is not None else 0.0
            if rest and cfg.budget is not None and i >= cfg.initial_sizes - 1 and spent + committed + rest > cfg.budget:
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
        return None

    def far_initial_size(self, records: Records, spent: float) -> Any:
        """Step 2: the last initial size: the largest affordable candidate (an extrapolation needs the far end).

        Its cost is extrapolated from runs of a few tenths of a second, 16x beyond them (the teacher
        benchmark priced 8,192 samples at 6-17 device-s from 128-512; they cost 7-9.5): the size is
        taken when its first rung fits (with the margin) and the whole of it may (the low end of the
        cost model's range); the rest runs once its first rung has measured it and it fits
        (:meth:`launch_chosen`). When none fits, the law needs a fourth size all the same: the
        cheapest, and of equally cheap ones (every size costs the same under ``max_steps``) the largest.
        """
        left = [a for a in self.amounts if a not in self.chosen]
        margin = self.cost_margin(records)
        room = math.inf if self.config.budget is None else self.config.budget - spent
        first = {a: self.rung_costs(a, records)[self.first_rung] for a in left}
        fits = [a for a in left if first[a] * margin <= room and self.cost_low(a, records) <= room]
        if not fits:
            cost = {a: self.expected_cost(a, records) for a in left}
            fits = [a for a in left if cost[a] <= min(cost.values()) * (1 + 1e-9)]
        return max(fits)

    def stop_rule(self, width: float, spent: float) -> Decision | None:
        """Step 3: stop when the target's interval is narrow enough or the budget is spent."""
        cfg = self.config
        if cfg.tolerance is not None and width <= cfg.tolerance:
            return self._stop(f"tolerance met: the {cfg.target.describe()} has relative interval width "
                              f"{width:.3g} <= {cfg.tolerance:g}")
        if cfg.budget is not None and spent >= cfg.budget:
            return self._stop(f"budget spent: {spent:.1f} of {cfg.budget:g} device-seconds "
                              f"(interval width {width:.3g})")
        return None

    def choose(self, fit: Any, records: Records, spent: float) -> _Choice | Decision:
        """Step 4: the next size or seed (the largest expected narrowing of the target's interval per
        device-second, within the budget), or the reason to stop."""
        if fit is None:
            return self._stop("no law could be fitted to the sizes run (see the result's notes)")
        pred = self.config.target.predict(fit)
        width = relative_width(pred)
        self.history.append({"sizes_run": list(self.chosen), "width": width, "spent_s": spent,
                             "value": float(np.asarray(pred.value).ravel()[0])})
        stop = self.stop_rule(width, spent)
        if stop is not None:
            return stop
        costs = self.candidate_costs(records, spent, width)
        if isinstance(costs, Decision):
            return costs
        train = self.train_sizes(records)
        candidates = {k: self.train_size(_size_of(k), train) for k in costs}
        remaining = None if self.config.budget is None else self.config.budget - spent
        best, table = choose_next_size(fit, candidates, costs, self.config.target, remaining)
        entry = {"after": list(self.chosen), "added_seeds": list(self.added_seeds), "width": width,
                 "candidates": {_key_label(k): v for k, v in table.items()},
                 "chosen": None if best is None else _key_label(best)}
        self.choices.append(entry)
        if best is None:
            return self._stop(f"no remaining size or seed is expected to narrow the interval (width {width:.3g})")
        return _Choice(best, table, entry, budgeted=remaining is not None)

    def candidate_costs(self, records: Records, spent: float, width: float) -> dict[Any, float] | Decision:
        """Every candidate's expected device-seconds: the sizes not run, another seed at a size run
        (``("seed", size)``); with a budget, the affordable ones at the cost model's upper estimate."""
        cfg = self.config
        left = [a for a in self.amounts if a not in self.chosen]
        costs: dict[Any, float] = {a: self.expected_cost(a, records) for a in left}
        # another seed at a size already run: one more measurement there, for its surviving grid points only
        costs.update({("seed", a): self.seed_cost(a, records) for a in self.chosen
                      if len(self.seeds_at(a)) < len(self.plan.seeds)})
        if not costs:
            return self._stop(f"every candidate size has been run with every seed (interval width {width:.3g})")
        if cfg.budget is None:
            return costs
        # the budget is a cap: plan with the cost model's upper estimate (run times scatter around it)
        margin = self.cost_margin(records)
        costs = {k: c * margin for k, c in costs.items()}
        affordable = {a: c for a, c in costs.items() if spent + c <= cfg.budget}
        if not affordable:
            return self._stop(f"budget: the cheapest remaining size or seed would cost ~{min(costs.values()):.1f} "
                              f"device-seconds, {spent:.1f} of {cfg.budget:g} are spent (interval width {width:.3g})")
        return affordable

    def start_more(self, choice: _Choice, decision: Decision, records: Records, root: str,
                   slots: int | Callable[[], int]) -> None:
        """Step 5: with a budget, start further members of its plan beside ``choice`` while slots are free."""
        free = slots() if callable(slots) else slots
        table = choice.table
        plan = sorted((k for k in table if table[k].get("in_plan") and k != choice.key),
                      key=lambda k: (-table[k]["gain"], table[k]["cost"], _key_label(k)))
        also = []
        for key in plan:
            if len(decision.launch) >= free:
                break
            self._take(key)
            also.append(_key_label(key))
            decision.launch += self.size_progress(_size_of(key), records, root)[0]
        if also:
            choice.entry["also_started"] = also

    def _take(self, key: Any) -> None:
        if isinstance(key, tuple):
            self.added_seeds.append(key[1])
        else:
            self.chosen.append(key)

    def _stop(self, reason: str) -> Decision:
        self.stop_reason = reason
        return Decision(done=True, reason=reason)

    # -- the log -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "chosen": self.chosen, "added_seeds": self.added_seeds,
                "stop_reason": self.stop_reason,
                "stopped": list(self.stopped.values()), "choices": self.choices, "history": self.history}

    def summary(self, records: Records) -> dict[str, Any]:
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
