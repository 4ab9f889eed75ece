"""The one argument list of a study, shared by :class:`~lightning_scaling.ScalingSweep` and
:func:`~lightning_scaling.run_sweep`, and checked once, when the script builds it (not minutes later
when the runs start).

Both take these arguments under these names with these defaults (``run_sweep`` adds ``script`` and
``args``; ``ScalingSweep`` spells them out because LightningCLI reads its signature); what each one
means is documented on :class:`~lightning_scaling.ScalingSweep`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_scaling._checks import require_bool, require_int, require_numbers, require_path, require_str
from lightning_scaling.sweep.adaptive import Adaptive, check_strategy
from lightning_scaling.sweep.launchers import LAUNCHERS, Launcher
from lightning_scaling.sweep.launchers.packing import check_runs_per_device
from lightning_scaling.sweep.plan import SweepPlan
from lightning_scaling.sweep.reporter import Reporter
from lightning_scaling.sweep.result import SweepResult, analysis, check_targets
from lightning_scaling.sweep.timeouts import check_run_timeout

__all__ = ["SweepOptions", "check_error_targets", "check_reporter"]

@dataclass(frozen=True)
class SweepOptions:
    """A study's arguments, checked: the plan, the strategy and everything else, as given or resolved.

    Build it with :meth:`build` (the arguments of ``ScalingSweep``). ``cli_overrides`` is resolved
    (``None``: when any grid key is dotted), ``targets`` checked and made floats, ``strategy``
    turned into ``adaptive`` (the :class:`~lightning_scaling.Adaptive` settings, ``None`` for the grid).
    """

    plan: SweepPlan
    adaptive: Adaptive | None
    to_error: Callable[[float], float] | None
    sweep_dir: str | Path | None
    name: str | None
    slots: int | None
    devices_per_slot: int
    launcher: Launcher | str | None
    max_retries: int
    size_fn: Callable[[Any], float] | None
    size_unit: str
    probe: bool
    cli_overrides: bool
    bootstrap: int
    targets: list[float]
    reporter: Any
    runs_per_device: int | str = 1
    run_timeout: float | str | None = "auto"
    reuse_changed: bool = False

    @property
    def select(self) -> str:
        """Which monitored value of a run ranks it and enters the laws (``"best"`` or ``"last"``)."""
        return self.plan.select

    @classmethod
    def build(
        cls,
        *,
        fractions: Sequence[float] | None,
        sizes: Sequence[int] | None,
        grid: Mapping[str, Sequence[Any]] | None,
        seeds: int | Sequence[int],
        monitor: str,
        mode: str,
        to_error: Callable[[float], float] | None,
        data_seed: int,
        sweep_dir: str | Path | None,
        name: str | None,
        slots: int | None,
        devices_per_slot: int,
        launcher: Launcher | str | None,
        max_retries: int,
        size_fn: Callable[[Any], float] | None,
        size_unit: str,
        probe: bool,
        cli_overrides: bool | None,
        bootstrap: int,
        targets: Sequence[float],
        reporter: Any,
        strategy: str | Adaptive,
        runs_per_device: int | str = 1,
        run_timeout: float | str | None = "auto",
        reuse_changed: bool = False,
        select: str = "best",
    ) -> SweepOptions:
        """Check every argument (a ValueError or TypeError naming it and the fix) and resolve the defaults.

        >>> opts = SweepOptions.build(**{**DEFAULTS, "fractions": [0.25, 0.5, 0.75, 1.0], "grid": {"m.w": [8, 16]}})
        >>> opts.adaptive is None, opts.cli_overrides, len(opts.plan.runs)
        (True, True, 8)
        """
        adaptive = check_strategy(strategy)
        plan = SweepPlan.build(fractions=fractions, sizes=sizes, grid=grid, seeds=seeds, monitor=monitor, mode=mode,
                               data_seed=data_seed, select=select)
        require_int("max_retries", max_retries, 0)
        require_int("devices_per_slot", devices_per_slot, 1)
        require_int("slots", slots, 1, allow_none=True)
        require_int("bootstrap", bootstrap, 0)
        require_path("sweep_dir", sweep_dir)
        check_name(name)  # a string that stays inside scaling_sweeps/ (a TypeError names a non-string)
        require_str("size_unit", size_unit, "'tokens'")
        require_bool("probe", probe)
        require_bool("cli_overrides", cli_overrides, allow_none=True)
        require_numbers("targets", targets, "[0.05, 0.02] (errors to predict the data needs of)")
        for arg, fn in (("to_error", to_error), ("size_fn", size_fn)):
            if fn is not None and not callable(fn):
                what = "value -> error" if arg == "to_error" else "sample -> size"
                raise TypeError(f"{arg} must be a callable ({what}) or None, got {type(fn).__name__}")
        if isinstance(launcher, str) and launcher.strip().lower() not in LAUNCHERS:
            raise ValueError(f"unknown launcher {launcher!r}: use one of {', '.join(map(repr, LAUNCHERS))} or pass a "
                             "launcher object")
        check_reporter(reporter)
        runs_per_device = check_runs_per_device(runs_per_device)
        run_timeout = check_run_timeout(run_timeout)
        overrides = any("." in k for k in plan.grid) if cli_overrides is None else cli_overrides
        if overrides:
            check_cli_values(plan.grid)
        if not isinstance(reuse_changed, bool):
            raise TypeError(f"reuse_changed must be True or False, got {reuse_changed!r}")
        checked_targets = check_targets(targets)
        check_error_targets(plan, to_error, checked_targets, adaptive)
        if adaptive is not None and adaptive.initial_sizes > plan.n_sizes:
            raise ValueError(f"Adaptive(initial_sizes={adaptive.initial_sizes}) needs that many candidate sizes, but "
                             f"the sweep has {plan.n_sizes}; lower initial_sizes= or add fractions=/sizes=")
        return cls(
            reuse_changed=reuse_changed,
            plan=plan, adaptive=adaptive, to_error=to_error, sweep_dir=sweep_dir, name=name, slots=slots,
            devices_per_slot=devices_per_slot, launcher=launcher, max_retries=max_retries, size_fn=size_fn,
            size_unit=size_unit, probe=probe, bootstrap=bootstrap, targets=checked_targets, reporter=reporter,
            cli_overrides=overrides,
            runs_per_device=runs_per_device, run_timeout=run_timeout,
        )

    def analyse(self, bootstrap: int) -> Callable[[list[dict[str, Any]]], SweepResult]:
        """The study's analysis of its records (``bootstrap`` replicates): its monitor, mode, to_error, targets."""
        return analysis(monitor=self.plan.monitor, mode=self.plan.mode, to_error_fn=self.to_error,
                        bootstrap=bootstrap, targets=self.targets, select=self.plan.select)


