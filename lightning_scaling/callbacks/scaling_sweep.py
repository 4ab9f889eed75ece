r"""ScalingSweep: one callback runs a whole data- and model-scaling study.

Add it to an existing Trainer and call ``trainer.fit`` as usual. In the script you start (the
*controller*), ``fit`` runs every (data size x grid point x seed) run of the study, each a fresh
process of your own script in its own device slot, then fits the scaling laws and ends without
training in this process. Inside a run, the same callback applies the run's data size, grid values
and seed and records the run.

.. code-block:: python

    run = current_run()
    model = Net(hidden=run.param("hidden", default=256))
    sweep = ScalingSweep(fractions=ScalingSweep.geometric(1 / 64, 1.0, num=7),
                         grid={"hidden": [64, 128, 256]}, seeds=2, monitor="val_err")
    trainer = pl.Trainer(max_epochs=50, callbacks=[sweep])
    trainer.fit(model, datamodule=dm)
    if run.is_controller:
        print(sweep.result.law)
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import inspect
import math
import os
import platform
import secrets
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from lightning_scaling._version import __version__
from lightning_scaling.reporting.wandb import WandbReporter
from lightning_scaling.sweep.adaptive import Adaptive
from lightning_scaling.sweep.context import RunContext, current_run
from lightning_scaling.sweep.controller import PROBE_ID, SweepController, SweepError
from lightning_scaling.sweep.launcher import Launcher, make_launcher
from lightning_scaling.sweep.options import SweepOptions
from lightning_scaling.sweep.plan import geometric
from lightning_scaling.sweep.result import SweepResult
from lightning_scaling.sweep.store import SweepStore, atomic_write_json, read_json

__all__ = ["ScalingSweep"]


def _versions(namespace: ModuleType) -> dict[str, str]:
    return {"lightning_scaling": __version__, "torch": torch.__version__,
            namespace.__name__: getattr(namespace, "__version__", "?"), "python": platform.python_version()}


def _destroy_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _is_interrupt(exc: BaseException, namespace: ModuleType) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    sigterm = getattr(getattr(getattr(namespace, "utilities", None), "exceptions", None), "SIGTERMException", None)
    return sigterm is not None and isinstance(exc, sigterm)


def _run_log_version(logger: Any, run: RunContext) -> str:
    """A run's own log folder name: its run id (``-probe``, ``-attempt<k>``), then ``-2``, ``-3`` ... if taken."""
    assert run.spec is not None
    base = run.spec.run_id + ("-probe" if run.probe else "") + (f"-attempt{run.attempt}" if run.attempt > 1 else "")
    root = str(logger.root_dir)
    fs = getattr(logger, "_fs", None)
    exists = fs.isdir if fs is not None else os.path.isdir
    version, k = base, 1
    while exists(os.path.join(root, version)):
        k += 1
        version = f"{base}-{k}"
    return version


def _name_run_logs(namespace: ModuleType) -> None:
    """Inside a run, a TensorBoard or CSV logger with no ``version`` logs to ``<name>/<run_id>``.

    Lightning numbers such a logger's folder ``version_N`` by listing the folder when training starts and
    creates it a moment later. Two runs of a sweep that start at once can both list it in between, take
    the same N and write into one folder: TensorBoard mixes their events, the CSV logger deletes the
    other run's metrics, and ``ModelCheckpoint`` (which saves under that folder) overwrites the other
    run's checkpoints of the same step. The run id is unique and says which run the folder holds.

    The patch is installed on the logger classes of the run's own process (no hook runs before Lightning
    resolves the version) and falls back to Lightning's numbering when the process is not a sweep run;
    a ``version`` the user set is left alone.
    """
    for name in ("TensorBoardLogger", "CSVLogger"):
        cls = getattr(getattr(namespace, "loggers", None), name, None)
        original = getattr(cls, "_get_next_version", None)
        if cls is None or not callable(original) or getattr(original, "_run_logs", False):
            continue  # a Lightning without this private method keeps its own numbering

        def next_version(self: Any, _original: Callable[[Any], Any] = original) -> Any:
            run = current_run()
            return _run_log_version(self, run) if run.is_run else _original(self)

        next_version._run_logs = True  # type: ignore[attr-defined]
        cls._get_next_version = next_version


