"""Fingerprints: what decides a run's result beyond its data size, grid point and seed (plain Python).

A run records its fingerprint (the record's ``fingerprint`` key): the training script's content,
its command-line arguments (less the ones the sweep adds), the Trainer settings that change
training, the LightningModule's and DataModule's hyperparameters and the versions of torch,
Lightning and this package. Each part is stored as its small value, or as a short hash where the
value is long, so that two fingerprints can be compared key by key and their difference shown.

Finished runs (``ok`` or ``diverged``) fix a study's fingerprint. On a rerun the controller hands
every run it starts (the probe first) the fingerprints of the finished runs
(:func:`expectation`, through the environment variable :data:`ENV_EXPECT`); a run whose own
fingerprint matches none of them stops before it trains (:func:`check`, :func:`refusal`) and the
controller stops the study with that message. Hyperparameters depend on the grid point, so a run
is compared in full with the finished runs of its own grid point, and without its
hyperparameters with those of other grid points.

>>> old = make_fingerprint(script=b"print(1)", args=["--lr", "0.1"], trainer={"max_steps": 200},
...                        model={"hidden": 64}, datamodule={}, versions={"torch": "2.4.0"})
>>> new = make_fingerprint(script=b"print(1)", args=["--lr", "0.1"], trainer={"max_steps": 400},
...                        model={"hidden": 64}, datamodule={}, versions={"torch": "2.4.0"})
>>> diff(old, new)
['trainer.max_steps: 200 -> 400']
>>> check(new, {"refs": [old], "ignore": []})
['trainer.max_steps: 200 -> 400']
>>> check(new, {"refs": [old, new], "ignore": []})
[]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lightning_scaling.sweep.record import COMPLETED, FAILED, grid_key

__all__ = [
    "ENV_EXPECT",
    "GRID_PARTS",
    "REFUSED",
    "REUSE_ARGUMENT",
    "arg_files",
    "check",
    "compact",
    "diff",
    "expectation",
    "flatten",
    "legacy_note",
    "make_fingerprint",
    "references",
    "refusal",
    "refused",
    "short_hash",
    "strip_sweep_args",
]

ENV_EXPECT = "LIGHTNING_SCALING_EXPECT"
"""The environment variable that hands a run the finished runs' fingerprints (JSON, see :func:`expectation`)."""
REFUSED = "the study's settings changed since its finished runs"
"""How the reason of a run that refused to train on changed settings begins."""
REUSE_ARGUMENT = "reuse_changed=True"
"""The argument of ``ScalingSweep`` and ``run_sweep`` that reuses finished runs whatever changed."""
GRID_PARTS = ("model", "datamodule")
"""The parts a grid point sets (``run.param(...)`` goes into the model's or datamodule's arguments)."""

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def short_hash(data: bytes | str) -> str:
    """``"sha256:"`` and the first 12 hex digits of the SHA-256 of ``data``.

    >>> short_hash("abc")
    'sha256:ba7816bf8f01'
    """
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:12]


def _json(value: Any) -> str:
    # an object without a JSON form stands for its repr, less the memory address that changes every run
    return json.dumps(value, sort_keys=True, default=lambda o: _ADDRESS.sub("", repr(o)))


def compact(value: Any, limit: int = 120) -> Any:
    """``value`` in JSON form if that is short (at most ``limit`` characters), else its short hash.

    >>> compact(0.02), compact("x" * 200)[:7]
    (0.02, 'sha256:')
    """
    text = _json(value)
    return json.loads(text) if len(text) <= limit else short_hash(text)


