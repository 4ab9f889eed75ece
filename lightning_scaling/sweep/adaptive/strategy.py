"""The adaptive study's public settings: what it predicts (:class:`Target`) and how (:class:`Adaptive`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Adaptive", "Target", "check_strategy"]


@dataclass(frozen=True)
class Target:
    """What an adaptive study predicts: ``error_at`` a training-set size, or ``data_needed`` for an error.

    >>> Target.error_at(65536), Target.data_needed(0.05).kind
    (Target(kind='error_at', value=65536.0), 'data_needed')
    """

    kind: Literal["error_at", "data_needed"]
    value: float

    def __post_init__(self) -> None:
        if self.kind not in ("error_at", "data_needed"):
            raise ValueError(f"target kind must be 'error_at' or 'data_needed', got {self.kind!r}")
        if not (isinstance(self.value, int | float) and math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"the target's value must be a positive, finite number, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @classmethod
    def error_at(cls, size: float) -> Target:
        """The error at ``size`` (in the sweep's size unit, e.g. samples)."""
        return cls("error_at", size)

    @classmethod
    def data_needed(cls, error: float) -> Target:
        """The training-set size at which the error reaches ``error``."""
        return cls("data_needed", error)

    @classmethod
    def parse(cls, target: Target | Mapping[str, float] | tuple[str, float]) -> Target:
        """A :class:`Target` from itself, ``{"error_at": 65536}`` or ``("data_needed", 0.05)``."""
        if isinstance(target, Target):
            return target
        if isinstance(target, Mapping) and len(target) == 1:
            ((kind, value),) = target.items()
            return cls(kind, value)  # type: ignore[arg-type]
        if isinstance(target, tuple) and len(target) == 2:
            return cls(*target)  # type: ignore[arg-type]
        raise ValueError(f"target must be Target.error_at(size), Target.data_needed(error), {{'error_at': size}} or "
                         f"{{'data_needed': error}}, got {target!r}")

    def predict(self, fit: Any) -> Any:
        """The target's prediction (value, lower, upper) under a ``LearningCurveFit``."""
        return fit.predict(self.value) if self.kind == "error_at" else fit.data_needed(self.value)

    def describe(self) -> str:
        return (f"error at size {self.value:g}" if self.kind == "error_at"
                else f"data needed for error {self.value:g}")


@dataclass(frozen=True)
class Adaptive:
    """An adaptive study: ``ScalingSweep(..., strategy=Adaptive(target=..., tolerance=..., budget=...))``.

    Successive halving over the grid at each data size, and data sizes chosen one at a time among
    the sweep's ``fractions``/``sizes`` until the target's interval is tight enough or the budget is
    spent (:mod:`lightning_scaling.sweep.adaptive`).

    Args:
        target: what to predict: ``Target.error_at(size)`` / ``{"error_at": size}`` (size in the sweep's
            unit) or ``Target.data_needed(error)`` / ``{"data_needed": error}``.
        tolerance: stop when the target's interval is at most this wide, relative to its value
            (``(upper - lower) / value``); ``None``: only the budget stops the study.
        budget: device-seconds the study may spend (runs' wall time x devices); ``None``: no cap.
            At least one of ``tolerance`` and ``budget`` is needed.
        rungs: the training budget of each rung as a fraction of the full one (the Trainer's
            ``max_epochs``, or ``max_steps`` when set), increasing and ending at 1.
        eta: successive halving keeps the best ``ceil(n / eta)`` grid points after each rung (and any
            within noise of the best).
        initial_sizes: number of sizes run before the first fit (at least 4): the ``initial_sizes - 1``
            smallest candidates, then the largest one whose first rung fits in the budget (the largest
            of all without a budget; when none fits, the cheapest, the largest of equally cheap ones):
            a far extrapolation needs the far end of the range. Its later rungs (like those of every
            size chosen after it) start only when their cost, measured by its first rung, fits what is left.
        start_seeds: how many of the sweep's seeds a newly chosen size runs (its successive halving);
            ``None``: all. Another seed at a size is then one more candidate of the size selection (it
            reruns only the size's surviving grid points, at the full budget), chosen when it narrows
            the target's interval more per device-second than a new size does.
        margin: a grid point within ``margin`` (relative) of the best is never stopped.
        noise_z: ... nor one within ``noise_z`` standard errors of the best (seed noise, pooled).

    >>> Adaptive(target={"error_at": 65536}, tolerance=0.2).target
    Target(kind='error_at', value=65536.0)
    """

    target: Target
    tolerance: float | None = None
    budget: float | None = None
    rungs: tuple[float, ...] = (1 / 3, 1.0)
    eta: float = 3.0
    initial_sizes: int = 4
    start_seeds: int | None = 1
    margin: float = 0.05
    noise_z: float = 2.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Target.parse(self.target))
        if self.tolerance is None and self.budget is None:
            raise ValueError("an adaptive study needs a stopping rule: tolerance= (relative interval width, e.g. 0.2) "
                             "and/or budget= (device-seconds)")
        for name in ("tolerance", "budget"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")
        r = tuple(float(x) for x in self.rungs)
        if not r or r[-1] != 1.0 or any(not 0 < x <= 1 for x in r) or any(a >= b for a, b in itertools.pairwise(r)):
            raise ValueError(f"rungs must be increasing fractions of the full training budget ending at 1.0, "
                             f"e.g. (1/3, 1.0); got {self.rungs!r}")
        object.__setattr__(self, "rungs", r)
        if not self.eta > 1:
            raise ValueError(f"eta must be > 1, got {self.eta!r}")
        if self.margin < 0 or self.noise_z < 0:
            raise ValueError("margin and noise_z must be >= 0")
        initial = self.initial_sizes
        if isinstance(initial, bool) or not (isinstance(initial, int) and initial >= 4):
            raise ValueError(f"initial_sizes must be an integer >= 4 (a law with an interval needs 4 sizes), "
                             f"got {self.initial_sizes!r}")
        if self.start_seeds is not None and not (isinstance(self.start_seeds, int) and self.start_seeds >= 1):
            raise ValueError(f"start_seeds must be a positive number of seeds or None (all), got {self.start_seeds!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON (``adaptive.json``'s ``config``); ``Adaptive(**d)`` builds them again."""
        return {"target": {self.target.kind: self.target.value}, "tolerance": self.tolerance, "budget": self.budget,
                "rungs": list(self.rungs), "eta": self.eta, "initial_sizes": self.initial_sizes,
                "start_seeds": self.start_seeds, "margin": self.margin, "noise_z": self.noise_z}

    def describe(self) -> str:
        return (f"adaptive, target: {self.target.describe()}; tolerance {self.tolerance}, budget {self.budget} "
                f"device-s; rungs {[round(r, 4) for r in self.rungs]}")


def check_strategy(strategy: Any) -> Adaptive | None:
    """``None`` for ``strategy="grid"``, the :class:`Adaptive` object itself; anything else is a ValueError."""
    if isinstance(strategy, Adaptive):
        return strategy
    if isinstance(strategy, str) and strategy == "grid":
        return None
    if strategy == "adaptive":
        raise ValueError("strategy='adaptive' is now an object: strategy=Adaptive(target=Target.error_at(size), "
                         "tolerance=..., budget=...) (from lightning_scaling import Adaptive, Target)")
    raise ValueError(f"strategy must be 'grid' (every run, the paper's study) or "
                     f"Adaptive(target=..., tolerance=..., budget=...), got {strategy!r}")