# Training-loop hooks Lightning calls on every callback at every step (or epoch); a run's ScalingSweep uses
# none of them but ``on_train_batch_end``
_LOOP_HOOKS = (
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad", "on_train_epoch_start", "on_train_epoch_end", "on_validation_batch_start",
    "on_validation_batch_end",
)


def _dispatch_skips_none(namespace: ModuleType) -> bool:
    """Whether this Lightning's callback dispatch skips a hook that is not callable (it does in 2.x).

    Asked of the dispatch function itself, with a callback whose hook is ``None``, rather than assumed.
    """
    try:
        dispatch = importlib.import_module(f"{namespace.__name__}.trainer.call")._call_callback_hooks
        profiler = importlib.import_module(f"{namespace.__name__}.profilers").PassThroughProfiler()
        callback = SimpleNamespace(state_key="probe", on_train_batch_start=None)
        dispatch(SimpleNamespace(lightning_module=None, callbacks=[callback], profiler=profiler),
                 "on_train_batch_start", None, 0)
    except Exception:
        return False
    return True


def _skip_unused_loop_hooks(callback: Callback, namespace: ModuleType) -> list[str]:
    """Sets the loop hooks ``callback``'s class leaves to Lightning's no-op base to ``None`` on the instance.

    Lightning dispatches every hook to every callback (a profiler section and a few attribute lookups
    each, ~2.5 us), overridden or not: 7-8 calls per step that do nothing. On a small model's ~1-ms
    CPU step that is ~1.5% of every run of a sweep; a hook that is not callable is skipped outright.
    Hooks a subclass overrides are kept. Returns the hooks set to ``None`` (none if this Lightning's
    dispatch would call them anyway).
    """
    if not _dispatch_skips_none(namespace):
        return []
    # a lightning.pytorch subclass inherits its no-op hooks from pytorch_lightning's Callback (first in its MRO)
    bases = {Callback, getattr(namespace, "Callback", Callback)}
    skipped = []
    for name in _LOOP_HOOKS:
        if any(getattr(type(callback), name, None) is getattr(base, name, object()) for base in bases):
            setattr(callback, name, None)
            skipped.append(name)
    return skipped


