r"""ScalingSweep: one callback runs a whole data- and model-scaling study.

Add it to an existing Trainer and call ``trainer.fit`` as usual. In the script you start (the
*controller*), ``fit`` runs every (data size x grid point x seed) run of the study, each a fresh
process of your own script in its own device slot, then fits the scaling laws and ends without
training in this process. Inside a run, the same callback applies the run's data size, grid values
and seed and records the run.

This module is the dispatcher, in the shape of Lightning's own callbacks: the arguments, ``setup``
handing off to a role, and the hooks. What each role does lives in its own module:
:mod:`~lightning_scaling.callbacks.controller_role` (the study) and
:mod:`~lightning_scaling.callbacks.run_role` (one run and its record); every use of a Lightning
private API is in :mod:`~lightning_scaling.lightning_internals`.

.. code-block:: python

    run = current_run()
    run.seed_everything()
    model = Net(hidden=run.param("hidden", default=256))
    sweep = ScalingSweep(fractions=ScalingSweep.geometric(1 / 64, 1.0, num=7),
                         grid={"hidden": [64, 128, 256]}, seeds=2, monitor="val_err")
    trainer = pl.Trainer(max_epochs=50, callbacks=[sweep])
    trainer.fit(model, datamodule=dm)
    if run.is_controller:
        print(sweep.result.law)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, ClassVar

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback
from typing_extensions import override

from lightning_scaling._checks import require_same_lightning
from lightning_scaling.callbacks.controller_role import ControllerRole
from lightning_scaling.callbacks.run_role import RunRole
from lightning_scaling.lightning_internals import (
    call_before_loggers,
    is_interrupt,
    name_run_logs,
    skip_unused_loop_hooks,
    state_key_of,
)
from lightning_scaling.reporting.wandb import WandbReporter
from lightning_scaling.sweep.adaptive import Adaptive
from lightning_scaling.sweep.context import RunContext, current_run
from lightning_scaling.sweep.launchers import Launcher, make_launcher
from lightning_scaling.sweep.options import SweepOptions
from lightning_scaling.sweep.plan import geometric
from lightning_scaling.sweep.result import SweepResult

__all__ = ["ScalingSweep"]


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
        probe: run one batch first, to check the script and the monitor key before the study. On a
            rerun over finished runs the probe runs whatever this says: it checks their fingerprint
            (see ``reuse_changed``).
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
        runs_per_device: runs at once per GPU (or per GPU group, or per CPU core group), each its own
            process; ``"auto"``: as many as the GPU's memory holds by what the probe and finished runs of
            the same grid point measured (at most 8); a run that ran out of memory is retried alone
            (:mod:`lightning_scaling.sweep.launchers.packing`). On Ray: ``num_gpus=1/runs_per_device``.
        run_timeout: seconds a run may take before it is stopped, recorded as a ``timeout`` and retried;
            ``None``: no limit; ``"auto"`` (default): 10x what finished runs of its size took, at least
            5 minutes (no limit before a run has finished).
        reuse_changed: on a rerun, reuse the finished runs even though the script, its arguments, the
            Trainer settings, the hyperparameters or the versions changed since they ran (their
            fingerprint, :mod:`lightning_scaling.sweep.fingerprint`). By default the sweep stops before
            any run and shows what changed; pass ``True`` only for a change that does not matter (a
            logging flag), else start a new study with another ``name=`` or ``sweep_dir=``.
        select: which monitored value of a run ranks the grid points and enters the laws: ``"best"``
            (default: the best value over training, which acts as early stopping and so hides how a
            large model overfits small data) or ``"last"`` (the value of the last validation, the
            paper's train-to-convergence protocol, like ``trainer.test(ckpt_path="last")``). Every run
            records both (``best_value``, ``final_value``), so changing it on a rerun trains nothing again.

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
        runs_per_device: int | str = 1,
        run_timeout: float | str | None = "auto",
        reuse_changed: bool = False,
        select: str = "best",
    ) -> None:
        super().__init__()
        # checked here, when the script builds the callback, not minutes later when fit starts; the same
        # checks as run_sweep's (sweep/options.py)
        self.options = SweepOptions.build(
            fractions=fractions, sizes=sizes, grid=grid, seeds=seeds, monitor=monitor, mode=mode, to_error=to_error,
            data_seed=data_seed, sweep_dir=sweep_dir, name=name, slots=slots, devices_per_slot=devices_per_slot,
            launcher=launcher, max_retries=max_retries, size_fn=size_fn, size_unit=size_unit, probe=probe,
            cli_overrides=cli_overrides, bootstrap=bootstrap, targets=targets, reporter=reporter, strategy=strategy,
            runs_per_device=runs_per_device, run_timeout=run_timeout, reuse_changed=reuse_changed, select=select)
        self.plan = self.options.plan
        self.adaptive = self.options.adaptive
        self.cli_overrides = self.options.cli_overrides
        self.targets = self.options.targets
        self.to_error, self.size_fn, self.size_unit = to_error, size_fn, size_unit
        self.sweep_dir, self.name, self.launcher, self.reporter = sweep_dir, name, launcher, reporter
        self.slots, self.devices_per_slot, self.max_retries = slots, devices_per_slot, max_retries
        self.probe, self.bootstrap = probe, bootstrap
        self._run: RunContext = current_run()
        # the role this process plays: the controller (the script the user started) or one run of the study
        self._controller: ControllerRole | None = None
        self._runner: RunRole | None = None
        if self._run.is_run:
            name_run_logs(self._pl)
            skip_unused_loop_hooks(self, self._pl)
            self._runner = RunRole(self, self._run, self._pl)
        else:
            # the controller builds its launcher now, so a missing extra (ray, submitit) fails here; runs need none
            built = None
            if launcher is not None and launcher != "local":
                built = make_launcher(launcher, slots=slots, devices_per_slot=devices_per_slot,
                                      runs_per_device=runs_per_device)
            self._controller = ControllerRole(self, self._run, self._pl, built)
        # the W&B run of a WandbLogger starts before any hook: the roles start it (see before_loggers_start)
        call_before_loggers(self._pl)
        # Lightning names a profiler section after state_key on every hook call: build it once
        self._state_key = state_key_of(self, monitor=self.plan.monitor, runs=len(self.plan.runs))

    @property
    @override
    def state_key(self) -> str:
        return self._state_key

    @property
    def result(self) -> SweepResult | None:
        """The sweep's runs, laws and predictions, after ``fit`` (in the controller, on every rank)."""
        return self._controller.result if self._controller is not None else None

    def before_loggers_start(self, trainer: pl.Trainer) -> None:
        """Called before the Trainer's loggers start their runs (:func:`~lightning_scaling.lightning_internals.
        call_before_loggers`): a ``WandbLogger``'s run starts in the study's group, never waits long on W&B,
        and the probe starts none."""
        if getattr(trainer.state, "fn", None) != "fit":
            return
        if self._controller is not None:
            self._controller.before_loggers(trainer)
        elif self._runner is not None:
            self._runner.before_loggers(trainer)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The controller runs the study here; a run applies its data size, grid values' rung and seed."""
        if stage != "fit":
            if self._controller is not None:
                self._controller.after_study(f"trainer.{getattr(stage, 'value', stage)}()")
            return
        require_same_lightning("ScalingSweep", self, trainer)
        if self._controller is not None:
            self._controller.setup(trainer)
        elif self._runner is not None:
            self._runner.setup(trainer)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._runner is not None and not trainer.sanity_checking:
            self._runner.on_validation_end(trainer)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._runner is not None:
            self._runner.on_train_batch_end(trainer, outputs)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._runner is not None:
            self._runner.on_fit_end(trainer, pl_module)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if self._runner is None or is_interrupt(exception, self._pl):
            return  # an interrupted run has no record, so a resumed sweep runs it again
        self._runner.on_exception(trainer, pl_module, exception)

    @override
    def state_dict(self) -> dict[str, Any]:
        """A run's best monitored value so far: an adaptive rung's checkpoint carries it to the next rung."""
        if self._controller is not None:
            self._controller.after_study("trainer.save_checkpoint()")
        return self._runner.state_dict() if self._runner is not None else {}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._runner is not None and state_dict:
            self._runner.load_state_dict(state_dict)
