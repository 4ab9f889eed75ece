"""Every use of a Lightning private API in the package (the callback and ``DataFraction``), each guarded.

Lightning makes no promise about names that start with ``_``. Each function here reads or patches
one of them, and degrades when a Lightning version lacks it: the callback keeps working with the
fallback each docstring names (or stops with an error that says which version to use, where there
is no safe fallback). When an upgrade breaks something, this is the one file to look in.

Each function takes the Lightning namespace it works on (``pytorch_lightning`` or
``lightning.pytorch``) where it needs one, so the ``lightning.pytorch`` twin of the callback
(:mod:`lightning_scaling.lightning_pytorch`) patches and probes its own classes.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pickle
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

from pytorch_lightning.callbacks import Callback

from lightning_scaling.sweep.context import RunContext, current_run
from lightning_scaling.sweep.controller import SweepError

__all__ = [
    "BEFORE_LOGGERS",
    "LOOP_HOOKS",
    "accepts",
    "call_before_loggers",
    "continue_from_checkpoint",
    "devices_flag",
    "dispatch_skips_none",
    "is_interrupt",
    "name_run_logs",
    "run_log_version",
    "set_wandb_experiment",
    "skip_unused_loop_hooks",
    "state_key_of",
    "train_data_source",
    "wandb_logger_has_fixed_id",
    "wandb_logger_init_kwargs",
]


# ------------------------------------------------------------------ loggers: Logger._get_next_version
def run_log_version(logger: Any, run: RunContext) -> str:
    """A run's own log folder name: its run id (``-probe``, ``-attempt<k>``), then ``-2``, ``-3`` ... if taken.

    Reads the logger's private file system ``_fs`` (remote roots); without it, the local file system.
    """
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


def name_run_logs(namespace: ModuleType) -> None:
    """Inside a run, a TensorBoard or CSV logger with no ``version`` logs to ``<name>/<run_id>``.

    Lightning numbers such a logger's folder ``version_N`` by listing the folder when training starts and
    creates it a moment later. Two runs of a sweep that start at once can both list it in between, take
    the same N and write into one folder: TensorBoard mixes their events, the CSV logger deletes the
    other run's metrics, and ``ModelCheckpoint`` (which saves under that folder) overwrites the other
    run's checkpoints of the same step. The run id is unique and says which run the folder holds.

    The patch replaces the private ``_get_next_version`` of the logger classes of the run's own process
    (no hook runs before Lightning resolves the version) and falls back to Lightning's numbering when
    the process is not a sweep run; a ``version`` the user set is left alone. A Lightning without that
    method keeps its own numbering.
    """
    for name in ("TensorBoardLogger", "CSVLogger"):
        cls = getattr(getattr(namespace, "loggers", None), name, None)
        original = getattr(cls, "_get_next_version", None)
        if cls is None or not callable(original) or getattr(original, "_run_logs", False):
            continue  # a Lightning without this private method keeps its own numbering

        def next_version(self: Any, _original: Callable[[Any], Any] = original) -> Any:
            run = current_run()
            return run_log_version(self, run) if run.is_run else _original(self)

        next_version._run_logs = True  # type: ignore[attr-defined]
        cls._get_next_version = next_version


# ------------------------------------------------------- callback dispatch: trainer.call._call_callback_hooks
# Training-loop hooks Lightning calls on every callback at every step (or epoch); a run's ScalingSweep uses
# none of them but ``on_train_batch_end``
LOOP_HOOKS = (
    "on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
    "on_before_zero_grad", "on_train_epoch_start", "on_train_epoch_end", "on_validation_batch_start",
    "on_validation_batch_end",
)


def dispatch_skips_none(namespace: ModuleType) -> bool:
    """Whether this Lightning's callback dispatch skips a hook that is not callable (it does in 2.x).

    Asked of the private dispatch function ``trainer.call._call_callback_hooks`` itself, with a callback
    whose hook is ``None``, rather than assumed; ``False`` when the function is missing or fails.
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


def skip_unused_loop_hooks(callback: Any, namespace: ModuleType) -> list[str]:
    """Sets the loop hooks ``callback``'s class leaves to Lightning's no-op base to ``None`` on the instance.

    Lightning dispatches every hook to every callback (a profiler section and a few attribute lookups
    each, ~2.5 us), overridden or not: 7-8 calls per step that do nothing. On a small model's ~1-ms
    CPU step that is ~1.5% of every run of a sweep; a hook that is not callable is skipped outright.
    Hooks a subclass overrides are kept. Returns the hooks set to ``None`` (none if this Lightning's
    dispatch would call them anyway, :func:`dispatch_skips_none`).
    """
    if not dispatch_skips_none(namespace):
        return []
    # a lightning.pytorch subclass inherits its no-op hooks from pytorch_lightning's Callback (first in its MRO)
    bases = {Callback, getattr(namespace, "Callback", Callback)}
    skipped = []
    for name in LOOP_HOOKS:
        if any(getattr(type(callback), name, None) is getattr(base, name, object()) for base in bases):
            setattr(callback, name, None)
            skipped.append(name)
    return skipped


