"""The streaming side: a nested selection from an ``IterableDataset``, never materialised, and its counts.

``fraction=f`` keeps stream element ``j`` iff ``hash(seed, j) < f`` (Bernoulli thinning, nested
in ``f``); ``size=k`` needs ``len(dataset)`` and keeps exactly the ``k`` positions a map-style
dataset of that length would keep (:class:`lightning_scaling.sampling.StreamSelector`). Counts
made in DataLoader worker processes reach the main process through shared memory.

``samples_seen`` counts what the loader has produced, so when training stops mid-pass
(``max_steps``, ``limit_train_batches``) it includes batches prefetched but not trained on:
Lightning's one-batch lookahead, and up to ``num_workers * prefetch_factor`` batches in workers.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lightning_scaling.data.sizes import sample_size, sized_len
from lightning_scaling.sampling import StreamSelector, as_fraction, subset_size

__all__ = ["FractionIterable", "SharedCounters", "dist_rank_world"]

_BLOCK = 1024  # stream positions hashed per numpy call: amortises the call, keeps memory flat


def dist_rank_world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised ``torch.distributed`` group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class SharedCounters:
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
        """Count one yielded sample of ``size`` in ``slot``."""
        base = self._FIELDS * slot
        self._data[base] += 1
        self._data[base + 1] += size

    def finish(self, slot: int, count: int, size: float) -> None:
        """Record ``slot``'s first full pass (later passes leave it as it is)."""
        base = self._FIELDS * slot
        if not self._data[base + 2]:
            self._data[base + 3] = count
            self._data[base + 4] = size
            self._data[base + 2] = 1

    def totals(self) -> tuple[int, float, int | None, float | None]:
        """Seen count and size over all slots; one full pass's count and size once every slot finished one."""
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
            self.length = sized_len(dataset)
            if self.length is None:
                raise ValueError(
                    f"size={size} on an iterable dataset without __len__ cannot pick {size} samples "
                    "uniformly; pass fraction= (Bernoulli thinning) instead, or give the dataset a __len__"
                )
            self.size = subset_size(self.length, size=size)
        elif fraction is not None:
            as_fraction(fraction)
        # rank and world size are read here, in the process that builds the loader: spawned
        # DataLoader workers do not see the process group
        self._rank, self._world = dist_rank_world()
        self._workers = max(1, int(num_workers))
        if self.size is not None and not shard and (self._workers > 1 or self._world > 1):
            raise ValueError(
                "size= on an iterable dataset selects exact positions of one global stream, but this "
                f"stream is split over {self._workers} worker(s) x {self._world} rank(s); pass "
                "shard_iterable=True (the dataset yields the full stream everywhere and DataFraction "
                "splits it), or use fraction="
            )
        self._counters = SharedCounters(self._workers)

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
                size = 1.0 if self.size_fn is None else sample_size(self.size_fn, sample)
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