class ScalingSweep(Callback):
    r"""Run the study of Hestness et al. 2017 from one ``trainer.fit`` call.

    Args:
        fractions: training-set fractions to run, e.g. ``ScalingSweep.geometric(1/64, 1, 7)``.
        sizes: absolute training-set sizes (samples) instead of ``fractions``.
        grid: values searched at every size, ``{"hidden": [64, 128, 256]}``; read them in your
            script with ``current_run().param("hidden", default=...)``. Dotted keys
            (``"model.hidden"``) are also passed to LightningCLI scripts as ``--model.hidden=...``.
        seeds: number of seeds per (size, grid point), or a list of seeds.
        monitor: logged validation metric to minimise (or an accuracy with ``mode="max"``).
        mode: ``"min"`` or ``"max"``.
        to_error: turns the monitored value into the error that is fitted (default: the value for
            ``mode="min"``, ``1 - value`` for ``mode="max"``).
        data_seed: seed of the nested subsets (the same subsets for every run seed).
        sweep_dir: folder of the results; default ``<default_root_dir>/scaling_sweeps/<name>``.
        name: name of the sweep (default: the script's file name).
        slots: parallel runs; default one per GPU (or GPU group), or one per core on a CPU machine.
        devices_per_slot: GPUs per run.
        launcher: where the runs execute: ``"local"`` (default: this machine's slots), ``"ray"`` (a Ray
            cluster, or a local Ray instance), ``"slurm"`` (SLURM job arrays through submitit), or a
            launcher object with options (``RayLauncher(...)``, ``SlurmLauncher(partition=...)``,
            ``LocalLauncher(...)``). With a name, ``slots`` caps the parallel runs and
            ``devices_per_slot`` is each run's GPU count. Ray and SLURM need the extras
            ``lightning-scaling[ray]`` / ``[slurm]``.
        max_retries: how often a failed run is retried before it is recorded as failed.
        size_fn: size of one training sample in your unit (e.g. its token count), when the callback
            wraps the training data itself (with :class:`~lightning_scaling.DataFraction`, set it there).
        size_unit: the name of that unit (``"tokens"``); the x-axis of the fitted curves.
        probe: run one batch first, to check the script and the monitor key before the study.
        cli_overrides: pass dotted grid keys as CLI arguments (default: when any key is dotted).
        bootstrap: bootstrap replicates of the fitted laws' intervals.
        targets: target errors whose data needs are predicted (in ``result.predictions`` and W&B).
        reporter: W&B reporting: a :class:`~lightning_scaling.WandbReporter` with options; ``None``
            (default) reports when the Trainer has a ``WandbLogger``; ``False`` never reports.
        strategy: ``"grid"`` (default: every run to the end, the paper's study) or an
            :class:`~lightning_scaling.Adaptive` study, ``Adaptive(target=Target.error_at(size),
            tolerance=0.2, budget=...)``: successive halving over the grid at each size, and data sizes
            chosen one at a time among ``fractions``/``sizes`` until the target's interval is tight enough
            or the budget is spent (:mod:`lightning_scaling.sweep.adaptive`).

    After ``fit``, :attr:`result` holds the runs, laws and predictions on every rank of the controller.
    """

    geometric = staticmethod(geometric)
    # the Lightning namespace whose classes this callback meets (lightning.pytorch in its subclass)
    _pl: ClassVar[ModuleType] = pl

    def __init__(
        self,
        fractions: Sequence[float] | None = None,
        sizes: Sequence[int] | None = None,
        grid: dict[str, list[Any]] | None = None,
        seeds: int | list[int] = 1,
        monitor: str = "val_loss",
        mode: str = "min",
        to_error: Callable[[float], float] | None = None,
        data_seed: int = 0,
        sweep_dir: str | None = None,
        name: str | None = None,
        slots: int | None = None,
        devices_per_slot: int = 1,
        launcher: Launcher | str | None = None,
        max_retries: int = 1,
        size_fn: Callable[[Any], float] | None = None,
        size_unit: str = "samples",
        probe: bool = True,
        cli_overrides: bool | None = None,
        bootstrap: int = 1000,
        targets: Sequence[float] = (),
        reporter: WandbReporter | bool | None = None,
        strategy: str | Adaptive = "grid",
    ) -> None:
        super().__init__()
        # checked here, when the script builds the callback, not minutes later when fit starts; the same
        # checks as run_sweep's (sweep/options.py)
        self.options = SweepOptions.build(
            fractions=fractions, sizes=sizes, grid=grid, seeds=seeds, monitor=monitor, mode=mode, to_error=to_error,
            data_seed=data_seed, sweep_dir=sweep_dir, name=name, slots=slots, devices_per_slot=devices_per_slot,
            launcher=launcher, max_retries=max_retries, size_fn=size_fn, size_unit=size_unit, probe=probe,
            cli_overrides=cli_overrides, bootstrap=bootstrap, targets=targets, reporter=reporter, strategy=strategy)
        self.plan = self.options.plan
        self.adaptive = self.options.adaptive
        self.cli_overrides = self.options.cli_overrides
        self.targets = self.options.targets
        self.to_error, self.size_fn, self.size_unit = to_error, size_fn, size_unit
        self.sweep_dir, self.name, self.launcher, self.reporter = sweep_dir, name, launcher, reporter
        self.slots, self.devices_per_slot, self.max_retries = slots, devices_per_slot, max_retries
        self.probe, self.bootstrap = probe, bootstrap
        self._result: SweepResult | None = None
        self._result_root: Path | None = None  # ranks > 0: where to load the result from, when asked
        self._run: RunContext = current_run()
        if self._run.is_run:
            _name_run_logs(self._pl)
            _skip_unused_loop_hooks(self, self._pl)
        # the controller builds its launcher now, so a missing extra (ray, submitit) fails here; runs need none
        self._launcher: Launcher | None = None
        if self._run.is_controller and launcher is not None and launcher != "local":
            self._launcher = make_launcher(launcher, slots=slots, devices_per_slot=devices_per_slot)
        # Lightning names a profiler section after state_key on every hook call: build it once
        self._state_key = self._generate_state_key(monitor=self.plan.monitor, runs=len(self.plan.runs))
        # run-side state
        self._best: float | None = None
        self._best_step: int | None = None
        self._best_epoch: int | None = None
        self._at_best: dict[str, float] = {}
        self._last: float | None = None
        self._status = "ok"
        self._reason: str | None = None
        self._t_start = 0.0
        self._loader_dataset: Any = None
        self._datamodule: Any = None
        self._written = False
        self._loss_watch = _NonFiniteLoss()
        self._resumed = False
        self._checkpoint: str | None = None
        self._budget_desc: str | None = None
        self._wall_before = 0.0  # an adaptive rung continued from a checkpoint: the earlier rungs' wall time

    @property
    def state_key(self) -> str:
        return self._state_key

    @property
    def result(self) -> SweepResult | None:
        """The sweep's runs, laws and predictions, after ``fit`` (in the controller, on every rank)."""
        if self._result is None and self._result_root is not None:
            # other ranks re-analyse the records only if someone asks: rank 0 already wrote result.json
            self._result = _load_result(self._result_root, self)
            self._result_root = None
        return self._result

    # ============================================================================ the controller
    def _sweep_root(self, trainer: pl.Trainer) -> Path:
        if self._run.sweep_dir:
            return Path(self._run.sweep_dir)
        if self.sweep_dir:
            return Path(self.sweep_dir)
        import __main__

        name = self.name or Path(getattr(__main__, "__file__", None) or "sweep").stem
        return Path(trainer.default_root_dir) / "scaling_sweeps" / name

    def _check_devices(self, trainer: pl.Trainer) -> None:
        if not isinstance(trainer.accelerator, self._pl.accelerators.CUDAAccelerator):
            return
        flag = getattr(getattr(trainer, "_accelerator_connector", None), "_devices_flag", None)
        if flag in ("auto", -1, "-1"):
            return  # "auto" adapts to what a slot makes visible
        if trainer.num_devices > self.devices_per_slot:
            raise SweepError(
                f"the Trainer asks for {trainer.num_devices} GPUs per run, but a sweep slot has "
                f"{self.devices_per_slot}; pass ScalingSweep(devices_per_slot={trainer.num_devices}) for "
                f"multi-GPU runs, or Trainer(devices='auto') to use what a slot gives"
            )

    def _wandb(self, trainer: pl.Trainer) -> tuple[WandbReporter | None, Any]:
        """The reporter to use (or ``None``) and the Trainer's ``WandbLogger`` (or ``None``)."""
        logger = next((lg for lg in trainer.loggers if isinstance(lg, self._pl.loggers.WandbLogger)), None)
        if self.reporter is False:
            return None, logger
        if isinstance(self.reporter, WandbReporter):
            return self.reporter, logger
        return (WandbReporter() if self.reporter or logger is not None else None), logger

    def _analyse(self, bootstrap: int) -> Callable[[list[dict[str, Any]]], SweepResult]:
        return lambda recs: SweepResult.from_records(recs, monitor=self.plan.monitor, mode=self.plan.mode,
                                                     to_error_fn=self.to_error, bootstrap=bootstrap,
                                                     targets=self.targets)

    def _run_controller(self, trainer: pl.Trainer) -> SweepResult:
        self._check_devices(trainer)
        root = self._sweep_root(trainer)
        reporter, logger = self._wandb(trainer)
        if reporter is not None and logger is not None:
            if getattr(logger, "_wandb_init", {}).get("id"):
                raise SweepError(
                    "the WandbLogger has a fixed run id (id= or version=), so every run of the sweep would write "
                    "into that one W&B run; drop id/version (a restarted sweep resumes from its folder anyway), "
                    "or pass ScalingSweep(reporter=False)")
            try:
                reporter.attach(logger.experiment)
            except Exception as exc:  # the user's run failed to start: report nowhere, lose nothing
                reporter.disable("the WandbLogger's run failed to start", exc)
        launcher = self._launcher or make_launcher(self.launcher, slots=self.slots,
                                                   devices_per_slot=self.devices_per_slot)
        controller = SweepController(
            self.plan, SweepStore(root), launcher=launcher, cli_overrides=self.cli_overrides,
            max_retries=self.max_retries, probe=self.probe, analyse=self._analyse(self.bootstrap),
            live_analyse=self._analyse(min(self.bootstrap, reporter.live_bootstrap if reporter else 0)),
            reporter=reporter, name=self.name or root.name, adaptive=self.adaptive, to_error=self.to_error,
        )
        result = controller.run()
        print(result.summary(), file=sys.stderr, flush=True)
        return result

    def _controller_setup(self, trainer: pl.Trainer) -> None:
        root = self._sweep_root(trainer)
        # one token per fit: other ranks wait for rank 0's done-file by polling, not in a collective,
        # because a sweep outlasts any process-group timeout
        token = trainer.strategy.broadcast(secrets.token_hex(8) if trainer.is_global_zero else None, src=0)
        done = root / f".done-{token}.json"
        if trainer.is_global_zero:
            error: BaseException | None = None
            try:
                self._result = self._run_controller(trainer)
            except BaseException as exc:  # every rank must learn the outcome, or they wait forever
                error = exc
                raise
            finally:
                atomic_write_json(done, {"ok": error is None, "error": None if error is None else repr(error)})
        else:
            while not done.exists():
                time.sleep(1.0)
            outcome = read_json(done) or {}
            if not outcome.get("ok"):
                raise SweepError(f"the sweep stopped on rank 0: {outcome.get('error')}")
            self._result_root = root
        trainer.strategy.barrier("lightning_scaling.sweep_done")
        if trainer.is_global_zero:
            done.unlink(missing_ok=True)
        # the study ran in child processes: end this fit without a sanity check or a training step
        trainer.num_sanity_val_steps = 0
        trainer.limit_train_batches = 0
        trainer.limit_val_batches = 0

    # =================================================================================== a run
    def _apply_fraction(self, trainer: pl.Trainer) -> None:
        from lightning_scaling.data import DataFraction, fraction_dataloader

        spec = self._run.spec
        assert spec is not None
        kwargs = {"fraction": spec.fraction, "size": spec.size, "seed": spec.data_seed}
        dm = trainer.datamodule
        if isinstance(dm, DataFraction):
            dm.set_fraction(**kwargs)
            self._datamodule = dm
            return
        source = getattr(trainer.fit_loop, "_data_source", None)
        instance = getattr(source, "instance", None)
        wrap = {"size_fn": self.size_fn, "size_unit": self.size_unit, **kwargs}
        if isinstance(instance, self._pl.LightningDataModule | self._pl.LightningModule):
            original = instance.train_dataloader

            def train_dataloader() -> Any:
                loader = fraction_dataloader(original(), **wrap)
                self._loader_dataset = loader.dataset
                return loader

            # an instance attribute shadows the method for this process (a run) only
            instance.train_dataloader = train_dataloader  # type: ignore[method-assign]
        elif isinstance(instance, torch.utils.data.DataLoader):
            assert source is not None
            source.instance = fraction_dataloader(instance, **wrap)
            self._loader_dataset = source.instance.dataset
        else:
            raise SweepError(
                "ScalingSweep could not find the training data to subsample (the Trainer's data source is "
                f"{type(instance).__name__}); wrap your datamodule in lightning_scaling.DataFraction, or pass "
                "train_dataloaders=DataLoader(...) to fit"
            )

    def _run_setup(self, trainer: pl.Trainer) -> None:
        self._t_start = time.time()  # a run that fails in setup is recorded with its own short wall time
        spec = self._run.spec
        assert spec is not None
        if (spec.base_id or spec.run_id) not in {r.run_id for r in self.plan.runs}:
            raise SweepError(f"run {spec.run_id} is not in this script's sweep plan: the script's ScalingSweep "
                             "arguments differ from the controller's; start the sweep again")
        self._run.seed_everything()  # once per run: a no-op if the script seeded it before building the model
        self._apply_fraction(trainer)
        if trainer.world_size > 1:
            # Lightning destroys only NCCL groups at exit; a gloo group left to interpreter teardown can
            # abort the process (SIGABRT) after the record is written, which reads as a failed run.
            atexit.register(_destroy_process_group)
        reporter, logger = self._wandb(trainer)
        if reporter is not None and logger is not None and trainer.is_global_zero:
            reporter.run_started(logger.experiment, self._wandb_info())
        if spec.budget is not None and not self._run.probe:
            self._apply_rung(trainer, spec.budget, spec.resume_from)
        if self._run.probe:
            trainer.limit_train_batches = 1
            trainer.limit_val_batches = 1
            trainer.num_sanity_val_steps = 0
            trainer.fit_loop.max_epochs = 1
            # validate after the one batch, also when the Trainer validates every N steps
            trainer.val_check_interval = 1.0
            trainer.check_val_every_n_epoch = 1
        self._t_start = time.time()

    def _apply_rung(self, trainer: pl.Trainer, budget: float, resume_from: str | None) -> None:
        """An adaptive study's rung: train to ``budget`` of the Trainer's limit, continuing from the
        previous rung's checkpoint (weights, optimiser, loops, callbacks) when it exists."""
        loop = trainer.fit_loop
        if loop.max_steps is not None and loop.max_steps > 0:
            # the fit loop reads its step limit from the epoch loop (its own max_steps has no setter)
            loop.epoch_loop.max_steps = max(1, math.ceil(budget * loop.max_steps - 1e-9))
            self._budget_desc = f"max_steps={loop.max_steps}"
        elif loop.max_epochs is not None and loop.max_epochs > 0:
            loop.max_epochs = max(1, math.ceil(budget * loop.max_epochs - 1e-9))
            self._budget_desc = f"max_epochs={loop.max_epochs}"
        else:
            raise SweepError("an adaptive study's rungs are fractions of the Trainer's max_epochs or max_steps; "
                             "set one of them on the Trainer")
        if not resume_from or not Path(resume_from).is_file():
            self._resumed = False
            return
        # Lightning resolves fit(ckpt_path=...) before any callback hook runs, and restores the model and
        # callbacks right after `setup`: wrap that step of its checkpoint connector so it reads this file.
        conn = getattr(trainer, "_checkpoint_connector", None)
        restore = getattr(conn, "_restore_modules_and_callbacks", None)
        if conn is None or restore is None or not hasattr(conn, "restore_training_state"):
            raise SweepError(
                f"this {self._pl.__name__} version has no Trainer._checkpoint_connector._restore_modules_and_callbacks"
                ", which an adaptive study uses to continue a promoted run from its checkpoint; use "
                "strategy='grid', or a pytorch_lightning version 2.1-2.6")

        def restore_rung(checkpoint_path: Any = None, *args: Any, **kwargs: Any) -> None:
            if checkpoint_path is None:  # the user's own fit(ckpt_path=...) wins
                checkpoint_path = resume_from
                # our own checkpoint holds optimiser state and hyperparameters, not only tensors
                if args and args[0] is None:
                    args = (False, *args[1:])
                elif not args and kwargs.get("weights_only") is None and _accepts(restore, "weights_only"):
                    kwargs["weights_only"] = False
            restore(checkpoint_path, *args, **kwargs)

        conn._restore_modules_and_callbacks = restore_rung
        self._resumed = True

    def state_dict(self) -> dict[str, Any]:
        """A run's best monitored value so far: an adaptive rung's checkpoint carries it to the next rung."""
        if self._run.is_controller:
            return {}
        return {"best": self._best, "best_step": self._best_step, "best_epoch": self._best_epoch,
                "at_best": self._at_best, "wall_time_s": self._wall_before + time.time() - self._t_start}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._run.is_controller or not state_dict:
            return
        self._best, self._best_step = state_dict.get("best"), state_dict.get("best_step")
        self._best_epoch, self._at_best = state_dict.get("best_epoch"), state_dict.get("at_best") or {}
        self._wall_before = float(state_dict.get("wall_time_s") or 0.0)

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        spec = self._run.spec
        assert spec is not None
        src = self._datamodule if self._datamodule is not None else self._loader_dataset
        num = getattr(src, "num_samples", None)
        train_size = getattr(src, "train_size", None)
        unit = getattr(src, "size_unit", self.size_unit)
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        return {
            "run_id": spec.run_id, "attempt": self._run.attempt, "launch": self._run.launch,
            "status": self._status, "reason": self._reason,
            "fraction": spec.fraction, "size": spec.size, "num_samples": num,
            "train_size": float(train_size) if train_size is not None else None, "size_unit": unit,
            "params": spec.params, "seed": spec.seed, "data_seed": spec.data_seed,
            "trainable_params": int(trainable), "monitor": self.plan.monitor, "mode": self.plan.mode,
            "best_value": self._best, "best_step": self._best_step, "best_epoch": self._best_epoch,
            "metrics_at_best": self._at_best,
            "final_value": self._last, "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
            "wall_time_s": round(time.time() - self._t_start, 3), "started_at": self._t_start,
            "ended_at": time.time(), "host": socket.gethostname(),
            "devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "versions": _versions(self._pl),
            **({"base_id": spec.base_id, "rung": spec.rung, "budget": spec.budget, "budget_limit": self._budget_desc,
                "resumed_from": spec.resume_from if self._resumed else None,
                "cumulative_wall_time_s": round(self._wall_before + time.time() - self._t_start, 3)}
               if spec.budget is not None else {}),
        }

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._written or not trainer.is_global_zero:
            return
        self._written = True
        store = SweepStore(self._sweep_root(trainer))
        record = self._record(trainer, pl_module)
        if self._run.probe:
            keys = sorted(trainer.callback_metrics)
            ok = self.plan.monitor in keys or self._status != "ok"
            atomic_write_json(store.root / f"{PROBE_ID}.json", {
                "status": "ok" if ok and self._status != "failed" else "failed",
                "reason": self._reason or (None if ok else self._missing_monitor(keys)),
                "metrics": keys, "trainable_params": record["trainable_params"],
            })
            return
        if self._checkpoint is not None:
            record["checkpoint"] = self._checkpoint
        store.write_record(record)
        reporter, logger = self._wandb(trainer)
        if reporter is not None:
            reporter.run_finished(logger.experiment if logger is not None else None, self._wandb_info(), record)

    def _wandb_info(self) -> dict[str, Any]:
        spec = self._run.spec
        assert spec is not None
        return {"run_id": spec.run_id, "sweep_dir": self._run.sweep_dir, "fraction": spec.fraction, "size": spec.size,
                "grid": dict(spec.params), "seed": spec.seed, "data_seed": spec.data_seed,
                "monitor": self.plan.monitor, "attempt": self._run.attempt}

    def _missing_monitor(self, keys: Sequence[str]) -> str:
        return (f"ScalingSweep(monitor={self.plan.monitor!r}) is not among the logged metrics {list(keys)}; "
                "log it in validation_step (self.log(...)) or pass one of these as monitor=")

    # ================================================================================== hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self._run.is_controller:
            self._controller_setup(trainer)
        else:
            self._run_setup(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._run.is_controller or trainer.sanity_checking:
            return
        self._diverged(trainer, self._loss_watch.flush(int(trainer.global_step)))
        metrics: Mapping[str, Any] = trainer.callback_metrics
        if self.plan.monitor not in metrics:
            self._status, self._reason = "failed", self._missing_monitor(sorted(metrics))
            raise SweepError(self._reason)
        value = float(metrics[self.plan.monitor])
        self._last = value
        if not math.isfinite(value):
            self._diverged(trainer, f"{self.plan.monitor} became {value} at step {trainer.global_step}")
            return
        better = self._best is None or (value < self._best if self.plan.mode == "min" else value > self._best)
        if better:
            self._best, self._best_step, self._best_epoch = value, int(trainer.global_step), int(trainer.current_epoch)
            # every other logged metric of the same model, so other metrics (top-5 error, loss) can be
            # fitted for the models the monitor picked: SweepResult.from_records(..., metric="val_top5")
            self._at_best = {k: float(v) for k, v in metrics.items()
                             if isinstance(v, torch.Tensor | float | int) and torch.as_tensor(v).numel() == 1}

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._run.is_controller:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._diverged(trainer, self._loss_watch.update(loss, int(trainer.global_step)))

    def _diverged(self, trainer: pl.Trainer, reason: str | None) -> None:
        if reason is not None and self._status == "ok":
            self._status, self._reason = "diverged", reason
            trainer.should_stop = True

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._run.is_run:
            self._diverged(trainer, self._loss_watch.flush(int(trainer.global_step)))
            if self._status == "ok" and self._best is None and not self._run.probe:
                self._status, self._reason = "failed", "validation never ran, so there is no monitored value"
            path = self._run.spec.save_checkpoint if self._run.spec is not None else None
            if path and self._status == "ok" and not self._run.probe:
                # the end of an adaptive rung (every rank: saving may be collective); a promoted run continues
                # from this file in its next rung (see sweep/adaptive.py)
                trainer.save_checkpoint(path)
                self._checkpoint = path
            self._write(trainer, pl_module)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._run.is_controller or _is_interrupt(exception, self._pl):
            return  # an interrupted run has no record, so a resumed sweep runs it again
        self._status = "failed"
        last = traceback.format_exception_only(type(exception), exception)[-1].strip()
        self._reason = self._reason or last
        with contextlib.suppress(Exception):
            self._write(trainer, pl_module)


class _NonFiniteLoss:
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


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _load_result(root: Path, sweep: ScalingSweep) -> SweepResult | None:
    """Rank > 0: the result rank 0 wrote, re-analysed from the same records."""
    try:
        return SweepResult.load(root, bootstrap=sweep.bootstrap, to_error_fn=sweep.to_error)
    except (FileNotFoundError, ValueError):
        return None