# ------------------------------------------------------------------- Callback._generate_state_key
def state_key_of(callback: Any, **kwargs: Any) -> str:
    """A callback's ``state_key`` from its class and arguments, by the protected ``Callback._generate_state_key``
    that Lightning's own callbacks use; without it, the same format (class name, then the arguments' repr)."""
    generate = getattr(callback, "_generate_state_key", None)
    if callable(generate):
        return str(generate(**kwargs))
    return f"{type(callback).__qualname__}{kwargs!r}"


# ---------------------------------------------------------------- Trainer._accelerator_connector
def devices_flag(trainer: Any) -> Any:
    """The ``devices=`` the Trainer was given (``"auto"``, ``4``, ...), from its private accelerator connector.

    ``None`` when this Lightning keeps it elsewhere: the caller then checks the resolved device count.
    """
    return getattr(getattr(trainer, "_accelerator_connector", None), "_devices_flag", None)


# ---------------------------------------------------------------------- WandbLogger._wandb_init
def wandb_logger_has_fixed_id(logger: Any) -> bool:
    """Whether a ``WandbLogger`` was given a run id (``id=`` or ``version=``), from its private ``_wandb_init``.

    ``False`` when the logger keeps its settings elsewhere (the check is then skipped).
    """
    init = getattr(logger, "_wandb_init", None)
    return bool(init.get("id")) if isinstance(init, dict) else False


def wandb_logger_init_kwargs(logger: Any) -> dict[str, Any] | None:
    """The ``wandb.init`` arguments a ``WandbLogger`` would start its run with (its private ``_wandb_init``,
    with ``mode="offline"`` for ``WandbLogger(offline=True)``, which Lightning applies through
    ``WANDB_MODE``); ``None`` when its run exists already or this Lightning keeps them elsewhere (the
    logger then starts its run itself, as Lightning does)."""
    init = getattr(logger, "_wandb_init", None)
    if not isinstance(init, dict) or getattr(logger, "_experiment", True) is not None:
        return None
    kwargs = dict(init)
    if getattr(logger, "_offline", False):
        kwargs.setdefault("mode", "offline")
    return kwargs


def set_wandb_experiment(logger: Any, run: Any) -> bool:
    """Make ``run`` the ``WandbLogger``'s experiment (its private ``_experiment``), with the step axis
    Lightning's own ``experiment`` property defines; ``False`` when this Lightning has no such attribute."""
    if not hasattr(logger, "_experiment"):
        return False
    logger._experiment = run
    define = getattr(run, "define_metric", None)
    if callable(define):
        init = getattr(logger, "_wandb_init", None) or {}
        if init.get("sync_tensorboard"):
            define("*", step_metric="global_step")
        else:
            define("trainer/global_step")
            define("*", step_metric="trainer/global_step", step_sync=True)
    return True


# ---------------------------------------------------------------- trainer.call._call_setup_hook
#: the callback method :func:`call_before_loggers` calls with the Trainer, before any logger starts its run
BEFORE_LOGGERS = "before_loggers_start"


