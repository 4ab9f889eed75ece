"""Progress lines and the ETA (sweep/progress.py): a size-aware cost, runs in flight, no repeated lines."""

from __future__ import annotations

import io
import math
import re

import pytest
from helpers.records import make_record
from test_controller import InstantLauncher  # the controller tests' fake: one slot, every run ends at once

from lightning_scaling.sweep import SweepPlan, SweepResult, SweepStore
from lightning_scaling.sweep.controller import SweepController
from lightning_scaling.sweep.progress import CostModel, Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _epoch_study():
    """An epoch-based study: a run costs 1 s per 10 samples, its sizes 100 .. 3200, largest first."""
    plan = SweepPlan.build(sizes=[100, 200, 400, 800, 1600, 3200], seeds=2, monitor="val_err")
    specs = sorted(plan.runs, key=lambda s: -(s.size or 0))
    return specs, {s.run_id: s.size / 10 for s in specs}


def test_the_eta_prices_each_run_by_its_size_not_by_the_mean_of_the_largest():
    specs, cost = _epoch_study()
    progress = Progress(lambda line: None, clock=Clock())
    progress.expect(specs)
    for s in specs[:2]:  # the two largest runs finished first
        progress.finished(s, cost[s.run_id])
    true_left = sum(cost[s.run_id] for s in specs[2:])
    eta = progress.eta([], slots=1)
    assert eta == pytest.approx(true_left, rel=0.05)
    plain_mean = cost[specs[0].run_id] * len(specs[2:])  # what a mean over the finished runs predicts
    assert plain_mean > 3 * true_left  # the 3.5x of the issue


def test_the_cost_exponent_is_fitted_once_two_sizes_finished():
    cost = CostModel()
    for amount in (100, 200, 400):
        cost.add(amount, 30.0)  # a fixed max_steps study: every size costs the same
    assert cost.exponent() == pytest.approx(0.0, abs=1e-9)
    assert cost.predict(50) == pytest.approx(30.0)
    assert math.isnan(CostModel().predict(10))
    learned = CostModel()
    learned.learn([make_record("a", size=800, wall_time_s=80.0), make_record("b", size=400, status="failed")])
    assert learned.predict(400) == pytest.approx(40.0)


def test_a_progress_line_names_the_runs_in_flight_with_rounded_times():
    specs, cost = _epoch_study()
    clock = Clock()
    lines: list[str] = []
    progress = Progress(lines.append, clock=clock)
    progress.expect(specs)
    progress.finished(specs[0], cost[specs[0].run_id])
    clock.now += 125.4
    status = {s.run_id: None for s in specs} | {specs[0].run_id: "ok"}
    running = [(specs[1], 100.0), (specs[2], 3.0)]
    progress.report(status, len(specs), running, slots=2, force=True)
    (line,) = lines
    assert line.startswith(f"1/{len(specs)} done | running: ")
    assert specs[1].run_id in line and specs[2].run_id in line
    assert "elapsed 2 min" in line and "ETA ~" in line and "." not in line.split("ETA ~")[1]


def test_an_unchanged_state_is_not_printed_again_until_the_heartbeat():
    specs, _ = _epoch_study()
    clock = Clock()
    lines: list[str] = []
    progress = Progress(lines.append, clock=clock, heartbeat=300)
    status = {s.run_id: None for s in specs}
    running = [(specs[0], 1.0)]
    for _ in range(5):
        clock.now += 30
        progress.report(status, len(specs), running, slots=1)
    assert len(lines) == 1
    progress.report(status, len(specs), [(specs[1], 1.0)], slots=1)  # another run in flight: a new line
    clock.now += 301
    progress.report(status, len(specs), [(specs[1], 1.0)], slots=1)  # nothing changed for 5 min: a heartbeat
    assert len(lines) == 3


def test_durations_are_rounded_to_what_an_estimate_supports():
    assert [format_duration(s) for s in (3.2, 89.6, 3599, 5400, 86_400)] == [
        "3 s", "90 s", "60 min", "1 h 30 min", "24 h 00 min"]


def test_the_controller_prints_rounded_values_and_each_state_once(tmp_path):
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)
    out = io.StringIO()
    launcher = InstantLauncher(store, lambda spec: 0.123456789 * 100 / spec.size)
    SweepController(plan, store, launcher=launcher, command=["x"], probe=False, stream=out,  # type: ignore[arg-type]
                    analyse=lambda recs: SweepResult(runs=recs)).run()
    lines = out.getvalue().splitlines()
    assert any("best val_err=0.123 in " in line for line in lines), lines
    assert not any("0.12345" in line or "0:00:" in line for line in lines), lines
    assert len([line for line in lines if " done" in line]) == len(set(line for line in lines if " done" in line))
    assert any(re.search(r"4/4 done \| none running \| elapsed \d+ s$", line) for line in lines), lines
