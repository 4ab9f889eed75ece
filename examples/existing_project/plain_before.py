"""Train a small MLP on scikit-learn's digits with PyTorch Lightning (see README.md).

plain_before.py is the project as it was; plain_after.py is the same project, run as a scaling study.
"""

import argparse

import pytorch_lightning as pl
from digits_project import DigitsDataModule, DigitsMLP


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--root", default=".", help="Lightning's default_root_dir")
    args = parser.parse_args()

    model = DigitsMLP(hidden=args.hidden)
    dm = DigitsDataModule()
    trainer = pl.Trainer(max_epochs=args.max_epochs, default_root_dir=args.root)
    trainer.fit(model, datamodule=dm)


if __name__ == "__main__":
    main()
