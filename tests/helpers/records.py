"""Run records for tests, built by the package's one record builder (``sweep/record.py``).

A test names only what it is about (``make_record(size=800, best_value=0.2)``); everything else is a
plausible finished run, and every record has the keys and order a real one has.
"""

from __future__ import annotations

from typing import Any

from lightning_scaling.sweep.plan import RunSpec
from lightning_scaling.sweep.record import OK, RunRecord, build_record


def make_record(
    run_id: str = "run",
    *,
    status: str = OK,
    fraction: float | None = None,
    size: int | None = None,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    data_seed: int = 0,
    base_id: str | None = None,
    rung: int | None = None,
    budget: float | None = None,
    **fields: Any,
) -> RunRecord:
    """One run's record, its spec given by keywords (see :func:`spec_record` for ``fields``).

    Without ``fraction`` and ``size``, the record is of ``size=train_size`` (or 100).
    """
    if fraction is None and size is None:
        size = int(fields.get("train_size") or 100)
    spec = RunSpec(run_id, fraction, size, dict(params or {}), seed, data_seed, base_id=base_id, rung=rung,
                   budget=budget)
    return spec_record(spec, status=status, **fields)


def spec_record(spec: RunSpec, *, status: str = OK, attempt: int = 1, launch: str = "test",
                reason: str | None = None, **fields: Any) -> RunRecord:
    """The record a run of ``spec`` writes, through :func:`~lightning_scaling.sweep.record.build_record`.

    ``fields`` are the measured keys (``best_value``, ``train_size``, ...); ``monitor`` defaults to ``"val_err"``.
    """
    return build_record(spec, status=status, attempt=attempt, launch=launch, reason=reason,
                        **{"monitor": "val_err", **fields})
