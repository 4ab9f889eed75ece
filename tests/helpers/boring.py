"""Boring datasets, datamodules and a model that records which samples it trained on.

Every dataset returns sample *indices*, so a test can compare what was seen with the subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from pytorch_lightning import LightningDataModule, LightningModule
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, get_worker_info


class IndexDataset(Dataset):
    """``dataset[i] == i`` for ``i < n``; ``targets`` are ``i % num_classes``."""

    def __init__(self, n: int, num_classes: int = 3) -> None:
        self.n = n
        self.targets = [i % num_classes for i in range(n)] if n <= 10**6 else None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        if not isinstance(index, int):
            raise TypeError(f"expected a Python int index, got {type(index).__name__}")
        if not 0 <= index < self.n:
            raise IndexError(index)
        return index


class IndexIterable(IterableDataset):
    """Yields ``0 .. n-1``. ``worker_shard=True`` splits the stream across DataLoader workers."""

    def __init__(self, n: int, with_len: bool = False, worker_shard: bool = False) -> None:
        self.n = n
        self.with_len = with_len
        self.worker_shard = worker_shard

    def __iter__(self) -> Iterator[int]:
        info = get_worker_info()
        if self.worker_shard and info is not None:
            return iter(range(info.id, self.n, info.num_workers))
        return iter(range(self.n))

    def __len__(self) -> int:
        if not self.with_len:
            raise TypeError("this stream has no length")
        return self.n


class NoLenDataset(Dataset):
    """A map-style dataset without ``__len__``."""

    def __getitem__(self, index: int) -> int:
        return index


class ReverseSampler(Sampler[int]):
    """A custom sampler: the dataset's indices, last first."""

    def __init__(self, data_source: Any) -> None:
        self.data_source = data_source

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.data_source) - 1, -1, -1))

    def __len__(self) -> int:
        return len(self.data_source)


def tagged_collate(batch: list[int]) -> dict[str, Any]:
    """A custom collate_fn: a dict with the indices and a marker proving it ran."""
    return {"idx": torch.tensor(batch), "collated_by": "tagged_collate"}


class IndexDataModule(LightningDataModule):
    """Train/val on :class:`IndexDataset`; loader settings are the constructor's keyword arguments."""

    def __init__(self, n: int = 64, n_val: int = 16, **loader_kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters("n", "n_val")
        self.loader_kwargs = loader_kwargs
        self.batch_size = loader_kwargs.pop("batch_size", 4)
        self.calls: list[str] = []
        self.restored: dict[str, Any] | None = None

    def prepare_data(self) -> None:
        self.calls.append("prepare_data")

    def setup(self, stage: str) -> None:
        self.calls.append(f"setup:{stage}")
        self.train_set = IndexDataset(self.hparams.n)
        self.val_set = IndexDataset(self.hparams.n_val)

    def teardown(self, stage: str) -> None:
        self.calls.append(f"teardown:{stage}")

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, **self.loader_kwargs)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"calls": len(self.calls)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.restored = state_dict


class CollateSamplerDataModule(LightningDataModule):
    """A custom collate_fn, a custom sampler and a transfer hook, as a real project might have."""

    def __init__(self, n: int = 40) -> None:
        super().__init__()
        self.n = n
        self.transferred = 0

    def setup(self, stage: str) -> None:
        self.train_set = IndexDataset(self.n)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=4,
            sampler=ReverseSampler(self.train_set),
            collate_fn=tagged_collate,
            drop_last=True,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.transferred += 1
        return batch


class IndexRecorder(LightningModule):
    """Records the sample indices of every training batch (``batch`` is indices or a tagged dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        idx = batch["idx"] if isinstance(batch, dict) else batch
        self.seen.extend(int(i) for i in idx)
        return self.layer(idx.float().view(-1, 1) / 100).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)
