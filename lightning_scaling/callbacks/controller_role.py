"""The controller role of :class:`~lightning_scaling.ScalingSweep`: in the script the user started.

``trainer.fit`` runs the whole study here (on rank 0; other ranks wait for its outcome), then ends
without a sanity check or a training step: every run trained in a child process of its own.
"""

from __future__ import annotations

import secrets
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lightning_scaling.lightning_internals import (
    devices_flag,
    set_wandb_experiment,
    wandb_logger_has_fixed_id,
    wandb_logger_init_kwargs,
)
from lightning_scaling.reporting.wandb import WandbReporter
from lightning_scaling.sweep.context import RunContext
from lightning_scaling.sweep.controller import SweepController, SweepError
from lightning_scaling.sweep.launchers import Launcher, make_launcher
from lightning_scaling.sweep.result import SweepResult
from lightning_scaling.sweep.store import SweepStore, atomic_write_json, read_json

if TYPE_CHECKING:
    import pytorch_lightning as pl

    from lightning_scaling.callbacks.scaling_sweep import ScalingSweep

__all__ = ["ControllerRole", "sweep_folder", "wandb_reporter"]


def sweep_folder(sweep: ScalingSweep, trainer: pl.Trainer, run: RunContext) -> Path:
    """The sweep's folder: the one the controller gave the run, else ``sweep_dir``, else
    ``<default_root_dir>/scaling_sweeps/<name or the script's file name>``."""
    if run.sweep_dir:
        return Path(run.sweep_dir)
    if sweep.sweep_dir:
        return Path(sweep.sweep_dir)
    import __main__

    name = sweep.name or Path(getattr(__main__, "__file__", None) or "sweep").stem
    return Path(trainer.default_root_dir) / "scaling_sweeps" / name


