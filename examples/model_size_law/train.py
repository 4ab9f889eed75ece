r"""Both of the paper's laws in closed form: does the sweep recover the data *and* the model-size exponent?

Hestness et al. (2017) report two laws: the error of the best model falls as
:math:`\alpha m^{\beta_g}`, and the best model size grows as :math:`\sigma m^{\beta_p}`. Here both
exponents are known exactly.

**The task.** Inputs :math:`x \sim N(0, I)` with infinitely many features; a teacher
:math:`y = \sum_j w_j x_j + \varepsilon`, :math:`\varepsilon \sim N(0, \sigma^2)`, whose coefficients
decay as :math:`|w_j| \approx \sqrt{2a-1}\, j^{-a}`: exactly, :math:`w_j^2 = (j-1)^{1-2a} - j^{1-2a}`
(:math:`w_1 = 1`), so the weight beyond feature :math:`p` is :math:`B(p) = \sum_{j>p} w_j^2 = p^{1-2a}`.
The *model of size p* is least squares on the first :math:`p` features (:math:`p` parameters per
output), solved in closed form on :math:`n` samples. Its test error against the clean teacher is
:math:`\|\hat w - w_{1..p}\|^2 + B(p)` (inputs are standard normal).

**The closed form.** The dropped features act on the student as extra noise :math:`N(0, B(p))`,
independent of the kept ones, so :math:`\hat w - w_{1..p} = (X^\top X)^{-1} X^\top e` with
:math:`e \sim N(0, (\sigma^2 + B(p)) I)`, and :math:`E\,\mathrm{tr}(X^\top X)^{-1} = p / (n - p - 1)`
(inverse Wishart). Hence, exactly,

.. math::  E[\mathrm{err}(n, p)] = B(p) + (\sigma^2 + B(p)) \, \frac{p}{n - p - 1}.

For :math:`n \gg p` it is :math:`p^{1-2a} + \sigma^2 p / n`, smallest at
:math:`p^*(n) = ((2a - 1)\, n / \sigma^2)^{1/(2a)}`, where it equals
:math:`\tfrac{2a}{2a-1} \sigma^2 p^* / n`. So

.. math::  \beta_p = \frac{1}{2a}, \qquad \beta_g = -\frac{2a - 1}{2a} = \beta_p - 1 .

With :math:`a = 1`: :math:`\beta_p = 1/2` and :math:`\beta_g = -1/2` (quadruple the data: the best
model doubles, the error halves), :math:`\mathrm{err}^* = 2\sigma n^{-1/2}`, no floor.

**The study** is the paper's: 8 data sizes doubling from 1,024 to 131,072 samples (nested subsets),
and at every size the model-size grid :math:`p \in \{2, 4, \dots, 128\}` (doubling), one
``ScalingSweep`` run per (size, p). The sweep fits the learning curve of the best model per size
and the model-size law of its parameter count (:math:`K p`: each model has ``K`` outputs, which
average the noise of one draw). :math:`\sigma^2 = 32\sqrt 2` puts :math:`p^*` a quarter octave from
the nearest grid point at every size, so the best grid point is never a near-tie of two (each
neighbour is >= 12% worse in expectation) and the best-per-size error is a constant 3% above the
continuous optimum. The features beyond the largest model (``P``) are drawn as what they are to
every student, Gaussian label noise of variance :math:`B(P)`.

    python examples/model_size_law/train.py          # 56 runs, about a minute on 2 cores

It prints the measured against the closed-form error and best p at every size, then the true and
fitted :math:`\beta_g` and :math:`\beta_p` with their 95% intervals.
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

A = 1.0  # teacher decay |w_j| ~ j^-a
SIGMA2 = 32 * math.sqrt(2)  # label noise variance
K = 256  # outputs: K independent teachers (random signs), each model has K * p parameters
SIZES = [1024 * 2**k for k in range(8)]  # training samples, doubling
WIDTHS = [2**k for k in range(1, 8)]  # p, the model-size grid, doubling: 2 .. 128
P, N_TRAIN = WIDTHS[-1], SIZES[-1]
BETA_P, BETA_G = 1 / (2 * A), -(2 * A - 1) / (2 * A)


def tail(p: float) -> float:
    """``B(p)``: the teacher's weight beyond feature ``p`` (exact, by construction of the coefficients)."""
    return p ** (1 - 2 * A)


def expected_error(n: float, p: float) -> float:
    """The closed-form expected test error of least squares on the first ``p`` features, ``n`` samples."""
    return tail(p) + (SIGMA2 + tail(p)) * p / (n - p - 1)


def best_width(n: float) -> int:
    """The grid's best ``p`` at ``n`` samples, in expectation."""
    return min(WIDTHS, key=lambda p: expected_error(n, p))


