"""The sweep's plain-Python layers: plan, store, run context, aggregation."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lightning_scaling.sweep import (
    RunContext,
    SweepPlan,
    SweepResult,
    SweepStore,
    current_run,
    geometric,
)
from lightning_scaling.sweep.context import ENV_RUN
from lightning_scaling.sweep.launchers import LocalLauncher


def test_plan_orders_largest_first_with_stable_ids():
    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": [8, 16]}, seeds=2, monitor="val_err")
    assert len(plan.runs) == 16
    assert [r.fraction for r in plan.runs[:4]] == [0.8] * 4
    assert plan.runs[-1].fraction == 0.1
    again = SweepPlan.build(fractions=[0.8, 0.4, 0.2, 0.1, 0.05], grid={"hidden": [8, 16]}, seeds=2, monitor="val_err")
    # a run keeps its id when the plan grows, so its finished record is found on resume
    assert {r.run_id for r in plan.runs} < {r.run_id for r in again.runs}
    assert len({r.run_id for r in again.runs}) == len(again.runs)
    assert "16 runs = 4 data fractions" in plan.summary()


def test_plan_diff_names_what_changed():
    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=1, monitor="val_err")
    stored = plan.to_dict()
    grown = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=2, monitor="val_err")
    fatal, notes = grown.diff(stored)
    assert not fatal and notes == ["4 runs added"]
    other = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=1, monitor="val_loss")
    fatal, _ = other.diff(stored)
    assert fatal == ["monitor: 'val_err' -> 'val_loss'"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": []}), r"grid\['hidden'\] must be a non-empty list"),
        (dict(fractions=[0.1, 0.2, 0.4, 1.5]), r"fractions must be in \(0, 1\]"),
        (dict(fractions=[0.0, 0.2, 0.4, 0.8]), r"fractions must be in \(0, 1\]"),
        (dict(fractions=[0.1, 0.2, 0.2, 0.8]), "fractions repeat"),
        (dict(sizes=[100, 200, 200, 800]), "sizes repeat"),
        (dict(fractions=[0.25, 0.5, 1.0]), "too few to fit a learning curve"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], sizes=[1, 2, 3, 4]), "exactly one of fractions"),
        (dict(sizes=[100, 200.5, 400, 800]), "positive integer sample counts"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], seeds=0), "seeds"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], mode="maximize"), "mode must be"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": "64"}), "non-empty list"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": [8, 8]}), "repeats values"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"act": [object()]}), "not JSON-serialisable"),
    ],
)
def test_bad_sweep_arguments_fail_before_any_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SweepPlan.build(**{"monitor": "val_err", **kwargs})


def test_geometric():
    assert geometric(1 / 64, 1.0, 7)[0] == 1 / 64
    assert geometric(1 / 64, 1.0, 7)[-1] == 1.0
    assert geometric(100, 1600, 5) == [100, 200, 400, 800, 1600]
    with pytest.raises(ValueError, match="start < stop"):
        geometric(1.0, 0.5, 3)




def test_current_run_reads_the_spec(monkeypatch):
    assert current_run().is_controller
    assert current_run().param("hidden", default=3) == 3
    with pytest.raises(KeyError, match="default="):
        current_run().param("hidden")
    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], grid={"model.hidden": [8, 16]}, monitor="val_err")
    ctx = RunContext(spec=plan.runs[1], sweep_dir="/tmp/x", attempt=2)
    monkeypatch.setenv(ENV_RUN, ctx.to_env())
    run = current_run(seed=False)
    assert run.is_run and run.attempt == 2 and run.sweep_dir == "/tmp/x"
    assert run.param("model.hidden") == run.param("hidden") == 16
    monkeypatch.setenv(ENV_RUN, "not json")
    with pytest.raises(RuntimeError, match="not a lightning-scaling run spec"):
        current_run()


def _records(beta=-0.5, seeds=2):
    rng = np.random.default_rng(0)
    recs = []
    for i, frac in enumerate([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]):
        n = 4096 * frac
        for hidden, alpha, params in ((8, 6.0, 300), (64, 4.0, 2400)):
            # the wide model wins at every size except the smallest, where the narrow one is better
            a = 3.9 if (hidden == 8 and i == 0) else alpha
            for s in range(seeds):
                err = (a * n**beta + 0.02) * np.exp(rng.normal(0, 0.02))
                recs.append({"run_id": f"{i}-{hidden}-{s}", "status": "ok", "fraction": frac, "size": None,
                             "train_size": n, "size_unit": "samples", "params": {"hidden": hidden}, "seed": s,
                             "best_value": float(err), "trainable_params": params})
    recs.append({"run_id": "x", "status": "failed", "fraction": 1.0, "params": {"hidden": 8}, "seed": 9,
                 "reason": "boom"})
    return recs


def test_result_picks_best_model_per_size_and_fits_laws(tmp_path):
    res = SweepResult.from_records(_records(), monitor="val_err", mode="min", bootstrap=200)
    assert [b["params"]["hidden"] for b in res.best] == [8, 64, 64, 64, 64]
    assert res.law is not None and res.law.resample == "seeds"
    assert res.law.intervals["beta"][0] < -0.5 < res.law.intervals["beta"][1]
    assert set(res.per_grid) == {"hidden=8", "hidden=64"}
    assert res.shared_exponent is not None and res.shared_exponent.same_exponent
    assert res.model_size_law is not None and res.model_size_law.beta_p > 0
    d = json.loads(res.to_json())
    assert d["n_failed"] == 1 and d["n_ok"] == 20 and d["law"]["beta"] == res.law.params["beta"]
    assert "data_to_halve_error" in d["predictions"]
    res.save(tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["law"]["beta"] == res.law.params["beta"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000


def test_result_converts_accuracy_and_rejects_non_accuracy():
    recs = _records()
    for r in recs:
        if "best_value" in r:
            r["best_value"] = 1.0 - r["best_value"]
    res = SweepResult.from_records(recs, monitor="val_acc", mode="max", bootstrap=0)
    assert res.law is not None and res.law.params["beta"] < 0
    recs[0]["best_value"] = 3.0
    with pytest.raises(ValueError, match="not an accuracy"):
        SweepResult.from_records(recs, monitor="val_acc", mode="max", bootstrap=0)


def test_result_without_finished_runs_says_so():
    res = SweepResult.from_records([{"run_id": "a", "status": "failed"}], monitor="m", mode="min")
    assert res.law is None and "no run finished" in res.notes[0]


def test_sweep_package_imports_no_lightning():
    code = ("import sys, lightning_scaling.sweep; "
            "assert not [m for m in ('torch', 'pytorch_lightning') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, ENV_RUN: ""})




def test_runs_without_a_size_in_the_unit_fall_back_to_samples_or_are_named():
    recs = [r for r in _records() if r["status"] == "ok"]
    recs[0]["train_size"] = None  # e.g. a stream never sized in the user's unit: its sample count is used
    recs[0]["num_samples"] = 256
    recs[1]["train_size"] = None
    recs[1]["num_samples"] = None
    res = SweepResult.from_records(recs, monitor="val_err", mode="min", bootstrap=0)
    assert res.law is not None
    assert any(recs[1]["run_id"] in n for n in res.notes)


def test_grid_points_are_listed_in_numeric_order():
    records = [
        {"run_id": f"{m}-{h}", "status": "ok", "size": m, "train_size": m, "params": {"hidden": h}, "seed": 0,
         "best_value": (1.0 + 100 / h) * m**-0.3, "trainable_params": 10 * h}
        for m in (100, 200, 400, 800, 1600) for h in (16, 256, 64)
    ]
    res = SweepResult.from_records(records, monitor="val_loss", mode="min", bootstrap=0)
    assert list(res.per_grid) == ["hidden=16", "hidden=64", "hidden=256"]


def test_a_grid_point_whose_error_does_not_fall_is_named_not_fitted():
    records = [
        {"run_id": f"{m}-{h}", "status": "ok", "size": m, "train_size": m, "params": {"hidden": h}, "seed": 0,
         "best_value": 2 * m**-0.3 if h == 64 else 0.5 + 1e-4 * np.log(m), "trainable_params": 10 * h}
        for m in (100, 200, 400, 800, 1600) for h in (4, 64)
    ]
    res = SweepResult.from_records(records, monitor="val_loss", mode="min", bootstrap=100)
    assert list(res.per_grid) == ["hidden=64"]
    assert any("hidden=4: the error does not fall with data" in n for n in res.notes)
    assert res.law.exponent == pytest.approx(-0.3, abs=0.01)


def test_live_reports_of_an_adaptive_study_leave_out_partial_rungs(tmp_path):
    from lightning_scaling.sweep.adaptive import AdaptiveConfig, Target
    from lightning_scaling.sweep.controller import SweepController

    plan = SweepPlan.build(sizes=[100, 200, 400, 800], grid={"hidden": [8, 32]}, monitor="val_err")
    seen: list[list[str]] = []

    class Reporter:
        def update(self, records):
            seen.append([r["run_id"] for r in records])

    ctrl = SweepController(plan, SweepStore(tmp_path), reporter=Reporter(),  # type: ignore[arg-type]
                           adaptive=AdaptiveConfig(target=Target.error_at(10_000), tolerance=0.1))
    run_id = plan.runs[0].run_id
    ctrl._keep({"run_id": f"{run_id}_r0", "status": "ok", "best_value": 0.5})  # a third of the budget: not a point
    ctrl._keep({"run_id": run_id, "status": "ok", "best_value": 0.3})
    assert seen == [[run_id]]


def test_a_freed_slot_is_refilled_at_once_and_the_launcher_is_prepared_before_anything_else(tmp_path):
    from lightning_scaling.sweep.controller import SweepController

    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)
    events: list[str] = []

    class OneSlot:  # every run ends as soon as it starts
        capacity = 1

        def __init__(self):
            self.jobs = []

        def describe(self):
            return "one fake slot"

        def prepare(self, command):
            events.append("prepare")

        def submit(self, job):
            events.append(f"submit {job.spec.size}")
            store.write_record({"run_id": job.spec.run_id, "status": "ok", "launch": job.launch, "size": job.spec.size,
                                "fraction": None, "params": {}, "seed": 0, "best_value": 1.0 / job.spec.size})
            self.jobs.append(job)

        def poll(self):
            done, self.jobs = [(j, 0) for j in self.jobs], []
            return done

        def running(self):
            return self.jobs

        def wait(self, timeout):
            events.append("wait")

        def shutdown(self, grace=10.0):
            pass

        def close(self):
            events.append("close")

    class Reporter:
        def start(self, *args):
            events.append("reporter start")

        def child_env(self, spec):
            return {}

        def update(self, records):
            pass

        def finish(self, result, store):
            pass

        def close(self, failed=False):
            pass

    ctrl = SweepController(plan, store, launcher=OneSlot(), command=[sys.executable, "train.py"],  # type: ignore[arg-type]
                           probe=False, reporter=Reporter(), analyse=lambda recs: SweepResult.from_records(  # type: ignore[arg-type]
                               recs, monitor="val_err", mode="min", bootstrap=0), stream=io.StringIO())
    result = ctrl.run()
    # the fork server (prepare) imports while W&B starts; each run's end starts the next one without a wait
    assert events == ["prepare", "reporter start", "submit 800", "submit 400", "submit 200", "submit 100", "close"]
    assert len(result.runs) == 4


