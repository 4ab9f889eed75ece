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


def test_store_writes_atomically_and_reads_back(tmp_path):
    store = SweepStore(tmp_path / "s")
    store.write_record({"run_id": "a", "status": "ok", "best_value": 0.5})
    assert store.read_record("a")["best_value"] == 0.5
    assert not list((tmp_path / "s" / "runs").glob(".*tmp"))  # no temporary left behind
    (tmp_path / "s" / "runs" / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"b.json is not valid JSON"):
        store.records()


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


def test_trainer_asking_for_more_gpus_than_a_slot_is_refused():
    from types import SimpleNamespace

    from pytorch_lightning.accelerators import CUDAAccelerator

    from lightning_scaling import ScalingSweep
    from lightning_scaling.sweep import SweepError

    sweep = ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], monitor="val_err")
    trainer = SimpleNamespace(accelerator=CUDAAccelerator(), num_devices=4,
                              _accelerator_connector=SimpleNamespace(_devices_flag=4))
    with pytest.raises(SweepError, match=r"asks for 4 GPUs per run.*devices_per_slot=4"):
        sweep._check_devices(trainer)
    trainer._accelerator_connector._devices_flag = "auto"  # adapts to the slot: accepted
    sweep._check_devices(trainer)
    ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], monitor="val_err", devices_per_slot=4)._check_devices(
        SimpleNamespace(accelerator=CUDAAccelerator(), num_devices=4,
                        _accelerator_connector=SimpleNamespace(_devices_flag=4)))


def test_bad_callback_arguments_are_named():
    from lightning_scaling import ScalingSweep

    with pytest.raises(ValueError, match="max_retries"):
        ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], max_retries=-1)
    with pytest.raises(ValueError, match="devices_per_slot"):
        ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], devices_per_slot=0)
    with pytest.raises(ValueError, match="slots must be a positive integer"):
        LocalLauncher(slots=0)


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


def test_a_nan_loss_is_caught_without_a_device_sync_on_every_step(monkeypatch):
    import torch

    from lightning_scaling.callbacks.scaling_sweep import _NonFiniteLoss

    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or item(self))
    # as on a GPU: the flag stays on the device and is read once every 4 steps
    watch = _NonFiniteLoss(read_every=4, deferred=True)
    assert [watch.update(torch.tensor(x), step) for step, x in enumerate([1.0, 0.9, float("nan")])] == [None] * 3
    assert reads == []
    reason = watch.update(torch.tensor(0.5), 3)
    assert reads == [1] and reason == "training loss became NaN or inf between steps 0 and 3"
    # a NaN in the last steps before the run validates or ends is read then
    assert watch.update(torch.tensor(float("inf")), 4) is None and watch.flush(5) is not None
    assert watch.flush(6) is None
    # on CPU every step is read (a scalar read costs nothing there) and the reason names the step
    cpu = _NonFiniteLoss(read_every=4)
    assert cpu.update(torch.tensor(1.0), 0) is None and cpu.update(torch.tensor(float("nan")), 1) == \
        "training loss became nan at step 1"


def test_runs_that_start_together_log_to_folders_of_their_own(tmp_path, monkeypatch):
    from pytorch_lightning.loggers import CSVLogger

    from lightning_scaling import ScalingSweep

    kwargs = {"fractions": [0.1, 0.2, 0.4, 0.8], "grid": {"hidden": [8, 16]}, "monitor": "val_err"}
    plan = SweepPlan.build(**kwargs)
    first, second = plan.runs[0], plan.runs[1]

    def version_in_run(spec, **ctx):
        monkeypatch.setenv(ENV_RUN, RunContext(spec=spec, sweep_dir=str(tmp_path), **ctx).to_env())
        ScalingSweep(**kwargs)  # in a run, the callback names the run's log folder
        # both loggers created before either resolves its version, as in two runs that start at once
        loggers = [CSVLogger(save_dir=tmp_path), CSVLogger(save_dir=tmp_path)]
        return [lg.version for lg in loggers]

    # Lightning would number both version_0: one folder, and the CSV logger deletes the other's metrics
    assert version_in_run(first) == [first.run_id] * 2
    assert version_in_run(second) == [second.run_id] * 2
    (tmp_path / "lightning_logs" / first.run_id).mkdir(parents=True)
    # a retry, the probe and a run whose folder exists (resumed after Ctrl-C) keep what is already there
    assert version_in_run(first, attempt=2)[0] == f"{first.run_id}-attempt2"
    assert version_in_run(first, probe=True)[0] == f"{first.run_id}-probe"
    assert version_in_run(first)[0] == f"{first.run_id}-2"
    # a version the user set is kept, and outside a run Lightning numbers as before
    monkeypatch.setenv(ENV_RUN, RunContext(spec=first, sweep_dir=str(tmp_path)).to_env())
    assert CSVLogger(save_dir=tmp_path, version="mine").version == "mine"
    monkeypatch.delenv(ENV_RUN)
    assert CSVLogger(save_dir=tmp_path / "plain").version == 0


