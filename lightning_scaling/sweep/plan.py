"""What a sweep runs: data sizes x grid points x seeds, with stable run ids (no torch, no Lightning)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lightning_scaling._checks import require_int, require_numbers

__all__ = ["NOT_IN_PLAN", "SELECTIONS", "RunSpec", "SweepPlan", "check_select", "geometric"]

SELECTIONS = ("best", "last")
"""The values of a sweep's ``select``: which of a run's monitored values ranks it and enters the laws."""

# the words of the error a run raises when its spec is not in its script's plan: a deterministic failure,
# which the controller never retries
NOT_IN_PLAN = "is not in this script's sweep plan"


def geometric(start: float, stop: float, num: int) -> list[float]:
    """``num`` sizes spaced evenly in log space from ``start`` to ``stop`` (both included).

    The paper's grid: nested subsets from a small fraction up to all the data in geometric steps.

    >>> geometric(1 / 64, 1.0, num=7)
    [0.015625, 0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0]
    >>> geometric(1000, 64000, 4)
    [1000, 4000, 16000, 64000]
    """
    if not (isinstance(num, int) and num >= 2):
        raise ValueError(f"num must be an integer >= 2, got {num!r}")
    if not (math.isfinite(start) and math.isfinite(stop) and 0 < start < stop):
        raise ValueError(f"geometric needs 0 < start < stop, got start={start}, stop={stop}")
    values = np.geomspace(start, stop, num)
    if isinstance(start, int) and isinstance(stop, int):
        out: list[float] = [round(float(v)) for v in values]
        if len(set(out)) != len(out):
            raise ValueError(f"{num} integer sizes between {start} and {stop} would repeat; use fewer or a wider range")
        return out
    values[0], values[-1] = start, stop
    return [float(round(v, 12)) for v in values]


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a data size, a grid point and a seed."""

    run_id: str
    fraction: float | None
    size: int | None
    params: dict[str, Any]
    seed: int
    data_seed: int
    index: int = 0
    # adaptive studies only (sweep/adaptive.py): one rung of a run, its training budget as a fraction of the
    # Trainer's, the checkpoint it writes at its end and the one it continues from
    base_id: str | None = None
    rung: int | None = None
    budget: float | None = None
    save_checkpoint: str | None = None
    resume_from: str | None = None

    @property
    def size_label(self) -> str:
        return f"{self.fraction:g}" if self.fraction is not None else f"{self.size} samples"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in _ADAPTIVE_FIELDS:
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunSpec:
        fields: dict[str, Any] = {k: d[k] for k in ("run_id", "fraction", "size", "params", "seed", "data_seed")}
        fields.update(index=d["index"], **{k: d.get(k) for k in _ADAPTIVE_FIELDS})
        return cls(**fields)


_ADAPTIVE_FIELDS = ("base_id", "rung", "budget", "save_checkpoint", "resume_from")


def _run_id(fraction: float | None, size: int | None, params: Mapping[str, Any], seed: int) -> str:
    # content-addressed: the same run keeps its id (and its finished record) when the plan grows
    key = json.dumps({"f": fraction, "n": size, "p": dict(sorted(params.items())), "s": seed}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    where = f"f{fraction:.6g}" if fraction is not None else f"n{size}"
    grid = "-".join(f"{k.split('.')[-1]}{v}" for k, v in sorted(params.items()))
    label = "_".join(p for p in (where, grid, f"s{seed}") if p)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:80]
    return f"{safe}_{digest}"


