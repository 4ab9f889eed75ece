"""The run role of :class:`~lightning_scaling.ScalingSweep`: inside one run the controller started.

The callback applies the run's data size (and an adaptive rung's budget), watches the monitored
value and the training loss, and writes the run's record (:mod:`lightning_scaling.sweep.record`)
when training ends or raises.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch

from lightning_scaling._version import __version__
from lightning_scaling.callbacks.controller_role import sweep_folder, wandb_reporter
from lightning_scaling.lightning_internals import (
    continue_from_checkpoint,
    set_wandb_experiment,
    train_data_source,
    wandb_logger_init_kwargs,
)
from lightning_scaling.reporting.wandb import WandbReporter
from lightning_scaling.sweep import fingerprint
from lightning_scaling.sweep.context import RunContext
from lightning_scaling.sweep.controller import PROBE_ID, SweepError
from lightning_scaling.sweep.plan import NOT_IN_PLAN
from lightning_scaling.sweep.record import DIVERGED, FAILED, OK, RunRecord, build_record
from lightning_scaling.sweep.store import SweepStore, atomic_write_json

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from lightning_scaling.callbacks.scaling_sweep import ScalingSweep

__all__ = ["NonFiniteLoss", "RunRole"]


def versions(namespace: ModuleType) -> dict[str, str]:
    """The versions a record notes: lightning_scaling, torch, the Lightning namespace, python."""
    return {"lightning_scaling": __version__, "torch": torch.__version__,
            namespace.__name__: getattr(namespace, "__version__", "?"), "python": platform.python_version()}


def device_info(device: torch.device) -> dict[str, Any]:
    """The record's ``device``, ``max_memory_allocated`` and ``device_memory`` for the run's root device.

    >>> device_info(torch.device("cpu"))
    {'device': 'cpu', 'max_memory_allocated': None, 'device_memory': None}
    """
    if device.type != "cuda":
        return {"device": str(device), "max_memory_allocated": None, "device_memory": None}
    index = device.index if device.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"device": f"cuda:{index} ({props.name})",
            "max_memory_allocated": int(torch.cuda.max_memory_allocated(index)),
            "device_memory": int(props.total_memory)}
# the Trainer settings that change what a run trains to (its devices are the slot's, so not among them)
TRAINER_SETTINGS = (
    "max_epochs", "min_epochs", "max_steps", "min_steps", "precision", "accumulate_grad_batches",
    "gradient_clip_val", "gradient_clip_algorithm", "val_check_interval", "check_val_every_n_epoch",
    "limit_train_batches", "limit_val_batches", "reload_dataloaders_every_n_epochs",
)


def run_fingerprint(trainer: pl.Trainer, grid: Sequence[str], namespace: ModuleType) -> dict[str, Any]:
    """This run's :mod:`~lightning_scaling.sweep.fingerprint`, read before the sweep changes any Trainer limit."""
    import __main__
    from lightning_scaling.data import DataFraction

    path = getattr(__main__, "__file__", None) or (sys.argv[0] if sys.argv else None)
    script = Path(path).read_bytes() if path and Path(path).is_file() else None
    settings = {k: getattr(trainer, k, None) for k in TRAINER_SETTINGS}
    settings["deterministic"] = torch.are_deterministic_algorithms_enabled()
    settings["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    dm = getattr(trainer, "datamodule", None)
    if isinstance(dm, DataFraction):
        dm = dm.datamodule
    args = fingerprint.strip_sweep_args(sys.argv[1:], grid)
    return fingerprint.make_fingerprint(
        script=script, args=args, files=fingerprint.arg_files(args), trainer=settings,
        model=dict(getattr(trainer.lightning_module, "hparams", None) or {}),
        datamodule=dict(getattr(dm, "hparams", None) or {}),
        versions={k: v for k, v in versions(namespace).items() if k != "python"})


def unseeded_model_warning(seed: int, environ: Mapping[str, str]) -> str | None:
    """What to tell a run whose model was built before its seed was set, or ``None``.

    Lightning's ``seed_everything`` (``current_run().seed_everything()``, ``pl.seed_everything(seed)``,
    LightningCLI's ``--seed_everything``) records the seed in ``PL_GLOBAL_SEED``; the sweep removes it
    from every run's environment. Without it every seed of a grid point starts from the same weights
    (torch's fixed start-up seed), so the seeds measure data-order noise only.

    >>> unseeded_model_warning(1, {"PL_GLOBAL_SEED": "1"}) is None
    True
    >>> unseeded_model_warning(1, {})[:40]
    'the model was built before the run seed '
    """
    if environ.get("PL_GLOBAL_SEED") == str(seed):
        return None
    return (f"the model was built before the run seed ({seed}) was set: every seed of a grid point starts from "
            "the same weights, so the seeds measure data-order noise only; call current_run().seed_everything() "
            "before building the model")


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class RunRole:
    """One run: its data, its monitored value, its record.

    Args:
        sweep: the callback, whose arguments are the run's study (its plan must hold the run).
        run: this process's context (the run's spec, attempt and launch token).
        namespace: the Lightning namespace of the Trainer (``pytorch_lightning`` or ``lightning.pytorch``).
    """

    def __init__(self, sweep: ScalingSweep, run: RunContext, namespace: ModuleType) -> None:
        self.sweep = sweep
        self.run = run
        self.namespace = namespace
        self.best: float | None = None
        self.best_step: int | None = None
        self.best_epoch: int | None = None
        self.at_best: dict[str, float] = {}
        self.last: float | None = None
        self.at_last: dict[str, float] = {}
        self.status = OK
        self.reason: str | None = None
        self.t_start = 0.0
        self.loader_dataset: Any = None
        self.datamodule: Any = None
        self.written = False
        self.loss_watch = NonFiniteLoss()
        self.resumed = False
        self.checkpoint: str | None = None
        self.budget_desc: str | None = None
        self.wall_before = 0.0  # an adaptive rung continued from a checkpoint: the earlier rungs' wall time
        self.fingerprint: dict[str, Any] | None = None
        self.unseeded: str | None = None  # what to tell a run whose model was built before its seed was set

    @property
    def monitor(self) -> str:
        return self.sweep.plan.monitor

    # ------------------------------------------------------------------------------ setup
    def before_loggers(self, trainer: pl.Trainer) -> None:
        """Start the ``WandbLogger``'s run before Lightning would: none in the probe (in any mode), in the
        mode the controller chose, and never waiting long on W&B."""
        reporter, logger = wandb_reporter(self.sweep.reporter, trainer, self.namespace)
        kwargs = wandb_logger_init_kwargs(logger) if logger is not None and trainer.is_global_zero else None
        if kwargs is None:
            return
        run = (reporter or WandbReporter()).open_run_for_logger(kwargs, probe=self.run.probe)
        if run is not None:
            set_wandb_experiment(logger, run)

    def setup(self, trainer: pl.Trainer) -> None:
        """Check the run belongs to this script's plan, apply its data size, rung and probe limits."""
        self.t_start = time.time()  # a run that fails in setup is recorded with its own short wall time
        spec = self.run.spec
        assert spec is not None
        self.check_plan(spec.base_id or spec.run_id)
        self.unseeded = unseeded_model_warning(spec.seed, os.environ)
        if self.unseeded is not None:
            warnings.warn(self.unseeded, UserWarning, stacklevel=2)
        self.run.seed_everything()  # once per run: a no-op if the script seeded it before building the model
        self.check_fingerprint(trainer)
        self.apply_fraction(trainer)
        if trainer.world_size > 1:
            # Lightning destroys only NCCL groups at exit; a gloo group left to interpreter teardown can
            # abort the process (SIGABRT) after the record is written, which reads as a failed run.
            atexit.register(_destroy_process_group)
        reporter, logger = wandb_reporter(self.sweep.reporter, trainer, self.namespace)
        if reporter is not None and logger is not None and trainer.is_global_zero:
            reporter.run_started(logger.experiment, self.wandb_info())
        if spec.budget is not None and not self.run.probe:
            self.apply_rung(trainer, spec.budget, spec.resume_from)
        if self.run.probe:
            trainer.limit_train_batches = 1
            trainer.limit_val_batches = 1
            trainer.num_sanity_val_steps = 0
            trainer.fit_loop.max_epochs = 1
            # validate after the one batch, also when the Trainer validates every N steps
            trainer.val_check_interval = 1.0
            trainer.check_val_every_n_epoch = 1
        self.t_start = time.time()

    def check_fingerprint(self, trainer: pl.Trainer) -> None:
        """Note this run's fingerprint; stop before training if it matches none of the finished runs'
        the controller expects (``sweep/fingerprint.py``)."""
        self.fingerprint = run_fingerprint(trainer, list(self.sweep.plan.grid), self.namespace)
        expect = os.environ.get(fingerprint.ENV_EXPECT)
        changes = fingerprint.check(self.fingerprint, json.loads(expect) if expect else None)
        if changes:
            self.status, self.reason = FAILED, fingerprint.refusal(changes)
            raise SweepError(self.reason)
    def check_plan(self, run_id: str) -> None:
        """Refuse a run whose study differs from this script's ScalingSweep (the probe: any difference),
        naming the arguments that differ (a deterministic failure: the controller does not retry it)."""
        in_plan = run_id in {r.run_id for r in self.sweep.plan.runs}
        if in_plan and not self.run.probe:
            return
        stored = SweepStore(self.run.sweep_dir).read_plan() if self.run.sweep_dir else None
        diffs = self.sweep.plan.differences(stored) if stored is not None else []
        if in_plan and not diffs:
            return
        what = ("; ".join(diffs) + " (the controller's -> this script's)") if diffs else "unknown differences"
        raise SweepError(f"run {run_id} {NOT_IN_PLAN}: the script's ScalingSweep arguments differ from the "
                         f"controller's ({what}); give run_sweep (or the controller's ScalingSweep) the same "
                         "arguments as the script's ScalingSweep")

    def apply_fraction(self, trainer: pl.Trainer) -> None:
        """Train on the run's subset: a DataFraction is told its size; any other training data is wrapped."""
        from lightning_scaling.data import DataFraction, fraction_dataloader

        spec = self.run.spec
        assert spec is not None
        dm = getattr(trainer, "datamodule", None)
        if isinstance(dm, DataFraction):
            dm.set_fraction(fraction=spec.fraction, size=spec.size, seed=spec.data_seed)
            self.datamodule = dm
            return
        source, instance = train_data_source(trainer)

        def wrap(loader: Any) -> Any:
            return fraction_dataloader(loader, fraction=spec.fraction, size=spec.size, seed=spec.data_seed,
                                       size_fn=self.sweep.size_fn, size_unit=self.sweep.size_unit)

        if isinstance(instance, self.namespace.LightningDataModule | self.namespace.LightningModule):
            original = instance.train_dataloader

            def train_dataloader() -> Any:
                loader = wrap(original())
                self.loader_dataset = loader.dataset
                return loader

            # an instance attribute shadows the method for this process (a run) only
            instance.train_dataloader = train_dataloader
        elif isinstance(instance, torch.utils.data.DataLoader):
            assert source is not None
            source.instance = wrap(instance)
            self.loader_dataset = source.instance.dataset
        else:
            raise SweepError(
                "ScalingSweep could not find the training data to subsample (the Trainer's data source is "
                f"{type(instance).__name__}); wrap your datamodule in lightning_scaling.DataFraction, or pass "
                "train_dataloaders=DataLoader(...) to fit"
            )

    def apply_rung(self, trainer: pl.Trainer, budget: float, resume_from: str | None) -> None:
        """An adaptive study's rung: train to ``budget`` of the Trainer's limit, continuing from the
        previous rung's checkpoint (weights, optimiser, loops, callbacks) when it exists."""
        loop = trainer.fit_loop
        if loop.max_steps is not None and loop.max_steps > 0:
            # the fit loop reads its step limit from the epoch loop (its own max_steps has no setter)
            loop.epoch_loop.max_steps = max(1, math.ceil(budget * loop.max_steps - 1e-9))
            self.budget_desc = f"max_steps={loop.max_steps}"
        elif loop.max_epochs is not None and loop.max_epochs > 0:
            loop.max_epochs = max(1, math.ceil(budget * loop.max_epochs - 1e-9))
            self.budget_desc = f"max_epochs={loop.max_epochs}"
        else:
            raise SweepError("an adaptive study's rungs are fractions of the Trainer's max_epochs or max_steps; "
                             "set one of them on the Trainer")
        if not resume_from or not os.path.isfile(resume_from):
            self.resumed = False
            return
        continue_from_checkpoint(trainer, resume_from, self.namespace)
        self.resumed = True

    # ------------------------------------------------------------------------ the hooks' work
    def on_validation_end(self, trainer: pl.Trainer) -> None:
        """Keep the best and the last monitored value (and every metric at each); a missing monitor fails the run."""
        self.diverged(trainer, self.loss_watch.flush(int(trainer.global_step)))
        metrics: Mapping[str, Any] = trainer.callback_metrics
        if self.monitor not in metrics:
            self.status, self.reason = FAILED, self.missing_monitor(sorted(metrics))
            raise SweepError(self.reason)
        value = float(metrics[self.monitor])
        # every other scalar logged metric of the same model, so other metrics (top-5 error, loss) can be
        # fitted for the models the monitor picked: SweepResult.from_records(..., metric="val_top5")
        scalars = {k: float(v) for k, v in metrics.items()
                   if isinstance(v, torch.Tensor | float | int) and torch.as_tensor(v).numel() == 1}
        self.last, self.at_last = value, scalars
        if not math.isfinite(value):
            self.diverged(trainer, f"{self.monitor} became {value} at step {trainer.global_step}")
            return
        mode = self.sweep.plan.mode
        better = self.best is None or (value < self.best if mode == "min" else value > self.best)
        if better:
            self.best, self.best_step, self.best_epoch = value, int(trainer.global_step), int(trainer.current_epoch)
            self.at_best = scalars

    def on_train_batch_end(self, trainer: pl.Trainer, outputs: Any) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self.diverged(trainer, self.loss_watch.update(loss, int(trainer.global_step)))

    def diverged(self, trainer: pl.Trainer, reason: str | None) -> None:
        if reason is not None and self.status == OK:
            self.status, self.reason = DIVERGED, reason
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.diverged(trainer, self.loss_watch.flush(int(trainer.global_step)))
        if self.status == OK and self.best is None and not self.run.probe:
            self.status, self.reason = FAILED, "validation never ran, so there is no monitored value"
        path = self.run.spec.save_checkpoint if self.run.spec is not None else None
        if path and self.status == OK and not self.run.probe:
            # the end of an adaptive rung (every rank: saving may be collective); a promoted run continues
            # from this file in its next rung (see sweep/adaptive.py)
            trainer.save_checkpoint(path)
            self.checkpoint = path
        self.write(trainer, pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """The run raised: a failed record (an interrupt is no failure: the dispatcher does not call this)."""
        self.status = FAILED
        last = traceback.format_exception_only(type(exception), exception)[-1].strip()
        self.reason = self.reason or last
        with contextlib.suppress(Exception):  # the original exception is the one to see
            self.write(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        """The best monitored value so far: an adaptive rung's checkpoint carries it to the next rung."""
        return {"best": self.best, "best_step": self.best_step, "best_epoch": self.best_epoch,
                "at_best": self.at_best, "wall_time_s": self.wall_before + time.time() - self.t_start}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.best, self.best_step = state_dict.get("best"), state_dict.get("best_step")
        self.best_epoch, self.at_best = state_dict.get("best_epoch"), state_dict.get("at_best") or {}
        self.wall_before = float(state_dict.get("wall_time_s") or 0.0)

    # ------------------------------------------------------------------------------ the record
    def record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> RunRecord:
        """This run's record (:class:`~lightning_scaling.sweep.record.RunRecord`), as it stands now."""
        spec = self.run.spec
        assert spec is not None
        src = self.datamodule if self.datamodule is not None else self.loader_dataset
        train_size = getattr(src, "train_size", None)
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        now = time.time()
        checkpoint: dict[str, Any] = {"checkpoint": self.checkpoint} if self.checkpoint is not None else {}
        adaptive: dict[str, Any] = {} if spec.budget is None else {
            "budget_limit": self.budget_desc, "resumed_from": spec.resume_from if self.resumed else None,
            "cumulative_wall_time_s": round(self.wall_before + now - self.t_start, 3)}
        return build_record(
            spec, status=self.status, attempt=self.run.attempt, launch=self.run.launch, reason=self.reason,
            num_samples=getattr(src, "num_samples", None),
            train_size=float(train_size) if train_size is not None else None,
            size_unit=getattr(src, "size_unit", self.sweep.size_unit),
            trainable_params=int(trainable), monitor=self.monitor, mode=self.sweep.plan.mode,
            best_value=self.best, best_step=self.best_step, best_epoch=self.best_epoch, metrics_at_best=self.at_best,
            final_value=self.last, metrics_at_final=self.at_last, select=self.sweep.plan.select,
            steps=int(trainer.global_step), epochs=int(trainer.current_epoch),
            wall_time_s=round(now - self.t_start, 3), started_at=self.t_start, ended_at=now,
            host=socket.gethostname(), devices=os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            versions=versions(self.namespace), **adaptive, **checkpoint, **device_info(pl_module.device),
            **({"fingerprint": self.fingerprint} if self.fingerprint is not None else {}),
        )

    def write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write the record once, on global rank 0 (the probe writes ``probe.json`` instead), and report it."""
        if self.written or not trainer.is_global_zero:
            return
        self.written = True
        store = SweepStore(sweep_folder(self.sweep, trainer, self.run))
        record = self.record(trainer, pl_module)
        if self.run.probe:
            keys = sorted(trainer.callback_metrics)
            ok = self.monitor in keys or self.status != OK
            atomic_write_json(store.root / f"{PROBE_ID}.json", {
                "status": OK if ok and self.status != FAILED else FAILED,
                "reason": self.reason or (None if ok else self.missing_monitor(keys)),
                "metrics": keys, "trainable_params": record["trainable_params"],
                # what packing (runs_per_device="auto") plans the first runs with
                "max_memory_allocated": record.get("max_memory_allocated"),
                "device_memory": record.get("device_memory"),
                "fingerprint": self.fingerprint,
                "dataset_size": dataset_size(self.datamodule if self.datamodule is not None else self.loader_dataset),
                "unseeded_model": self.unseeded,
            })
            return
        store.write_record(record)
        reporter, logger = wandb_reporter(self.sweep.reporter, trainer, self.namespace)
        if reporter is not None:
            reporter.run_finished(logger.experiment if logger is not None else None, self.wandb_info(), record)

    def wandb_info(self) -> dict[str, Any]:
        spec = self.run.spec
        assert spec is not None
        return {"run_id": spec.run_id, "sweep_dir": self.run.sweep_dir, "fraction": spec.fraction, "size": spec.size,
                "grid": dict(spec.params), "seed": spec.seed, "data_seed": spec.data_seed,
                "monitor": self.monitor, "attempt": self.run.attempt}

    def missing_monitor(self, keys: Sequence[str]) -> str:
        return (f"ScalingSweep(monitor={self.monitor!r}) is not among the logged metrics {list(keys)}; "
                "log it in validation_step (self.log(...)) or pass one of these as monitor=")


def dataset_size(src: Any) -> int | None:
    """The length of the full training set behind a run's subset (a DataFraction or a wrapped loader's dataset)."""
    ds = getattr(src, "train_dataset", src)
    inner = getattr(ds, "dataset", None)
    try:
        return len(inner) if inner is not None else None
    except (TypeError, NotImplementedError):
        return None


class NonFiniteLoss:
    """Watches the training loss for NaN/inf without a host-device sync on every step.

    On CPU a scalar read costs nothing, so every step is read. On an accelerator ``loss.item()`` waits
    for the device to finish the step, which would stall the queue of kernels the Trainer keeps ahead
    of it, once per step, in every run of the sweep (Lightning itself avoids a per-step sync). There the
    check stays on the device (``~isfinite`` folded into one flag) and the flag is read every
    ``read_every`` steps and when the run validates or ends: a diverged run is caught within
    ``read_every`` steps. ``deferred`` forces one behaviour (default: deferred off the CPU).
    """

    def __init__(self, read_every: int = 32, deferred: bool | None = None) -> None:
        self.read_every = read_every
        self.deferred = deferred
        self._pending: torch.Tensor | None = None
        self._since: int | None = None

    def update(self, loss: torch.Tensor, step: int) -> str | None:
        """The reason the run diverged, or None. ``step`` is the Trainer's global step."""
        deferred = self.deferred if self.deferred is not None else loss.device.type != "cpu"
        if not deferred:
            value = loss.item()
            return None if math.isfinite(value) else f"training loss became {value} at step {step}"
        bad = ~torch.isfinite(loss.detach())
        self._pending = bad if self._pending is None else self._pending | bad
        self._since = step if self._since is None else self._since
        return self.flush(step) if step - self._since + 1 >= self.read_every else None

    def flush(self, step: int) -> str | None:
        """Reads the device-side flag (one sync); the reason if a loss since the last read was NaN/inf."""
        if self._pending is None:
            return None
        bad, since = bool(self._pending.item()), self._since
        self._pending = self._since = None
        return f"training loss became NaN or inf between steps {since} and {step}" if bad else None
