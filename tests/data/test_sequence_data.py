"""Sequence data: batch samplers built on the dataset and contiguous subsets (issue 19 item 5).

Lightning's own LSTM demo (``pytorch_lightning.demos.lstm``) batches its data with a
``SequenceSampler(dataset, batch_size)``, a batch sampler without a ``.sampler``: DataFraction
rebuilds it on the subset. ``contiguous=True`` keeps one block of consecutive samples, nested.
"""

from __future__ import annotations

import itertools

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.demos.lstm import LightningLSTM, SequenceSampler
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_scaling.data import DataFraction, fraction_dataloader


class Positions(Dataset):
    """Item ``i`` is ``i``: what a batch holds says which samples were trained on."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _seen(loader: DataLoader) -> list[int]:
    return sorted(int(i) for batch in loader for i in batch)


def test_a_batch_sampler_without_a_sampler_batches_the_subset():
    data = Positions(100)
    loader = DataLoader(data, batch_sampler=SequenceSampler(data, batch_size=4))
    small = fraction_dataloader(loader, fraction=0.2, seed=0)
    kept = small.dataset.indices.tolist()
    assert len(kept) == 20 and isinstance(small.batch_sampler, SequenceSampler)
    assert small.batch_sampler.dataset is small.dataset and len(small) == 5  # 20 samples / batch 4
    assert _seen(small) == kept  # every sample of the subset, none outside it


def test_contiguous_subsets_are_one_block_nested_and_set_by_the_data_seed():
    data = Positions(1000)
    loader = DataLoader(data, batch_sampler=SequenceSampler(data, batch_size=4))
    blocks = {}
    for fraction in (0.05, 0.1, 0.25, 0.5, 1.0):
        kept = fraction_dataloader(loader, fraction=fraction, seed=7, contiguous=True).dataset.indices.tolist()
        assert kept == list(range(kept[0], kept[0] + len(kept)))  # one block of consecutive positions
        blocks[fraction] = set(kept)
    sizes = sorted(blocks)
    assert all(blocks[a] <= blocks[b] for a, b in itertools.pairwise(sizes))  # nested
    again = fraction_dataloader(loader, fraction=0.1, seed=7, contiguous=True).dataset.indices.tolist()
    other = fraction_dataloader(loader, fraction=0.1, seed=8, contiguous=True).dataset.indices.tolist()
    assert set(again) == blocks[0.1] and set(other) != blocks[0.1]


def test_datafraction_takes_contiguous_and_refuses_it_with_stratify_or_a_non_bool():
    dm = DataFraction(_Tokens(), fraction=0.25, seed=3, contiguous=True)
    dm.setup("fit")
    idx = dm.train_dataloader().dataset.indices.tolist()
    assert idx == list(range(idx[0], idx[0] + 16))
    with pytest.raises(TypeError, match="contiguous must be True or False"):
        DataFraction(_Tokens(), fraction=0.25, contiguous="yes")
    bad = DataFraction(_Tokens(), fraction=0.25, contiguous=True, stratify=[0, 1] * 32)
    bad.setup("fit")
    with pytest.raises(ValueError, match="drop stratify= or contiguous="):
        bad.train_dataloader()


class _Tokens(pl.LightningDataModule):
    """64 sequences of 8 tokens (vocabulary 16), batched like the LSTM demo's WikiText2."""

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 16, (64, 8), generator=g)
        self.train_set = TensorDataset(x, x.roll(-1, dims=1))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_sampler=SequenceSampler(self.train_set, batch_size=4))


class _SmallLSTM(LightningLSTM):
    def __init__(self) -> None:
        super().__init__(vocab_size=16)

    def prepare_data(self) -> None:  # the demo downloads WikiText2 here; the datamodule brings the data
        pass


def test_lightnings_lstm_demo_trains_on_a_contiguous_subset(tmp_path):
    torch.set_num_threads(1)
    model = _SmallLSTM()
    dm = DataFraction(_Tokens(), fraction=0.25, seed=0, contiguous=True)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert dm.num_samples == 16 and trainer.global_step == 4  # 16 sequences in batches of 4


def test_a_loader_made_inside_a_hook_gets_no_advice_to_make_it_there():
    class Odd(DataLoader):  # its __init__ has no `dataset`: Lightning cannot re-create it over a subset
        def __init__(self, data, **kw):
            super().__init__(data, **kw)

    data = Positions(40)
    made_outside = Odd(data, batch_size=4)
    with pytest.raises(TypeError, match="Create the loader inside train_dataloader"):
        fraction_dataloader(made_outside, fraction=0.5)
    made_inside = Odd(data, batch_size=4)
    object.__setattr__(made_inside, "__pl_saved_kwargs", {})  # Lightning's mark of a loader made in a hook
    with pytest.raises(TypeError) as info:
        fraction_dataloader(made_inside, fraction=0.5)
    assert "inside train_dataloader" not in str(info.value) and "Make its __init__ accept" in str(info.value)
