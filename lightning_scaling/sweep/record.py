"""The run record: what one run of a sweep leaves in ``runs/<run_id>.json`` (plain Python, no torch).

A record is written once per run that ends (``ok``, ``diverged`` or ``failed``) by one builder,
:func:`build_record`: the run's own callback writes it when training ends or raises, and the
controller writes a ``failed`` one for a run that gave up without a record of its own. Its keys
and their JSON form are those of :class:`RunRecord`; ``docs/sweep-folder.md`` documents the same
keys (a test checks that the two agree).

>>> from lightning_scaling.sweep.plan import RunSpec
>>> spec = RunSpec("f0.5_s0_abc", fraction=0.5, size=None, params={"hidden": 64}, seed=0, data_seed=0)
>>> rec = build_record(spec, status=FAILED, attempt=2, launch="9f2c", reason="exit code 1", monitor="val_err")
>>> rec["status"], record_amount(rec), grid_key(rec["params"])
('failed', 0.5, '{"hidden": 64}')
"""

# no ``from __future__ import annotations``: TypedDict reads ``Required[...]`` from evaluated annotations
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

from typing_extensions import Required, TypedDict

from lightning_scaling.sweep.plan import RunSpec, check_select

__all__ = [
    "COMPLETED",
    "DIVERGED",
    "FAILED",
    "OK",
    "RECORDED",
    "RUN_RECORD_KEYS",
    "RunRecord",
    "build_record",
    "grid_key",
    "missing_value",
    "missing_value_message",
    "record_amount",
    "record_problem",
    "run_value",
]

OK = "ok"
"""The run trained to its end and its monitored value is finite: a point of the laws."""
DIVERGED = "diverged"
"""The training loss or the monitored value became NaN or inf: the run stopped, it is not retried."""
FAILED = "failed"
"""The run raised, or its process died, on every attempt (``attempts`` says why, each time)."""

COMPLETED = (OK, DIVERGED)
"""The statuses of a run that reached an outcome: never run again, also when a sweep is restarted
(a ``failed`` run is run again on the next start)."""
RECORDED = (OK, DIVERGED, FAILED)
"""Every status a record on disk can have: a run with such a record is over for this session."""


class RunRecord(TypedDict, total=False):
    """One run's record, as stored in ``runs/<run_id>.json`` (the JSON form of each key below).

    The keys marked ``Required`` are in every record, also the ``failed`` one the controller
    writes for a run whose process never wrote its own; the others are measured by the run.
    """

    #: string: the run's id in the plan (an adaptive rung other than the last: ``<run_id>_r<k>``)
    run_id: Required[str]
    #: integer: the attempt that wrote the record (1, then 2, ... for retries)
    attempt: Required[int]
    #: string: the token of the launch that wrote it (tells a fresh record from a stale one)
    launch: Required[str]
    #: string: ``"ok"``, ``"diverged"`` or ``"failed"``
    status: Required[str]
    #: string or null: why the run diverged or failed
    reason: Required[str | None]
    #: number or null: the training-set fraction (null when the sweep runs ``sizes``)
    fraction: Required[float | None]
    #: integer or null: the training-set size in samples (null when the sweep runs ``fractions``)
    size: Required[int | None]
    #: integer or null: the samples the run trained on
    num_samples: int | None
    #: number or null: the training-set size in ``size_unit`` (the x of the laws)
    train_size: float | None
    #: string: the unit of ``train_size`` (``"samples"``, ``"tokens"``, ...)
    size_unit: str
    #: object: the grid values of the run (``{"hidden": 64}``)
    params: Required[dict[str, Any]]
    #: integer: the run's seed
    seed: Required[int]
    #: integer: the seed of the nested data subsets
    data_seed: Required[int]
    #: integer: the model's trainable parameter count
    trainable_params: int
    #: string: the monitored metric
    monitor: Required[str]
    #: string: ``"min"`` or ``"max"``
    mode: str
    #: number or null: the best monitored value
    best_value: float | None
    #: integer or null: the global step of the best value
    best_step: int | None
    #: integer or null: the epoch of the best value
    best_epoch: int | None
    #: object: every scalar logged metric at the best step (``{"val_top5": 0.1, ...}``)
    metrics_at_best: dict[str, float]
    #: number or null: the last monitored value (of the last validation)
    final_value: float | None
    #: object: every scalar logged metric at the last validation
    metrics_at_final: dict[str, float]
    #: string: the sweep's ``select`` when the run was written (``"best"`` or ``"last"``); the record
    #: holds both values, so a rerun with another ``select`` re-ranks it without training it again
    select: str
    #: integer: global steps trained
    steps: int
    #: integer: epochs trained
    epochs: int
    #: number: the run's wall time in seconds (this rung's, in an adaptive study)
    wall_time_s: float
    #: number: Unix time the run's training started
    started_at: float
    #: number: Unix time the record was written
    ended_at: float
    #: string: the host name
    host: str
    #: string: the run's ``CUDA_VISIBLE_DEVICES`` (empty on CPU)
    devices: str
    #: object: versions of lightning_scaling, torch, the Lightning package and python
    versions: dict[str, str]
    #: string: adaptive studies: the grid run this rung belongs to
    base_id: str
    #: integer: adaptive studies: the successive-halving rung (0, 1, ...)
    rung: int
    #: number: adaptive studies: the rung's training budget as a fraction of the Trainer's
    budget: float
    #: string or null: adaptive studies: the Trainer limit the rung trained to (``"max_epochs=3"``)
    budget_limit: str | None
    #: string or null: adaptive studies: the checkpoint the rung continued from
    resumed_from: str | None
    #: number: adaptive studies: the wall time of this rung and the rungs it continued
    cumulative_wall_time_s: float
    #: string: adaptive studies: the checkpoint written at the end of the rung
    checkpoint: str
    #: list of strings: failed runs: the reason of every attempt
    attempts: list[str]
    #: string: the device the run trained on, as it saw it (``"cuda:0 (NVIDIA H100 80GB HBM3)"``, ``"cpu"``)
    device: str
    #: integer or null: the run's peak GPU memory in bytes (``torch.cuda.max_memory_allocated``; null on CPU)
    max_memory_allocated: int | None
    #: integer or null: the total memory of that GPU in bytes (null on CPU)
    device_memory: int | None
    #: object: what decides the result beyond size, grid point and seed (:mod:`~lightning_scaling.sweep.fingerprint`)
    fingerprint: dict[str, Any]


