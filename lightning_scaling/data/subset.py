"""The map-style side: which indices a subset keeps, the subset dataset, and its sampler.

The index logic itself is :mod:`lightning_scaling.sampling` (pure numpy); this module applies it
to a ``DataLoader``'s dataset and sampler: labels for ``stratify=``, the ``SubsetRandomSampler``
train/val idiom, and any other sampler restricted to the subset.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
)

from lightning_scaling.data.sizes import SizeFn, sample_size, size_array, sized_len, total_size
from lightning_scaling.sampling import hash64, labels_array, select_indices, stratified_indices, subset_size

__all__ = [
    "FractionSubset", "RestrictedSampler", "contiguous_block", "per_sample", "rebatch", "select_subset",
    "subset_of_loader",
]

# the hash position whose value places a contiguous block (any fixed position would do; "contigus" in ASCII)
_BLOCK_KEY = 0x636F6E7469677573


# ----------------------------------------------------------------------------------------- labels
class per_sample:
    """Mark a per-sample label function for ``stratify=``: ``per_sample(lambda sample: sample[1])``.

    A bare callable passed as ``stratify`` receives the whole dataset and returns all labels
    (e.g. ``lambda ds: ds.targets``); wrap a function of one sample in ``per_sample`` instead.
    It reads every sample of the training set once (``O(n)`` ``__getitem__`` calls).
    """

    def __init__(self, label_fn: Callable[[Any], Any]) -> None:
        if not callable(label_fn):
            raise TypeError(f"per_sample needs a callable sample -> label, got {label_fn!r}")
        self.label_fn = label_fn

    def __repr__(self) -> str:
        return f"per_sample({self.label_fn!r})"


def resolve_labels(stratify: Any, dataset: Any, n: int) -> np.ndarray:
    """The ``n`` labels ``stratify=`` names: an array, a dataset attribute, a callable or :class:`per_sample`."""
    if isinstance(stratify, str):
        if not hasattr(dataset, stratify):
            raise ValueError(
                f"stratify={stratify!r} names an attribute, but {type(dataset).__name__} has no "
                f"attribute {stratify!r}; pass the labels as an array or a callable instead"
            )
        labels = getattr(dataset, stratify)
    elif isinstance(stratify, per_sample):
        labels = [stratify.label_fn(dataset[i]) for i in range(n)]
    elif callable(stratify):
        labels = stratify(dataset)
    else:
        labels = stratify
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    return labels_array(labels, n)


# ----------------------------------------------------------------------------------------- subset
class FractionSubset(Subset):
    """The training subset of a map-style dataset; also reports its size.

    ``indices`` (ascending ``int64`` array) are positions in the wrapped ``dataset``.
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: np.ndarray,
        size_fn: SizeFn | None = None,
        size_unit: str = "samples",
    ) -> None:
        super().__init__(dataset, indices)  # type: ignore[arg-type]
        self.indices: np.ndarray = indices  # type: ignore[assignment]
        self.size_fn = size_fn
        self.size_unit = size_unit
        self._train_size: float | None = None

    def __getitem__(self, idx: Any) -> Any:
        # datasets often expect a Python int, not a numpy integer
        if isinstance(idx, list):
            return self.dataset[[int(self.indices[i]) for i in idx]]
        return self.dataset[int(self.indices[idx])]

    def __getitems__(self, indices: list[int]) -> list[Any]:
        picked = [int(self.indices[i]) for i in indices]
        if callable(getattr(self.dataset, "__getitems__", None)):
            return self.dataset.__getitems__(picked)  # type: ignore[attr-defined]
        return [self.dataset[i] for i in picked]

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def num_samples(self) -> int:
        """Number of training samples in the subset."""
        return len(self.indices)

    @property
    def train_size(self) -> float:
        """Training-set size in ``size_unit``: ``num_samples``, or the sum of ``size_fn`` over the subset."""
        if self._train_size is None:
            self._train_size = total_size(self.dataset, self.indices, self.size_fn)
        return self._train_size

    @property
    def samples_seen(self) -> None:
        """Not tracked for map-style data (every epoch sees ``num_samples``); kept for a uniform API."""
        return None


