"""lightning-scaling: data- and model-scaling studies as one PyTorch Lightning callback.

The numerical core (:mod:`lightning_scaling.laws`, :mod:`lightning_scaling.sampling`) is plain
numpy/scipy. The Lightning-facing classes are imported lazily, so that
``import lightning_scaling.laws`` never imports torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightning_scaling._version import __version__

# public name -> module that defines it; resolved on first attribute access (PEP 562)
_LAZY = {
    "ScalingSweep": "lightning_scaling.callbacks.scaling_sweep",
    "current_run": "lightning_scaling.sweep.context",
    "run_sweep": "lightning_scaling.sweep.controller",
    "SweepResult": "lightning_scaling.sweep.result",
    "DataFraction": "lightning_scaling.data",
    "fraction_dataloader": "lightning_scaling.data",
    "fit_learning_curve": "lightning_scaling.laws",
    "LearningCurveFit": "lightning_scaling.laws",
    "WandbReporter": "lightning_scaling.reporting.wandb",
    "Adaptive": "lightning_scaling.sweep.adaptive",
    "Target": "lightning_scaling.sweep.adaptive",
}

if TYPE_CHECKING:
    from lightning_scaling.callbacks.scaling_sweep import ScalingSweep
    from lightning_scaling.data import DataFraction, fraction_dataloader
    from lightning_scaling.laws import LearningCurveFit, fit_learning_curve
    from lightning_scaling.reporting.wandb import WandbReporter
    from lightning_scaling.sweep.adaptive import Adaptive, Target
    from lightning_scaling.sweep.context import current_run
    from lightning_scaling.sweep.controller import run_sweep
    from lightning_scaling.sweep.result import SweepResult

__all__ = [
    "Adaptive",
    "DataFraction",
    "LearningCurveFit",
    "ScalingSweep",
    "SweepResult",
    "Target",
    "WandbReporter",
    "__version__",
    "current_run",
    "fit_learning_curve",
    "fraction_dataloader",
    "run_sweep",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_scaling' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
