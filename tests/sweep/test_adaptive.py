"""The adaptive study's decisions (sweep/adaptive/) on synthetic records: fast and deterministic.

A fake executor turns each launched rung spec into the record a run would write: the error of a
known law per grid point (one planted dominated width), a little seed noise, and a wall time
proportional to size x budget, so every decision can be checked without training anything.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lightning_scaling.laws import fit_learning_curve
from lightning_scaling.sweep.adaptive import (
    Adaptive,
    AdaptiveState,
    Target,
    choose_next_size,
    device_seconds,
    expected_width,
    promote,
    relative_width,
    rung_id,
    width_ratio,
)
from lightning_scaling.sweep.plan import SweepPlan
from lightning_scaling.sweep.result import SweepResult
from lightning_scaling.sweep.store import fitted_records

ROOT = "/sweep"
SIZES = [125, 250, 500, 1000, 2000, 4000, 8000, 16000]
# error of each width at full budget: w128 best, w32 close, w8 clearly dominated (planted)
LAW = {8: (3.0, -0.2, 0.15), 32: (2.0, -0.35, 0.02), 128: (2.0, -0.36, 0.02)}


def _plan(seeds: int = 2, sizes=SIZES, widths=(8, 32, 128)) -> SweepPlan:
    return SweepPlan.build(sizes=sizes, grid={"hidden": list(widths)}, seeds=seeds, monitor="val_err")


def _error(size: float, hidden: int, budget: float, seed: int) -> float:
    a, b, c = LAW[hidden]
    partial = 1.0 + 0.5 * (1.0 - budget)  # a shorter budget: a higher error, the same ranking
    noise = math.exp(0.01 * np.random.default_rng(hash((size, hidden, seed)) % 2**32).normal())
    return (a * size**b + c) * partial * noise


def _execute(specs, records, per_sample_s: float = 0.001):
    """What the runs would write: one record per rung spec."""
    for s in specs:
        assert s.run_id not in records or records[s.run_id]["status"] not in ("ok", "diverged", "failed"), \
            f"{s.run_id} ran twice"
        prev = records.get(s.resume_from.rsplit("/", 1)[-1][: -len(".ckpt")]) if s.resume_from else None
        done_before = prev["budget"] if prev else 0.0
        records[s.run_id] = {
            "run_id": s.run_id, "base_id": s.base_id, "rung": s.rung, "budget": s.budget, "status": "ok",
            "fraction": None, "size": s.size, "train_size": float(s.size), "num_samples": s.size,
            "params": s.params, "seed": s.seed, "resumed_from": s.resume_from,
            "best_value": _error(s.size, s.params["hidden"], s.budget, s.seed),
            "wall_time_s": 0.5 + per_sample_s * s.size * (s.budget - done_before), "devices": "",
        }


def _analyse(records):
    """The sweep's analysis of its records, as the controller runs it (200 bootstrap replicates)."""
    return SweepResult.from_records(records, monitor="val_err", mode="min", bootstrap=200)


def _study(cfg: Adaptive, *, records=None, chosen=None, added_seeds=None, max_waves: int = 100, plan=None,
           slots: int = 1, waves=None, execute=_execute):
    plan = plan or _plan()
    records = {} if records is None else records
    state = AdaptiveState(plan, cfg, chosen=list(chosen or []), added_seeds=list(added_seeds or []))
    launched = []
    for _ in range(max_waves):
        # the controller's call: the law the result's analysis fits to the study's records
        d = state.decide(records, ROOT, lambda: state.law(records, _analyse), state.spent(records), slots=slots)
        if waves is not None and d.launch:
            waves.append([s.run_id for s in d.launch])
        if d.done:
            return state, records, launched, d
        launched += [s.run_id for s in d.launch]
        execute(d.launch, records)
    return state, records, launched, None


