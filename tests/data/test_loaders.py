"""fraction_dataloader and the loader rebuild: same class and settings, only the data shrinks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.boring import IndexDataModule, IndexDataset, IndexIterable, NoLenDataset, tagged_collate
from helpers.fraction_checks import seen_indices
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from lightning_scaling.data import DataFraction, fraction_dataloader
from lightning_scaling.sampling import select_indices


# ------------------------------------------------------------------------------ loader settings
def test_rebuilt_loader_keeps_every_setting():
    generator = torch.Generator().manual_seed(0)
    original = DataLoader(
        IndexDataset(100),
        batch_size=7,
        shuffle=True,
        num_workers=2,
        collate_fn=tagged_collate,
        pin_memory=True,
        drop_last=True,
        timeout=30,
        generator=generator,
        prefetch_factor=3,
        persistent_workers=True,
    )
    loader = fraction_dataloader(original, fraction=0.3, seed=0)
    for name in ("batch_size", "num_workers", "collate_fn", "pin_memory", "drop_last", "timeout"):
        assert getattr(loader, name) == getattr(original, name), name
    assert loader.prefetch_factor == 3
    assert loader.persistent_workers
    assert isinstance(loader.sampler, RandomSampler)
    assert loader.sampler.generator is generator
    assert len(loader) == 30 // 7


def test_custom_batch_sampler_is_rebuilt_on_the_subset():
    class EvenBatches(BatchSampler):
        """A BatchSampler subclass with an extra argument."""

        def __init__(self, sampler, batch_size, drop_last, tag="even"):
            super().__init__(sampler, batch_size, drop_last)
            self.tag = tag

    dataset = IndexDataset(60)
    original = DataLoader(dataset, batch_sampler=EvenBatches(SequentialSampler(dataset), 4, False))
    loader = fraction_dataloader(original, size=10, seed=0)
    assert type(loader.batch_sampler) is EvenBatches
    assert seen_indices(loader) == select_indices(60, size=10, seed=0).tolist()


def test_dataloader_subclass_is_kept():
    class MyLoader(DataLoader):
        def __init__(self, dataset, tag, **kwargs):
            super().__init__(dataset, **kwargs)
            self.tag = tag

    loader = fraction_dataloader(MyLoader(IndexDataset(30), "x", batch_size=3), size=6)
    assert type(loader) is MyLoader
    assert loader.tag == "x"
    assert len(loader) == 2


def test_rebuild_without_lightning_private_api(monkeypatch):
    import pytorch_lightning.utilities.data as pl_data

    monkeypatch.delattr(pl_data, "_get_dataloader_init_args_and_kwargs")
    loader = fraction_dataloader(DataLoader(IndexDataset(30), batch_size=3, shuffle=True), size=6, seed=0)
    assert loader.batch_size == 3
    assert isinstance(loader.sampler, RandomSampler)
    assert sorted(seen_indices(loader)) == select_indices(30, size=6, seed=0).tolist()


# --------------------------------------------------------------------------------------- errors
def test_bad_data_fails_clearly_when_the_loader_is_built():
    dm = DataFraction(IndexDataModule(n=10), size=11)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"size=11 is larger than the dataset \(n=10"):
        dm.train_dataloader()
    dm = DataFraction(IndexDataModule(n=10), fraction=0.5, stratify=[0, 1, 2])
    dm.setup("fit")
    with pytest.raises(ValueError, match="stratify labels have length 3 but the training set has 10"):
        dm.train_dataloader()
    dm = DataFraction(IndexDataModule(n=10), fraction=0.5, size_fn=np.ones(4))
    dm.setup("fit")
    with pytest.raises(ValueError, match="size_fn has 4 entries"):
        dm.train_dataloader()
    with pytest.raises(ValueError, match="has no __len__"):
        fraction_dataloader(DataLoader(NoLenDataset(), sampler=[0, 1, 2]), fraction=0.5)
    with pytest.raises(ValueError, match=r"without __len__ .* pass fraction="):
        fraction_dataloader(DataLoader(IndexIterable(10)), size=3)
    with pytest.raises(ValueError, match="stratify= needs a map-style dataset"):
        fraction_dataloader(DataLoader(IndexIterable(10)), fraction=0.5, stratify=[0] * 10)
    two_workers = DataLoader(IndexIterable(10, with_len=True), num_workers=2)
    with pytest.raises(ValueError, match="shard_iterable=True"):
        fraction_dataloader(two_workers, size=3)