def call_before_loggers(namespace: ModuleType) -> bool:
    """Call ``callback.before_loggers_start(trainer)`` of every callback that has one, before the loggers
    start their experiments.

    Lightning starts every logger's experiment (``wandb.init`` for a ``WandbLogger``) at the top of its
    private ``trainer.call._call_setup_hook``, before any callback hook runs: a sweep that must bound
    that start, put the run in its group or keep the probe off W&B has no public hook early enough.
    This wraps that function (once per namespace); it returns ``False`` when this Lightning has none
    (the loggers then start as Lightning starts them).
    """
    try:
        call = importlib.import_module(f"{namespace.__name__}.trainer.call")
    except ImportError:
        return False
    original = getattr(call, "_call_setup_hook", None)
    if not callable(original):
        return False
    if getattr(original, "_before_loggers", False):
        return True

    def setup_hook(trainer: Any, *args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
        for callback in list(getattr(trainer, "callbacks", None) or ()):
            hook = getattr(callback, BEFORE_LOGGERS, None)
            if callable(hook):
                hook(trainer)
        return _original(trainer, *args, **kwargs)

    setup_hook._before_loggers = True  # type: ignore[attr-defined]
    setattr(call, "_call_setup_hook", setup_hook)  # noqa: B010 (a module of a namespace chosen at run time)
    return True


# ------------------------------------------------------------------- fit_loop._data_source
def train_data_source(trainer: Any) -> tuple[Any, Any]:
    """The fit loop's private training data source and what it holds (a DataModule, the LightningModule or
    a DataLoader passed to ``fit``); ``(None, None)`` when this Lightning has no ``fit_loop._data_source``
    (the caller then asks for :class:`~lightning_scaling.DataFraction`)."""
    source = getattr(trainer.fit_loop, "_data_source", None)
    return source, getattr(source, "instance", None)


# -------------------------------------------- Trainer._checkpoint_connector._restore_modules_and_callbacks
def continue_from_checkpoint(trainer: Any, checkpoint: str, namespace: ModuleType) -> None:
    """Make this ``fit`` restore the model and callbacks from ``checkpoint`` (an adaptive study's next rung).

    Lightning resolves ``fit(ckpt_path=...)`` before any callback hook runs, and restores the model and
    callbacks right after ``setup``: this wraps that private step of its checkpoint connector so it reads
    ``checkpoint``; a ``ckpt_path`` the user passed to ``fit`` wins.

    Raises:
        SweepError: this Lightning has no such step (an adaptive study cannot continue a run there; a
            grid study needs none).
    """
    conn = getattr(trainer, "_checkpoint_connector", None)
    restore = getattr(conn, "_restore_modules_and_callbacks", None)
    if conn is None or restore is None or not hasattr(conn, "restore_training_state"):
        raise SweepError(
            f"this {namespace.__name__} version has no Trainer._checkpoint_connector._restore_modules_and_callbacks"
            ", which an adaptive study uses to continue a promoted run from its checkpoint; use "
            "strategy='grid', or a pytorch_lightning version 2.1-2.6")

    def restore_rung(checkpoint_path: Any = None, *args: Any, **kwargs: Any) -> None:
        if checkpoint_path is None:  # the user's own fit(ckpt_path=...) wins
            checkpoint_path = checkpoint
            # the sweep folder is untrusted input (docs/sweep-folder.md): a rung's checkpoint (tensors, loop and
            # callback state, plain hyperparameters) loads without unpickling code; a planted pickle is refused
            if args and args[0] is None:
                args = (True, *args[1:])
            elif not args and kwargs.get("weights_only") is None and accepts(restore, "weights_only"):
                kwargs["weights_only"] = True
            try:
                restore(checkpoint_path, *args, **kwargs)
            except pickle.UnpicklingError as exc:
                raise SweepError(
                    f"the adaptive rung checkpoint {checkpoint} holds objects that loading with weights_only=True "
                    f"refuses ({str(exc).splitlines()[0]}); the sweep folder is untrusted input, so such checkpoints "
                    "are not unpickled. Keep the hyperparameters plain values (save_hyperparameters(ignore=[...])), "
                    "or delete the file to train the rung from scratch") from None
            return
        restore(checkpoint_path, *args, **kwargs)

    conn._restore_modules_and_callbacks = restore_rung


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a parameter ``name`` (``False`` when its signature cannot be read)."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------ utilities.exceptions
def is_interrupt(exc: BaseException, namespace: ModuleType) -> bool:
    """Ctrl-C, or Lightning's ``SIGTERMException`` (public, but only in newer versions: looked up, not imported)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    sigterm = getattr(getattr(getattr(namespace, "utilities", None), "exceptions", None), "SIGTERMException", None)
    return sigterm is not None and isinstance(exc, sigterm)


LoaderArgs = tuple[tuple[Any, ...], dict[str, Any]]


def reinstantiate_loader(loader: Any, sampler: Any, adjust: Callable[[tuple[Any, ...], dict[str, Any]], LoaderArgs]
                         ) -> Any | None:
    """Re-create ``loader`` (its class and settings) with ``sampler``, its arguments passed through ``adjust``.

    Uses Lightning's private re-instantiation: ``_get_dataloader_init_args_and_kwargs``
    (``pytorch_lightning.utilities.data``), ``_reinstantiate_wrapped_cls``
    (``lightning_fabric.utilities.data``) and the ``__pl_saved_kwargs`` attribute Lightning keeps on
    loaders. Guarded: a failed import returns ``None`` (the caller rebuilds a plain ``DataLoader``
    by hand); anything Lightning raises propagates.
    """
    try:
        from lightning_fabric.utilities.data import _reinstantiate_wrapped_cls
        from pytorch_lightning.utilities.data import _get_dataloader_init_args_and_kwargs
    except ImportError:
        return None
    # Lightning updates the saved constructor kwargs in place; the wrapped module may cache and
    # return this loader again, so it gets its own kwargs back afterwards
    saved = getattr(loader, "__pl_saved_kwargs", None)
    try:
        if saved is not None:
            object.__setattr__(loader, "__pl_saved_kwargs", dict(saved))
        args, kwargs = _get_dataloader_init_args_and_kwargs(loader, sampler)
        args, kwargs = adjust(tuple(args), dict(kwargs))
        return _reinstantiate_wrapped_cls(loader, *args, **kwargs)
    finally:
        if saved is not None:
            object.__setattr__(loader, "__pl_saved_kwargs", saved)
