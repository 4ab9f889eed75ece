"""Train a small MLP on scikit-learn's digits with PyTorch Lightning (see README.md).

plain_before.py is the project as it was; plain_after.py is the same project, run as a scaling study.
"""

import argparse

import pytorch_lightning as pl
from digits_project import DigitsDataModule, DigitsMLP

from lightning_scaling import ScalingSweep, current_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--root", default=".", help="Lightning's default_root_dir")
    parser.add_argument("--fractions", type=float, nargs="+", default=ScalingSweep.geometric(1 / 32, 1.0, num=6))
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256], help="hidden sizes searched")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per (data fraction, width)")
    args = parser.parse_args()
    args.hidden = current_run().param("hidden", default=args.hidden)  # each run's width from the grid
    current_run().seed_everything()  # each run's seed (in the script you start: nothing)

    model = DigitsMLP(hidden=args.hidden)
    dm = DigitsDataModule()
    sweep = ScalingSweep(name="digits", fractions=args.fractions, grid={"hidden": args.widths}, seeds=args.seeds,
                         monitor="val_err")
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root, callbacks=[sweep])
    trainer.fit(model, datamodule=dm)
    if current_run().is_controller:  # the runs themselves skip this
        print(sweep.result.law)


if __name__ == "__main__":
    main()
