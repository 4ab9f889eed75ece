"""The controller role after its study (callbacks/controller_role.py): no model summary, a warning for
code after ``trainer.fit`` that meets the untrained model. The study itself is replaced by a fake."""

from __future__ import annotations

import warnings

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_scaling import ScalingSweep
from lightning_scaling.callbacks.controller_role import ControllerRole
from lightning_scaling.sweep import SweepResult

torch.set_num_threads(1)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.layer(batch[0]).pow(2).mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(8, 2)), batch_size=4)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(8, 2)), batch_size=4)


@pytest.fixture
def controller_fit(tmp_path, monkeypatch):
    """A controller's Trainer after ``fit``, its study a fake that returns an empty result."""
    monkeypatch.setattr(ControllerRole, "run_study", lambda self, trainer: SweepResult(runs=[]))
    sweep = ScalingSweep(fractions=[0.25, 0.5, 1.0, 2 / 3], sweep_dir=str(tmp_path / "sweep"))
    trainer = pl.Trainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[sweep], logger=False,
                         enable_progress_bar=False, accelerator="cpu")
    model = Tiny()
    return trainer, model, sweep


def test_the_controller_prints_no_summary_of_its_untrained_model(controller_fit, capfd):
    trainer, model, sweep = controller_fit
    trainer.fit(model)
    out, err = capfd.readouterr()
    assert "Trainable params" not in out + err and "Total params" not in out + err
    assert sweep.result is not None


def test_code_after_fit_in_the_controller_warns_once_that_nothing_was_trained(controller_fit, tmp_path):
    trainer, model, _ = controller_fit
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer.fit(model)
    assert not [w for w in seen if "controller trained nothing" in str(w.message)]
    with pytest.warns(UserWarning, match=r"trainer.validate\(\) after the scaling study: the controller trained "
                                         r"nothing.*current_run\(\).is_run"):
        trainer.validate(model, verbose=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer.save_checkpoint(tmp_path / "model.ckpt")
    assert not [w for w in seen if "controller trained nothing" in str(w.message)]  # once


def test_saving_a_checkpoint_after_the_study_warns(controller_fit, tmp_path):
    trainer, model, _ = controller_fit
    trainer.fit(model)
    with pytest.warns(UserWarning, match=r"trainer.save_checkpoint\(\) after the scaling study"):
        trainer.save_checkpoint(tmp_path / "model.ckpt")
