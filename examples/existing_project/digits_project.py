"""The existing project: scikit-learn's digits and a small MLP classifier, shared by the four scripts.

``load_digits`` ships with scikit-learn (1,797 8x8 grey-scale images of the digits 0-9), so nothing
is downloaded. The split is stratified and fixed: 1,297 training and 500 validation images.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class DigitsDataModule(pl.LightningDataModule):
    """Digits as float tensors in [0, 1]; a deterministic stratified train/val split."""

    def __init__(self, batch_size: int = 32, val_size: int = 500, split_seed: int = 0) -> None:
        super().__init__()
        self.batch_size, self.val_size, self.split_seed = batch_size, val_size, split_seed

    def setup(self, stage: str) -> None:
        x, y = load_digits(return_X_y=True)  # pixels are integers 0..16
        x_train, x_val, y_train, y_val = train_test_split(
            x / 16.0, y, test_size=self.val_size, stratify=y, random_state=self.split_seed)
        self.train_set = TensorDataset(torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train))
        self.val_set = TensorDataset(torch.tensor(x_val, dtype=torch.float32), torch.tensor(y_val))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=500)


class DigitsMLP(pl.LightningModule):
    """64 pixels -> ``hidden`` ReLU units -> 10 classes; logs ``val_err`` (top-1 error) and ``val_loss``."""

    def __init__(self, hidden: int = 64, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_err", (logits.argmax(1) != y).float().mean(), prog_bar=True)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