@dataclass
class SweepPlan:
    """The full grid of a sweep, validated, with every bad argument named before any run starts."""

    fractions: list[float] | None
    sizes: list[int] | None
    grid: dict[str, list[Any]]
    seeds: list[int]
    monitor: str
    mode: str
    data_seed: int = 0
    runs: list[RunSpec] = field(default_factory=list)
    #: which monitored value of a run ranks it and enters the laws: ``"best"`` or ``"last"`` (not a
    #: setting that makes records incomparable: every record holds both values)
    select: str = "best"

    @classmethod
    def build(
        cls,
        *,
        fractions: Sequence[float] | None = None,
        sizes: Sequence[int] | None = None,
        grid: Mapping[str, Sequence[Any]] | None = None,
        seeds: int | Sequence[int] = 1,
        monitor: str = "val_loss",
        mode: str = "min",
        data_seed: int = 0,
        min_sizes: int = 4,
        select: str = "best",
    ) -> SweepPlan:
        """The plan of a study, every argument checked (a ValueError naming it and the fix)."""
        fr, sz = _check_amounts(fractions, sizes, min_sizes)
        grid_lists = _check_grid(grid)
        seed_list = _check_seeds(seeds)
        require_int("data_seed", data_seed, 0)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError("monitor must name the logged validation metric to minimise, e.g. monitor='val_loss'")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        check_select(select)

        plan = cls(fractions=fr, sizes=sz, grid=grid_lists, seeds=seed_list, monitor=monitor, mode=mode,
                   data_seed=data_seed, select=select)
        amounts: list[tuple[float | None, int | None]]
        amounts = [(f, None) for f in fr] if fr else [(None, s) for s in sz or []]
        # largest data first: the longest runs start early, so the slots drain evenly at the end
        amounts.sort(key=lambda a: -(a[0] if a[0] is not None else a[1] or 0))
        runs: list[RunSpec] = []
        for f, s in amounts:
            for p in plan.grid_points:
                for seed in seed_list:
                    runs.append(RunSpec(_run_id(f, s, p, seed), f, s, p, seed, data_seed, index=len(runs)))
        plan.runs = runs
        return plan

    @property
    def n_sizes(self) -> int:
        return len(self.fractions or self.sizes or [])

    @property
    def grid_points(self) -> list[dict[str, Any]]:
        return [dict(zip(self.grid, c)) for c in itertools.product(*self.grid.values())] or [{}]

    def settings(self) -> dict[str, Any]:
        """What makes finished records comparable: changing any of these starts a different study."""
        return {"monitor": self.monitor, "mode": self.mode, "data_seed": self.data_seed}

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": self.fractions, "sizes": self.sizes, "grid": self.grid, "seeds": self.seeds,
                **self.settings(), "select": self.select, "runs": [r.to_dict() for r in self.runs]}

    def summary(self) -> str:
        amounts = (", ".join(f"{f:g}" for f in sorted(self.fractions)) if self.fractions
                   else ", ".join(str(s) for s in sorted(self.sizes or [])))
        unit = "fractions" if self.fractions else "sizes"
        grid = " x ".join(f"{k} in {v}" for k, v in self.grid.items()) or "no grid (one model)"
        return (f"{len(self.runs)} runs = {self.n_sizes} data {unit} [{amounts}] x {len(self.grid_points)} grid "
                f"points ({grid}) x {len(self.seeds)} seeds; monitor {self.monitor!r} ({self.mode}); largest first")

    def differences(self, other: Mapping[str, Any]) -> list[str]:
        """The arguments in which this plan differs from ``other`` (a stored plan, :meth:`to_dict`), as
        ``"name: theirs -> ours"`` lines; empty when the two plan the same study.

        >>> a = SweepPlan.build(fractions=[0.125, 0.25, 0.5, 1.0], seeds=2)
        >>> SweepPlan.build(fractions=[0.125, 0.25, 0.5, 1.0]).differences(a.to_dict())
        ['seeds: [0, 1] -> [0]']
        """
        mine = self.to_dict()
        keys = ("fractions", "sizes", "grid", "seeds", "monitor", "mode", "data_seed")
        return [f"{k}: {other.get(k)!r} -> {mine[k]!r}" for k in keys if json.dumps(other.get(k), sort_keys=True)
                != json.dumps(mine[k], sort_keys=True)]

    def diff(self, old: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """Compare with a stored plan: (setting changes that make old runs incomparable, other changes)."""
        fatal = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in self.settings().items() if old.get(k) != v]
        old_ids = {r["run_id"] for r in old.get("runs", [])}
        new_ids = {r.run_id for r in self.runs}
        notes = []
        if old.get("select", "best") != self.select:
            notes.append(f"select: {old.get('select', 'best')!r} -> {self.select!r} (every record holds both values: "
                         "the finished runs are ranked again, none is trained again)")
        if new_ids - old_ids:
            notes.append(f"{len(new_ids - old_ids)} runs added")
        if old_ids - new_ids:
            notes.append(f"{len(old_ids - new_ids)} runs of the stored plan are no longer planned "
                         "(their records stay in runs/ and are not used)")
        return fatal, notes



def _check_amounts(fractions: Sequence[float] | None, sizes: Sequence[int] | None, min_sizes: int
                   ) -> tuple[list[float] | None, list[int] | None]:
    """Exactly one of ``fractions`` (in (0, 1]) and ``sizes`` (positive integers), distinct, at least ``min_sizes``."""
    if (fractions is None) == (sizes is None):
        raise ValueError("give exactly one of fractions= (e.g. ScalingSweep.geometric(1/64, 1.0, 7)) or "
                         "sizes= (absolute sample counts)")
    fr: list[float] | None = None
    sz: list[int] | None = None
    if fractions is not None:
        fr = [float(f) for f in require_numbers("fractions", fractions, "ScalingSweep.geometric(1/64, 1.0, 7)")]
        bad = [f for f in fr if not (math.isfinite(f) and 0 < f <= 1)]
        if bad:
            raise ValueError(f"fractions must be in (0, 1], got {bad}; use sizes= for absolute sample counts")
        _check_distinct(fr, "fractions")
        count = len(fr)
    else:
        assert sizes is not None
        require_numbers("sizes", sizes, "[1000, 4000, 16000, 64000] (sample counts)")
        if any(not float(s).is_integer() or s < 1 for s in sizes):
            raise ValueError(f"sizes must be positive integer sample counts, got {list(sizes)}")
        sz = [int(s) for s in sizes]
        _check_distinct(sz, "sizes")
        count = len(sz)
    if count < min_sizes:
        raise ValueError(f"{count} data sizes are too few to fit a learning curve (alpha, beta, gamma and "
                         f"an interval need at least {min_sizes}); add sizes, e.g. ScalingSweep.geometric(...)")
    return fr, sz


