"""The sweep's plain-Python layers and the callback's units: store, child environment, launchers, hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lightning_scaling.sweep import (
    RunContext,
    SweepPlan,
    SweepStore,
)
from lightning_scaling.sweep.context import ENV_RUN
from lightning_scaling.sweep.launcher import LocalLauncher, child_environment


def test_store_writes_atomically_and_reads_back(tmp_path):
    store = SweepStore(tmp_path / "s")
    store.write_record({"run_id": "a", "status": "ok", "best_value": 0.5})
    assert store.read_record("a")["best_value"] == 0.5
    assert not list((tmp_path / "s" / "runs").glob(".*tmp"))  # no temporary left behind
    (tmp_path / "s" / "runs" / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"b.json is not valid JSON"):
        store.records()


def test_child_environment_is_clean():
    parent = {"PATH": "/bin", "LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "1234",
              "SLURM_JOB_ID": "7", "TORCHELASTIC_RUN_ID": "x", "WANDB_SERVICE": "s", "WANDB_RUN_ID": "r",
              "CUDA_VISIBLE_DEVICES": "0,1,2,3", "WANDB_API_KEY": "keep-the-user-s-auth", "PL_GLOBAL_SEED": "3"}
    env = child_environment(parent, {"CUDA_VISIBLE_DEVICES": "2", ENV_RUN: "{}"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["PATH"] == "/bin" and env["WANDB_API_KEY"] == "keep-the-user-s-auth"
    for gone in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID",
                 "WANDB_SERVICE", "WANDB_RUN_ID", "PL_GLOBAL_SEED"):
        assert gone not in env


def test_local_slots_pin_gpus_and_split_threads(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    launcher = LocalLauncher()
    assert [s.gpus for s in launcher.slots] == [("0",), ("1",), ("2",), ("3",)]
    pairs = LocalLauncher(devices_per_slot=2)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in pairs.slots] == ["0,1", "2,3"]
    with pytest.raises(ValueError, match="devices_per_slot=8 but only 4 GPUs"):
        LocalLauncher(devices_per_slot=8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = LocalLauncher(slots=2, threads_per_slot=3)
    assert [s.env()["OMP_NUM_THREADS"] for s in cpu.slots] == ["3", "3"]
    assert all(s.env()["CUDA_VISIBLE_DEVICES"] == "" for s in cpu.slots)


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


def test_an_interactive_session_is_told_how_to_run_a_sweep():
    code = "from lightning_scaling.sweep.launcher import script_command; script_command()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "lightning_scaling.run_sweep('train.py'" in proc.stderr


def _script_job(tmp_path, name: str, body: str):
    """A job whose run is a small Python script (no Lightning): for the launcher and fork server alone."""
    from lightning_scaling.sweep.launcher import Job
    from lightning_scaling.sweep.plan import RunSpec

    script = tmp_path / f"{name}.py"
    script.write_text(body)
    return Job(spec=RunSpec(name, 1.0, None, {}, 0, 0), attempt=1, command=[sys.executable, str(script)],
               env_overrides={}, log_path=tmp_path / f"{name}.log")


def _sleeper_job(tmp_path, name: str, seconds: float):
    return _script_job(tmp_path, name, f"import time\ntime.sleep({seconds})\n")


@pytest.mark.slow
def test_fork_server_wakes_the_controller_on_exit_and_its_death_fails_runs_not_the_sweep(tmp_path):
    import time

    launcher = LocalLauncher(slots=2, fork_server=True)
    try:
        launcher.submit(_sleeper_job(tmp_path, "quick", 0.3))
        assert launcher._server is not None  # the run was forked, not started as a new process
        t0 = time.time()
        finished = []
        while not finished and time.time() - t0 < 30:
            launcher.wait(5.0)  # returns when the server reports the exit, not after 5 s
            finished = launcher.poll()
        assert [(job.spec.run_id, rc) for job, rc in finished] == [("quick", 0)]
        assert time.time() - t0 < 4.0

        slow = _sleeper_job(tmp_path, "slow", 60)
        launcher.submit(slow)
        launcher._server.proc.kill()  # the server dies: its children die with it (PDEATHSIG)
        t0 = time.time()
        finished = []
        while not finished and time.time() - t0 < 30:
            launcher.wait(0.1)
            finished = launcher.poll()
        assert [(job.spec.run_id, rc) for job, rc in finished] == [("slow", -9)]
        # the next run starts as a new process instead
        launcher.submit(_sleeper_job(tmp_path, "after", 0.1))
        assert launcher._server is None and not launcher.fork_server
        job = launcher.running()[0]
        assert job.process is not None and job.process.wait(timeout=30) == 0
    finally:
        launcher.shutdown(grace=1.0)


@pytest.mark.slow
def test_a_forked_run_starts_like_a_fresh_process_and_a_printing_import_cannot_break_the_server(tmp_path, monkeypatch):
    # a module that prints when imported, preloaded by the server: its output must not reach the protocol
    (tmp_path / "noisy_module.py").write_text("print('hello from an import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    import noisy_module  # noqa: F401  (the server preloads what the controller imported)

    body = (
        "import gc, json, signal, sys\n"
        "json.dump({'gc': gc.isenabled(), 'sigchld': signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,\n"
        "           'wakeup_fd': signal.set_wakeup_fd(-1)}, open(sys.argv[0] + '.json', 'w'))\n"
    )
    launcher = LocalLauncher(slots=1, fork_server=True)
    monkeypatch.setattr("lightning_scaling.sweep.launcher._PRELOAD", ("noisy_module",))
    try:
        job = _script_job(tmp_path, "fresh", body)
        launcher.prepare(job.command)
        launcher.submit(job)
        assert launcher._server is not None and launcher.fork_server  # forked, not a fallback subprocess
        assert job.process is not None and job.process.wait(timeout=60) == 0
    finally:
        launcher.shutdown(grace=1.0)
    seen = json.loads((tmp_path / "fresh.py.json").read_text())
    # the server imports with the collector off and installs a SIGCHLD wake-up; a run must not inherit either
    assert seen == {"gc": True, "sigchld": True, "wakeup_fd": -1}


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
