"""Train on a nested, deterministic fraction of any LightningDataModule or DataLoader.

:class:`DataFraction` wraps a ``LightningDataModule`` and subsets only its training data;
:func:`fraction_dataloader` does the same for a plain ``DataLoader``. The index logic lives in
:mod:`lightning_scaling.sampling` (pure numpy); this package applies it, one module per concern:

* :mod:`~lightning_scaling.data.datamodule`: the ``LightningDataModule`` wrapper, :class:`DataFraction`.
* :mod:`~lightning_scaling.data.loaders`: where the fraction is applied: the training ``DataLoader``
  rebuilt over the subset (:func:`fraction_dataloader`).
* :mod:`~lightning_scaling.data.subset`: map-style data: the indices kept, :class:`FractionSubset`, samplers.
* :mod:`~lightning_scaling.data.stream`: iterable data: :class:`FractionIterable` and its counters.
* :mod:`~lightning_scaling.data.sizes`: the x-axis unit (``size_fn``) and its checks.

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

from lightning_scaling.data.datamodule import DataFraction
from lightning_scaling.data.loaders import fraction_dataloader
from lightning_scaling.data.sizes import SizeFn
from lightning_scaling.data.stream import FractionIterable
from lightning_scaling.data.subset import FractionSubset, per_sample

__all__ = ["DataFraction", "FractionIterable", "FractionSubset", "SizeFn", "fraction_dataloader", "per_sample"]
