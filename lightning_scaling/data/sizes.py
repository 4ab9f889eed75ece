"""The x-axis unit of a subset: ``size_fn`` checks and sums, and lengths of datasets that may have none.

Shared by the map-style side (:mod:`lightning_scaling.data.subset`), the stream side
(:mod:`lightning_scaling.data.stream`) and the DataModule wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SizeFn", "as_number", "check_size_fn", "sample_size", "size_array", "sized_len", "total_size"]

SizeFn = Callable[[Any], float] | Sequence[float] | np.ndarray
"""A callable ``sample -> size`` (e.g. its token count), or one size per training sample."""


def sized_len(obj: Any) -> int | None:
    """``len(obj)``, or ``None`` for an object without a length (an iterable dataset, ``None``)."""
    try:
        return len(obj)
    except (TypeError, NotImplementedError):
        return None


def as_number(value: Any) -> float:
    """A tensor or numpy scalar as a plain Python number (sizes end up in JSON run records)."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    return value.item() if isinstance(value, np.generic) else value


def check_size_fn(size_fn: Any, size_unit: Any) -> None:
    """Raise a ``TypeError`` unless ``size_fn`` is ``None``, a callable or a 1-d numeric array, and
    ``size_unit`` a non-empty string; checked when the wrapper is built, not when it reports."""
    if not isinstance(size_unit, str) or not size_unit:
        raise TypeError(f"size_unit must be a non-empty string such as 'tokens', got {size_unit!r}")
    if size_fn is None or callable(size_fn):
        return
    arr = np.asarray(size_fn)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(
            "size_fn must be a callable sample -> size (e.g. a token count) or a 1-d numeric array "
            f"with one size per training sample; got {type(size_fn).__name__} of shape {arr.shape}"
        )


def size_array(size_fn: Any, n: int) -> np.ndarray | None:
    """A per-sample ``size_fn`` as an array, checked to hold ``n`` sizes; ``None`` for a callable or none."""
    if size_fn is None or callable(size_fn):
        return None
    arr = np.asarray(size_fn)
    if len(arr) != n:
        raise ValueError(
            f"size_fn has {len(arr)} entries but the training set has {n} samples; "
            "pass one size per training sample, in dataset order"
        )
    if not (np.isfinite(arr).all() and (arr >= 0).all()):
        raise ValueError("size_fn must hold a finite size >= 0 for every training sample; it has negative, NaN "
                         "or infinite entries")
    return arr


def sample_size(size_fn: Callable[[Any], Any], sample: Any) -> float:
    """``size_fn(sample)`` checked to be a finite size >= 0 (a ValueError naming ``size_fn`` otherwise).

    >>> sample_size(lambda s: -1, 0)
    Traceback (most recent call last):
    ...
    ValueError: size_fn must give each sample a finite size >= 0 (e.g. its token count), got -1 for a sample
    """
    value = as_number(size_fn(sample))
    if not (isinstance(value, int | float) and np.isfinite(value) and value >= 0):
        raise ValueError(f"size_fn must give each sample a finite size >= 0 (e.g. its token count), got {value!r} "
                         "for a sample")
    return value


def total_size(dataset: Any, indices: np.ndarray | range, size_fn: SizeFn | None) -> float:
    """The size of ``dataset[indices]`` in ``size_fn``'s unit (the count of ``indices`` without one).

    >>> total_size(None, range(3), [1.0, 2.0, 4.0, 8.0])
    7.0
    """
    if size_fn is None:
        return len(indices)
    if callable(size_fn):
        return as_number(sum(sample_size(size_fn, dataset[int(i)]) for i in indices))
    arr = np.asarray(size_fn)
    return as_number(arr[np.asarray(indices, dtype=np.int64)].sum())