def test_a_run_spends_no_per_step_hook_calls_on_hooks_it_does_not_use(tmp_path, monkeypatch):
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.profilers import PassThroughProfiler

    from lightning_scaling import ScalingSweep
    from tests.helpers.boring import IndexDataModule, IndexRecorder

    torch.set_num_threads(1)

    class Recording(PassThroughProfiler):
        def __init__(self):
            super().__init__()
            self.sections: list[str] = []

        def start(self, action_name: str) -> None:
            self.sections.append(action_name)

    class Model(IndexRecorder):
        def validation_step(self, batch, batch_idx):
            self.log("val_err", batch.float().mean() / 100)

    epoch_ends = []

    class MySweep(ScalingSweep):  # a user's subclass keeps the loop hooks it implements
        def on_train_epoch_end(self, trainer, pl_module):
            epoch_ends.append(trainer.current_epoch)

    kwargs = {"fractions": [0.25, 0.5, 0.75, 1.0], "monitor": "val_err"}
    spec = SweepPlan.build(**kwargs).runs[0]
    monkeypatch.setenv(ENV_RUN, RunContext(spec=spec, sweep_dir=str(tmp_path)).to_env())
    profiler = Recording()
    sweep = MySweep(**kwargs)
    trainer = pl.Trainer(max_epochs=2, callbacks=[sweep], profiler=profiler, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    trainer.fit(Model(), datamodule=IndexDataModule(n=32))
    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert record["status"] == "ok" and record["steps"] == 2 * 8
    called = {s.rsplit(".", 1)[1] for s in profiler.sections if s.startswith(f"[Callback]{sweep.state_key}.")}
    # Lightning calls every hook of every callback; the run's ScalingSweep gets only those it uses
    assert "on_train_batch_end" in called and "on_validation_end" in called and "on_fit_end" in called
    assert not called & {"on_train_batch_start", "on_before_backward", "on_after_backward",
                         "on_before_optimizer_step", "on_before_zero_grad", "on_train_epoch_start"}
    assert epoch_ends == [0, 1] and "on_train_epoch_end" in called


def test_hooks_are_kept_when_lightnings_dispatch_would_call_them_anyway(monkeypatch):
    import pytorch_lightning as pl
    from pytorch_lightning.trainer import call

    from lightning_scaling.callbacks.scaling_sweep import _skip_unused_loop_hooks

    def calls_every_hook(trainer, hook_name, *args, **kwargs):  # a Lightning without the callable() check
        for callback in trainer.callbacks:
            getattr(callback, hook_name)(trainer, trainer.lightning_module, *args, **kwargs)

    callback = pl.Callback()
    monkeypatch.setattr(call, "_call_callback_hooks", calls_every_hook)
    assert _skip_unused_loop_hooks(callback, pl) == [] and callable(callback.on_before_backward)
    monkeypatch.undo()
    assert "on_before_backward" in _skip_unused_loop_hooks(callback, pl) and callback.on_before_backward is None
    # the lightning.pytorch namespace has its own dispatch and Callback base (the test extra installs it)
    import lightning.pytorch as L

    from lightning_scaling.lightning_pytorch import ScalingSweep

    assert "on_before_backward" in _skip_unused_loop_hooks(L.Callback(), L)
    assert _skip_unused_loop_hooks(ScalingSweep(fractions=[0.25, 0.5, 0.75, 1.0], monitor="val_err"), L) == \
        _skip_unused_loop_hooks(L.Callback(), L)