# -- successive halving -------------------------------------------------------------------------------
def test_promote_drops_a_planted_dominated_point_and_keeps_the_best():
    keep, why = promote({"w8": [0.40, 0.41], "w32": [0.120, 0.125], "w128": [0.110, 0.112]}, eta=3, margin=0.02,
                        noise_z=2.0)
    assert keep == ["w128"]
    assert set(why) == {"w8", "w32"}
    assert "rank 3/3" in why["w8"] and "margin" in why["w8"]


def test_promote_keeps_a_point_within_seed_noise_of_the_best():
    # w32's mean is worse than w128's, but by less than two standard errors of the seeds' noise
    keep, why = promote({"w8": [0.40, 0.41], "w32": [0.10, 0.16], "w128": [0.09, 0.15]}, eta=3, margin=0.0,
                        noise_z=2.0)
    assert keep == ["w128", "w32"] and list(why) == ["w8"]
    # the same gap with quiet seeds: w32 is stopped
    keep, _ = promote({"w8": [0.40, 0.41], "w32": [0.130, 0.131], "w128": [0.120, 0.121]}, eta=3, margin=0.0,
                      noise_z=2.0)
    assert keep == ["w128"]


def test_promote_stops_diverged_points():
    keep, why = promote({"a": [math.inf, 0.1], "b": [0.2, 0.2]}, eta=1.5, margin=0.0, noise_z=0.0)
    assert keep == ["b"] and "diverged" in why["a"]


def test_successive_halving_at_one_size_resumes_survivors_from_their_checkpoints():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=0.5, start_seeds=None)
    state = AdaptiveState(_plan(), cfg)
    records: dict = {}
    first, complete = state.size_progress(125, records, ROOT)
    assert not complete and len(first) == 6  # 3 widths x 2 seeds at rung 0
    assert {s.rung for s in first} == {0} and all(s.budget == pytest.approx(1 / 3) for s in first)
    assert all(s.run_id == rung_id(s.base_id, 0, 2) and s.save_checkpoint.endswith(f"{s.run_id}.ckpt")
               for s in first)
    _execute(first, records)
    second, complete = state.size_progress(125, records, ROOT)
    assert not complete
    # the planted dominated width 8 is stopped after rung 0; the best width (128) goes on
    assert {s.params["hidden"] for s in second} >= {128} and 8 not in {s.params["hidden"] for s in second}
    assert all(s.rung == 1 and s.budget == 1.0 and s.run_id == s.base_id for s in second)
    assert all(s.resume_from == f"{ROOT}/checkpoints/{s.base_id}_r0.ckpt" for s in second)
    stopped = [v for v in state.stopped.values() if v["params"] == json.dumps({"hidden": 8})]
    assert stopped and stopped[0]["rung"] == 0 and "worse by" in stopped[0]["reason"]
    _execute(second, records)
    assert state.size_progress(125, records, ROOT) == ([], True)


def test_successive_halving_ranks_on_the_errors_the_law_is_fitted_on():
    # an accuracy in percent (mode="max") with the sweep's to_error: the law fits 100 - v, and so must the
    # halving (it ranked 1 - v: -89 vs -88, "within 5% of the best" as plain differences, so w8 went on)
    plan = SweepPlan.build(sizes=SIZES, grid={"hidden": [8, 128]}, seeds=1, monitor="val_acc", mode="max")
    state = AdaptiveState(plan, Adaptive(target=Target.error_at(64000), tolerance=0.5),
                          to_error=lambda v: 100.0 - v)
    first, _ = state.size_progress(125, {}, ROOT)
    records = {s.run_id: {"run_id": s.run_id, "base_id": s.base_id, "rung": s.rung, "budget": s.budget, "status": "ok",
                          "size": 125, "params": s.params, "seed": s.seed,
                          "best_value": 90.0 if s.params["hidden"] == 128 else 89.0} for s in first}
    second, _ = state.size_progress(125, records, ROOT)
    assert {s.params["hidden"] for s in second} == {128}
    (stopped,) = state.stopped.values()
    assert stopped["params"] == json.dumps({"hidden": 8}) and "mean error 11 vs best 10" in stopped["reason"]
    # without to_error, mode="max" fits 1 - v, an accuracy in [0, 1]: the halving names the same conversion
    with pytest.raises(ValueError, match="not an accuracy"):
        AdaptiveState(plan, state.config).size_progress(125, records, ROOT)


