"""Fingerprints (sweep/fingerprint.py) and the controller's rule: finished runs are reused only when
nothing that decides their result changed. A fake launcher plays the runs: each checks the
expectation the controller hands it, as the run's callback does (no process is started)."""

from __future__ import annotations

import io
import json
import sys

import pytest
from helpers.fake_launchers import InstantSlot

from lightning_scaling.sweep import SweepPlan, SweepResult, SweepStore, fingerprint
from lightning_scaling.sweep.controller import PROBE_ID, SweepController, SweepError
from lightning_scaling.sweep.options import DEFAULTS, SweepOptions


def fp(max_steps=200, lr=0.02, hidden=32, script=b"train()", args=("--root", "x")):
    return fingerprint.make_fingerprint(script=script, args=list(args), trainer={"max_steps": max_steps},
                                        model={"hidden": hidden, "lr": lr}, datamodule={"batch_size": 32},
                                        versions={"torch": "2.4.0", "lightning_scaling": "0.3.0"})


class FakeRuns(InstantSlot):
    """One slot; a run (or the probe) compares ``own(spec)`` with the expectation in its environment and
    either refuses (a failed record, as RunRole writes it) or finishes at once with that fingerprint."""

    def __init__(self, store, own):
        super().__init__(store)
        self.own, self.started = own, []

    def submit(self, job):
        s = job.spec
        own = self.own(s)
        raw = job.env_overrides.get(fingerprint.ENV_EXPECT)
        changes = fingerprint.check(own, json.loads(raw) if raw else None)
        status, reason = ("failed", fingerprint.refusal(changes)) if changes else ("ok", None)
        self.started.append("probe" if job.probe else s.run_id)
        if job.probe:
            self.store.root.joinpath(f"{PROBE_ID}.json").write_text(json.dumps({"status": status, "reason": reason}))
        else:
            self.store.write_record({"run_id": s.run_id, "status": status, "reason": reason, "launch": job.launch,
                                     "size": s.size, "fraction": None, "train_size": float(s.size),
                                     "params": s.params, "seed": s.seed, "best_value": 10.0 / s.size,
                                     "fingerprint": own})
        super().submit(job)


def sweep(tmp_path, own, sizes=(100, 200, 400, 800), grid=None, monitor="val_err", **kwargs):
    plan = SweepPlan.build(sizes=list(sizes), grid=grid, monitor=monitor)
    store = SweepStore(tmp_path)
    runs = FakeRuns(store, own)
    stream = io.StringIO()
    ctrl = SweepController(plan, store, launcher=runs, command=[sys.executable, "train.py"],  # type: ignore[arg-type]
                           analyse=lambda recs: SweepResult.from_records(recs, monitor=monitor, mode="min",
                                                                         bootstrap=0),
                           stream=stream, **kwargs)
    return ctrl, runs, stream


def launches(tmp_path):
    return {p.stem: json.loads(p.read_text())["launch"] for p in (tmp_path / "runs").glob("*.json")}


def test_diff_names_each_changed_part_and_shows_small_values():
    assert fingerprint.diff(fp(), fp(max_steps=400)) == ["trainer.max_steps: 200 -> 400"]
    assert fingerprint.diff(fp(), fp(lr=0.01)) == ["model.lr: 0.02 -> 0.01"]
    assert fingerprint.diff(fp(), fp(args=("--root", "y"))) == ['args: ["--root", "x"] -> ["--root", "y"]']
    [line] = fingerprint.diff(fp(), fp(script=b"train()  # changed"))
    assert line.startswith('script: "sha256:') and " -> " in line
    # an object without a JSON form is compared by its repr, less its memory address
    a, b = (fingerprint.make_fingerprint(script=None, args=[], trainer={}, model={"act": object()}, datamodule={},
                                         versions={}) for _ in range(2))
    assert fingerprint.diff(a, b) == []


def test_a_run_of_another_grid_point_is_compared_without_its_hyperparameters():
    refs = fingerprint.references([{"status": "ok", "params": {"hidden": 8}, "fingerprint": fp(hidden=8)},
                                   {"status": "failed", "params": {"hidden": 64}, "fingerprint": fp(max_steps=1)}])
    same = fingerprint.expectation(refs, {"hidden": 8}, ["hidden"])
    other = fingerprint.expectation(refs, {"hidden": 64}, ["hidden"])
    assert fingerprint.check(fp(hidden=8), same) == []
    assert fingerprint.check(fp(hidden=8, lr=0.1), same) == ["model.lr: 0.02 -> 0.1"]
    assert fingerprint.check(fp(hidden=64), other) == []  # the failed run fixes nothing
    assert fingerprint.check(fp(hidden=64, max_steps=400), other) == ["trainer.max_steps: 200 -> 400"]
    assert fingerprint.strip_sweep_args(["--model.hidden=8", "--seed_everything=3", "--x=1"], ["model.hidden"]) \
        == ["--x=1"]


