"""Map-style subsets: the exact indices, each kind of sampler over them, stratified labels."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from helpers.boring import IndexDataModule, IndexDataset
from helpers.fraction_checks import seen_indices
from torch.utils.data import DataLoader, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler

from lightning_scaling.data import DataFraction, FractionSubset, fraction_dataloader, per_sample
from lightning_scaling.sampling import select_indices, stratified_indices


# ------------------------------------------------------------------------------------- samplers
def test_sequential_loader_keeps_dataset_order_and_exact_subset():
    loader = fraction_dataloader(DataLoader(IndexDataset(50), batch_size=4), size=9, seed=2)
    assert isinstance(loader.sampler, SequentialSampler)
    assert seen_indices(loader) == select_indices(50, size=9, seed=2).tolist()


def test_shuffled_loader_visits_exactly_the_subset():
    loader = fraction_dataloader(
        DataLoader(IndexDataset(50), batch_size=4, shuffle=True), fraction=0.2, seed=2
    )
    assert sorted(seen_indices(loader)) == select_indices(50, fraction=0.2, seed=2).tolist()


def test_subset_random_sampler_means_the_fraction_is_of_its_indices():
    train_idx = list(range(0, 100, 2))  # the other half is a validation split of the same dataset
    original = DataLoader(IndexDataset(100), batch_size=5, sampler=SubsetRandomSampler(train_idx))
    loader = fraction_dataloader(original, fraction=0.1, seed=0)
    seen = sorted(seen_indices(loader))
    assert len(seen) == 5
    assert set(seen) <= set(train_idx)
    bigger = sorted(seen_indices(fraction_dataloader(original, fraction=0.5, seed=0)))
    assert set(seen) <= set(bigger)


def test_weighted_sampler_is_restricted_to_the_subset_with_a_fixed_epoch_length():
    weights = torch.ones(200)
    original = DataLoader(IndexDataset(200), batch_size=10, sampler=WeightedRandomSampler(weights, 200))
    loader = fraction_dataloader(original, fraction=0.25, seed=0)
    subset = set(loader.dataset.indices.tolist())
    lengths = set()
    for _ in range(3):
        seen = seen_indices(loader)
        lengths.add(len(seen))
        assert set(seen) <= subset
    assert len(lengths) == 1
    assert lengths == {len(loader.sampler)}


# -------------------------------------------------------------------------------------- subsets
@pytest.mark.parametrize(
    "stratify",
    [
        "targets",
        np.arange(300) % 3,
        lambda dataset: dataset.targets,
        per_sample(lambda sample: sample % 3),
    ],
    ids=["attribute", "array", "dataset-fn", "per-sample-fn"],
)
def test_stratified_subset_keeps_class_proportions(stratify):
    dm = DataFraction(IndexDataModule(n=300), fraction=0.1, seed=0, stratify=stratify)
    dm.setup("fit")
    dm.train_dataloader()
    assert np.bincount(dm.indices % 3).tolist() == [10, 10, 10]
    assert dm.indices.tolist() == stratified_indices(np.arange(300) % 3, fraction=0.1, seed=0).tolist()


def test_fraction_subset_hands_python_ints_to_the_dataset():
    subset = FractionSubset(IndexDataset(10), np.array([3, 7]))
    assert subset[1] == 7
    assert subset.__getitems__([0, 1]) == [3, 7]


# ---------------------------------------------------------------------------------------- scale
def test_a_billion_sample_dataset_is_subset_without_touching_every_index():
    # a sweep rebuilds the training loader for every run, so a user relies on the subset of a huge dataset
    # costing memory (and time) in proportion to the subset, never to n; the time is measured, side by
    # side with a permutation, by benchmarks/fraction_scale.py (its "loader" column)
    class Huge(torch.utils.data.Dataset):
        def __len__(self):
            return 10**9

        def __getitem__(self, index):
            return index

    original = DataLoader(Huge(), batch_size=256, shuffle=True)
    fraction_dataloader(original, size=10)  # warm-up
    tracemalloc.start()
    loader = fraction_dataloader(original, fraction=0.001, seed=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(loader.dataset) == 10**6
    assert peak < 16 * loader.dataset.indices.nbytes, f"peak {peak / 2**20:.0f} MiB"
    assert next(iter(loader)).shape == (256,)

