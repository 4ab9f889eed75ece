"""Where a sweep's results go besides its folder: Weights & Biases."""

from lightning_scaling.reporting.wandb import ENV_WANDB, WandbReporter

__all__ = ["ENV_WANDB", "WandbReporter"]
