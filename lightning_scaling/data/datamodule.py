"""Train on a nested, deterministic fraction of any LightningDataModule or DataLoader.

:class:`DataFraction` wraps a ``LightningDataModule`` and subsets only its training data;
:func:`fraction_dataloader` does the same for a plain ``DataLoader``. The index logic lives in
:mod:`lightning_scaling.sampling`; this module rebuilds loaders around it.

What you get:

* **Nested and reproducible.** With the same seed the subset at a smaller fraction is contained
  in the subset at any larger one, identically on every process, machine and hash seed.
* **Same loader settings.** The new training loader keeps the wrapped loader's class, batch size,
  ``collate_fn``, workers, ``pin_memory``, ``drop_last`` and shuffling; only the data shrinks.
* **Samplers.** ``SequentialSampler`` / ``RandomSampler`` / ``DistributedSampler`` are rebuilt
  over the subset. With ``SubsetRandomSampler(indices)`` (the train/val split idiom) the
  training set *is* ``indices``, so the fraction is taken of ``indices``. Any other sampler (also
  the one inside a custom batch sampler) is kept and restricted to the subset: each epoch it is
  run as usual and indices outside the subset are skipped; the epoch length is fixed at the
  first epoch's count (samplers that draw with replacement are topped up or cut to it), so that
  DDP ranks keep equal lengths.
* **Iterable datasets** are never materialised. ``fraction=f`` keeps stream element ``j`` iff
  ``hash(seed, j) < f`` (Bernoulli thinning, nested in ``f``); ``size=k`` needs ``len(dataset)``
  and keeps exactly the ``k`` positions a map-style dataset of that length would keep. Counts
  are reported as ``samples_seen`` (so far) and ``num_samples`` (one full pass). ``samples_seen``
  counts what the loader has produced, so when training stops mid-pass (``max_steps``,
  ``limit_train_batches``) it includes batches prefetched but not trained on: Lightning's
  one-batch lookahead, and up to ``num_workers * prefetch_factor`` batches in workers.
* **DDP.** Lightning's ``DistributedSampler`` shards the ``Subset``: ranks get disjoint shards
  whose union is the subset. When ``k`` is not divisible by the world size, ``DistributedSampler``
  pads by repeating up to ``world_size - 1`` subset samples (with ``k < world_size`` some ranks
  see a repeated sample), so the union is still exactly the subset.

Example:
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from lightning_scaling.data import fraction_dataloader
    >>> loader = DataLoader(TensorDataset(torch.arange(100)), batch_size=8, shuffle=True)
    >>> small = fraction_dataloader(loader, fraction=0.1, seed=0)
    >>> small.batch_size, len(small.dataset), small.dataset.num_samples
    (8, 10, 10)
    >>> large = fraction_dataloader(loader, fraction=0.5, seed=0)
    >>> set(small.dataset.indices.tolist()) <= set(large.dataset.indices.tolist())
    True
"""

from __future__ import annotations

import inspect
import itertools
import multiprocessing
import multiprocessing.context
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from lightning_utilities.core.overrides import is_overridden
from pytorch_lightning import LightningDataModule
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    get_worker_info,
)

from lightning_scaling.sampling import (
    StreamSelector,
    _as_count,
    _as_fraction,
    _labels_array,
    _seed64,
    select_indices,
    stratified_indices,
    subset_size,
)

__all__ = ["DataFraction", "FractionIterable", "FractionSubset", "fraction_dataloader", "per_sample"]

SizeFn = Callable[[Any], float] | Sequence[float] | np.ndarray
_BLOCK = 1024  # stream positions hashed per numpy call: amortises the call, keeps memory flat


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


def _resolve_labels(stratify: Any, dataset: Any, n: int) -> np.ndarray:
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
    return _labels_array(labels, n)


# ---------------------------------------------------------------------------------------- helpers
def _sized_len(obj: Any) -> int | None:
    try:
        return len(obj)
    except (TypeError, NotImplementedError):
        return None


def _check_size_fn(size_fn: Any, size_unit: Any) -> None:
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


def _size_array(size_fn: Any, n: int) -> np.ndarray | None:
    if size_fn is None or callable(size_fn):
        return None
    arr = np.asarray(size_fn)
    if len(arr) != n:
        raise ValueError(
            f"size_fn has {len(arr)} entries but the training set has {n} samples; "
            "pass one size per training sample, in dataset order"
        )
    return arr


