"""The DataModule wrapper: :class:`DataFraction` trains on a subset of a LightningDataModule's training data.

Everything but the training loader is the wrapped module's (hooks, attributes, hparams,
checkpoint state); ``train_dataloader()`` hands the wrapped loader to
:func:`lightning_scaling.data.loaders.make_fraction_loader`.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from lightning_utilities.core.overrides import is_overridden
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from lightning_scaling._checks import require_bool, require_same_lightning
from lightning_scaling.data.loaders import make_fraction_loader
from lightning_scaling.data.sizes import SizeFn, check_size_fn, size_array, sized_len, total_size
from lightning_scaling.data.stream import FractionIterable
from lightning_scaling.data.subset import FractionSubset
from lightning_scaling.sampling import as_count, as_fraction, seed64

__all__ = ["DataFraction"]


# ------------------------------------------------------------------------------------- DataModule
# hooks Lightning calls on a datamodule; forwarded only when the wrapped module overrides them, so
# Lightning's "is it overridden?" checks (val loader defined? transfer hook in model or datamodule?)
# answer exactly as they would for the wrapped module
_FORWARDED_HOOKS = (
    "prepare_data",
    "setup",
    "teardown",
    "val_dataloader",
    "test_dataloader",
    "predict_dataloader",
    "state_dict",
    "load_state_dict",
    "on_exception",
    "transfer_batch_to_device",
    "on_before_batch_transfer",
    "on_after_batch_transfer",
)


def _datamodule_base(datamodule: Any) -> type:
    """The ``LightningDataModule`` class in ``datamodule``'s MRO, of ``pytorch_lightning`` or ``lightning.pytorch``."""
    for cls in type(datamodule).__mro__:
        if cls.__name__ == "LightningDataModule" and cls.__module__.endswith("core.datamodule"):
            return cls
    raise TypeError(
        f"DataFraction wraps a LightningDataModule, got {type(datamodule).__name__}; "
        "for a plain DataLoader use fraction_dataloader(loader, fraction=...)"
    )