def select_subset(n: int, fraction: Any, size: Any, seed: int, labels: np.ndarray | None,
                  contiguous: bool = False) -> np.ndarray:
    """The subset's indices into ``range(n)``: plain, stratified by ``labels``, or one contiguous block."""
    if n == 0:
        raise ValueError("the training set is empty; a subset needs at least one sample")
    if contiguous:
        if labels is not None:
            raise ValueError("contiguous=True keeps one block of consecutive samples, which cannot keep class "
                             "proportions; drop stratify= or contiguous=")
        return contiguous_block(n, fraction, size, seed)
    if labels is None:
        return select_indices(n, fraction, size, seed)
    return stratified_indices(labels, fraction, size, seed)


def contiguous_block(n: int, fraction: Any, size: Any, seed: int) -> np.ndarray:
    """The subset as one block of consecutive positions (sequence data: text, time series), nested.

    The block of ``k`` samples starts at ``floor(u * (n - k))`` for one number ``u`` in ``[0, 1)``
    drawn from ``seed``; so for ``k1 < k2`` the smaller block starts no earlier and ends no later
    than the larger one: every smaller size's block lies inside every larger size's.

    >>> contiguous_block(100, None, 10, seed=0).tolist() == list(range(77, 87))
    True
    >>> small, large = contiguous_block(100, 0.1, None, 3), contiguous_block(100, 0.5, None, 3)
    >>> set(small.tolist()) <= set(large.tolist())
    True
    """
    k = subset_size(n, fraction, size)
    h = int(hash64(seed, [_BLOCK_KEY])[0])
    start = (h * (n - k)) >> 64  # exact integer floor(u * (n - k)) with u = h / 2**64
    return np.arange(start, start + k, dtype=np.int64)


# --------------------------------------------------------------------------------------- samplers
class RestrictedSampler(Sampler[int]):
    """A user's sampler over the full dataset, restricted to the subset.

    Yields positions in the subset (``indices`` sorted). The epoch length is the first epoch's
    in-subset count; later epochs are cut or topped up (by running the sampler again) to it, so
    ``len()`` is exact and equal across DDP ranks even for samplers that draw with replacement.
    """

    def __init__(self, sampler: Sampler | Any, indices: np.ndarray) -> None:
        self.sampler: Any = sampler
        self.indices = indices
        self._length: int | None = None
        self._pending: np.ndarray | None = None

    def _one_pass(self) -> np.ndarray:
        it = iter(self.sampler)
        parts = []
        while chunk := list(itertools.islice(it, 1 << 16)):
            try:
                raw = np.asarray([int(i) for i in chunk], dtype=np.int64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"DataFraction can only restrict samplers that yield integer indices; "
                    f"{type(self.sampler).__name__} yielded {chunk[0]!r}"
                ) from None
            pos = np.minimum(np.searchsorted(self.indices, raw), len(self.indices) - 1)
            parts.append(pos[self.indices[pos] == raw])
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def _epoch(self) -> np.ndarray:
        out = self._one_pass()
        if self._length is None:
            if out.size == 0:
                raise ValueError(
                    f"the training sampler {type(self.sampler).__name__} yielded no index of the selected "
                    "subset; use a larger fraction or a sampler that covers the dataset"
                )
            self._length = len(out)
            return out
        parts, total = [out], len(out)
        while total < self._length:
            more = self._one_pass()
            if more.size == 0:
                break
            parts.append(more)
            total += len(more)
        return np.concatenate(parts)[: self._length]

    def __iter__(self) -> Iterator[int]:
        if self._pending is not None:
            out, self._pending = self._pending, None
        else:
            out = self._epoch()
        return iter(out.tolist())

    def __len__(self) -> int:
        if self._length is None:
            self._pending = self._epoch()
        assert self._length is not None
        return self._length

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)