RUN_RECORD_KEYS: tuple[str, ...] = tuple(RunRecord.__annotations__)
"""The keys of :class:`RunRecord`, in the order a record is written."""


def build_record(
    spec: RunSpec,
    *,
    status: str,
    attempt: int,
    launch: str,
    reason: str | None = None,
    base: Mapping[str, Any] | None = None,
    **fields: Any,
) -> RunRecord:
    """The record of a run that ended: the one builder of ``ok``, ``diverged`` and ``failed`` records.

    Args:
        spec: the run's spec (its id, data size, grid values, seeds; the rung of an adaptive study).
        status: :data:`OK`, :data:`DIVERGED` or :data:`FAILED`.
        attempt: the attempt that ended.
        launch: the launch token of that attempt.
        reason: why the run diverged or failed.
        base: an earlier record of the same launch whose measurements are kept (the controller's
            ``failed`` record of a run that wrote its own record and then died).
        fields: the other keys of :class:`RunRecord` (measurements, ``monitor``, ``attempts``).

    Raises:
        ValueError: an unknown status or a key that :class:`RunRecord` does not have.
    """
    if status not in RECORDED:
        raise ValueError(f"status must be one of {RECORDED}, got {status!r}")
    unknown = sorted(set(fields) - set(RUN_RECORD_KEYS))
    if unknown:
        raise ValueError(f"not keys of a run record: {unknown}")
    merged: dict[str, Any] = {
        **(base or {}),
        "run_id": spec.run_id, "fraction": spec.fraction, "size": spec.size, "params": spec.params,
        "seed": spec.seed, "data_seed": spec.data_seed,
        **({"base_id": spec.base_id, "rung": spec.rung, "budget": spec.budget} if spec.budget is not None else {}),
        "status": status, "attempt": attempt, "launch": launch, "reason": reason,
        **fields,
    }
    # the documented order first (a record reads top-down: who, what data, what model, the outcome);
    # keys an earlier version wrote into ``base`` are kept after them
    ordered = {k: merged[k] for k in RUN_RECORD_KEYS if k in merged}
    ordered.update((k, v) for k, v in merged.items() if k not in ordered)
    return cast(RunRecord, ordered)


