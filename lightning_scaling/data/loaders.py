"""Where a run's data fraction is applied: a ``DataLoader`` rebuilt, same class and settings, over the subset.

:func:`fraction_dataloader` is the public entry; :class:`~lightning_scaling.data.DataFraction`
calls :func:`make_fraction_loader` on its wrapped module's training loader. The loader is
re-created with Lightning's own re-instantiation (DataLoader subclasses, custom batch samplers),
a Lightning private API kept with the others in :mod:`lightning_scaling.lightning_internals`;
a plain ``DataLoader`` is rebuilt by hand when that API is missing or fails.
"""

from __future__ import annotations

import inspect
from fractions import Fraction
from typing import Any

from torch.utils.data import BatchSampler, DataLoader, IterableDataset, Sampler

from lightning_scaling._checks import require_bool
from lightning_scaling.data.sizes import SizeFn, check_size_fn
from lightning_scaling.data.stream import FractionIterable
from lightning_scaling.data.subset import FractionSubset, rebatch, subset_of_loader

__all__ = ["fraction_dataloader", "make_fraction_loader", "rebatched_loader", "rebuild_loader"]

# DataLoader settings a plain rebuild copies (those this torch version accepts)
_LOADER_SETTINGS = (
    "num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn", "multiprocessing_context",
    "generator", "prefetch_factor", "persistent_workers", "pin_memory_device", "in_order",
)


def _swap_dataset(loader: DataLoader, args: tuple, kwargs: dict, dataset: Any) -> tuple[tuple, dict]:
    old = loader.dataset
    found = any(a is old for a in args) or any(v is old for v in kwargs.values())
    args = tuple(dataset if a is old else a for a in args)
    kwargs = {k: (dataset if v is old else v) for k, v in kwargs.items()}
    if not found:
        kwargs["dataset"] = dataset
    return args, kwargs


def _loader_settings(loader: DataLoader) -> dict[str, Any]:
    """The settings of ``loader`` a rebuilt plain ``DataLoader`` copies (those this torch version accepts)."""
    accepted = inspect.signature(DataLoader.__init__).parameters
    return {k: getattr(loader, k) for k in _LOADER_SETTINGS if k in accepted and hasattr(loader, k)}


def _plain_rebuild(loader: DataLoader, dataset: Any, sampler: Sampler | None) -> DataLoader:
    kwargs = _loader_settings(loader)
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=loader.batch_size, drop_last=loader.drop_last, **kwargs)
    if loader.batch_sampler is None:
        return DataLoader(dataset, batch_size=None, sampler=sampler, **kwargs)
    if type(loader.batch_sampler) is BatchSampler:
        return DataLoader(dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, **kwargs)
    raise TypeError(f"cannot rebuild a DataLoader with the custom batch sampler {type(loader.batch_sampler)}")


def rebuild_loader(loader: DataLoader, dataset: Any, sampler: Sampler | None) -> DataLoader:
    """Re-create ``loader`` (same class and settings) over ``dataset`` with ``sampler``."""
    try:
        # the one Lightning private API data/ needs, kept with the others (lazy: no Lightning import at import time)
        from lightning_scaling.lightning_internals import reinstantiate_loader

        rebuilt = reinstantiate_loader(loader, sampler, lambda a, k: _swap_dataset(loader, a, k, dataset))
    except Exception as err:
        plain_batches = loader.batch_sampler is None or type(loader.batch_sampler) is BatchSampler
        if type(loader) is DataLoader and plain_batches:
            return _plain_rebuild(loader, dataset, sampler)
        # Lightning keeps the constructor's arguments of loaders created inside a hook: that advice is for the others
        where = ("" if hasattr(loader, "__pl_saved_kwargs")
                 else "Create the loader inside train_dataloader() of your LightningDataModule, ")
        raise TypeError(
            f"DataFraction could not re-create your {type(loader).__name__} over the training subset: {err} "
            f"{where}{'m' if where else 'M'}ake its __init__ accept `dataset` (and `sampler`), or return a plain "
            "torch DataLoader."
        ) from err
    return _plain_rebuild(loader, dataset, sampler) if rebuilt is None else rebuilt


