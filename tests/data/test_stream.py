"""Iterable datasets: thinned without materialising the stream, nested, and counted across workers."""

from __future__ import annotations

from helpers.boring import IndexIterable, IndexRecorder
from helpers.fraction_checks import quick_trainer, seen_indices
from helpers.runif import RunIf
from pytorch_lightning import LightningDataModule
from torch.utils.data import DataLoader

from lightning_scaling.data import DataFraction, FractionIterable, fraction_dataloader
from lightning_scaling.sampling import select_indices


# ------------------------------------------------------------------------------------ iterables
def test_iterable_is_thinned_nested_and_counted():
    small = fraction_dataloader(DataLoader(IndexIterable(2000), batch_size=16), fraction=0.1, seed=0)
    large = fraction_dataloader(DataLoader(IndexIterable(2000), batch_size=16), fraction=0.3, seed=0)
    assert isinstance(small.dataset, FractionIterable)
    assert small.dataset.num_samples is None  # no full pass yet
    seen_small, seen_large = seen_indices(small), seen_indices(large)
    assert set(seen_small) <= set(seen_large)
    assert abs(len(seen_small) - 200) < 60
    assert seen_small == seen_indices(small)  # deterministic across passes
    assert small.dataset.num_samples == len(seen_small)
    assert small.dataset.samples_seen == 2 * len(seen_small)


@RunIf(fork=True, skip_windows=True)
def test_iterable_counts_from_workers_reach_the_main_process():
    base = DataLoader(IndexIterable(3000), batch_size=8)
    expected = seen_indices(fraction_dataloader(base, fraction=0.2, seed=1))
    workers = DataLoader(IndexIterable(3000), batch_size=8, num_workers=2, multiprocessing_context="fork")
    # shard=True: the wrapper splits one global stream, so workers change nothing about the subset
    loader = fraction_dataloader(workers, fraction=0.2, seed=1, shard_iterable=True, size_fn=lambda s: 2)
    seen = seen_indices(loader)
    assert sorted(seen) == sorted(expected)
    assert loader.dataset.samples_seen == loader.dataset.num_samples == len(expected)
    assert loader.dataset.train_size == 2 * len(expected)


def test_iterable_size_is_exact_given_a_length():
    loader = fraction_dataloader(DataLoader(IndexIterable(500, with_len=True)), size=25, seed=3)
    assert seen_indices(loader) == select_indices(500, size=25, seed=3).tolist()


def test_datafraction_over_an_iterable_reports_samples_seen():
    class StreamModule(LightningDataModule):
        def train_dataloader(self):
            return DataLoader(IndexIterable(400), batch_size=10)

    dm = DataFraction(StreamModule(), fraction=0.25, seed=0)
    model = IndexRecorder()
    quick_trainer().fit(model, datamodule=dm)
    assert dm.samples_seen == dm.num_samples == dm.train_size == len(model.seen)
    assert dm.size_seen == len(model.seen)
    assert dm.indices is None

