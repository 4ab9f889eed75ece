"""A quiet one-epoch CPU Trainer, and the sample indices a loader yields: what the data tests compare."""

from __future__ import annotations

from typing import Any

from pytorch_lightning import Trainer
from torch.utils.data import DataLoader


def quick_trainer(**kwargs: Any) -> Trainer:
    """A CPU Trainer for one epoch without logger, checkpoints, progress bar or sanity check."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return Trainer(**{**defaults, **kwargs})


def seen_indices(loader: DataLoader) -> list[int]:
    """Every sample index one pass of ``loader`` yields, in order (batches of indices or ``{"idx": ...}``)."""
    out: list[int] = []
    for batch in loader:
        out.extend(int(i) for i in (batch["idx"] if isinstance(batch, dict) else batch))
    return out
