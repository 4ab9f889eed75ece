"""DataFraction and fraction_dataloader: a drop-in subset of the training data, nothing else changed."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning_utilities.core.overrides import is_overridden
from pytorch_lightning import LightningDataModule, Trainer
from pytorch_lightning.demos.boring_classes import BoringDataModule, BoringModel
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)

from lightning_scaling.data import (
    DataFraction,
    FractionIterable,
    FractionSubset,
    fraction_dataloader,
    per_sample,
)
from lightning_scaling.sampling import select_indices, stratified_indices

try:  # pytest's default import mode puts tests/ on sys.path; a tests package would need the long name
    from helpers.boring import (
        CollateSamplerDataModule,
        IndexDataModule,
        IndexDataset,
        IndexIterable,
        IndexRecorder,
        NoLenDataset,
        tagged_collate,
    )
    from helpers.runif import RunIf
except ModuleNotFoundError:  # pragma: no cover
    from tests.helpers.boring import (
        CollateSamplerDataModule,
        IndexDataModule,
        IndexDataset,
        IndexIterable,
        IndexRecorder,
        NoLenDataset,
        tagged_collate,
    )
    from tests.helpers.runif import RunIf

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quick_trainer(**kwargs) -> Trainer:
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return Trainer(**{**defaults, **kwargs})


def seen_indices(loader: DataLoader) -> list[int]:
    out: list[int] = []
    for batch in loader:
        out.extend(int(i) for i in (batch["idx"] if isinstance(batch, dict) else batch))
    return out


# ------------------------------------------------------------------------------------- end to end
def test_boring_datamodule_trains_on_the_subset_and_keeps_eval_data():
    dm = DataFraction(BoringDataModule(), fraction=0.25, seed=0)
    trainer = quick_trainer(limit_val_batches=2)
    trainer.fit(BoringModel(), datamodule=dm)
    assert trainer.num_training_batches == 16  # 64 samples * 0.25, batch size 1
    assert dm.num_samples == dm.train_size == 16
    assert dm.trainer is trainer
    assert dm.datamodule.trainer is trainer
    dm.setup("test")
    assert len(dm.val_dataloader()) == 64
    assert len(dm.test_dataloader()) == 64


def test_custom_collate_sampler_and_hooks_survive_wrapping():
    wrapped = CollateSamplerDataModule(n=40)
    dm = DataFraction(wrapped, fraction=0.5, seed=1)
    model = IndexRecorder()
    quick_trainer().fit(model, datamodule=dm)
    subset = select_indices(40, fraction=0.5, seed=1)
    # the custom ReverseSampler still orders the data, restricted to the subset; drop_last=True
    assert model.seen == subset[::-1].tolist()[:20]
    assert wrapped.transferred == 5  # the wrapped module's on_before_batch_transfer ran per batch
    batch = next(iter(dm.train_dataloader()))
    assert batch["collated_by"] == "tagged_collate"


@pytest.mark.slow
@RunIf(distributed=True, skip_windows=True)
# k = 20 (even: disjoint), 15 (odd: one padded repeat), 1 (tiny, k < world size: both ranks see it)
@pytest.mark.parametrize(("n", "fraction"), [(100, 0.2), (50, 0.3), (10, 0.05)])
def test_ddp_ranks_get_disjoint_shards_whose_union_is_the_subset(tmp_path, n, fraction):
    script = REPO / "tests" / "helpers" / "ddp_fraction_script.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MASTER_PORT", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(n), str(fraction), "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    subset = select_indices(n, fraction=fraction, seed=3).tolist()
    k = len(subset)
    assert all(r["indices"] == subset and r["num_samples"] == k for r in ranks)
    assert [(r["rank"], r["world_size"], r["backend"]) for r in ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]
    first, second = ranks[0]["seen"], ranks[1]["seen"]
    assert sorted(set(first) | set(second)) == subset
    assert len(first) == len(second) == -(-k // 2)
    if k % 2 == 0:
        assert not set(first) & set(second)
    else:  # DistributedSampler pads with one repeated subset sample
        assert len(set(first) & set(second)) == 1


# ------------------------------------------------------------------------------------- delegation
def test_everything_but_the_training_data_is_the_wrapped_modules():
    wrapped = IndexDataModule(n=64, n_val=16, batch_size=8)
    dm = DataFraction(wrapped, fraction=0.5)
    dm.prepare_data()
    dm.setup("fit")
    dm.teardown("fit")
    assert wrapped.calls == ["prepare_data", "setup:fit", "teardown:fit"]
    assert dm.hparams == wrapped.hparams == {"n": 64, "n_val": 16}
    assert dm.hparams_initial == wrapped.hparams_initial
    assert dm.state_dict() == {"calls": 3}
    dm.load_state_dict({"calls": 7})
    assert wrapped.restored == {"calls": 7}
    assert dm.val_set is wrapped.val_set  # plain attribute reads
    dm.batch_size = 16  # plain attribute writes (e.g. the batch-size tuner) reach the wrapped module
    assert wrapped.batch_size == 16
    assert dm.train_dataloader().batch_size == 16
    dm.prepare_data_per_node = False
    assert wrapped.prepare_data_per_node is False
    assert dm.datamodule is wrapped
    assert len(dm.val_dataloader()) == 1
    assert repr(dm) == "DataFraction(IndexDataModule, fraction=0.5, seed=0)"


def test_lightning_sees_the_same_overridden_hooks_as_on_the_wrapped_module():
    for wrapped in (IndexDataModule(), CollateSamplerDataModule(), BoringDataModule()):
        dm = DataFraction(wrapped, fraction=0.5)
        for hook in ("prepare_data", "val_dataloader", "test_dataloader", "predict_dataloader"):
            assert is_overridden(hook, dm, LightningDataModule) == is_overridden(
                hook, wrapped, LightningDataModule
            )
        for hook in ("transfer_batch_to_device", "on_before_batch_transfer", "on_after_batch_transfer"):
            # a transfer hook only the *model* overrides must keep winning
            assert is_overridden(hook, dm, LightningDataModule) == is_overridden(
                hook, wrapped, LightningDataModule
            )


def test_wrapper_survives_pickle_and_deepcopy():
    dm = DataFraction(IndexDataModule(n=32), fraction=0.25, seed=5)
    dm.setup("fit")
    for clone in (pickle.loads(pickle.dumps(dm)), copy.deepcopy(dm)):
        assert clone.fraction == 0.25
        assert clone.seed == 5
        assert (
            clone.train_dataloader().dataset.indices.tolist()
            == dm.train_dataloader().dataset.indices.tolist()
        )


def test_checkpoint_round_trip_restores_the_wrapped_state(tmp_path):
    wrapped = IndexDataModule(n=16)
    trainer = quick_trainer(default_root_dir=tmp_path, enable_checkpointing=True, limit_val_batches=0)
    trainer.fit(IndexRecorder(), datamodule=DataFraction(wrapped, fraction=0.5))
    ckpt = next(tmp_path.rglob("*.ckpt"))
    saved = torch.load(ckpt, weights_only=False)["DataFraction"]
    assert saved == {"calls": 2}  # the wrapped module's state_dict: prepare_data, setup
    again = IndexDataModule(n=16)
    quick_trainer(max_epochs=2, limit_val_batches=0).fit(
        IndexRecorder(), datamodule=DataFraction(again, fraction=0.5), ckpt_path=ckpt
    )
    assert again.restored == saved


# --------------------------------------------------------------------------------- loader settings
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


# ---------------------------------------------------------------------------------------- subsets
def test_subsets_are_nested_as_the_sweep_changes_the_fraction():
    dm = DataFraction(IndexDataModule(n=1000), seed=4)
    dm.setup("fit")
    assert dm.num_samples is None  # nothing built yet
    full = dm.train_dataloader()  # neither fraction nor size: the training data unchanged
    assert len(full.dataset) == dm.num_samples == 1000
    previous: set[int] = set()
    for fraction in (0.01, 0.05, 0.2, 1.0):
        dm.fraction = fraction
        dm.train_dataloader()
        current = set(dm.indices.tolist())
        assert previous <= current
        assert len(current) == round(1000 * fraction)
        previous = current
    dm.set_fraction(size=37, seed=4)
    dm.train_dataloader()
    assert dm.size == 37
    assert dm.fraction is None
    assert set(dm.indices.tolist()) <= previous
    dm.seed = 5
    dm.train_dataloader()
    assert dm.num_samples == 37


def test_size_fn_reports_the_training_size_in_the_users_unit():
    tokens = np.arange(100) % 7 + 1  # "sample i has tokens[i] tokens"
    for size_fn in (tokens, lambda sample: int(tokens[sample])):
        dm = DataFraction(IndexDataModule(n=100), fraction=0.2, seed=0, size_fn=size_fn, size_unit="tokens")
        dm.setup("fit")
        dm.train_dataloader()
        assert dm.size_unit == "tokens"
        assert dm.num_samples == 20
        assert dm.train_size == int(tokens[select_indices(100, fraction=0.2, seed=0)].sum())


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


# -------------------------------------------------------------------------------------- iterables
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


# ---------------------------------------------------------------------------------------- scale
def test_a_billion_sample_dataset_is_subset_in_under_a_second():
    class Huge(torch.utils.data.Dataset):
        def __len__(self):
            return 10**9

        def __getitem__(self, index):
            return index

    original = DataLoader(Huge(), batch_size=256, shuffle=True)
    fraction_dataloader(original, size=10)  # warm-up
    start = time.perf_counter()
    loader = fraction_dataloader(original, fraction=0.001, seed=0)
    assert time.perf_counter() - start < 1.0
    assert len(loader.dataset) == 10**6
    assert next(iter(loader)).shape == (256,)


# --------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": 0}, ValueError, r"fraction must be in \(0, 1\]"),
        ({"fraction": 1.5}, ValueError, r"got 1.5; pass a fraction"),
        ({"fraction": float("nan")}, ValueError, "got nan"),
        ({"fraction": 0.5, "size": 3}, ValueError, "not both"),
        ({"size": 0}, ValueError, "size must be at least 1"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"size_fn": "tokens"}, TypeError, "size_fn must be a callable"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataFraction(IndexDataModule(), **kwargs)


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


def test_wrong_types_fail_clearly():
    with pytest.raises(TypeError, match="fraction_dataloader"):
        DataFraction(DataLoader(IndexDataset(4)), fraction=0.5)
    with pytest.raises(TypeError, match="torch DataLoader"):
        fraction_dataloader([1, 2, 3], fraction=0.5)
    with pytest.raises(ValueError, match="pass fraction="):
        fraction_dataloader(DataLoader(IndexDataset(4)))
    assert isinstance(fraction_dataloader(DataLoader(IndexDataset(4)), size=1).dataset, FractionSubset)


def test_fraction_subset_hands_python_ints_to_the_dataset():
    subset = FractionSubset(IndexDataset(10), np.array([3, 7]))
    assert subset[1] == 7
    assert subset.__getitems__([0, 1]) == [3, 7]