def _as_number(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        value = value.item()
    return value.item() if isinstance(value, np.generic) else value


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# -------------------------------------------------------------------------------------- map-style
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
        self.indices: np.ndarray = indices
        self.size_fn = size_fn
        self.size_unit = size_unit
        self._train_size: float | None = None

    def __getitem__(self, idx: Any) -> Any:
        # datasets often expect a Python int, not a numpy integer
        if isinstance(idx, list):
            return self.dataset[[int(self.indices[i]) for i in idx]]  # type: ignore[index]
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
            self._train_size = _total_size(self.dataset, self.indices, self.size_fn)
        return self._train_size

    @property
    def samples_seen(self) -> None:
        """Not tracked for map-style data (every epoch sees ``num_samples``); kept for a uniform API."""
        return None


def _total_size(dataset: Any, indices: np.ndarray | range, size_fn: SizeFn | None) -> float:
    if size_fn is None:
        return len(indices)
    if callable(size_fn):
        return _as_number(sum(_as_number(size_fn(dataset[int(i)])) for i in indices))
    arr = np.asarray(size_fn)
    return _as_number(arr[np.asarray(indices, dtype=np.int64)].sum())


class _RestrictedSampler(Sampler[int]):
    """A user's sampler over the full dataset, restricted to the subset.

    Yields positions in the subset (``indices`` sorted). The epoch length is the first epoch's
    in-subset count; later epochs are cut or topped up (by running the sampler again) to it, so
    ``len()`` is exact and equal across DDP ranks even for samplers that draw with replacement.
    """

    def __init__(self, sampler: Sampler | Any, indices: np.ndarray) -> None:
        self.sampler = sampler
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


def _subset_sampler(original: Any, subset: FractionSubset) -> Sampler:
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
    return _RestrictedSampler(original, subset.indices)


# ---------------------------------------------------------------------------------------- streams
class _Counters:
    """Per-worker counters in shared memory, so counts made in DataLoader workers reach the parent.

    Slot ``w`` is written only by worker ``w`` (one writer per slot: no lock). Layout per slot:
    seen count, seen size, full-pass flag, full-pass count, full-pass size.
    """

    _FIELDS = 5

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._data = multiprocessing.RawArray("d", self._FIELDS * slots)

    def __getstate__(self) -> dict[str, Any]:
        # shared memory can only travel to a child being started (DataLoader workers); any other
        # copy (deepcopy, ddp_spawn pickling) gets fresh counters of its own
        if multiprocessing.context.get_spawning_popen() is not None:
            return self.__dict__
        return {"slots": self.slots}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_data" in state:
            self.__dict__.update(state)
        else:
            self.__init__(state["slots"])  # type: ignore[misc]

    def add(self, slot: int, size: float) -> None:
        base = self._FIELDS * slot
        self._data[base] += 1
        self._data[base + 1] += size

    def finish(self, slot: int, count: int, size: float) -> None:
        base = self._FIELDS * slot
        if not self._data[base + 2]:
            self._data[base + 3] = count
            self._data[base + 4] = size
            self._data[base + 2] = 1

    def totals(self) -> tuple[int, float, int | None, float | None]:
        d = np.frombuffer(self._data, dtype=np.float64).reshape(self.slots, self._FIELDS)
        done = bool(d[:, 2].all())
        return (
            int(d[:, 0].sum()),
            float(d[:, 1].sum()),
            int(d[:, 3].sum()) if done else None,
            float(d[:, 4].sum()) if done else None,
        )


class FractionIterable(IterableDataset):
    """A deterministic, nested selection from an iterable (streaming) dataset; counts what it yields.

    Stream positions are counted per consumer (DataLoader worker, DDP rank). With
    ``shard=False`` (default) the wrapped dataset splits its stream across workers/ranks itself,
    as PyTorch expects of iterable datasets, and each consumer's elements are selected
    independently (keyed by consumer), so the subset is deterministic for a given number of
    workers and ranks. With ``shard=True`` the wrapped dataset must yield the *same full stream*
    in every process; the selection is then made on global positions (identical for any number
    of workers/ranks) and the kept elements are dealt round-robin to consumers, so shards are
    disjoint, their union is the subset and their sizes differ by at most one.

    ``size=k`` requires ``len(dataset)`` and one global stream (a single consumer, or
    ``shard=True``). Counts are per process (per DDP rank): sum over ranks for a global count.

    Args:
        dataset: the iterable dataset to select from.
        fraction: keep each element with this probability (keyed, so nested in ``fraction``).
        size: keep exactly this many elements (needs ``len(dataset)``).
        seed: selects the subset.
        size_fn: callable ``sample -> size`` for ``size_seen`` / ``train_size``.
        size_unit: name of the ``size_fn`` unit.
        shard: split one full stream across workers and ranks here (see above).
        num_workers: ``num_workers`` of the DataLoader that will iterate this dataset (sizes
            the shared counters that carry counts out of worker processes).
    """

    def __init__(
        self,
        dataset: IterableDataset,
        fraction: float | Fraction | None = None,
        size: int | None = None,
        seed: int = 0,
        size_fn: Callable[[Any], float] | None = None,
        size_unit: str = "samples",
        shard: bool = False,
        num_workers: int = 0,
    ) -> None:
        if fraction is not None and size is not None:
            raise ValueError("pass at most one of fraction= or size=")
        if size_fn is not None and not callable(size_fn):
            raise TypeError(
                "size_fn for an iterable dataset must be a callable sample -> size; "
                "a per-index array needs a map-style dataset"
            )
        self.dataset = dataset
        self.fraction = fraction
        self.seed = seed
        self.size_fn = size_fn
        self.size_unit = size_unit
        self.shard = shard
        self.length: int | None = None
        self.size: int | None = None
        if size is not None:
            self.length = _sized_len(dataset)
            if self.length is None:
                raise ValueError(
                    f"size={size} on an iterable dataset without __len__ cannot pick {size} samples "
                    "uniformly; pass fraction= (Bernoulli thinning) instead, or give the dataset a __len__"
                )
            self.size = subset_size(self.length, size=size)
        elif fraction is not None:
            _as_fraction(fraction)
        # rank and world size are read here, in the process that builds the loader: spawned
        # DataLoader workers do not see the process group
        self._rank, self._world = _dist_rank_world()
        self._workers = max(1, int(num_workers))
        if self.size is not None and not shard and (self._workers > 1 or self._world > 1):
            raise ValueError(
                "size= on an iterable dataset selects exact positions of one global stream, but this "
                f"stream is split over {self._workers} worker(s) x {self._world} rank(s); pass "
                "shard_iterable=True (the dataset yields the full stream everywhere and DataFraction "
                "splits it), or use fraction="
            )
        self._counters = _Counters(self._workers)

    def _selector(self, stream: int) -> StreamSelector | None:
        if self.size is not None:
            return StreamSelector(size=self.size, length=self.length, seed=self.seed)
        if self.fraction is not None:
            return StreamSelector(fraction=self.fraction, seed=self.seed, stream=stream)
        return None

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        consumer, consumers = self._rank * workers + worker, self._world * workers
        selector = self._selector(0 if self.shard else consumer)
        slot = worker % self._workers
        count, total, kept = 0, 0.0, 0
        mask = np.ones(_BLOCK, dtype=bool)
        for j, sample in enumerate(self.dataset):
            if selector is not None:
                if self.length is not None and j >= self.length:
                    break  # the stream is longer than its __len__: positions past it have no rank
                if j % _BLOCK == 0:
                    mask = selector.keep(np.arange(j, j + _BLOCK, dtype=np.uint64))
                if not mask[j % _BLOCK]:
                    continue
            ordinal, kept = kept, kept + 1
            if not self.shard or ordinal % consumers == consumer:
                size = 1.0 if self.size_fn is None else _as_number(self.size_fn(sample))
                count, total = count + 1, total + size
                self._counters.add(slot, size)
                yield sample
            if self.size is not None and kept >= self.size:
                break
        self._counters.finish(slot, count, total)

    @property
    def samples_seen(self) -> int:
        """Samples yielded so far in this process and its workers, over all passes.

        Counted when yielded to the loader, so it includes prefetched batches not yet trained on
        (see the module docstring); exact at the end of every full pass.
        """
        return self._counters.totals()[0]

    @property
    def size_seen(self) -> float:
        """``samples_seen`` in ``size_unit`` (sum of ``size_fn`` over the yielded samples)."""
        return self._counters.totals()[1]

    @property
    def num_samples(self) -> int | None:
        """Samples in one full pass over the selection (this process); ``None`` before a pass completes."""
        return self._counters.totals()[2]

    @property
    def train_size(self) -> float | None:
        """``num_samples`` in ``size_unit``; ``None`` before a pass completes."""
        return self._counters.totals()[3]


# ------------------------------------------------------------------------------- loader rebuilding
def _swap_dataset(loader: DataLoader, args: tuple, kwargs: dict, dataset: Any) -> tuple[tuple, dict]:
    old = loader.dataset
    found = any(a is old for a in args) or any(v is old for v in kwargs.values())
    args = tuple(dataset if a is old else a for a in args)
    kwargs = {k: (dataset if v is old else v) for k, v in kwargs.items()}
    if not found:
        kwargs["dataset"] = dataset
    return args, kwargs


def _plain_rebuild(loader: DataLoader, dataset: Any, sampler: Sampler | None) -> DataLoader:
    accepted = inspect.signature(DataLoader.__init__).parameters
    names = ("num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn")
    names += ("multiprocessing_context", "generator", "prefetch_factor", "persistent_workers")
    names += ("pin_memory_device", "in_order")
    kwargs = {k: getattr(loader, k) for k in names if k in accepted and hasattr(loader, k)}
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=loader.batch_size, drop_last=loader.drop_last, **kwargs)
    if loader.batch_sampler is None:
        return DataLoader(dataset, batch_size=None, sampler=sampler, **kwargs)
    if type(loader.batch_sampler) is BatchSampler:
        return DataLoader(dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, **kwargs)
    raise TypeError(f"cannot rebuild a DataLoader with the custom batch sampler {type(loader.batch_sampler)}")


