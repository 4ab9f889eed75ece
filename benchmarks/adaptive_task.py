"""The training script of ``benchmarks/adaptive_vs_grid.py``: a ScalingSweep in an ordinary Lightning script.

Teacher-student classification: inputs in 32 dimensions, labels from a fixed random two-layer
tanh teacher (8 classes); the student is an MLP whose width is the grid (a narrow width is clearly
worse). A fixed number of epochs over the subset, so a run's cost grows with its data size, as in
the paper's studies. ``LS_BENCH_SWEEP`` holds the ScalingSweep keyword arguments (JSON).
"""

from __future__ import annotations

import json
import os
import sys

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_scaling import ScalingSweep, current_run

N_FULL, N_VAL, DIM, CLASSES = 65536, 4096, 32, 8
EPOCHS = 60


class TeacherData(pl.LightningDataModule):
    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(1234)
        w1 = torch.randn(DIM, 64, generator=g) / DIM**0.5
        w2 = torch.randn(64, CLASSES, generator=g) / 8
        x = torch.randn(N_FULL + N_VAL, DIM, generator=g)
        y = (torch.tanh(x @ w1) @ w2).argmax(1)
        self.train_set = TensorDataset(x[:N_FULL], y[:N_FULL])
        self.val_set = TensorDataset(x[N_FULL:], y[N_FULL:])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=128, shuffle=True)

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
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main() -> None:
    run = current_run()
    torch.set_num_threads(1)
    kwargs = json.loads(os.environ["LS_BENCH_SWEEP"])
    sweep = ScalingSweep(monitor="val_err", reporter=False, **kwargs)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, callbacks=[sweep], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(Student(hidden=run.param("hidden", default=32)), datamodule=TeacherData())
    if run.is_controller:
        print(sweep.result.summary(), file=sys.stderr)


if __name__ == "__main__":
    main()