def record_amount(record: Mapping[str, Any] | RunSpec) -> Any:
    """The data size a record (or spec) was planned at, as the sweep names it: its fraction, else its size.

    >>> record_amount({"fraction": None, "size": 800}), record_amount({"fraction": 0.25, "size": None})
    (800, 0.25)
    """
    if isinstance(record, RunSpec):
        return record.fraction if record.fraction is not None else record.size
    return record.get("fraction") if record.get("fraction") is not None else record.get("size")


def run_value(record: Mapping[str, Any], select: str = "best", metric: str | None = None) -> Any:
    """The run's value the sweep ranks and fits: the one accessor for ``best_value`` and ``final_value``.

    ``select="best"``: the best monitored value over training (``best_value``; it acts as early
    stopping); ``select="last"``: the value of the last validation (``final_value``), which shows
    overfitting. ``metric`` names another logged metric: its value at that same validation
    (``metrics_at_best`` or ``metrics_at_final``). ``None`` when the record lacks it.

    >>> rec = {"best_value": 1.2, "final_value": 1.9, "metrics_at_final": {"acc": 0.4}}
    >>> run_value(rec), run_value(rec, "last"), run_value(rec, "last", "acc"), run_value(rec, "best", "acc")
    (1.2, 1.9, 0.4, None)
    """
    check_select(select)
    if metric is None or metric == record.get("monitor"):
        return record.get("best_value" if select == "best" else "final_value")
    return (record.get("metrics_at_best" if select == "best" else "metrics_at_final") or {}).get(metric)


def missing_value(records: Iterable[Mapping[str, Any]], select: str) -> list[str]:
    """The ``ok`` runs whose record lacks the value ``select`` ranks by (``final_value`` is missing from
    records written before it was recorded): they cannot be ranked, and must not silently drop out.

    >>> missing_value([{"run_id": "a", "status": "ok", "best_value": 1.0}], "last")
    ['a']
    """
    out = []
    for r in records:
        v = run_value(r, select)
        if r.get("status") == OK and not (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)):
            out.append(str(r.get("run_id")))
    return out


def missing_value_message(lacking: list[str], select: str, folder: object = None) -> str:
    """Why the runs of :func:`missing_value` stop a study or an analysis, and the fix.

    >>> missing_value_message(["a"], "last")
    "select='last' ranks runs by their final_value, which the records of ['a'] do not hold ..."
    """
    where = f" in {folder}" if folder is not None else ""
    return (f"select={select!r} ranks runs by their final_value, which the records of {lacking}{where} do not hold "
            "(written before it was recorded): move those files away (runs/<run_id>.json) to run them again, or use "
            "select='best'")


def grid_key(params: Mapping[str, Any] | None) -> str:
    """A grid point (a record's ``params``) as a stable string key, the same for any key order.

    >>> grid_key({"lr": 0.1, "hidden": 64}), grid_key({})
    ('{"hidden": 64, "lr": 0.1}', '{}')
    """
    return json.dumps(dict(sorted((params or {}).items())), sort_keys=True)


def record_problem(record: Any, file_stem: str | None = None) -> str | None:
    """What makes ``record`` (read back from ``runs/<file_stem>.json``) unusable, or ``None`` for a sound one.

    The sweep folder is untrusted input: a record is used only if it is a JSON object with a string
    ``run_id`` (its file's name), a known ``status``, and, when ``ok``, a finite numeric ``best_value``
    (without one it would silently drop out of the laws and never be run again).

    >>> record_problem({"run_id": "a", "status": "ok", "best_value": None}, "a")
    'status ok without a finite numeric best_value (got None)'
    """
    if not isinstance(record, dict):
        return f"not a JSON object (a {type(record).__name__})"
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        return f"run_id is not a non-empty string (got {run_id!r})"
    if file_stem is not None and run_id != file_stem:
        return f"run_id {run_id!r} is not the file's name {file_stem!r}"
    status = record.get("status")
    if status not in RECORDED:
        return f"status {status!r} is none of {', '.join(RECORDED)}"
    best = record.get("best_value")
    finite = isinstance(best, int | float) and not isinstance(best, bool) and math.isfinite(best)
    if status == OK and not finite:
        return f"status ok without a finite numeric best_value (got {best!r})"
    if not isinstance(record.get("params", {}), dict):
        return f"params is not an object (got {record.get('params')!r})"
    return None
