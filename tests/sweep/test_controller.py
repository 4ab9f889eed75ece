"""The controller (sweep/controller.py) with fake launchers and reporters: no process is started."""

from __future__ import annotations

import io
import json
import sys

from helpers.fake_launchers import InstantSlot

from lightning_scaling.sweep import Adaptive, SweepPlan, SweepResult, SweepStore, Target
from lightning_scaling.sweep.controller import SweepController


class InstantLauncher(InstantSlot):
    """One slot; a submitted run writes its record at once (``value(spec)`` its best value, 1 s per 1,000 samples)."""

    def __init__(self, store, value):
        super().__init__(store)
        self.value = value

    def submit(self, job):
        s = job.spec
        self.store.write_record({"run_id": s.run_id, "base_id": s.base_id, "rung": s.rung, "budget": s.budget,
                                 "status": "ok", "launch": job.launch, "size": s.size, "fraction": None,
                                 "train_size": float(s.size), "params": s.params, "seed": s.seed,
                                 "resumed_from": s.resume_from, "best_value": self.value(s),
                                 "wall_time_s": 0.1 + s.size / 1000 * (s.budget or 1.0), "devices": ""})
        super().submit(job)


def test_live_reports_of_an_adaptive_study_leave_out_partial_rungs(tmp_path):
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], grid={"hidden": [8, 32]}, monitor="val_err")
    seen: list[list[str]] = []

    class Reporter:
        def update(self, records):
            seen.append([r["run_id"] for r in records])

    ctrl = SweepController(plan, SweepStore(tmp_path), reporter=Reporter(),  # type: ignore[arg-type]
                           adaptive=Adaptive(target=Target.error_at(10_000), tolerance=0.1))
    run_id = plan.runs[0].run_id
    ctrl._keep({"run_id": f"{run_id}_r0", "status": "ok", "best_value": 0.5})  # a third of the budget: not a point
    ctrl._keep({"run_id": run_id, "status": "ok", "best_value": 0.3})
    assert seen == [[run_id]]


def test_a_freed_slot_is_refilled_at_once_and_the_launcher_is_prepared_before_anything_else(tmp_path):
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)
    events: list[str] = []

    class OneSlot(InstantLauncher):  # every run ends as soon as it starts
        def describe(self):
            return "one fake slot"

        def prepare(self, command):
            events.append("prepare")

        def submit(self, job):
            events.append(f"submit {job.spec.size}")
            super().submit(job)

        def wait(self, timeout):
            events.append("wait")

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

    slot = OneSlot(store, lambda spec: 1.0 / spec.size)
    ctrl = SweepController(plan, store, launcher=slot, command=[sys.executable, "train.py"],  # type: ignore[arg-type]
                           probe=False, reporter=Reporter(), analyse=lambda recs: SweepResult.from_records(  # type: ignore[arg-type]
                               recs, monitor="val_err", mode="min", bootstrap=0), stream=io.StringIO())
    result = ctrl.run()
    # the fork server (prepare) imports while W&B starts; each run's end starts the next one without a wait
    assert events == ["prepare", "reporter start", "submit 800", "submit 400", "submit 200", "submit 100", "close"]
    assert len(result.runs) == 4


