"""Train a small MLP on scikit-learn's digits with LightningCLI (see README.md).

    python cli_before.py fit                                # the project as it was
    python cli_after.py fit --config sweep.yaml             # the same project, run as a scaling study
"""

from digits_project import DigitsDataModule, DigitsMLP
from pytorch_lightning.cli import LightningCLI


def main() -> None:
    LightningCLI(DigitsMLP, DigitsDataModule, trainer_defaults={"max_epochs": 50})


if __name__ == "__main__":
    main()