def teacher(seed: int = 0) -> torch.Tensor:
    """The first ``P`` teacher coefficients of each of the ``K`` outputs, ``(P, K)``."""
    j = torch.arange(1, P + 1, dtype=torch.float64)
    w2 = torch.ones(P, dtype=torch.float64)
    w2[1:] = (j[1:] - 1) ** (1 - 2 * A) - j[1:] ** (1 - 2 * A)
    signs = torch.randint(0, 2, (P, K), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    return w2.sqrt()[:, None] * signs


def make_data(seed: int = 0) -> TensorDataset:
    """``N_TRAIN`` samples of the first ``P`` features and ``K`` noisy targets."""
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N_TRAIN, P, generator=g)
    # features beyond P reach every student as Gaussian noise of variance B(P): draw them as such
    noise = torch.randn(N_TRAIN, K, generator=g) * math.sqrt(SIGMA2 + tail(P))
    return TensorDataset(x, x @ teacher(seed).float() + noise)


class LeastSquares(pl.LightningModule):
    """Least squares on the first ``p`` features, solved exactly on the whole (subsampled) training set."""

    def __init__(self, p: int, seed: int = 0) -> None:
        super().__init__()
        self.p = p
        self.linear = nn.Linear(p, K, bias=False)
        self.register_buffer("teacher", teacher(seed)[:p].T.float(), persistent=False)
        self.automatic_optimization = False  # no optimiser: the estimator's error, not an optimiser's

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = x[:, : self.p].double()
        w = torch.linalg.solve(x.T @ x, x.T @ y.double())
        with torch.no_grad():
            self.linear.weight.copy_(w.T)

    def validation_step(self, batch, batch_idx):
        # the exact test error over standard-normal inputs (no test-set noise), mean over the K outputs
        excess = (self.linear.weight.double() - self.teacher.double()).pow(2).sum(1).mean()
        self.log("val_err", excess + tail(self.p))

    def configure_optimizers(self):
        return None


def main(argv: list[str] | None = None) -> SweepResult | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="runs/model_size_law")
    args = parser.parse_args(argv)

    run = current_run()
    torch.set_num_threads(1)
    sweep = ScalingSweep(name="model_size_law", sizes=SIZES, grid={"p": WIDTHS}, monitor="val_err", mode="min")
    model = LeastSquares(p=run.param("p", default=WIDTHS[-1]))
    trainer = pl.Trainer(
        default_root_dir=args.root, accelerator="cpu", devices=1, max_epochs=1, callbacks=[sweep], logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    # the controller only plans and launches: it needs no data; a run builds it (same seed in every run)
    train = make_data() if run.is_run else TensorDataset(torch.zeros(1, P), torch.zeros(1, K))
    # one batch holds the whole subsampled training set; validation needs no data, one dummy batch
    trainer.fit(model, train_dataloaders=DataLoader(train, batch_size=N_TRAIN),
                val_dataloaders=DataLoader(TensorDataset(torch.zeros(1)), batch_size=1))
    if not run.is_controller:
        return None
    result = sweep.result
    assert result is not None  # the controller always has one after fit
    report(result, Path(args.root) / "scaling_sweeps" / "model_size_law")
    return result


def report(result: SweepResult, folder: Path) -> None:
    print("\n=== model-size law, known answer: least squares on the first p features, |w_j| ~ j^-a, a = 1 ===")
    print("      n   best p (closed form)   error at best p (closed form)   worst |measured/closed form - 1|")
    for row in result.best:
        n = round(row["train_size"])
        p = row["params"]["p"]
        runs = [r for r in result.runs if r.get("status") == "ok" and r["size"] == n]
        worst = max(abs(r["best_value"] / expected_error(n, r["params"]["p"]) - 1) for r in runs)
        print(f"  {n:6d}   {p:4d} ({best_width(n):4d})           {row['error']:.5f} ({expected_error(n, p):.5f})"
              f"                {worst:.1%} over {len(runs)} models")
    law, size_law = result.law, result.model_size_law
    if law is not None:
        lo, hi = law.intervals[law.form.exponent]
        print(f"beta_g: fitted {law.exponent:.3f} [{lo:.3f}, {hi:.3f}] (95%); true {BETA_G:.3f} "
              f"-> {'recovered' if lo <= BETA_G <= hi else 'NOT recovered'}")
    if size_law is not None:
        lo, hi = size_law.intervals["beta_p"]
        print(f"beta_p: fitted {size_law.beta_p:.3f} [{lo:.3f}, {hi:.3f}] (95%); true {BETA_P:.3f} "
              f"-> {'recovered' if lo <= BETA_P <= hi else 'NOT recovered'}")
    for note in result.notes:
        print(f"note: {note}")
    print(f"result: {folder / 'result.json'}")
    print(f"figures: {folder / 'learning_curve.png'}, {folder / 'model_size_law.png'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