def wandb_reporter(setting: WandbReporter | bool | None, trainer: pl.Trainer,
                   namespace: ModuleType) -> tuple[WandbReporter | None, Any]:
    """The reporter to use (or ``None``) for ``ScalingSweep(reporter=setting)``, and the Trainer's
    ``WandbLogger`` (or ``None``)."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, namespace.loggers.WandbLogger)), None)
    if setting is False:
        return None, logger
    if isinstance(setting, WandbReporter):
        return setting, logger
    return (WandbReporter() if setting or logger is not None else None), logger


class ControllerRole:
    """Runs the study from ``setup`` and hands the result to every rank.

    Args:
        sweep: the callback, whose arguments say what to run.
        run: this process's context (the controller's).
        namespace: the Lightning namespace of the Trainer (``pytorch_lightning`` or ``lightning.pytorch``).
        launcher: the launcher built when the callback was (so a missing extra fails early), or ``None``.
    """

    def __init__(self, sweep: ScalingSweep, run: RunContext, namespace: ModuleType,
                 launcher: Launcher | None = None) -> None:
        self.sweep = sweep
        self.run = run
        self.namespace = namespace
        self.launcher = launcher
        self._result: SweepResult | None = None
        self._result_root: Path | None = None  # ranks > 0: where to load the result from, when asked
        self._wandb: tuple[WandbReporter | None, Any] | None = None  # the reporter and WandbLogger, once found
        self._studied: Path | None = None  # the sweep folder, once this process's fit ran the study
        self._warned = False

    @property
    def result(self) -> SweepResult | None:
        """The sweep's result after ``fit``; ranks > 0 re-analyse rank 0's records when first asked."""
        if self._result is None and self._result_root is not None:
            # other ranks re-analyse the records only if someone asks: rank 0 already wrote result.json
            self._result = self._load_result(self._result_root)
            self._result_root = None
        return self._result

    def setup(self, trainer: pl.Trainer) -> None:
        """Run the study on rank 0 while the other ranks wait for its done-file; then end this fit."""
        root = sweep_folder(self.sweep, trainer, self.run)
        # one token per fit: other ranks wait for rank 0's done-file by polling, not in a collective,
        # because a sweep outlasts any process-group timeout
        token = trainer.strategy.broadcast(secrets.token_hex(8) if trainer.is_global_zero else None, src=0)
        done = root / f".done-{token}.json"
        if trainer.is_global_zero:
            error: BaseException | None = None
            try:
                self._result = self.run_study(trainer)
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
        self.drop_model_summary(trainer)
        self._studied = root

    def drop_model_summary(self, trainer: pl.Trainer) -> None:
        """Leave out Lightning's model summary (printed on fit start): the controller's model is never trained,
        and its table would follow the study's result as if it were the outcome."""
        summary = self.namespace.callbacks.ModelSummary  # RichModelSummary is one too
        # a new list: Lightning is iterating over the old one, calling setup (getattr/setattr: the Trainer's
        # public callbacks list is set in its constructor's helpers, where type checkers do not see it)
        kept = [c for c in getattr(trainer, "callbacks", []) if not isinstance(c, summary)]
        setattr(trainer, "callbacks", kept)  # noqa: B010

    def after_study(self, what: str) -> None:
        """Warn (once) that ``what``, called after ``trainer.fit`` in the controller, meets an untrained model."""
        if self._studied is None or self._warned:
            return
        self._warned = True
        warnings.warn(
            f"{what} after the scaling study: the controller trained nothing (every run of the study trained in a "
            f"process of its own, with its logs and checkpoints; results in {self._studied}), so this sees the "
            "untrained model. Code after trainer.fit runs in every run too, on its trained model: in the controller, "
            "skip it with `if current_run().is_run:`, or load a run's checkpoint", UserWarning, stacklevel=3)

    def wandb(self, trainer: pl.Trainer) -> tuple[WandbReporter | None, Any]:
        """The study's reporter and the Trainer's ``WandbLogger`` (the same objects on every call)."""
        if self._wandb is None:
            self._wandb = wandb_reporter(self.sweep.reporter, trainer, self.namespace)
        return self._wandb

    def before_loggers(self, trainer: pl.Trainer) -> None:
        """Start the ``WandbLogger``'s run before Lightning would: as the study's controller run (its group,
        job type ``scaling-sweep``, the id a resumed study continues), offline when W&B does not answer."""
        reporter, logger = self.wandb(trainer)
        if reporter is None or logger is None or not trainer.is_global_zero or wandb_logger_has_fixed_id(logger):
            return  # a fixed id is refused with a clear error when the study starts (run_study)
        kwargs = wandb_logger_init_kwargs(logger)
        if kwargs is None:
            return  # its run exists already (the script used logger.experiment), or this Lightning differs
        import wandb

        if wandb.run is not None:
            return  # Lightning reuses a run the script started itself
        root = sweep_folder(self.sweep, trainer, self.run)
        run = reporter.open_controller_run(kwargs, self.sweep.name or root.name, root)
        if run is not None:
            set_wandb_experiment(logger, run)

    def check_devices(self, trainer: pl.Trainer) -> None:
        """Refuse a Trainer that asks for more GPUs than a sweep slot has (``devices="auto"`` adapts)."""
        if not isinstance(trainer.accelerator, self.namespace.accelerators.CUDAAccelerator):
            if self.sweep.devices_per_slot > 1:
                raise SweepError(
                    f"ScalingSweep(devices_per_slot={self.sweep.devices_per_slot}) asks for GPUs per run, but the "
                    f"Trainer runs on {type(trainer.accelerator).__name__}: drop devices_per_slot= (CPU runs take "
                    "one slot each), or give the Trainer accelerator='gpu'")
            return
        if devices_flag(trainer) in ("auto", -1, "-1"):
            return  # "auto" adapts to what a slot makes visible
        if trainer.num_devices > self.sweep.devices_per_slot:
            raise SweepError(
                f"the Trainer asks for {trainer.num_devices} GPUs per run, but a sweep slot has "
                f"{self.sweep.devices_per_slot}; pass ScalingSweep(devices_per_slot={trainer.num_devices}) for "
                f"multi-GPU runs, or Trainer(devices='auto') to use what a slot gives"
            )

    def run_study(self, trainer: pl.Trainer) -> SweepResult:
        """Every run of the study (rank 0), through :class:`~lightning_scaling.sweep.SweepController`."""
        sweep = self.sweep
        self.check_devices(trainer)
        root = sweep_folder(sweep, trainer, self.run)
        reporter, logger = self.wandb(trainer)
        if reporter is not None and logger is not None:
            if wandb_logger_has_fixed_id(logger):
                raise SweepError(
                    "the WandbLogger has a fixed run id (id= or version=), so every run of the sweep would write "
                    "into that one W&B run; drop id/version (a restarted sweep resumes from its folder anyway), "
                    "or pass ScalingSweep(reporter=False)")
            try:
                reporter.attach(logger.experiment)
            except Exception as exc:  # the user's run failed to start: report nowhere, lose nothing
                reporter.disable("the WandbLogger's run failed to start", exc)
        launcher = self.launcher or make_launcher(sweep.launcher, slots=sweep.slots,
                                                  devices_per_slot=sweep.devices_per_slot,
                                                  runs_per_device=sweep.options.runs_per_device)
        live = min(sweep.bootstrap, reporter.live_bootstrap if reporter else 0)
        controller = SweepController(
            sweep.plan, SweepStore(root), launcher=launcher, cli_overrides=sweep.cli_overrides,
            max_retries=sweep.max_retries, probe=sweep.probe, analyse=sweep.options.analyse(sweep.bootstrap),
            live_analyse=sweep.options.analyse(live), reporter=reporter, name=sweep.name or root.name,
            adaptive=sweep.adaptive, to_error=sweep.to_error, run_timeout=sweep.options.run_timeout,
            reuse_changed=sweep.options.reuse_changed,
        )
        result = controller.run()
        print(result.summary(), file=sys.stderr, flush=True)
        return result

    def _load_result(self, root: Path) -> SweepResult | None:
        """Rank > 0: the result rank 0 wrote, re-analysed from the same records."""
        try:
            return SweepResult.load(root, bootstrap=self.sweep.bootstrap, to_error_fn=self.sweep.to_error)
        except (FileNotFoundError, ValueError):
            return None