def test_a_new_grid_point_expects_one_fingerprint_however_many_grid_points_finished():
    refs = fingerprint.references([{"status": "ok", "params": {"hidden": h}, "fingerprint": fp(hidden=h)}
                                   for h in range(1, 400)])
    other = fingerprint.expectation(refs, {"hidden": 1000}, ["hidden"])
    assert other is not None and len(other["refs"]) == 1  # a run's environment holds it at any grid size
    assert fingerprint.check(fp(hidden=1000), other) == []
    assert fingerprint.check(fp(hidden=1000, max_steps=400), other) == ["trainer.max_steps: 200 -> 400"]


def test_a_changed_setting_refuses_before_any_run_and_reuse_changed_reuses(tmp_path):
    sweep(tmp_path, lambda s: fp())[0].run()
    before = launches(tmp_path)
    ctrl, runs, stream = sweep(tmp_path, lambda s: fp(max_steps=400), probe=False)
    with pytest.raises(SweepError) as err:
        ctrl.run()  # nothing left to run: still checked, by the probe (probe=False skips only a fresh study's)
    msg = str(err.value)
    assert "trainer.max_steps: 200 -> 400" in msg and "reuse_changed=True" in msg and "name=" in msg
    assert runs.started == ["probe"] and launches(tmp_path) == before
    ctrl, runs, stream = sweep(tmp_path, lambda s: fp(max_steps=400), reuse_changed=True)
    assert len(ctrl.run().runs) == 4
    assert runs.started == [] and launches(tmp_path) == before
    assert "reuse_changed=True" in stream.getvalue()


def test_a_grown_plan_with_the_same_fingerprint_reuses_and_a_changed_one_runs_nothing(tmp_path):
    sweep(tmp_path, lambda s: fp())[0].run()
    before = launches(tmp_path)
    ctrl, runs, _ = sweep(tmp_path, lambda s: fp(lr=0.1), sizes=(50, 100, 200, 400, 800))
    with pytest.raises(SweepError, match=r"model\.lr: 0\.02 -> 0\.1"):
        ctrl.run()
    assert runs.started == ["probe"] and launches(tmp_path) == before
    ctrl, runs, _ = sweep(tmp_path, lambda s: fp(), sizes=(50, 100, 200, 400, 800))
    assert len(ctrl.run().runs) == 5
    assert runs.started[0] == "probe" and len(runs.started) == 2  # the check, then the new size only
    assert {k: v for k, v in launches(tmp_path).items() if k in before} == before


def test_without_a_probe_the_first_run_that_differs_stops_the_study_unretried(tmp_path):
    sweep(tmp_path, lambda s: fp(), grid={"hidden": [8]})[0].run()
    # a new grid point: its hyperparameters differ by design, its Trainer must not
    ctrl, runs, _ = sweep(tmp_path, lambda s: fp(hidden=s.params["hidden"], max_steps=400),
                          grid={"hidden": [8, 64]}, max_retries=2)
    ctrl.probe = False
    ctrl._load_fingerprints(ctrl.store.records().values())
    with pytest.raises(SweepError, match=r"trainer\.max_steps: 200 -> 400"):
        ctrl._loop([s for s in ctrl.plan.runs if s.params["hidden"] == 64])
    assert len(set(runs.started)) == len(runs.started)  # a refused run is never retried


def test_records_without_a_fingerprint_resume_with_one_warning(tmp_path):
    sweep(tmp_path, lambda s: fp())[0].run()
    store = SweepStore(tmp_path)
    for rec in store.records().values():
        del rec["fingerprint"]
        store.write_record(rec)
    ctrl, runs, stream = sweep(tmp_path, lambda s: fp(max_steps=400), sizes=(50, 100, 200, 400, 800))
    assert len(ctrl.run().runs) == 5
    assert stream.getvalue().count("without a fingerprint") == 1
    assert len(runs.started) == 1  # the new size only: nothing to compare with, so no check


def test_a_failed_probe_locks_nothing_a_fixed_monitor_runs(tmp_path):
    class BadMonitor(FakeRuns):
        def submit(self, job):
            self.store.root.joinpath(f"{PROBE_ID}.json").write_text(json.dumps(
                {"status": "failed", "reason": "ScalingSweep(monitor='val_acc') is not among the logged metrics"}))
            InstantSlot.submit(self, job)

    ctrl, _, _ = sweep(tmp_path, lambda s: fp(), monitor="val_acc")
    ctrl.launcher = BadMonitor(ctrl.store, None)
    with pytest.raises(SweepError, match="not among the logged metrics"):
        ctrl.run()
    ctrl, _, stream = sweep(tmp_path, lambda s: fp(), monitor="val_err")
    assert len(ctrl.run().runs) == 4
    assert "no run had finished" in stream.getvalue()
    assert json.loads((tmp_path / "sweep.json").read_text())["monitor"] == "val_err"
    # once a run finished, the settings are fixed
    with pytest.raises(SweepError, match="holds a study with other settings"):
        sweep(tmp_path, lambda s: fp(), monitor="val_loss")[0].run()


def test_reuse_changed_is_one_checked_option_of_both_entry_points():
    assert DEFAULTS["reuse_changed"] is False
    with pytest.raises(TypeError, match="reuse_changed"):
        SweepOptions.build(**{**DEFAULTS, "fractions": [0.25, 0.5, 0.75, 1.0], "reuse_changed": "yes"})
