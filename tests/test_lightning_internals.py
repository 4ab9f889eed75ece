"""Lightning's private APIs the callback uses (``lightning_internals.py``): each works, and each
degrades to its fallback on a Lightning without it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from helpers.boring import IndexDataModule, IndexRecorder
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.profilers import PassThroughProfiler
from pytorch_lightning.trainer import call

from lightning_scaling import ScalingSweep
from lightning_scaling.lightning_internals import (
    continue_from_checkpoint,
    devices_flag,
    name_run_logs,
    skip_unused_loop_hooks,
    state_key_of,
    train_data_source,
    wandb_logger_has_fixed_id,
)
from lightning_scaling.sweep import RunContext, SweepError, SweepPlan
from lightning_scaling.sweep.context import ENV_RUN


def test_runs_that_start_together_log_to_folders_of_their_own(tmp_path, monkeypatch):
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
    def calls_every_hook(trainer, hook_name, *args, **kwargs):  # a Lightning without the callable() check
        for callback in trainer.callbacks:
            getattr(callback, hook_name)(trainer, trainer.lightning_module, *args, **kwargs)

    callback = pl.Callback()
    monkeypatch.setattr(call, "_call_callback_hooks", calls_every_hook)
    assert skip_unused_loop_hooks(callback, pl) == [] and callable(callback.on_before_backward)
    monkeypatch.undo()
    assert "on_before_backward" in skip_unused_loop_hooks(callback, pl) and callback.on_before_backward is None
    # the lightning.pytorch namespace has its own dispatch and Callback base (the test extra installs it)
    import lightning.pytorch as L

    from lightning_scaling.lightning_pytorch import ScalingSweep

    assert "on_before_backward" in skip_unused_loop_hooks(L.Callback(), L)
    assert skip_unused_loop_hooks(ScalingSweep(fractions=[0.25, 0.5, 0.75, 1.0], monitor="val_err"), L) == \
        skip_unused_loop_hooks(L.Callback(), L)


def test_a_lightning_without_the_private_names_gets_the_fallbacks(tmp_path, monkeypatch):
    bare = SimpleNamespace(fit_loop=SimpleNamespace())  # a Trainer of a version that keeps none of them
    assert devices_flag(bare) is None  # the resolved device count is checked instead
    assert devices_flag(SimpleNamespace(_accelerator_connector=SimpleNamespace(_devices_flag="auto"))) == "auto"
    assert wandb_logger_has_fixed_id(SimpleNamespace()) is False  # the check is skipped
    assert wandb_logger_has_fixed_id(SimpleNamespace(_wandb_init={"id": "abc"})) is True
    assert train_data_source(bare) == (None, None)  # the callback then asks for DataFraction
    with pytest.raises(SweepError, match=r"_restore_modules_and_callbacks.*strategy='grid'"):
        continue_from_checkpoint(bare, str(tmp_path / "rung.ckpt"), pl)
    # no loggers module, or a logger class without _get_next_version: Lightning's own numbering stays
    name_run_logs(SimpleNamespace())
    plain = SimpleNamespace(loggers=SimpleNamespace(CSVLogger=type("CSVLogger", (), {})))
    name_run_logs(plain)
    assert not hasattr(plain.loggers.CSVLogger, "_get_next_version")
    # the state key: Lightning's own, else the same format
    assert state_key_of(pl.Callback(), monitor="val_err") == "Callback{'monitor': 'val_err'}"
    assert state_key_of(SimpleNamespace(), monitor="val_err") == "SimpleNamespace{'monitor': 'val_err'}"


class _Payload:
    """Unpickling it creates a file: the stand-in for a command a planted checkpoint would run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_a_rung_checkpoint_loads_weights_only_and_a_planted_pickle_is_not_executed(tmp_path):
    torch.set_num_threads(1)

    class Model(IndexRecorder):
        def validation_step(self, batch, batch_idx):
            self.log("val_err", batch.float().mean() / 100)

    def trainer(epochs):
        return pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False, default_root_dir=tmp_path)

    first = trainer(1)
    first.fit(Model(), datamodule=IndexDataModule(n=16))
    rung = tmp_path / "checkpoints" / "run_r0.ckpt"
    first.save_checkpoint(rung)
    # a checkpoint Lightning wrote (weights, optimiser, loops, callbacks) continues with weights_only=True
    second = trainer(2)
    continue_from_checkpoint(second, str(rung), pl)
    second.fit(Model(), datamodule=IndexDataModule(n=16))
    assert second.current_epoch == 2 and second.global_step == 2 * first.global_step
    # a pickle planted in the sweep folder under a rung's name is refused, not run
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": _Payload(str(marker))}, rung)
    third = trainer(2)
    continue_from_checkpoint(third, str(rung), pl)
    with pytest.raises(SweepError, match=r"run_r0.ckpt holds objects .* weights_only=True"):
        third.fit(Model(), datamodule=IndexDataModule(n=16))
    assert not marker.exists()