def subset_sampler(original: Any, subset: FractionSubset) -> Sampler:
    """The training sampler over ``subset``: torch's own samplers rebuilt, any other one restricted."""
    kind = type(original)
    if kind is SequentialSampler:
        return SequentialSampler(subset)
    if kind is RandomSampler:
        return RandomSampler(
            subset,
            replacement=original.replacement,
            num_samples=getattr(original, "_num_samples", None),
            generator=original.generator,
        )
    if kind is SubsetRandomSampler:  # the subset was already drawn from its indices
        return RandomSampler(subset, generator=original.generator)
    if kind is DistributedSampler:
        return DistributedSampler(
            subset,
            num_replicas=original.num_replicas,
            rank=original.rank,
            shuffle=original.shuffle,
            seed=original.seed,
            drop_last=original.drop_last,
        )
    return RestrictedSampler(original, subset.indices)


def subset_of_loader(
    loader: DataLoader,
    fraction: float | Fraction | None,
    size: int | None,
    seed: int,
    stratify: Any,
    size_fn: SizeFn | None,
    size_unit: str,
    contiguous: bool = False,
) -> tuple[FractionSubset, Sampler | None]:
    """The subset of a map-style ``loader``'s dataset and the sampler that visits it.

    With a ``SubsetRandomSampler(indices)`` the training set *is* ``indices``, so the fraction is
    taken of them; a custom batch sampler's inner ``.sampler`` is the one restricted. A custom
    batch sampler without a ``.sampler`` (one built on the dataset, like Lightning's demo
    ``SequenceSampler``) gets ``None``: the caller rebuilds it over the subset (:func:`rebatch`).
    """
    dataset = loader.dataset
    n = sized_len(dataset)
    if n is None:
        raise ValueError(
            f"the training dataset {type(dataset).__name__} has no __len__, so no fraction or size of it can "
            "be selected; define __len__, or make it an IterableDataset to use stream thinning"
        )
    batch_sampler = loader.batch_sampler
    original: Any = loader.sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        original = getattr(batch_sampler, "sampler", None)
    labels = resolve_labels(stratify, dataset, n) if stratify is not None else None
    size_array(size_fn, n)  # a wrong length fails here, at build time, not when reporting
    if type(original) is SubsetRandomSampler:
        # the training set is the sampler's index list (train/val split of one dataset)
        raw = original.indices
        base = np.asarray(raw.tolist() if isinstance(raw, torch.Tensor) else list(raw), dtype=np.int64)
        picked = select_subset(len(base), fraction, size, seed, None if labels is None else labels[base], contiguous)
        indices = np.sort(base[picked])
    else:
        indices = select_subset(n, fraction, size, seed, labels, contiguous)
    if callable(size_fn) and len(indices):
        sample_size(size_fn, dataset[int(indices[0])])  # a wrong size_fn fails now, not in the run's record
    subset = FractionSubset(dataset, indices, size_fn, size_unit)
    return subset, None if original is None else subset_sampler(original, subset)


def rebatch(batch_sampler: Any, dataset: Any, subset: FractionSubset) -> Any:
    """A custom batch sampler built on the dataset (no ``.sampler``), built again on ``subset``.

    Its constructor's arguments are read from the attributes of the same names (``SequenceSampler(dataset,
    batch_size)`` keeps ``.dataset`` and ``.batch_size``), the dataset swapped for the subset: the
    sampler then batches the subset exactly as it batched the full data.
    """
    kind = type(batch_sampler)
    fix = (f"the custom batch sampler {kind.__name__} has no `.sampler`, so DataFraction rebuilds it on the subset "
           "from its constructor's arguments, kept as attributes of the same names")
    kwargs: dict[str, Any] = {}
    for name, p in list(inspect.signature(kind.__init__).parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if hasattr(batch_sampler, name):
            value = getattr(batch_sampler, name)
            kwargs[name] = subset if value is dataset else value
        elif p.default is p.empty:
            raise TypeError(f"{fix}; it has no attribute {name!r}: store it as self.{name}, or build the batch "
                            "sampler on a `sampler` argument (like BatchSampler)")
    if not any(v is subset for v in kwargs.values()):
        raise TypeError(f"{fix}; none of them is the training dataset: build it on the dataset "
                        "(SequenceSampler(dataset, batch_size)) or on a `sampler` argument (like BatchSampler)")
    return kind(**kwargs)