def _rebuild(loader: DataLoader, dataset: Any, sampler: Sampler | None) -> DataLoader:
    """Re-create ``loader`` (same class and settings) over ``dataset`` with ``sampler``."""
    try:  # Lightning's own re-instantiation: handles DataLoader subclasses and custom batch samplers
        from lightning_fabric.utilities.data import _reinstantiate_wrapped_cls
        from pytorch_lightning.utilities.data import _get_dataloader_init_args_and_kwargs
    except ImportError:  # private API moved: a plain DataLoader can still be rebuilt by hand
        return _plain_rebuild(loader, dataset, sampler)
    # Lightning updates the saved constructor kwargs in place; the wrapped module may cache and
    # return this loader again, so it gets its own kwargs back afterwards
    saved = getattr(loader, "__pl_saved_kwargs", None)
    try:
        if saved is not None:
            object.__setattr__(loader, "__pl_saved_kwargs", dict(saved))
        args, kwargs = _get_dataloader_init_args_and_kwargs(loader, sampler)  # type: ignore[arg-type]
        args, kwargs = _swap_dataset(loader, tuple(args), dict(kwargs), dataset)
        return _reinstantiate_wrapped_cls(loader, *args, **kwargs)
    except Exception as err:
        plain_batches = loader.batch_sampler is None or type(loader.batch_sampler) is BatchSampler
        if type(loader) is DataLoader and plain_batches:
            return _plain_rebuild(loader, dataset, sampler)
        raise TypeError(
            f"DataFraction could not re-create your {type(loader).__name__} over the training subset: {err} "
            "Create the loader inside train_dataloader() of your LightningDataModule, make its __init__ "
            "accept `dataset` (and `sampler`), or return a plain torch DataLoader."
        ) from err
    finally:
        if saved is not None:
            object.__setattr__(loader, "__pl_saved_kwargs", saved)


