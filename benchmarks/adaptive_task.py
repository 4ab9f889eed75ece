"""The training script of ``benchmarks/adaptive_vs_grid.py``: a ScalingSweep in an ordinary Lightning script.

``LS_BENCH_TASK=digits``: the README's main job (``examples/digits/train.py``: its data module,
model and Trainer settings; 600 steps per run at every data size, so every run costs the same).

``LS_BENCH_TASK=teacher`` (default): teacher-student classification: inputs in 32 dimensions,
labels the argmax of a fixed random linear teacher (4 classes); the student is an MLP whose width
is the grid (width 2 is a bottleneck, clearly worse). A fixed number of epochs over the subset
with a cosine learning-rate schedule over the full budget, so a run's cost grows with its data
size, as in the paper's studies.
``LS_BENCH_SWEEP`` holds the ScalingSweep keyword arguments (JSON; ``"strategy": {...}`` holds
:class:`~lightning_scaling.Adaptive`'s).
"""

from __future__ import annotations

import json
import os
import sys

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_scaling import Adaptive, DataFraction, ScalingSweep, current_run

N_FULL, N_VAL, DIM, CLASSES = 32768, 4096, 32, 4
EPOCHS = 15


class TeacherData(pl.LightningDataModule):
    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(1234)
        teacher = torch.randn(DIM, CLASSES, generator=g)
        x = torch.randn(N_FULL + N_VAL, DIM, generator=g)
        y = (x @ teacher).argmax(1)
        self.train_set = TensorDataset(x[:N_FULL], y[:N_FULL])
        self.val_set = TensorDataset(x[N_FULL:], y[N_FULL:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=32, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=4096)


class Student(pl.LightningModule):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_err", (self.net(x).argmax(1) != y).float().mean())

    def configure_optimizers(self):
        # the schedule spans the full budget (EPOCHS), also in a shorter rung of an adaptive study, which
        # continues it from its checkpoint when promoted
        opt = torch.optim.Adam(self.parameters(), lr=1e-2)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)}


def _sweep_kwargs() -> dict:
    kwargs = json.loads(os.environ["LS_BENCH_SWEEP"])
    if isinstance(kwargs.get("strategy"), dict):
        kwargs["strategy"] = Adaptive(**kwargs["strategy"])
    return kwargs


def digits() -> None:
    """The digits example's study, with the sweep's arguments from the benchmark."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "digits"))
    from train import MLP, DigitsData

    run = current_run()
    run.seed_everything()
    torch.set_num_threads(1)
    kwargs = _sweep_kwargs()
    sweep = ScalingSweep(monitor="val_top1_err", reporter=False, **kwargs)
    steps = 600
    trainer = pl.Trainer(accelerator="cpu", devices=1, callbacks=[sweep], logger=False, max_steps=steps,
                         max_epochs=-1, val_check_interval=steps // 12, check_val_every_n_epoch=None,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(MLP(width=run.param("width", default=128)), datamodule=DataFraction(DigitsData()))
    if run.is_controller:
        print(sweep.result.summary(), file=sys.stderr)


def main() -> None:
    if os.environ.get("LS_BENCH_TASK", "teacher") == "digits":
        return digits()
    run = current_run()
    run.seed_everything()
    torch.set_num_threads(1)
    kwargs = _sweep_kwargs()
    sweep = ScalingSweep(monitor="val_err", reporter=False, **kwargs)
    # validation every 5 epochs (at the end of each rung too: 5 and 15 epochs): on the smallest subsets a
    # validation pass costs more than an epoch of training
    trainer = pl.Trainer(max_epochs=EPOCHS, check_val_every_n_epoch=5, accelerator="cpu", devices=1,
                         callbacks=[sweep], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(Student(hidden=run.param("hidden", default=32)), datamodule=TeacherData())
    if run.is_controller:
        print(sweep.result.summary(), file=sys.stderr)


if __name__ == "__main__":
    main()
