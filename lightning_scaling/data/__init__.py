"""Train on a nested, deterministic fraction of any LightningDataModule or DataLoader."""

from lightning_scaling.data.datamodule import (
    DataFraction,
    FractionIterable,
    FractionSubset,
    SizeFn,
    fraction_dataloader,
    per_sample,
)

__all__ = ["DataFraction", "FractionIterable", "FractionSubset", "SizeFn", "fraction_dataloader", "per_sample"]