def _fraction_loader(
    loader: Any,
    fraction: float | Fraction | None,
    size: int | None,
    seed: int,
    stratify: Any,
    size_fn: SizeFn | None,
    size_unit: str,
    shard_iterable: bool,
) -> DataLoader:
    if not isinstance(loader, DataLoader):
        raise TypeError(
            "DataFraction needs the training loader to be a torch DataLoader (one loader, not a "
            f"collection); got {type(loader).__name__}"
        )
    dataset = loader.dataset
    if isinstance(dataset, IterableDataset):
        if stratify is not None:
            raise ValueError("stratify= needs a map-style dataset (labels per index); this one is iterable")
        thinned = FractionIterable(
            dataset,
            fraction,
            size,
            seed,
            size_fn,
            size_unit,
            shard_iterable,
            loader.num_workers,  # type: ignore[arg-type]
        )
        return _rebuild(loader, thinned, None)

    n = _sized_len(dataset)
    if n is None:
        raise ValueError(
            f"the training dataset {type(dataset).__name__} has no __len__, so no fraction or size of it can "
            "be selected; define __len__, or make it an IterableDataset to use stream thinning"
        )
    batch_sampler = loader.batch_sampler
    original = loader.sampler
    if batch_sampler is not None and type(batch_sampler) is not BatchSampler:
        original = getattr(batch_sampler, "sampler", None)
        if original is None:
            raise TypeError(
                f"the custom batch sampler {type(batch_sampler).__name__} has no `.sampler`, so DataFraction "
                "cannot restrict it to the subset; build it on a `sampler` argument (like BatchSampler)"
            )
    labels = _resolve_labels(stratify, dataset, n) if stratify is not None else None
    _size_array(size_fn, n)  # a wrong length fails here, at build time, not when reporting
    if type(original) is SubsetRandomSampler:
        # the training set is the sampler's index list (train/val split of one dataset)
        raw = original.indices
        base = np.asarray(raw.tolist() if isinstance(raw, torch.Tensor) else list(raw), dtype=np.int64)
        picked = _select(len(base), fraction, size, seed, None if labels is None else labels[base])
        indices = np.sort(base[picked])
    else:
        indices = _select(n, fraction, size, seed, labels)
    subset = FractionSubset(dataset, indices, size_fn, size_unit)
    return _rebuild(loader, subset, _subset_sampler(original, subset))