def _check_grid(grid: Mapping[str, Sequence[Any]] | None) -> dict[str, list[Any]]:
    """The grid as lists: named parameters, each with distinct, finite, JSON-serialisable values."""
    if grid is not None and not isinstance(grid, Mapping):
        raise TypeError(f"grid must map parameter names to lists of values, e.g. grid={{'hidden': [8, 16]}}, "
                        f"got {grid!r}")
    g = {} if grid is None else dict(grid)
    if not all(isinstance(k, str) and k for k in g):
        raise ValueError(f"grid must map parameter names to lists of values, got {grid!r}")
    for k, v in g.items():
        if isinstance(v, str | bytes) or not isinstance(v, Sequence) or len(v) == 0:
            raise ValueError(f"grid[{k!r}] must be a non-empty list of values, got {v!r}; drop the key to "
                             "search nothing, or give at least one value")
        for x in v:
            try:
                json.dumps(x, allow_nan=False)
            except TypeError:
                raise ValueError(f"grid[{k!r}] value {x!r} is not JSON-serialisable; use numbers, strings, "
                                 "booleans or lists of them") from None
            except ValueError:
                raise ValueError(f"grid[{k!r}] value {x!r} is not a finite number; give each model a finite "
                                 "value (NaN and inf name no model)") from None
        # 8 and 8.0 are one model (the script sees equal values): compare numbers as numbers
        keys = [json.dumps(_same_model(x), sort_keys=True) for x in v]
        if len(set(keys)) != len(keys):
            raise ValueError(f"grid[{k!r}] repeats values: {list(v)} (equal numbers such as 8 and 8.0 are one "
                             "model); give each value once")
    return {k: list(v) for k, v in g.items()}


def check_select(select: object) -> None:
    """``"best"`` or ``"last"``; else a ValueError naming ``select`` and the fix.

    >>> check_select("final")
    Traceback (most recent call last):
    ...
    ValueError: select must be 'best' (the best monitored value over training, ...
    """
    if select not in SELECTIONS:
        raise ValueError(f"select must be 'best' (the best monitored value over training, like early stopping) or "
                         f"'last' (the value of the last validation, which shows overfitting), got {select!r}")


def _same_model(x: Any) -> Any:
    """A canonical form of a grid value: equal numbers (8, 8.0) alike, bools apart from numbers."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int | float):
        return ["num", float(x)]
    if isinstance(x, Mapping):
        return {str(k): _same_model(v) for k, v in x.items()}
    if isinstance(x, Sequence):
        return [_same_model(v) for v in x]
    return x


def _check_seeds(seeds: int | Sequence[int]) -> list[int]:
    """A count of seeds as ``[0, ..., n-1]``, or a list of distinct integer seeds in ``[0, 2**32)``."""
    example = "a count (seeds=2) or a list of integer seeds (seeds=[0, 1])"
    if isinstance(seeds, bool) or not isinstance(seeds, int | Sequence) or isinstance(seeds, str | bytes):
        raise TypeError(f"seeds must be {example}, got {seeds!r}")
    if isinstance(seeds, int):
        seed_list = list(range(seeds))
    else:
        seed_list = [int(s) for s in require_numbers("seeds", seeds, "[0, 1]", integer=True)]
    if not seed_list or len(set(seed_list)) != len(seed_list):
        raise ValueError(f"seeds must be a positive count or a list of distinct seeds, got {seeds!r}")
    if any(not 0 <= s < 2**32 for s in seed_list):
        # Lightning's seed_everything replaces such a seed with 0 (a warning only): runs would share seed 0
        raise ValueError(f"seeds must be in [0, 2**32), got {seeds!r}")
    return seed_list

def _check_distinct(values: Sequence[float], name: str) -> None:
    seen = sorted(values)
    dup = sorted({a for a, b in itertools.pairwise(seen) if a == b})
    if dup:
        raise ValueError(f"{name} repeat {dup}; give each data size once (use seeds= for repeated runs)")