def rebatched_loader(loader: DataLoader, subset: FractionSubset) -> DataLoader:
    """``loader`` over ``subset`` with its custom batch sampler (one without ``.sampler``) rebuilt on the subset."""
    batch_sampler = rebatch(loader.batch_sampler, loader.dataset, subset)
    if type(loader) is not DataLoader:
        raise TypeError(
            f"DataFraction rebuilt your batch sampler {type(loader.batch_sampler).__name__} on the training subset, "
            f"but cannot re-create the DataLoader subclass {type(loader).__name__} around it; return a plain torch "
            "DataLoader, or build the batch sampler on a `sampler` argument (like BatchSampler)"
        )
    kwargs = _loader_settings(loader)
    return DataLoader(subset, batch_sampler=batch_sampler, **kwargs)


def make_fraction_loader(
    loader: Any,
    fraction: float | Fraction | None,
    size: int | None,
    seed: int,
    stratify: Any,
    size_fn: SizeFn | None,
    size_unit: str,
    shard_iterable: bool,
    contiguous: bool = False,
) -> DataLoader:
    """:func:`fraction_dataloader` on settings already checked (``DataFraction`` checks them when built)."""
    if not isinstance(loader, DataLoader):
        raise TypeError(
            "DataFraction needs the training loader to be a torch DataLoader (one loader, not a "
            f"collection); got {type(loader).__name__}"
        )
    dataset = loader.dataset
    if not isinstance(dataset, IterableDataset):
        subset, sampler = subset_of_loader(loader, fraction, size, seed, stratify, size_fn, size_unit, contiguous)
        if sampler is None:
            return rebatched_loader(loader, subset)
        return rebuild_loader(loader, subset, sampler)
    if stratify is not None:
        raise ValueError("stratify= needs a map-style dataset (labels per index); this one is iterable")
    if contiguous:
        raise ValueError("contiguous=True needs a map-style dataset (a block of positions); a stream is already read "
                         "in order: drop contiguous= for an IterableDataset")
    thinned = FractionIterable(
        dataset,
        fraction,
        size,
        seed,
        size_fn,  # type: ignore[arg-type]
        size_unit,
        shard_iterable,
        loader.num_workers,
    )
    return rebuild_loader(loader, thinned, None)


def fraction_dataloader(
    dataloader: DataLoader,
    fraction: float | Fraction | None = None,
    size: int | None = None,
    seed: int = 0,
    stratify: Any = None,
    size_fn: SizeFn | None = None,
    size_unit: str = "samples",
    shard_iterable: bool = False,
    contiguous: bool = False,
) -> DataLoader:
    """A copy of ``dataloader`` over a nested, deterministic subset of its dataset.

    Same options as :class:`~lightning_scaling.data.DataFraction`; exactly one of ``fraction``
    and ``size`` is required. The returned loader's ``dataset`` (a
    :class:`~lightning_scaling.data.FractionSubset` or :class:`~lightning_scaling.data.FractionIterable`)
    reports ``num_samples``, ``train_size`` and, for streams, ``samples_seen``.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lightning_scaling.data import fraction_dataloader
        >>> loader = fraction_dataloader(DataLoader(TensorDataset(torch.arange(10))), size=3, seed=1)
        >>> len(loader), loader.dataset.indices.tolist()
        (3, [0, 2, 3])
    """
    if fraction is None and size is None:
        raise ValueError("pass fraction= (a share of the training set in (0, 1]) or size= (a sample count)")
    check_size_fn(size_fn, size_unit)
    require_bool("contiguous", contiguous)
    return make_fraction_loader(dataloader, fraction, size, seed, stratify, size_fn, size_unit, shard_iterable,
                                contiguous)
