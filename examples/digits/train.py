"""Scaling study on scikit-learn's bundled digits: the paper's image-classification finding on a laptop.

Hestness et al. (2017) measured top-1 and top-5 ImageNet error against training-set size and found
power laws (exponents -0.309 and -0.488), with the best model size growing with the data. This
script repeats that study on the 1,797 8x8 digits that ship with scikit-learn: an MLP at several
widths (the model-size search), trained on nested subsets from 3% to 100% of the training split,
two seeds each, top-1 and top-2 error from torchmetrics (with 10 classes top-2 plays the part of
ImageNet's top-5). One ``ScalingSweep`` callback runs all of it over every CPU core.

    python examples/digits/train.py              # the README's main job, ~3 minutes on 2 cores
    python examples/digits/train.py --smoke      # a tiny configuration, same code path
    python examples/digits/train.py --dataset mnist --data-dir ~/data/mnist --download   # real MNIST

It prints the fitted law with intervals, the data needed to halve the error, the top-2 exponent,
and where ``result.json``, the figure and the offline W&B run are.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lightning_scaling import DataFraction, ScalingSweep, SweepResult, current_run

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}


# -- data ------------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An array from an IDX file (MNIST's format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_mnist(data_dir: Path, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 60,000 training images (flattened, in [0, 1]) and labels from ``data_dir``."""
    arrays = {}
    for key, name in MNIST_FILES.items():
        found = [p for p in (data_dir / name, data_dir / f"{name}.gz") if p.exists()]
        if not found:
            if not download:
                raise FileNotFoundError(f"{name}(.gz) not found in {data_dir}; pass --download to fetch MNIST")
            data_dir.mkdir(parents=True, exist_ok=True)
            target = data_dir / f"{name}.gz"
            urllib.request.urlretrieve(f"{MNIST_URL}{name}.gz", target)
            found = [target]
        arrays[key] = read_idx(found[0])
    images = arrays["images"].reshape(len(arrays["images"]), -1).astype(np.float32) / 255.0
    return images, arrays["labels"].astype(np.int64)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)


class DigitsData(pl.LightningDataModule):
    """Digits (or MNIST) with a fixed, stratified validation split."""

    def __init__(self, dataset: str = "digits", data_dir: str | None = None, download: bool = False,
                 val_size: int | float = 597, batch_size: int = 32) -> None:
        super().__init__()
        self.dataset, self.data_dir, self.download = dataset, data_dir, download
        self.val_size, self.batch_size = val_size, batch_size

    def prepare_data(self) -> None:
        if self.dataset == "mnist":
            load_mnist(Path(self.data_dir or "data/mnist"), download=self.download)

    def setup(self, stage: str) -> None:
        from sklearn.model_selection import train_test_split

        x, y = load_digits_arrays() if self.dataset == "digits" else load_mnist(Path(self.data_dir or "data/mnist"))
        # the same validation images in every run: only the training subset changes
        xt, xv, yt, yv = train_test_split(x, y, test_size=self.val_size, stratify=y, random_state=0)
        self.train_set = TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt))
        self.val_set = TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv))
        self.num_features = x.shape[1]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=1024)


# -- model -----------------------------------------------------------------------------------------
class MLP(pl.LightningModule):
    def __init__(self, width: int = 64, num_features: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(num_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 10))
        self.top1 = MulticlassAccuracy(num_classes=10, top_k=1, average="micro")
        self.top2 = MulticlassAccuracy(num_classes=10, top_k=2, average="micro")

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.top1.update(logits, y)
        self.top2.update(logits, y)
        self.log("val_loss", nn.functional.cross_entropy(logits, y))

    def on_validation_epoch_end(self):
        self.log("val_top1_err", 1 - self.top1.compute())
        self.log("val_top2_err", 1 - self.top2.compute())
        self.top1.reset()
        self.top2.reset()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