def test_an_adaptive_study_ranks_on_the_sweeps_to_error_and_logs_its_decisions(tmp_path):
    # percent accuracy (mode="max") through the sweep's to_error: the controller hands it to the decisions, so
    # the halving ranks 100 - v (h8's 89 is 10% worse than h128's 90: stopped) as the law fits it
    plan = SweepPlan.build(sizes=[125, 250, 500, 1000, 2000], grid={"hidden": [8, 128]}, monitor="val_acc", mode="max")
    store = SweepStore(tmp_path)

    def accuracy(spec):
        return 100.0 - (40.0 * spec.size ** -0.3 + 1.0) * (1.1 if spec.params["hidden"] == 8 else 1.0)

    def to_error(v):
        return 100.0 - v

    ctrl = SweepController(plan, store, launcher=InstantLauncher(store, accuracy), command=[sys.executable, "x.py"],
                           probe=False, stream=io.StringIO(), to_error=to_error,
                           analyse=lambda recs: SweepResult.from_records(recs, monitor="val_acc", mode="max",
                                                                         to_error_fn=to_error, bootstrap=100),
                           adaptive=Adaptive(target=Target.error_at(8000), tolerance=0.5, budget=30.0))
    result = ctrl.run()
    saved = json.loads((tmp_path / "adaptive.json").read_text())
    assert saved["stop_reason"] and result.adaptive["stop_reason"] == saved["stop_reason"]
    assert saved["chosen"][:3] == [125, 250, 500] and saved["config"]["initial_sizes"] == 4
    stopped = {(s["size"], s["params"]) for s in saved["stopped"]}
    assert stopped == {(a, json.dumps({"hidden": 8})) for a in saved["chosen"]}
    assert result.law is not None and result.law.params["beta"] < 0


def test_an_ok_record_without_a_numeric_best_value_is_reported_and_run_again(tmp_path):
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)
    launcher = InstantLauncher(store, lambda spec: 1.0 / spec.size)
    analyse = lambda recs: SweepResult.from_records(recs, monitor="val_err", mode="min", bootstrap=0)  # noqa: E731
    SweepController(plan, store, launcher=launcher, command=[sys.executable, "train.py"],  # type: ignore[arg-type]
                    probe=False, analyse=analyse, stream=io.StringIO()).run()
    broken = plan.runs[0].run_id
    record = json.loads(store.record_path(broken).read_text())
    store.record_path(broken).write_text(json.dumps({**record, "best_value": None}))  # "ok", but no value
    submitted: list[str] = []
    launcher.submit = lambda job, submit=launcher.submit: (submitted.append(job.spec.run_id), submit(job))
    out = io.StringIO()
    result = SweepController(plan, store, launcher=launcher, command=[sys.executable, "train.py"],  # type: ignore[arg-type]
                             probe=False, analyse=analyse, stream=out).run()
    assert submitted == [broken]  # run again, the others kept
    assert f"ignoring {store.record_path(broken)}: status ok without a finite numeric best_value (got None)" \
        in out.getvalue()
    assert len(result.runs) == 4 and store.read_record(broken)["best_value"] == 1.0 / plan.runs[0].size


def test_a_second_controller_on_the_folder_stops_at_once_and_no_run_trains_twice(tmp_path):
    import os
    import socket
    import threading

    import pytest

    from lightning_scaling.sweep import SweepError

    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    trained: list[str] = []
    holding, go_on = threading.Event(), threading.Event()

    class Slow(InstantLauncher):
        def submit(self, job):
            trained.append(job.spec.run_id)
            holding.set()
            go_on.wait(30)  # the first controller is mid-study while the second one starts
            super().submit(job)

    def controller(launcher_cls):
        store = SweepStore(tmp_path)
        return SweepController(plan, store, launcher=launcher_cls(store, lambda s: 1.0 / s.size),
                               command=[sys.executable, "train.py"], probe=False, stream=io.StringIO(),
                               analyse=lambda recs: SweepResult.from_records(recs, monitor="val_err", mode="min",
                                                                             bootstrap=0))

    first = threading.Thread(target=controller(Slow).run)
    first.start()
    try:
        assert holding.wait(30)
        with pytest.raises(SweepError, match=f"in use by another controller: host {socket.gethostname()}, "
                                             f"pid {os.getpid()}"):
            controller(InstantLauncher).run()
    finally:
        go_on.set()
        first.join(60)
    assert sorted(trained) == sorted(s.run_id for s in plan.runs)  # each run once, by the first controller
    assert controller(InstantLauncher).run().runs and sorted(trained) == sorted(s.run_id for s in plan.runs)