def test_a_size_starts_with_one_seed_and_an_added_seed_reruns_only_the_survivors_in_full():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=0.5)  # start_seeds=1: the default
    state = AdaptiveState(_plan(seeds=3), cfg)
    records: dict = {}
    first, _ = state.size_progress(125, records, ROOT)
    assert {s.seed for s in first} == {0} and len(first) == 3 and {s.rung for s in first} == {0}
    _execute(first, records)
    second, _ = state.size_progress(125, records, ROOT)
    survivors = {s.params["hidden"] for s in second}
    assert 8 not in survivors and {s.seed for s in second} == {0}
    _execute(second, records)
    assert state.size_progress(125, records, ROOT) == ([], True)
    state.added_seeds.append(125)  # the study chose another seed here
    extra, complete = state.size_progress(125, records, ROOT)
    assert not complete and {s.seed for s in extra} == {1} and {s.params["hidden"] for s in extra} == survivors
    # the last rung's record of the grid run, trained from scratch to the end: no checkpoint in or out
    assert all(s.run_id == s.base_id and s.rung == 1 and s.budget == 1.0 and s.resume_from is None
               and s.save_checkpoint is None for s in extra)
    _execute(extra, records)
    assert state.size_progress(125, records, ROOT) == ([], True)
    assert state.seed_cost(125, records) == pytest.approx(len(survivors) * state.cost_model(records)(1.0, 125.0))


def test_when_every_size_has_run_the_study_buys_seeds_where_they_narrow_most():
    sizes = [125, 250, 500, 1000]
    plan = _plan(seeds=2, sizes=sizes)
    cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6)  # never met: runs out of candidates
    state, records, launched, d = _study(cfg, plan=plan)
    assert d is not None and "every candidate size has been run with every seed" in d.reason
    assert sorted(state.added_seeds) == sizes  # every second seed, one at a time
    assert [c["chosen"] for c in state.choices if c["chosen"]] == [f"{a} (+1 seed)" for a in state.added_seeds]
    # without a budget each seed is chosen by expected narrowing per device-second
    for choice in state.choices:
        table = choice["candidates"]
        if choice["chosen"]:
            assert choice["chosen"] == max((k for k in table if table[k]["gain"] > 0), key=lambda k: table[k]["score"])
    second = [records[i] for i in launched if records[i]["seed"] == 1]
    assert second and all(r["rung"] == 1 and r["budget"] == 1.0 for r in second)
    assert {r["run_id"] for r in second}.isdisjoint({i for i in launched if i.endswith("_r0")})


def test_a_grid_of_one_point_trains_each_run_to_the_end_in_one_go():
    plan = _plan(seeds=1, widths=(128,))
    state = AdaptiveState(plan, Adaptive(target=Target.error_at(64000), tolerance=0.5))
    todo, complete = state.size_progress(125, {}, ROOT)
    assert not complete and len(todo) == 1
    assert todo[0].rung == 1 and todo[0].budget == 1.0 and todo[0].resume_from is None
    assert todo[0].save_checkpoint is None and todo[0].run_id == todo[0].base_id


# -- data-size selection ------------------------------------------------------------------------------
def test_expected_width_shrinks_more_for_a_larger_size():
    m = np.array([125.0, 250, 500, 1000, 2000])
    rng = np.random.default_rng(0)
    y = (2.0 * m**-0.36 + 0.02)[:, None] * np.exp(rng.normal(0, 0.02, (m.size, 2)))
    fit = fit_learning_curve(m, y, bootstrap=200)
    t = Target.error_at(64000)
    assert expected_width(fit, 16000, t) < expected_width(fit, 4000, t) < relative_width(t.predict(fit))
    assert 0 < width_ratio(fit, 16000, t) < width_ratio(fit, 4000, t) < 1


