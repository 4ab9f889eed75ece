"""Train 1 epoch with DDP on 2 CPU processes (gloo) over a DataFraction; each rank writes what it saw.

Usage: ``python ddp_fraction_script.py OUT_DIR N FRACTION SEED``. Lightning re-launches this
script for rank 1, so it must run top to bottom from the command line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.strategies import DDPStrategy
from torch.utils.data import DataLoader, Dataset

from lightning_scaling.data import DataFraction


class IndexDataset(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


class IndexDataModule(LightningDataModule):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def train_dataloader(self) -> DataLoader:
        return DataLoader(IndexDataset(self.n), batch_size=2, shuffle=True)


class Recorder(LightningModule):
    def __init__(self, out_dir: Path) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[int] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen.extend(int(i) for i in batch)
        return self.layer(batch.float().view(-1, 1) / 100).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_train_end(self) -> None:
        dm = self.trainer.datamodule
        record = {
            "rank": self.global_rank,
            "world_size": self.trainer.world_size,
            "backend": torch.distributed.get_backend(),
            "seen": self.seen,
            "num_samples": dm.num_samples,
            "indices": dm.indices.tolist(),
        }
        (self.out_dir / f"rank{self.global_rank}.json").write_text(json.dumps(record))


def main() -> None:
    out_dir, n, fraction, seed = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    trainer = Trainer(
        accelerator="cpu",
        devices=2,
        strategy=DDPStrategy(process_group_backend="gloo"),
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    dm = DataFraction(IndexDataModule(n), fraction=fraction, seed=seed)
    trainer.fit(Recorder(out_dir), datamodule=dm)
    # Gloo's worker threads abort the interpreter at exit (SIGABRT) if a peer leaves first; the documented
    # shutdown is a barrier and an explicit destroy on every rank (Lightning only does this for NCCL).
    trainer.strategy.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
