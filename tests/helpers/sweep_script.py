"""A small real project with a ScalingSweep, re-run by the sweep's tests as a script.

Teacher-student classification: labels are the argmax of a fixed random linear teacher in 32
dimensions; an MLP of width ``hidden`` learns them, and its error falls with data as a power law.
Everything is generated, so the script needs no data on disk.

Test hooks, read from the environment (children inherit it from the controller):
    LS_TEST_SWEEP  JSON keyword arguments of ScalingSweep ("strategy": {...} holds Adaptive's arguments)
    LS_TEST_FAIL   JSON: {"raise_once": f} raises on the first attempt of fraction f,
                   {"nan_hidden": h} makes width h diverge, {"kill_fraction": f} SIGKILLs the run,
                   {"sleep": s} sleeps s seconds in every run before training
    LS_TEST_DDP    "1": the user's Trainer asks for devices=2, strategy="ddp" on CPU
    LS_TEST_WRAP   "1": the script wraps its datamodule in DataFraction itself
    LS_TEST_NO_FORK  "1": runs start as new processes instead of forks of the fork server
    LS_TEST_LAUNCHER  JSON {"kind": "ray" | "slurm", ...options}: the controller's launcher is a
                   RayLauncher / SlurmLauncher with those options (a plain name in LS_TEST_SWEEP's
                   "launcher" works too)
    LS_TEST_NAMESPACE  "lightning": the project imports lightning.pytorch instead of pytorch_lightning
    LS_TEST_WANDB  "logger": the Trainer has an offline WandbLogger; "logger-online": a WandbLogger in
                   W&B's configured mode; "reporter": no logger, the sweep gets a WandbReporter (offline)
                   with the JSON options in LS_TEST_WANDB_REPORTER; "true": ScalingSweep(reporter=True)
    LS_TEST_HPARAMS  JSON keyword arguments added to the model's (its hparams)
    LS_TEST_UNSEEDED  "1": the script builds its model without seeding the run first
    LS_TEST_TRAINER  JSON keyword arguments added to the Trainer's
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_scaling import Adaptive, current_run
from lightning_scaling.sweep import LocalLauncher

if os.environ.get("LS_TEST_NAMESPACE") == "lightning":
    import lightning.pytorch as pl

    from lightning_scaling.lightning_pytorch import DataFraction, ScalingSweep
else:
    import pytorch_lightning as pl

    from lightning_scaling import DataFraction, ScalingSweep

torch.set_num_threads(1)


class TeacherData(pl.LightningDataModule):
    def __init__(self, n_train: int = 4096, n_val: int = 1024, dim: int = 32, classes: int = 4, batch_size: int = 32):
        super().__init__()
        self.n_train, self.n_val, self.dim, self.classes, self.batch_size = n_train, n_val, dim, classes, batch_size

    def setup(self, stage: str) -> None:
        g = torch.Generator().manual_seed(1234)
        teacher = torch.randn(self.dim, self.classes, generator=g)
        x = torch.randn(self.n_train + self.n_val, self.dim, generator=g)
        y = (x @ teacher).argmax(1)
        self.train_set = TensorDataset(x[: self.n_train], y[: self.n_train])
        self.val_set = TensorDataset(x[self.n_train :], y[self.n_train :])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)


class MLP(pl.LightningModule):
    def __init__(self, hidden: int = 32, lr: float = 0.02, nan: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, 4))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        if self.hparams.nan:
            loss = loss * float("nan")
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_err", (logits.argmax(1) != y).float().mean())
        self.log("val_loss", nn.functional.cross_entropy(logits, y))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None, help="a step budget (validation every steps // 4)")
    args = parser.parse_args()

    run = current_run()
    if os.environ.get("LS_TEST_UNSEEDED") != "1":
        run.seed_everything()
    fail = json.loads(os.environ.get("LS_TEST_FAIL", "{}"))
    hidden = run.param("hidden", default=32)
    if run.is_run and not run.probe:
        if fail.get("raise_once") == run.fraction and run.attempt == 1:
            raise RuntimeError("injected failure on the first attempt")
        if fail.get("kill_fraction") == run.fraction:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(fail.get("sleep", 0)))
    model = MLP(hidden=hidden, nan=run.is_run and fail.get("nan_hidden") == hidden,
                **json.loads(os.environ.get("LS_TEST_HPARAMS", "{}")))
    dm = TeacherData()
    if os.environ.get("LS_TEST_WRAP") == "1":
        dm = DataFraction(dm)
    kwargs = json.loads(os.environ["LS_TEST_SWEEP"])
    if isinstance(kwargs.get("strategy"), dict):
        kwargs["strategy"] = Adaptive(**kwargs["strategy"])
    if os.environ.get("LS_TEST_NO_FORK") == "1":
        kwargs["launcher"] = LocalLauncher(slots=kwargs.pop("slots", None), fork_server=False)
    launcher = json.loads(os.environ.get("LS_TEST_LAUNCHER", "null"))
    if launcher and run.is_controller:  # runs need no launcher (nor ray/submitit imported)
        from lightning_scaling.sweep import RayLauncher, SlurmLauncher

        kind = launcher.pop("kind")
        kwargs["launcher"] = {"ray": RayLauncher, "slurm": SlurmLauncher}[kind](**launcher)
    wandb_mode = os.environ.get("LS_TEST_WANDB")
    logger = False
    if wandb_mode:
        from lightning_scaling import WandbReporter

        options = json.loads(os.environ.get("LS_TEST_WANDB_REPORTER", "{}"))
        if wandb_mode in ("logger", "logger-online"):
            from pytorch_lightning.loggers import WandbLogger

            logger = WandbLogger(project="ls-test", save_dir=args.root, offline=wandb_mode == "logger")
        else:
            options.setdefault("init_kwargs", {"mode": "offline", "dir": args.root})
        # "true": ScalingSweep(reporter=True) alone, W&B as the environment configures it
        kwargs["reporter"] = True if wandb_mode == "true" else WandbReporter(project="ls-test", **options)
    sweep = ScalingSweep(**kwargs)
    ddp = os.environ.get("LS_TEST_DDP") == "1"
    budget = ({"max_steps": args.steps, "max_epochs": -1, "val_check_interval": max(args.steps // 4, 1),
               "check_val_every_n_epoch": None} if args.steps else {"max_epochs": args.epochs})
    budget.update(json.loads(os.environ.get("LS_TEST_TRAINER", "{}")))
    trainer = pl.Trainer(
        default_root_dir=args.root, **budget, accelerator="cpu",
        devices=2 if ddp else 1, strategy="ddp" if ddp else "auto", callbacks=[sweep],
        logger=logger, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    if run.is_controller and trainer.is_global_zero:
        assert sweep.result is not None
        print("RESULT", json.dumps({"law": sweep.result.law.to_dict() if sweep.result.law else None,
                                    "n_runs": len(sweep.result.runs)}))
    if run.is_controller and not trainer.is_global_zero:
        print("RANK", trainer.global_rank, "has result", sweep.result is not None)


if __name__ == "__main__":
    main()