def test_another_run_narrows_less_at_a_size_already_measured_with_more_seeds():
    from dataclasses import replace

    m = np.array([125.0, 250, 500, 1000, 2000])
    rng = np.random.default_rng(0)
    y = (2.0 * m**-0.36 + 0.02)[:, None] * np.exp(rng.normal(0, 0.02, (m.size, 3)))
    three = fit_learning_curve(m, y, bootstrap=0)
    once = y.copy()
    once[-1, 1:] = np.nan
    one = replace(three, seed_errors=once)  # the same law; the largest size measured with one seed, not three
    t = Target.error_at(64000)
    assert width_ratio(one, 2000, t) < width_ratio(three, 2000, t) < 1


def test_with_a_budget_the_next_size_leaves_the_narrowest_affordable_interval():
    m = np.array([125.0, 250, 500, 1000])
    rng = np.random.default_rng(0)
    y = (2.0 * m**-0.36 + 0.02)[:, None] * np.exp(rng.normal(0, 0.02, (m.size, 2)))
    fit = fit_learning_curve(m, y, bootstrap=200)
    t = Target.error_at(64000)
    sizes, costs = {2000: 2000.0, 4000: 4000.0, 16000: 16000.0}, {2000: 10.0, 4000: 20.0, 16000: 35.0}
    greedy, table = choose_next_size(fit, sizes, costs, t)
    assert greedy == 2000 and table[2000]["score"] > table[16000]["score"]  # cheapest gain per second
    # but with 40 s left, 2000 + 4000 (30 s) narrow less than 16000 alone (35 s): go far
    assert width_ratio(fit, [16000], t) < width_ratio(fit, [2000, 4000], t)
    planned, table = choose_next_size(fit, sizes, costs, t, remaining=40.0)
    assert planned == 16000 and table[16000]["in_plan"] == 1.0
    assert choose_next_size(fit, sizes, costs, t, remaining=12.0)[0] == 2000  # only 2000 fits


def test_size_selection_stops_on_tolerance():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=0.5)
    state, _, _, d = _study(cfg)
    assert d is not None and d.reason.startswith("tolerance met")
    assert state.history[-1]["width"] <= 0.5
    assert len(state.chosen) < len(SIZES)  # stopped before running every size
    # the smallest sizes, then (no budget) the largest candidate: an extrapolation needs the far end
    assert state.chosen[:4] == [*SIZES[:3], SIZES[-1]]


def test_the_last_initial_size_is_the_largest_the_budget_affords():
    for budget, expected in ((20.0, 4000), (40.0, 8000), (60.0, 16000)):
        cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=budget)
        state, records, _, d = _study(cfg)
        assert state.chosen[:4] == [*SIZES[:3], expected], budget
        assert state.spent(records) <= budget and "budget" in d.reason


def test_when_no_fourth_size_fits_the_budget_the_cheapest_runs_and_of_equally_cheap_ones_the_largest():
    def step_limited(specs, records):  # a max_steps Trainer: every size costs the same
        _execute(specs, records, per_sample_s=0.0)
        for s in specs:
            records[s.run_id]["budget_limit"] = "max_steps=600"

    # the three smallest sizes use up the budget; a law with an interval needs a fourth size anyway
    cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=6.0)
    state, _, _, d = _study(cfg, execute=step_limited)
    assert state.chosen == [*SIZES[:3], SIZES[-1]] and "budget" in d.reason  # the far end, at the same cost
    state, _, _, _ = _study(cfg)  # the cost grows with the data: the smallest left is the cheapest
    assert state.chosen == SIZES[:4]


def _small_runs_heavier(specs, records):
    """Run times with per-process jitter (+-0.05 s) whose per-sample cost falls with the data size (the
    overhead of a step weighs more on tiny subsets): a line through the small sizes overestimates a far one."""
    _execute(specs, records)
    for i, s in enumerate(specs):
        r = records[s.run_id]
        heavier = 1 + 2 / math.sqrt(s.size / 125)
        r["wall_time_s"] = 0.5 + (r["wall_time_s"] - 0.5) * heavier + (0.05 if i % 2 else -0.05)