def make_fingerprint(
    *,
    script: bytes | None,
    args: Sequence[str],
    trainer: Mapping[str, Any],
    model: Mapping[str, Any],
    datamodule: Mapping[str, Any],
    versions: Mapping[str, str],
    files: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A run's fingerprint: each part small enough to be shown, or a short hash of it.

    Args:
        script: the training script's bytes (``None`` when it is not a file).
        args: its command-line arguments, less the sweep's own (:func:`strip_sweep_args`).
        trainer: the Trainer settings that change training.
        model: the LightningModule's hyperparameters.
        datamodule: the DataModule's hyperparameters (the user's one, inside a ``DataFraction``).
        versions: the versions of torch, Lightning and this package.
        files: short hashes of the files the arguments name (a LightningCLI ``--config``), :func:`arg_files`.
    """
    return {
        "script": short_hash(script) if script is not None else None,
        "args": compact(list(args), 400),
        "trainer": {str(k): compact(v) for k, v in sorted(trainer.items())},
        "model": {str(k): compact(v) for k, v in sorted(model.items())},
        "datamodule": {str(k): compact(v) for k, v in sorted(datamodule.items())},
        "versions": {str(k): str(v) for k, v in sorted(versions.items())},
        "files": dict(sorted((files or {}).items())),
    }


def strip_sweep_args(argv: Sequence[str], grid: Iterable[str]) -> list[str]:
    """The script's own arguments: ``argv`` less those the controller appends (dotted grid keys, seed).

    >>> strip_sweep_args(["fit", "--model.hidden=8", "--seed_everything=1", "--lr=0.1"], ["model.hidden"])
    ['fit', '--lr=0.1']
    """
    prefixes = (*(f"--{k}=" for k in grid if "." in k), "--seed_everything=")
    return [a for a in argv if not a.startswith(prefixes)]


def arg_files(args: Sequence[str]) -> dict[str, str]:
    """Short hashes of the files named by ``args`` (``--config c.yaml``, ``--config=c.yaml``): their content
    decides the run as much as the arguments do."""
    out = {}
    for a in args:
        path = a.split("=", 1)[1] if a.startswith("--") and "=" in a else a
        if path and os.path.isfile(path):
            with open(path, "rb") as f:
                out[path] = short_hash(f.read())
    return out


def flatten(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """One level: ``{"trainer.max_steps": 200, "script": "sha256:...", ...}``."""
    out: dict[str, Any] = {}
    for part, value in fingerprint.items():
        if isinstance(value, Mapping):
            out.update((f"{part}.{k}", v) for k, v in value.items())
        else:
            out[part] = value
    return out


def _without(flat: Mapping[str, Any], ignore: Sequence[str]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in ignore)}


def _show(value: Any) -> str:
    text = "(not set)" if value is _MISSING else _json(value)
    return text if len(text) <= 60 else text[:57] + "..."


_MISSING = object()


def diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = ()) -> list[str]:
    """What changed from ``old`` to ``new``, one line per key: ``"trainer.max_steps: 200 -> 400"``.

    Args:
        old: a finished run's fingerprint.
        new: this run's.
        ignore: parts or keys left out of the comparison (``"model"``, ``"trainer.max_epochs"``).
    """
    a, b = _without(flatten(old), ignore), _without(flatten(new), ignore)
    lines = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
        if va != vb:
            lines.append(f"{k}: {_show(va)} -> {_show(vb)}")
    return lines


def references(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The distinct fingerprints of the finished (``ok``/``diverged``) records, by grid point (:func:`grid_key`).

    A failed run fixes nothing: it is run again, with whatever settings the next start has.
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        fp = r.get("fingerprint")
        if r.get("status") in COMPLETED and isinstance(fp, Mapping):
            refs = out.setdefault(grid_key(r.get("params")), [])
            if dict(fp) not in refs:
                refs.append(dict(fp))
    return out


def expectation(refs: Mapping[str, list[dict[str, Any]]], params: Mapping[str, Any],
                grid: Iterable[str]) -> dict[str, Any] | None:
    """What a run of grid point ``params`` must match: ``{"refs": [...], "ignore": [...]}``, or ``None``.

    The finished runs of the same grid point, compared in full; else those of every other grid point,
    less what a grid point sets (the hyperparameters, and Trainer settings named ``trainer.<name>`` in the grid).
    """
    same = refs.get(grid_key(params))
    if same:
        return {"refs": same, "ignore": []}
    ignore = [*GRID_PARTS, *(k for k in grid if k.startswith("trainer."))]
    # compared without what a grid point sets, the other grid points' fingerprints are mostly one: kept
    # once, the expectation stays small enough for a run's environment however large the grid
    others: list[dict[str, Any]] = []
    for group in refs.values():
        for fp in group:
            kept = _without(flatten(fp), ignore)
            if kept not in others:
                others.append(kept)
    if not others:
        return None
    return {"refs": others, "ignore": ignore}


def check(own: Mapping[str, Any], expect: Mapping[str, Any] | None) -> list[str]:
    """The changes of ``own`` against the expected fingerprints: ``[]`` if it matches one of them
    (or nothing is expected), else its diff with the latest one."""
    if not expect or not expect.get("refs"):
        return []
    ignore = list(expect.get("ignore") or [])
    diffs = [diff(ref, own, ignore) for ref in expect["refs"]]
    return [] if any(not d for d in diffs) else diffs[-1]


def refusal(changes: Sequence[str]) -> str:
    """The message a run stops with when its fingerprint differs from the finished runs'."""
    shown = [*changes[:12], *([f"... and {len(changes) - 12} more"] if len(changes) > 12 else [])]
    return (f"{REFUSED}, so this run's result could not be compared with theirs; nothing was trained. "
            "Changed (finished runs -> now):\n  " + "\n  ".join(shown) + "\n"
            "Either start a new study (pass another name= or sweep_dir=; the old results stay where they are), "
            f"or, for a change that does not matter (e.g. a logging flag), pass {REUSE_ARGUMENT} to ScalingSweep "
            "(or run_sweep) to reuse the finished runs anyway")


def refused(record: Mapping[str, Any] | None) -> bool:
    """Whether a record (or ``probe.json``) is that of a run that refused to train on changed settings."""
    if not record:
        return False
    return record.get("status") == FAILED and str(record.get("reason") or "").startswith(REFUSED)


def legacy_note(records: Iterable[Mapping[str, Any]]) -> str | None:
    """A warning, when finished records have no fingerprint (written by lightning-scaling before it had one)."""
    old = sum(r.get("status") in COMPLETED and "fingerprint" not in r for r in records)
    if not old:
        return None
    return (f"warning: {old} finished runs were recorded without a fingerprint (by an earlier lightning-scaling); "
            "they are reused without checking that the script, its arguments, the Trainer and the hyperparameters "
            "are unchanged")
