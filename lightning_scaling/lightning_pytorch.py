"""``ScalingSweep`` and ``DataFraction`` for projects that import ``lightning.pytorch``.

Lightning ships under two names, ``pytorch_lightning`` and ``lightning.pytorch``, and each Trainer
accepts only callbacks and datamodules of its own. The classes here are the package's classes,
also typed as the ``lightning.pytorch`` ones, so they work with either Trainer::

    import lightning.pytorch as L
    from lightning_scaling.lightning_pytorch import DataFraction, ScalingSweep

    trainer = L.Trainer(callbacks=[ScalingSweep(fractions=..., monitor="val_err")])

Importing this module needs the ``lightning`` package (``pip install lightning``).
"""

from __future__ import annotations

from types import ModuleType
from typing import ClassVar

try:
    import lightning.pytorch as L
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lightning_scaling.lightning_pytorch is for projects that import lightning.pytorch; install it with "
        "`pip install lightning`, or use `from lightning_scaling import ScalingSweep` with pytorch_lightning"
    ) from exc

from lightning_scaling.callbacks.scaling_sweep import ScalingSweep as _ScalingSweep
from lightning_scaling.data import DataFraction as _DataFraction

__all__ = ["DataFraction", "ScalingSweep"]


# The ignore[misc] on both twins: the two namespaces ship the same classes under two import paths, so mypy
# sees two unrelated bases whose hooks (or DataModule methods) it cannot prove identical; at run time the
# package's class comes first in the MRO and the lightning.pytorch base only makes isinstance checks pass.
class ScalingSweep(_ScalingSweep, L.Callback):  # type: ignore[misc]
    """:class:`lightning_scaling.ScalingSweep` for ``lightning.pytorch`` Trainers (same arguments)."""

    _pl: ClassVar[ModuleType] = L


class DataFraction(_DataFraction, L.LightningDataModule):  # type: ignore[misc]
    """:class:`lightning_scaling.DataFraction` for ``lightning.pytorch`` Trainers (same arguments)."""