def _three_small_sizes(execute):
    probe = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=1e9)
    state, records, _, _ = _study(probe, execute=execute, max_waves=2)  # both rungs of the three small sizes
    assert state.chosen == SIZES[:3]
    return state, records


def test_the_far_initial_size_runs_when_it_may_fit_and_its_first_rung_measures_the_rest():
    state, records = _three_small_sizes(_small_runs_heavier)
    far, spent = SIZES[-1], state.spent(records)
    expected, low = state.expected_cost(far, records), state.cost_low(far, records)
    assert low < expected  # the cost model's slope, fitted to three small sizes, is uncertain that far out
    budget = spent + (low + expected) / 2  # the far size may fit, but not at its expected cost
    cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=budget)
    state, records, _, d = _study(cfg, records=records, chosen=SIZES[:3], execute=_small_runs_heavier)
    assert state.chosen[3] == far  # planned at its expected cost, the study would extrapolate from 8000
    # its first rung measured it cheaper than extrapolated: it ran to the end, within the budget
    assert any(r["size"] == far and r["rung"] == 1 for r in records.values())
    assert state.spent(records) <= budget and "budget" in d.reason


def test_the_rest_of_a_size_that_turns_out_too_costly_waits_for_a_larger_budget():
    def heavier_far_out(specs, records):  # per sample, twice as costly at the far size as the small ones suggest
        _execute(specs, records)
        for i, s in enumerate(specs):
            r = records[s.run_id]
            r["wall_time_s"] = 0.5 + (r["wall_time_s"] - 0.5) * (1 + s.size / SIZES[-1]) + (0.05 if i % 2 else -0.05)

    state, records = _three_small_sizes(heavier_far_out)
    far, spent = SIZES[-1], state.spent(records)
    budget = spent + state.expected_cost(far, records)  # it fits, as far as the small sizes can tell
    cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=budget)
    state, records, _, d = _study(cfg, records=records, chosen=SIZES[:3], execute=heavier_far_out)
    assert state.chosen == [*SIZES[:3], far]
    # the far size's first rung ran and measured the rest at more than is left: it waits, the cap holds
    assert d.reason.startswith(f"budget: the next rung of size {far}") and "larger budget=" in d.reason
    assert state.spent(records) <= budget
    assert {r["rung"] for r in records.values() if r["size"] == far} == {0}
    # a larger budget continues it from its checkpoints (a first rung run twice would fail the executor)
    more = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=budget * 2)
    state, records, launched, _ = _study(more, records=records, chosen=state.chosen, execute=heavier_far_out)
    cont = [records[i] for i in launched if records[i]["size"] == far]
    assert cont and all(r["rung"] == 1 and r["resumed_from"] for r in cont)


def test_size_selection_stops_on_budget_and_says_so():
    cfg = Adaptive(target=Target.data_needed(0.05), tolerance=1e-6, budget=60.0)
    state, records, _, d = _study(cfg)
    assert d is not None and "budget" in d.reason
    # the next size is only started when its expected cost fits in what is left
    assert state.spent(records) <= 60.0 + 1e-9 or d.reason.startswith("budget spent")
    labels = {str(s) for s in SIZES} | {f"{s} (+1 seed)" for s in SIZES}
    assert state.choices and all(c["chosen"] is None or c["chosen"] in labels for c in state.choices)


def test_with_free_slots_a_budgeted_study_starts_more_of_its_plan_at_once():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=120.0)
    one_waves: list = []
    one, _, _, d1 = _study(cfg, waves=one_waves)
    four_waves: list = []
    four, four_records, launched, d4 = _study(cfg, slots=4, waves=four_waves)
    assert d1 is not None and d4 is not None
    assert not any("also_started" in c for c in one.choices)  # one slot: one step per decision
    also = [c for c in four.choices if "also_started" in c]
    assert also, "with 4 free slots a later member of the plan should start beside the chosen step"
    assert len(four_waves) < len(one_waves)  # fewer decisions, fewer idle slots
    assert len(launched) == len(set(launched))  # nothing launched twice
    # still within the budget, give or take the last step's estimate
    assert four.spent(four_records) <= 120.0 * 1.2


