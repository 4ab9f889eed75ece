"""The package's classes with the other Lightning namespace's Trainer: an error naming the right import (issue 19)."""

from __future__ import annotations

import pytest

from lightning_scaling import DataFraction, ScalingSweep
from lightning_scaling._checks import lightning_namespace

L = pytest.importorskip("lightning.pytorch")
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel  # noqa: E402


def _trainer(tmp_path, **kw):
    return L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kw)


def test_a_pytorch_lightning_scaling_sweep_in_a_lightning_pytorch_trainer_names_the_import(tmp_path):
    sweep = ScalingSweep(fractions=[0.125, 0.25, 0.5, 1.0], sweep_dir=str(tmp_path / "sw"))
    with pytest.raises(TypeError, match=r"use `from lightning_scaling.lightning_pytorch import ScalingSweep`"):
        _trainer(tmp_path, callbacks=[sweep]).fit(BoringModel())
    assert not (tmp_path / "sw").exists()


def test_a_pytorch_lightning_datafraction_in_a_lightning_pytorch_trainer_names_the_import(tmp_path):
    dm = DataFraction(BoringDataModule(), fraction=0.5)
    with pytest.raises(TypeError, match=r"use `from lightning_scaling.lightning_pytorch import DataFraction`"):
        _trainer(tmp_path).fit(BoringModel(), datamodule=dm)


def test_the_lightning_pytorch_classes_pass_and_the_namespace_is_read_from_the_class(tmp_path):
    from lightning_scaling.lightning_pytorch import DataFraction as LDataFraction

    _trainer(tmp_path, max_steps=2).fit(BoringModel(), datamodule=LDataFraction(BoringDataModule(), fraction=0.5))
    assert lightning_namespace(L.Trainer()) == "lightning.pytorch"
    assert lightning_namespace(DataFraction(BoringDataModule())) == "pytorch_lightning"
