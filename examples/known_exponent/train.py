r"""A task whose learning curve is known in closed form: does the pipeline recover its exponent?

Teacher-student linear regression. Inputs :math:`x \sim N(0, I_d)`, targets
:math:`y = W^* x + \varepsilon` with :math:`k` outputs and noise :math:`\varepsilon \sim N(0, \sigma^2 I_k)`.
The student is the same linear map, trained to convergence (full-batch L-BFGS) on n samples;
its generalization error, measured against the teacher on held-out inputs, is the excess risk of
least squares, whose expectation is known exactly:

.. math::  E[\varepsilon(n)] = \sigma^2 \, d / (n - d - 1)  \;\xrightarrow{n \gg d}\;  \sigma^2 d \, n^{-1}

so the true exponent is :math:`\beta = -1` with no irreducible floor. The whole study goes through
the package as any user's would: ``ScalingSweep`` over nested subsets (the callback subsamples the
training loader itself here; no ``DataFraction``), one process per run, then the fit with its
bootstrap interval, which must contain -1.

    python examples/known_exponent/train.py           # 7 sizes from 512 to 32,768 samples, ~30 s
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_scaling import ScalingSweep, SweepResult, current_run

D, K, SIGMA = 8, 256, 0.5  # inputs, outputs (k outputs average the noise of one draw), label noise
N_TRAIN, N_VAL = 32768, 8192


def expected_error(n: float) -> float:
    """The closed-form expected excess risk of least squares at n samples (per output)."""
    return SIGMA**2 * D / (n - D - 1)


def make_data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(K, D, generator=g) / math.sqrt(D)
    x_train, x_val = torch.randn(N_TRAIN, D, generator=g), torch.randn(N_VAL, D, generator=g)
    y_train = x_train @ teacher.T + SIGMA * torch.randn(N_TRAIN, K, generator=g)
    # validation targets are the teacher's clean outputs: the error measured is the excess risk
    return TensorDataset(x_train, y_train), TensorDataset(x_val, x_val @ teacher.T)


class Student(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(D, K, bias=False)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.linear(x), y)

    def validation_step(self, batch, batch_idx):
        x, y_clean = batch
        # per-output squared error against the teacher: sum over outputs / K = ||W - W*||^2_F / K
        self.log("val_excess", (self.linear(x) - y_clean).pow(2).sum(1).mean() / K)

    def configure_optimizers(self):
        # a convex problem solved to convergence: the measured error is the estimator's, not the optimiser's
        return torch.optim.LBFGS(self.parameters(), lr=1.0, max_iter=500, history_size=50,
                                 tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe")


def main(argv: list[str] | None = None) -> SweepResult | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/known_exponent")
    parser.add_argument("--sizes", type=int, default=7, help="number of geometric data sizes, 1/64 .. 1")
    args = parser.parse_args(argv)

    run = current_run()
    run.seed_everything()  # in a run: the run's seed (the controller: nothing)
    torch.set_num_threads(1)
    train, val = make_data()
    sweep = ScalingSweep(name="known_exponent", fractions=ScalingSweep.geometric(1 / 64, 1.0, num=args.sizes),
                         monitor="val_excess", mode="min")
    trainer = pl.Trainer(
        default_root_dir=args.root, accelerator="cpu", devices=1, max_epochs=3, callbacks=[sweep], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    # one batch holds the whole (subsampled) training set: L-BFGS wants the full objective
    trainer.fit(Student(), train_dataloaders=DataLoader(train, batch_size=N_TRAIN),
                val_dataloaders=DataLoader(val, batch_size=N_VAL))
    if not run.is_controller:
        return None
    result = sweep.result
    law = result.law
    lo, hi = law.intervals["beta"]
    sizes = law.sizes
    print("\n=== known exponent: least squares, E[err] = sigma^2 d / (n - d - 1) ===")
    for m, e in zip(sizes, law.errors):
        print(f"  n = {m:6.0f}: measured {e:.5f}   closed form {expected_error(m):.5f}")
    print(f"fitted beta = {law.exponent:.3f} [{lo:.3f}, {hi:.3f}] (95%); true beta = -1 "
          f"-> {'recovered' if lo <= -1 <= hi else 'NOT recovered'}")
    print(f"fitted floor gamma = {law.floor:.2e} (true: 0)")
    print(f"result: {Path(args.root) / 'scaling_sweeps' / 'known_exponent' / 'result.json'}")
    sys.stdout.flush()
    return result


if __name__ == "__main__":
    main()