# -- the study -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/digits", help="Trainer root dir; the sweep folder is inside")
    parser.add_argument("--smoke", action="store_true", help="tiny configuration (CI): 4 sizes, 2 widths, 1 seed")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600, help="training steps per run, at every data size")
    parser.add_argument("--no-wandb", action="store_true", help="no offline W&B run (results stay in the folder)")
    parser.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (with --dataset mnist)")
    parser.add_argument("--download", action="store_true", help="download MNIST into --data-dir if missing")
    args = parser.parse_args(argv)

    if args.smoke:
        fractions, widths, seeds, steps = ScalingSweep.geometric(1 / 8, 1.0, num=4), [8, 64], 1, 60
    else:
        # 37 .. 1,200 training images in the paper's geometric steps
        fractions = ScalingSweep.geometric(1 / 32, 1.0, num=6)
        widths, seeds, steps = [8, 32, 128], args.seeds, args.steps

    run = current_run()
    run.seed_everything()  # in a run: each seed starts from its own weights (the controller: nothing)
    dm = DigitsData(args.dataset, args.data_dir, args.download, val_size=597 if args.dataset == "digits" else 10_000)
    num_features = 64 if args.dataset == "digits" else 784
    model = MLP(width=run.param("width", default=widths[-1]), num_features=num_features)
    sweep = ScalingSweep(
        name=f"{args.dataset}_smoke" if args.smoke else args.dataset,
        fractions=fractions, grid={"width": widths}, seeds=seeds,
        monitor="val_top1_err", mode="min", bootstrap=300 if args.smoke else 1000,
    )
    logger = False if args.no_wandb else WandbLogger(project="lightning-scaling-examples", save_dir=args.root,
                                                     offline=True)
    trainer = pl.Trainer(
        default_root_dir=args.root, accelerator="cpu", devices=1, callbacks=[sweep], logger=logger,
        # the same number of steps at every data size; validation every few steps, also within epochs
        max_steps=steps, max_epochs=-1, val_check_interval=max(steps // 12, 5), check_val_every_n_epoch=None,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=DataFraction(dm))
    if run.is_controller:
        report(sweep.result, Path(args.root) / "scaling_sweeps" / sweep.name, logger)


def report(result: SweepResult, folder: Path, logger: WandbLogger | bool) -> None:
    # result.summary() was printed above by the sweep; here what the paper would ask next
    top2 = SweepResult.from_records(result.runs, monitor="val_top1_err", mode="min", metric="val_top2_err")
    print("\n=== digits scaling study ===")
    if result.law is not None and not result.law.supported:  # no exponent to report: say why
        print(f"top-1 error law: {result.law}")
    elif result.law is not None:
        print(f"top-1 error law: {result.law.equation()}")
        full = float(result.law.errors[-1])
        print(f"data needed to halve the top-1 error of the full training set ({full:.4f} -> {full / 2:.4f}): "
              f"{result.law.data_needed(full / 2)} samples")
        beta = result.law.intervals[result.law.form.exponent]
        print(f"top-1 exponent {result.law.exponent:.3f} [{beta[0]:.3f}, {beta[1]:.3f}]  (paper, ImageNet: -0.309)")
    if top2.law is not None and top2.law.supported:
        beta = top2.law.intervals[top2.law.form.exponent]
        print(f"top-2 exponent {top2.law.exponent:.3f} [{beta[0]:.3f}, {beta[1]:.3f}]  "
              "(paper, ImageNet top-5: -0.488, steeper than top-1)")
    print(model_size_line(result))
    print(f"\nresult:  {folder / 'result.json'}")
    print(f"figure:  {folder / 'learning_curve.png'}")
    if result.model_size_law is not None:
        print(f"figure:  {folder / 'model_size_law.png'}")
    if isinstance(logger, WandbLogger):
        print(f"W&B (offline): {Path(logger.experiment.dir).parent}   (upload: wandb sync <that folder>)")
    sys.stdout.flush()


def model_size_line(result: SweepResult) -> str:
    """The model-size law, or why there is none, in terms a user can act on."""
    law = result.model_size_law
    if law is not None:
        lo, hi = law.intervals["beta_p"]
        return (f"model-size law: {law}; beta_p {law.beta_p:.3f} [{lo:.3f}, {hi:.3f}]  "
                "(paper: the best model grows sublinearly, beta_p about 0.5-0.8)")
    if not result.best:
        return "no model-size law: no run finished"
    # grid points from the smallest model to the largest, by parameter count
    counts = {json.dumps(r.get("params") or {}, sort_keys=True): r.get("trainable_params") or 0
              for r in result.runs if r.get("status") == "ok"}
    grid = sorted(counts, key=counts.__getitem__)
    winners = {json.dumps(b["params"], sort_keys=True) for b in result.best}
    if len(grid) < 2:
        return "no model-size law: the grid has one model; search several widths to measure it"
    if len(winners) > 1:
        return ("no model-size law: the best model changed with data but not steadily enough to fit "
                f"({'; '.join(result.notes) or 'see result.json'}); add seeds or data sizes")
    (only,) = winners
    label = ", ".join(f"{k}={v}" for k, v in json.loads(only).items())
    if only == grid[-1]:
        return (f"no model-size law: the largest model ({label}, {result.best[0]['trainable_params']:,} parameters) "
                "was best at every data size: the best size is at or beyond the grid's edge and cannot grow "
                "within it. On scikit-learn's digits a wider MLP kept lowering top-1 error even on the smallest "
                "subsets in our runs (width 512 beat 8-128 at 75 to 1,200 images, also without weight decay and "
                "with the final instead of the best value), so wider widths will not show the law on this metric; "
                "a loss that punishes overconfident models (monitor='val_loss') or a task where capacity can hurt "
                "may. examples/model_size_law/train.py measures the law where it is known (beta_p = 1/2); "
                "examples/char_lm/train.py --model-size measures it on real text, each run scored by its last "
                "validation loss (ScalingSweep(select='last'))")
    if only == grid[0]:
        return (f"no model-size law: the smallest model ({label}) was best at every data size: add smaller models "
                "to the grid, or larger data sizes")
    return (f"no model-size law: the same model ({label}) was best at every data size: the data range is too narrow "
            "for the best size to move; add larger data sizes or a finer grid of widths")


if __name__ == "__main__":
    os.environ.setdefault("WANDB_SILENT", "true")
    main()
