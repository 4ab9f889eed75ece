"""The one argument list of a study, shared by :class:`~lightning_scaling.ScalingSweep` and
:func:`~lightning_scaling.run_sweep`, and checked once, when the script builds it (not minutes later
when the runs start).

Both take these arguments under these names with these defaults (``run_sweep`` adds ``script`` and
``args``; ``ScalingSweep`` spells them out because LightningCLI reads its signature); what each one
means is documented on :class:`~lightning_scaling.ScalingSweep`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_scaling._checks import require_int
from lightning_scaling.sweep.adaptive import Adaptive, check_strategy
from lightning_scaling.sweep.launchers import LAUNCHERS, Launcher
from lightning_scaling.sweep.plan import SweepPlan
from lightning_scaling.sweep.reporter import Reporter
from lightning_scaling.sweep.result import SweepResult, analysis, check_targets

__all__ = ["SweepOptions"]

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
    reuse_changed: bool = False

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
        reuse_changed: bool = False,
    ) -> SweepOptions:
        """Check every argument (a ValueError or TypeError naming it and the fix) and resolve the defaults.

        >>> opts = SweepOptions.build(**{**DEFAULTS, "fractions": [0.25, 0.5, 0.75, 1.0], "grid": {"m.w": [8, 16]}})
        >>> opts.adaptive is None, opts.cli_overrides, len(opts.plan.runs)
        (True, True, 8)
        """
        adaptive = check_strategy(strategy)
        plan = SweepPlan.build(fractions=fractions, sizes=sizes, grid=grid, seeds=seeds, monitor=monitor, mode=mode,
                               data_seed=data_seed)
        require_int("max_retries", max_retries, 0)
        require_int("devices_per_slot", devices_per_slot, 1)
        require_int("slots", slots, 1, allow_none=True)
        require_int("bootstrap", bootstrap, 0)
        for arg, fn in (("to_error", to_error), ("size_fn", size_fn)):
            if fn is not None and not callable(fn):
                what = "value -> error" if arg == "to_error" else "sample -> size"
                raise TypeError(f"{arg} must be a callable ({what}) or None, got {type(fn).__name__}")
        if isinstance(launcher, str) and launcher.strip().lower() not in LAUNCHERS:
            raise ValueError(f"unknown launcher {launcher!r}: use one of {', '.join(map(repr, LAUNCHERS))} or pass a "
                             "launcher object")
        check_reporter(reporter)
        if not isinstance(reuse_changed, bool):
            raise TypeError(f"reuse_changed must be True or False, got {reuse_changed!r}")
        return cls(
            reuse_changed=reuse_changed,
            plan=plan, adaptive=adaptive, to_error=to_error, sweep_dir=sweep_dir, name=name, slots=slots,
            devices_per_slot=devices_per_slot, launcher=launcher, max_retries=max_retries, size_fn=size_fn,
            size_unit=size_unit, probe=probe, bootstrap=bootstrap, targets=check_targets(targets), reporter=reporter,
            cli_overrides=any("." in k for k in plan.grid) if cli_overrides is None else cli_overrides,
        )

    def analyse(self, bootstrap: int) -> Callable[[list[dict[str, Any]]], SweepResult]:
        """The study's analysis of its records (``bootstrap`` replicates): its monitor, mode, to_error, targets."""
        return analysis(monitor=self.plan.monitor, mode=self.plan.mode, to_error_fn=self.to_error,
                        bootstrap=bootstrap, targets=self.targets)


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
    "reuse_changed": False,
}
