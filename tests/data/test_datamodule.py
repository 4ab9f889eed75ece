"""DataFraction: a drop-in LightningDataModule whose training data is a subset, nothing else changed."""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.boring import CollateSamplerDataModule, IndexDataModule, IndexDataset, IndexRecorder
from helpers.fraction_checks import quick_trainer
from helpers.runif import RunIf
from lightning_utilities.core.overrides import is_overridden
from pytorch_lightning import LightningDataModule
from pytorch_lightning.demos.boring_classes import BoringDataModule, BoringModel
from torch.utils.data import DataLoader

from lightning_scaling.data import DataFraction, FractionSubset, fraction_dataloader
from lightning_scaling.sampling import select_indices

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------- end to end
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


# ----------------------------------------------------------------------------------- delegation
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


# ------------------------------------------------------------------------- settings and reports
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


def test_wrong_types_fail_clearly():
    with pytest.raises(TypeError, match="fraction_dataloader"):
        DataFraction(DataLoader(IndexDataset(4)), fraction=0.5)
    with pytest.raises(TypeError, match="torch DataLoader"):
        fraction_dataloader([1, 2, 3], fraction=0.5)
    with pytest.raises(ValueError, match="pass fraction="):
        fraction_dataloader(DataLoader(IndexDataset(4)))
    assert isinstance(fraction_dataloader(DataLoader(IndexDataset(4)), size=1).dataset, FractionSubset)