def test_a_budget_is_planned_with_the_cost_models_upper_estimate():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=1e-6, budget=60.0)
    state, records, _, _ = _study(cfg)
    assert state.cost_margin(records) == pytest.approx(1.0)  # the fake runs cost exactly a + b * size
    # run times scattering by +-10% around the model: plan with ~20% headroom, so the cap holds
    noisy = {k: {**r, "wall_time_s": r["wall_time_s"] * (1.1 if i % 2 else 0.9)}
             for i, (k, r) in enumerate(sorted(records.items()))}
    assert 1.1 < state.cost_margin(noisy) < 1.3
    assert AdaptiveState(_plan(), cfg).cost_margin({}) == 1.0


def test_next_size_is_chosen_by_gain_per_cost():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=0.01)  # no budget: greedy gain per cost
    state, _, _, _ = _study(cfg, max_waves=5)  # the initial sizes' rungs (the last one after the others), a choice
    assert state.choices
    table = state.choices[0]["candidates"]
    chosen = state.choices[0]["chosen"]
    assert str(chosen) == max((k for k in table if table[k]["gain"] > 0), key=lambda k: table[k]["score"])


def test_a_resumed_study_continues_without_redoing_finished_work():
    cfg = Adaptive(target=Target.error_at(64000), tolerance=0.3, budget=200.0)
    full_state, full_records, full_launched, done = _study(cfg)
    assert done is not None
    # the same study stopped after three waves (a killed controller), then started again from what is on disk
    state, records, launched, _ = _study(cfg, max_waves=3)
    saved = json.loads(json.dumps(state.to_dict()))  # adaptive.json round trip
    resumed, records, launched_after, done_again = _study(cfg, records=records, chosen=saved["chosen"],
                                                          added_seeds=saved["added_seeds"])
    assert done_again is not None and done_again.reason == done.reason
    assert not set(launched) & set(launched_after)  # nothing that finished ran again
    assert sorted(launched + launched_after) == sorted(full_launched)
    assert resumed.chosen == full_state.chosen
    # and a study that had finished launches nothing at all
    _, _, nothing, d = _study(cfg, records=full_records, chosen=full_state.chosen,
                              added_seeds=full_state.added_seeds)
    assert nothing == [] and d is not None and d.reason == done.reason


def test_the_cost_model_tells_a_step_limited_task_from_an_epoch_limited_one():
    state = AdaptiveState(_plan(), Adaptive(target=Target.error_at(64000), tolerance=0.1))

    def records(cost):
        rungs = [(m, trained) for m in (125, 250, 500) for trained in (1 / 3, 2 / 3)]
        return {str(i): {"train_size": float(m), "budget": trained, "rung": 0, "wall_time_s": cost(trained, m),
                         "devices": ""} for i, (m, trained) in enumerate(rungs)}

    # max_steps: a longer rung costs more, a larger size does not; a full run at 8x the largest size costs the same
    steps = state.cost_model(records(lambda trained, m: 0.3 + 0.9 * trained))
    assert steps(1.0, 4000) == pytest.approx(1.2, rel=1e-6)
    # max_epochs: the cost grows with the data
    epochs = state.cost_model(records(lambda trained, m: 0.3 + 0.002 * trained * m))
    assert epochs(1.0, 4000) == pytest.approx(8.3, rel=1e-6)
    # timing noise that happens to rise with the size: read as growth, unless the records say the rungs
    # were step-limited (the Trainer trains as many steps at every size)
    noisy = records(lambda trained, m: 0.3 + 0.9 * trained + 0.0004 * m)
    assert state.cost_model(noisy).per_sample > 0
    limited = {k: {**r, "budget_limit": "max_steps=600"} for k, r in noisy.items()}
    model = state.cost_model(limited)
    assert model.per_sample == 0 and model(1.0, 4000) < 1.6