class DataFraction(LightningDataModule):
    """Wrap a LightningDataModule to train on a nested, deterministic subset of its training data.

    Validation, test and predict data and every other hook and attribute are the wrapped
    module's. ``train_dataloader()`` returns the wrapped training loader rebuilt over the subset.

    Args:
        datamodule: the ``LightningDataModule`` to wrap.
        fraction: share of the training set in ``(0, 1]``; ``k = max(1, floor(fraction * n + 1/2))``.
        size: absolute number of training samples instead of ``fraction``. With neither, the
            training loader is passed through unchanged (the full data).
        seed: selects the subset; subsets with one seed are nested across fractions and sizes.
        stratify: keep class proportions (still nested). Labels as an array (one per training
            sample), the name of a dataset attribute (``"targets"``), a callable
            ``dataset -> labels``, or ``per_sample(sample -> label)``.
        size_fn: the x-axis unit: a callable ``sample -> size`` (e.g. its token count) or an
            array of per-sample sizes; :attr:`train_size` is its sum over the subset.
        size_unit: name of that unit, for reports (``"samples"``, ``"tokens"``...).
        shard_iterable: iterable datasets only; see :class:`FractionIterable` (``shard``).
        contiguous: keep one block of consecutive samples instead of scattered ones (sequence data:
            text, time series, a batch sampler that walks the data in order such as Lightning's demo
            ``SequenceSampler``). Still nested (a smaller size's block lies inside a larger one's) and
            chosen by ``seed``; map-style data only, not with ``stratify``.

    The names ``fraction``, ``size``, ``seed`` and the report properties refer to the wrapper;
    the wrapped module itself is :attr:`datamodule`. Change the subset between runs with
    :meth:`set_fraction` (or by assigning ``fraction``/``size``/``seed``); it takes effect the
    next time Lightning requests the training loader. Lightning checkpoints store the wrapped
    module's ``state_dict`` under the key ``"DataFraction"``.

    Example:
        >>> from pytorch_lightning.demos.boring_classes import BoringDataModule
        >>> from lightning_scaling.data import DataFraction
        >>> dm = DataFraction(BoringDataModule(), fraction=0.25, seed=0)
        >>> dm.setup("fit")
        >>> len(dm.train_dataloader()), len(dm.val_dataloader()), dm.num_samples
        (16, 64, 16)
        >>> dm.set_fraction(0.5).train_dataloader().dataset.num_samples
        32
    """

    def __init__(
        self,
        datamodule: LightningDataModule,
        fraction: float | Fraction | None = None,
        size: int | None = None,
        seed: int = 0,
        stratify: Any = None,
        size_fn: SizeFn | None = None,
        size_unit: str = "samples",
        shard_iterable: bool = False,
        contiguous: bool = False,
    ) -> None:
        base = _datamodule_base(datamodule)
        require_bool("contiguous", contiguous)
        super().__init__()
        self._datamodule = datamodule
        self._fraction: float | Fraction | None = None
        self._size: int | None = None
        self._seed = 0
        self.set_fraction(fraction, size=size, seed=seed)
        check_size_fn(size_fn, size_unit)
        self._stratify = stratify
        self._size_fn = size_fn
        self._size_unit = size_unit
        self._shard_iterable = bool(shard_iterable)
        self._contiguous = contiguous
        self._train_dataset: Any = None
        for hook in _FORWARDED_HOOKS:
            if is_overridden(hook, datamodule, base):
                object.__setattr__(self, hook, getattr(datamodule, hook))

    # -------------------------------------------------------------------------- delegation
    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("_datamodule")
        if wrapped is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(wrapped, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # unknown public names go to the wrapped module, so e.g. the batch-size tuner setting
        # `datamodule.batch_size` changes the loader the wrapped module builds
        if name.startswith("_") or hasattr(type(self), name) or "_datamodule" not in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._datamodule, name, value)

    @property
    def datamodule(self) -> LightningDataModule:
        """The wrapped LightningDataModule."""
        return self._datamodule

    @property
    def trainer(self) -> Any:
        return self.__dict__.get("_trainer")

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        if trainer is not None:
            require_same_lightning("DataFraction", self, trainer)
        self.__dict__["_trainer"] = trainer
        if "_datamodule" in self.__dict__:
            self._datamodule.trainer = trainer

    def _forward_property(name: str) -> property:  # type: ignore[misc]
        def fget(self: DataFraction) -> Any:
            return getattr(self._datamodule, name)

        def fset(self: DataFraction, value: Any) -> None:
            # LightningDataModule.__init__ sets defaults before the wrapped module is attached
            if "_datamodule" in self.__dict__:
                setattr(self._datamodule, name, value)

        return property(fget, fset, doc=f"The wrapped module's ``{name}``.")

    prepare_data_per_node = _forward_property("prepare_data_per_node")
    allow_zero_length_dataloader_with_multiple_devices = _forward_property(
        "allow_zero_length_dataloader_with_multiple_devices"
    )
    # a private Lightning attribute (HyperparametersMixin's), read by the Trainer to decide whether to log
    # the datamodule's hparams: forwarded, never imported or called, so a rename upstream makes it inert
    _log_hyperparams = _forward_property("_log_hyperparams")
    del _forward_property

    @property
    def hparams(self) -> Any:
        return self._datamodule.hparams

    @property
    def hparams_initial(self) -> Any:
        return self._datamodule.hparams_initial

    def __repr__(self) -> str:
        what = f"size={self._size}" if self._size is not None else f"fraction={self._fraction}"
        return f"DataFraction({type(self._datamodule).__name__}, {what}, seed={self._seed})"

    # ---------------------------------------------------------------------------- settings
    def set_fraction(
        self, fraction: float | Fraction | None = None, size: int | None = None, seed: int | None = None
    ) -> DataFraction:
        """Choose the subset for the next ``train_dataloader()`` call; returns ``self``.

        Pass ``fraction`` or ``size`` (neither: the full training data), and optionally a new ``seed``.
        """
        if fraction is not None and size is not None:
            raise ValueError(f"pass either fraction= or size=, not both (got fraction={fraction!r}, size={size!r})")
        if fraction is not None:
            as_fraction(fraction)
        if size is not None and as_count(size, "size") < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        if seed is not None:
            seed64(seed)
            self._seed = seed
        self._fraction, self._size = fraction, size
        return self

    @property
    def fraction(self) -> float | Fraction | None:
        """Share of the training set to train on (``None`` when ``size`` is set or for all data)."""
        return self._fraction

    @fraction.setter
    def fraction(self, value: float | Fraction | None) -> None:
        self.set_fraction(value)

    @property
    def size(self) -> int | None:
        """Absolute number of training samples (``None`` when ``fraction`` is used)."""
        return self._size

    @size.setter
    def size(self, value: int | None) -> None:
        self.set_fraction(size=value)

    @property
    def seed(self) -> int:
        """Seed of the selection."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self.set_fraction(self._fraction, self._size, seed=value)

    @property
    def size_unit(self) -> str:
        """Unit of :attr:`train_size` (``"samples"`` unless a ``size_fn`` measures something else)."""
        return self._size_unit

    # ----------------------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        """The wrapped module's training loader, rebuilt over the selected subset."""
        loader = self._datamodule.train_dataloader()
        if (
            self._fraction is None
            and self._size is None
            and not isinstance(getattr(loader, "dataset", None), IterableDataset)
        ):
            dataset = loader.dataset if isinstance(loader, DataLoader) else None
            n = sized_len(dataset)
            if n is not None:
                size_array(self._size_fn, n)
            self._train_dataset = dataset
            return loader
        loader = make_fraction_loader(
            loader,
            self._fraction,
            self._size,
            self._seed,
            self._stratify if (self._fraction is not None or self._size is not None) else None,
            self._size_fn,
            self._size_unit,
            self._shard_iterable,
            self._contiguous,
        )
        self._train_dataset = loader.dataset
        return loader

    # ----------------------------------------------------------------------------- reports
    @property
    def train_dataset(self) -> Any:
        """Dataset of the last training loader built (``None`` before ``train_dataloader()``)."""
        return self._train_dataset

    @property
    def indices(self) -> np.ndarray | None:
        """Selected indices into the wrapped training dataset (map-style; ``None`` otherwise)."""
        ds = self._train_dataset
        return ds.indices if isinstance(ds, FractionSubset) else None

    @property
    def num_samples(self) -> int | None:
        """Number of training samples: exact for map-style data, one full pass for streams.

        ``None`` before ``train_dataloader()`` (and, for streams, before a full pass).
        """
        ds = self._train_dataset
        if isinstance(ds, (FractionSubset, FractionIterable)):
            return ds.num_samples
        return sized_len(ds) if ds is not None else None

    @property
    def train_size(self) -> float | None:
        """Training-set size in :attr:`size_unit` (``num_samples`` without a ``size_fn``)."""
        ds = self._train_dataset
        if isinstance(ds, (FractionSubset, FractionIterable)):
            return ds.train_size
        n = sized_len(ds) if ds is not None else None
        return None if n is None else total_size(ds, range(n), self._size_fn)

    @property
    def samples_seen(self) -> int | None:
        """Stream samples yielded so far in this process (iterable data; ``None`` for map-style).

        Includes batches prefetched but not yet trained on when training stops mid-pass.
        """
        ds = self._train_dataset
        return ds.samples_seen if isinstance(ds, FractionIterable) else None

    @property
    def size_seen(self) -> float | None:
        """``samples_seen`` in :attr:`size_unit` (iterable data; ``None`` for map-style)."""
        ds = self._train_dataset
        return ds.size_seen if isinstance(ds, FractionIterable) else None
