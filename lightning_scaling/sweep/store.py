"""The sweep folder: one JSON record per run, written atomically, and the plan and result beside them.

Layout (``docs/sweep-folder.md``; a run record's keys: :class:`~lightning_scaling.sweep.record.RunRecord`)::

    <sweep_dir>/
      sweep.json          the plan: sizes, grid, seeds, monitor, every run's spec
      runs/<run_id>.json  one record per finished run (ok, diverged or failed)
      logs/<run_id>.log   the run's stdout and stderr, every attempt appended
      result.json         all records, the fitted laws and predictions
      runs.csv            one row per run (the W&B runs table)
      curve.csv           the fitted law and its interval band, with extrapolation
      learning_curve.png  the paper-style figure

Every file is written to a temporary name and renamed into place, so a controller killed at any
moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from lightning_scaling.sweep.record import OK, RunRecord, record_problem

__all__ = ["SweepStore", "atomic_write_json", "atomic_write_text", "current_umask", "json_default", "read_json"]


def atomic_write_json(path: Path, data: Mapping[str, Any] | list[Any]) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace`` (atomic on POSIX and Windows)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=json_default))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 and the rename keeps it: give the file the mode open() would (the umask's)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """This process's umask, read without changing it where the OS says it (Linux ``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # elsewhere set and restore it (a thread creating a file in between gets 0o077 at worst: never laxer)
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def json_default(o: Any) -> Any:
    """``default=`` for :func:`json.dump`: numpy scalars and arrays, paths."""
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


class SweepStore:
    """Reads and writes one sweep folder."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        #: the record files the last reads ignored, and why (:func:`~lightning_scaling.sweep.record.record_problem`)
        self.rejected: dict[str, str] = {}
        self._told: set[tuple[str, str]] = set()

    @property
    def plan_path(self) -> Path:
        return self.root / "sweep.json"

    @property
    def result_path(self) -> Path:
        return self.root / "result.json"

    @property
    def figure_path(self) -> Path:
        return self.root / "learning_curve.png"

    def record_path(self, run_id: str) -> Path:
        return self.root / "runs" / f"{run_id}.json"

    def log_path(self, run_id: str) -> Path:
        return self.root / "logs" / f"{run_id}.log"

    def read_plan(self) -> dict[str, Any] | None:
        return read_json(self.plan_path)

    def write_plan(self, plan: Mapping[str, Any]) -> None:
        atomic_write_json(self.plan_path, plan)

    def read_record(self, run_id: str) -> dict[str, Any] | None:
        """The run's record; ``None`` when it has none or its record is unusable (noted in :attr:`rejected`)."""
        return self._checked(self.record_path(run_id))

    def _checked(self, path: Path) -> dict[str, Any] | None:
        # the sweep folder is untrusted input: a record that breaks the schema is ignored, so its run runs again
        rec = read_json(path)
        problem = None if rec is None else record_problem(rec, path.stem)
        if problem is None:
            self.rejected.pop(path.stem, None)
            return rec
        self.rejected[path.stem] = problem
        return None

    def new_problems(self) -> list[str]:
        """One line per unusable record not yet told (the controller logs them once)."""
        out = []
        for run_id, problem in sorted(self.rejected.items()):
            if (run_id, problem) not in self._told:
                self._told.add((run_id, problem))
                out.append(f"ignoring {self.record_path(run_id)}: {problem}; the run is run again")
        return out

    def write_record(self, record: RunRecord | Mapping[str, Any]) -> None:
        atomic_write_json(self.record_path(record["run_id"]), record)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every record on disk, by run id (also those of runs no longer planned)."""
        out = {}
        for p in sorted((self.root / "runs").glob("*.json")):
            rec = self._checked(p)
            if rec is not None:
                out[rec["run_id"]] = rec
        return out

    def write_result(self, result: Mapping[str, Any]) -> None:
        atomic_write_json(self.result_path, result)


def fitted_records(records: Mapping[str, Mapping[str, Any]], planned: Collection[str]) -> list[Mapping[str, Any]]:
    """The records a sweep's laws are fitted to: one per planned run that has one.

    A planned run's own record; for a run an adaptive study stopped early (successive halving), the
    record of the last rung it trained (``<run_id>_r<k>``, successful only). Its best value was
    measured with part of the budget, so it is an upper bound on what the run would reach: it
    never displaces a better measurement, but where the grid points that went on turn out worse
    over more seeds, the best measurement at that size is this one (as in the paper, the best
    validation error found at each size). Grid sweeps have no rung records: their planned runs'.
    """
    planned = set(planned)
    out = {k: r for k, r in records.items() if k in planned}
    latest: dict[str, Mapping[str, Any]] = {}
    stopped = [r for r in records.values() if r.get("base_id") in planned and r.get("base_id") not in out
               and r.get("status") == OK]
    for r in sorted(stopped, key=lambda r: r.get("rung") or 0):
        latest[r["base_id"]] = r  # the last rung it trained
    return [*out.values(), *latest.values()]


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file's content, ``None`` if it does not exist, a clear error naming it if it is not UTF-8
    JSON holding an object."""
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); fix or remove it and run "
                         "again") from None
    except json.JSONDecodeError as exc:
        # atomic writes never leave this; a hand-edited file does: say which, do not guess
        raise ValueError(f"{path} is not valid JSON ({exc}); fix or remove it and run again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object (it holds a {type(data).__name__}); fix or remove it and run "
                         "again")
    return data