def test_compute_accounting():
    assert device_seconds({"wall_time_s": 10.0, "devices": "0,1"}) == 20.0
    assert device_seconds({"wall_time_s": 10.0, "devices": ""}) == 10.0
    cfg = Adaptive(target=Target.error_at(64000), tolerance=0.3)
    state, records, _, _ = _study(cfg)
    summary = state.summary(records)
    assert summary["device_seconds"] == pytest.approx(sum(r["wall_time_s"] for r in records.values()))
    assert 0 < summary["fraction_of_grid"] < 1
    assert summary["stopped"] and summary["stop_reason"]


def test_config_is_validated():
    with pytest.raises(ValueError, match="stopping rule"):
        Adaptive(target=Target.error_at(10))
    with pytest.raises(ValueError, match="rungs"):
        Adaptive(target=Target.error_at(10), tolerance=0.1, rungs=(0.5, 0.4))
    with pytest.raises(ValueError, match="initial_sizes must be an integer >= 4"):
        Adaptive(target=Target.error_at(10), tolerance=0.1, initial_sizes=3)
    cfg = Adaptive(target={"error_at": 10}, budget=60, rungs=[0.5, 1])
    assert cfg.target == Target.error_at(10) and cfg.rungs == (0.5, 1.0)
    assert Adaptive(**json.loads(json.dumps(cfg.to_dict()))) == cfg  # adaptive.json's config builds it again
    with pytest.raises(ValueError, match="target"):
        Target.parse({"error_in": 3})
    assert Target.parse({"data_needed": 0.05}) == Target.data_needed(0.05)


def test_a_grid_point_stopped_early_counts_at_its_size_when_the_one_that_went_on_turns_out_worse(tmp_path):
    from lightning_scaling.sweep.store import SweepStore

    # as on the digits task: with one seed, w32 beat w128 at rung 0 and went on alone; w32's second seed
    # was much worse, so over its seeds w32 is worse than what w128 had already measured
    plan = _plan(seeds=2, sizes=[125, 250, 500, 1000], widths=(32, 128))
    state = AdaptiveState(plan, Adaptive(target=Target.error_at(64000), tolerance=0.5))
    measured = {(0, 32, 0): 0.14, (0, 128, 0): 0.16, (1, 32, 0): 0.13, (1, 32, 1): 0.22}  # (rung, width, seed)
    records: dict = {}
    state.added_seeds.append(125)
    while True:
        todo, complete = state.size_progress(125, records, ROOT)
        if complete:
            break
        for s in todo:
            records[s.run_id] = {"run_id": s.run_id, "base_id": s.base_id, "rung": s.rung, "budget": s.budget,
                                 "status": "ok", "fraction": None, "size": 125, "train_size": 125.0, "params": s.params,
                                 "seed": s.seed, "best_value": measured[(s.rung, s.params["hidden"], s.seed)]}
    assert [v["params"] for v in state.stopped.values()] == [json.dumps({"hidden": 128})]
    store = SweepStore(tmp_path)
    store.write_plan(plan.to_dict())
    for r in records.values():
        store.write_record(r)
    for res in (SweepResult.from_records(state.final_records(records), monitor="val_err", mode="min", bootstrap=0),
                SweepResult.load(tmp_path, bootstrap=0)):  # the decisions' fit and the result's: the same records
        (best,) = res.best
        # the best measurement at this size: w128's 0.16 (a third of the budget), not w32's mean 0.175
        assert best["params"] == {"hidden": 128} and best["error"] == pytest.approx(0.16)
        assert best["candidates"][json.dumps({"hidden": 32})] == pytest.approx(0.175)
    # a grid sweep's records (no rungs) are fitted as they are
    grid = {s.run_id: {"run_id": s.run_id, "status": "ok", "size": s.size} for s in plan.runs}
    assert fitted_records(grid, {s.run_id for s in plan.runs}) == list(grid.values())
