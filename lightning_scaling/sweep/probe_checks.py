"""What the probe run tells the controller before any run of the study starts.

The probe (one batch of the smallest run) knows the script and its data: whether the script adds
a ScalingSweep at all, and how long the training set is. Each finding here is a
:class:`~lightning_scaling.sweep.controller.SweepError` message raised before any run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning_scaling.sweep.plan import SweepPlan

__all__ = ["probe_without_record", "sizes_too_large"]


def probe_without_record(command: Sequence[str] | None, log_path: Path) -> str:
    """The message for a probe that exited 0 without a record: the script runs no ScalingSweep."""
    script = next((c for c in (command or [])[1:] if c.endswith(".py")), "the script")
    return (f"the probe run of {script} ended without a record (exit code 0): the script adds no ScalingSweep to the "
            "Trainer it fits (or never calls trainer.fit). Add ScalingSweep(...) with the same arguments to its "
            f"Trainer's callbacks; nothing else was started (its log: {log_path})")


def sizes_too_large(plan: SweepPlan, dataset_size: int | None) -> str | None:
    """Why ``sizes=`` do not fit the training set the probe saw (``dataset_size`` samples), or ``None``.

    >>> sizes_too_large(SweepPlan.build(sizes=[10, 20, 40, 80]), 50)
    'sizes=[80] exceed the training set, which has 50 samples (seen by the probe); use sizes up to 50, or fractions='
    """
    if plan.sizes is None or not isinstance(dataset_size, int):
        return None
    over = sorted(s for s in plan.sizes if s > dataset_size)
    if not over:
        return None
    return (f"sizes={over} exceed the training set, which has {dataset_size} samples (seen by the probe); use "
            f"sizes up to {dataset_size}, or fractions=")
