"""The ScalingSweep dispatcher (``callbacks/scaling_sweep.py``): its arguments, and the role each process gets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
from pytorch_lightning.accelerators import CUDAAccelerator

from lightning_scaling import ScalingSweep
from lightning_scaling.callbacks.controller_role import ControllerRole
from lightning_scaling.callbacks.run_role import RunRole
from lightning_scaling.sweep import RunContext, SweepError, SweepPlan, current_run
from lightning_scaling.sweep.context import ENV_RUN
from lightning_scaling.sweep.launchers import LocalLauncher

FRACTIONS = {"fractions": [0.1, 0.2, 0.4, 0.8], "monitor": "val_err"}


def _controller(sweep: ScalingSweep) -> ControllerRole:
    return ControllerRole(sweep, current_run(), pl)


def test_trainer_asking_for_more_gpus_than_a_slot_is_refused():
    sweep = _controller(ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], monitor="val_err"))
    trainer = SimpleNamespace(accelerator=CUDAAccelerator(), num_devices=4,
                              _accelerator_connector=SimpleNamespace(_devices_flag=4))
    with pytest.raises(SweepError, match=r"asks for 4 GPUs per run.*devices_per_slot=4"):
        sweep.check_devices(trainer)
    trainer._accelerator_connector._devices_flag = "auto"  # adapts to the slot: accepted
    sweep.check_devices(trainer)
    _controller(ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], monitor="val_err", devices_per_slot=4)).check_devices(
        SimpleNamespace(accelerator=CUDAAccelerator(), num_devices=4,
                        _accelerator_connector=SimpleNamespace(_devices_flag=4)))


def test_bad_callback_arguments_are_named():
    with pytest.raises(ValueError, match="max_retries"):
        ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], max_retries=-1)
    with pytest.raises(ValueError, match="devices_per_slot"):
        ScalingSweep(fractions=[0.1, 0.2, 0.4, 0.8], devices_per_slot=0)
    with pytest.raises(ValueError, match="slots must be a positive integer"):
        LocalLauncher(slots=0)


def test_the_script_the_user_starts_is_the_controller_and_a_run_is_a_run(tmp_path, monkeypatch):
    sweep = ScalingSweep(**FRACTIONS)
    assert isinstance(sweep._controller, ControllerRole) and sweep._runner is None
    assert sweep.result is None and sweep.state_dict() == {}
    spec = SweepPlan.build(**FRACTIONS).runs[0]
    monkeypatch.setenv(ENV_RUN, RunContext(spec=spec, sweep_dir=str(tmp_path)).to_env())
    run = ScalingSweep(**FRACTIONS)
    assert isinstance(run._runner, RunRole) and run._controller is None and run.result is None
    # an adaptive rung's checkpoint carries the best value so far to the next rung
    run._runner.best, run._runner.best_step = 0.25, 7
    again = ScalingSweep(**FRACTIONS)
    again.load_state_dict(run.state_dict())
    assert (again._runner.best, again._runner.best_step) == (0.25, 7)


def test_a_run_records_its_last_validation_beside_its_best_and_the_sweeps_selection(tmp_path, monkeypatch):
    import torch

    spec = SweepPlan.build(**FRACTIONS).runs[0]
    monkeypatch.setenv(ENV_RUN, RunContext(spec=spec, sweep_dir=str(tmp_path)).to_env())
    runner = ScalingSweep(**FRACTIONS, select="last")._runner
    assert runner is not None
    trainer = SimpleNamespace(callback_metrics={}, global_step=0, current_epoch=0, should_stop=False)
    for step, (err, top5) in enumerate([(0.5, 0.3), (0.2, 0.1), (0.4, 0.25)], 1):  # it overfits after step 20
        trainer.callback_metrics = {"val_err": torch.tensor(err), "val_top5": torch.tensor(top5)}
        trainer.global_step = 10 * step
        runner.on_validation_end(trainer)  # type: ignore[arg-type]

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

    rec = runner.record(trainer, Tiny())  # type: ignore[arg-type]
    assert (rec["best_value"], rec["best_step"], rec["final_value"]) == (pytest.approx(0.2), 20, pytest.approx(0.4))
    assert rec["metrics_at_best"]["val_top5"] == pytest.approx(0.1)
    assert rec["metrics_at_final"] == {"val_err": pytest.approx(0.4), "val_top5": pytest.approx(0.25)}
    assert rec["select"] == "last"