def _select(n: int, fraction: Any, size: Any, seed: int, labels: np.ndarray | None) -> np.ndarray:
    if n == 0:
        raise ValueError("the training set is empty; a subset needs at least one sample")
    if labels is None:
        return select_indices(n, fraction, size, seed)
    return stratified_indices(labels, fraction, size, seed)


def fraction_dataloader(
    dataloader: DataLoader,
    fraction: float | Fraction | None = None,
    size: int | None = None,
    seed: int = 0,
    stratify: Any = None,
    size_fn: SizeFn | None = None,
    size_unit: str = "samples",
    shard_iterable: bool = False,
) -> DataLoader:
    """A copy of ``dataloader`` over a nested, deterministic subset of its dataset.

    Same options as :class:`DataFraction`; exactly one of ``fraction`` and ``size`` is required.
    The returned loader's ``dataset`` (a :class:`FractionSubset` or :class:`FractionIterable`)
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
    _check_size_fn(size_fn, size_unit)
    return _fraction_loader(dataloader, fraction, size, seed, stratify, size_fn, size_unit, shard_iterable)


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
    ) -> None:
        base = _datamodule_base(datamodule)
        super().__init__()
        self._datamodule = datamodule
        self._fraction: float | Fraction | None = None
        self._size: int | None = None
        self._seed = 0
        self.set_fraction(fraction, size=size, seed=seed)
        _check_size_fn(size_fn, size_unit)
        self._stratify = stratify
        self._size_fn = size_fn
        self._size_unit = size_unit
        self._shard_iterable = bool(shard_iterable)
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
    _log_hyperparams = _forward_property("_log_hyperparams")
    del _forward_property

    @property
    def hparams(self) -> Any:  # type: ignore[override]
        return self._datamodule.hparams

    @property
    def hparams_initial(self) -> Any:  # type: ignore[override]
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
            _as_fraction(fraction)
        if size is not None and _as_count(size, "size") < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        if seed is not None:
            _seed64(seed)
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
            n = _sized_len(dataset)
            if n is not None:
                _size_array(self._size_fn, n)
            self._train_dataset = dataset
            return loader
        loader = _fraction_loader(
            loader,
            self._fraction,
            self._size,
            self._seed,
            self._stratify if (self._fraction is not None or self._size is not None) else None,
            self._size_fn,
            self._size_unit,
            self._shard_iterable,
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
        return _sized_len(ds) if ds is not None else None

    @property
    def train_size(self) -> float | None:
        """Training-set size in :attr:`size_unit` (``num_samples`` without a ``size_fn``)."""
        ds = self._train_dataset
        if isinstance(ds, (FractionSubset, FractionIterable)):
            return ds.train_size
        n = _sized_len(ds) if ds is not None else None
        return None if n is None else _total_size(ds, range(n), self._size_fn)

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