def check_name(name: Any) -> None:
    """``None`` or a sweep name that stays inside the sweeps root: one path component (``name=`` becomes
    ``scaling_sweeps/<name>``); else a ValueError naming it.

    >>> check_name("../../escaped")
    Traceback (most recent call last):
    ...
    ValueError: name='../../escaped' must be a plain folder name inside scaling_sweeps/ (no '/', ...
    """
    if name is None:
        return
    if not isinstance(name, str):
        raise TypeError(f"name must be a string or None, got {type(name).__name__}")
    # both separators on every OS: a sweep folder may be shared between Linux and Windows machines
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0") or Path(name).is_absolute():
        raise ValueError(f"name={name!r} must be a plain folder name inside scaling_sweeps/ (no '/', '\\\\', '..' or "
                         "absolute path); pass sweep_dir= to put the sweep folder elsewhere")


CLI_VALUE_LIMIT = 100_000
"""The longest ``--key=value`` argument, in bytes, that ``cli_overrides`` passes (Linux refuses 128 KiB)."""


def check_cli_values(grid: Mapping[str, Sequence[Any]]) -> None:
    """Every dotted grid value fits in one command-line argument (``cli_overrides``); else a ValueError naming it."""
    for key, values in grid.items():
        for v in values if "." in key else ():
            size = len(f"--{key}={v if isinstance(v, str) else json.dumps(v)}".encode())
            if size > CLI_VALUE_LIMIT:
                raise ValueError(f"grid[{key!r}] has a value of {size} bytes, too long for the command-line argument "
                                 f"cli_overrides passes (at most {CLI_VALUE_LIMIT}); pass a shorter value (a file "
                                 "path, a name) or cli_overrides=False and read it with current_run().param()")
def check_error_targets(plan: SweepPlan, to_error: Callable[[float], float] | None, targets: list[float],
                        adaptive: Adaptive | None) -> None:
    """Refuse target errors the study's error cannot take: rates (``1 - accuracy`` for ``mode="max"``
    without ``to_error``, or a monitor named like an error rate or accuracy) lie in [0, 1), so a
    target of 1 or more is a mistake; any other ``mode="min"`` metric (a loss) takes any positive target.
    """
    if to_error is not None:
        return
    words = set(plan.monitor.lower().replace("/", "_").replace("-", "_").split("_"))
    if plan.mode != "max" and not words & {"err", "error", "acc", "accuracy"}:
        return
    asked = [("targets", t) for t in targets]
    if adaptive is not None and adaptive.target.kind == "data_needed":
        asked.append(("strategy=Adaptive(target=Target.data_needed(...))", adaptive.target.value))
    for arg, value in asked:
        if value >= 1:
            raise ValueError(f"{arg} asks for an error of {value:g}, but monitor={plan.monitor!r} (mode={plan.mode!r}) "
                             "gives an error rate in [0, 1): give the target as an error rate (0.05 for 95% accuracy), "
                             "or pass to_error= if your error is not a rate")


def check_reporter(reporter: Any) -> None:
    """``None``, ``True``, ``False`` or a reporter object (a ``WandbReporter``); else a TypeError naming it."""
    if reporter is None or isinstance(reporter, bool):
        return
    if not isinstance(reporter, Reporter):
        raise TypeError(f"reporter must be a WandbReporter, True, False or None, got {type(reporter).__name__}")


# the defaults of every argument, as ScalingSweep and run_sweep declare them (tests/sweep/test_options.py
# checks both signatures against this)
DEFAULTS: dict[str, Any] = {
    "fractions": None, "sizes": None, "grid": None, "seeds": 1, "monitor": "val_loss", "mode": "min",
    "to_error": None, "data_seed": 0, "sweep_dir": None, "name": None, "slots": None, "devices_per_slot": 1,
    "launcher": None, "max_retries": 1, "size_fn": None, "size_unit": "samples", "probe": True,
    "cli_overrides": None, "bootstrap": 1000, "targets": (), "reporter": None, "strategy": "grid",
    "runs_per_device": 1, "run_timeout": "auto",
    "reuse_changed": False, "select": "best",
}
