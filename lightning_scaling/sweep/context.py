"""Who am I: the controller, or one run of a sweep? (``current_run()``)

The controller starts each run as a fresh process of the user's own script, with the run's spec
in the environment variable ``LIGHTNING_SCALING_RUN`` (the way Lightning's DDP launcher tells its
children their rank; a very long spec is in a file the variable names). :func:`current_run` reads
it; without it the process is the controller.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_scaling.sweep.plan import RunSpec
from lightning_scaling.sweep.store import atomic_write_json

__all__ = ["ENV_LIMIT", "ENV_RUN", "RunContext", "current_run"]

ENV_RUN = "LIGHTNING_SCALING_RUN"
ENV_LIMIT = 32_768
"""The longest ``LIGHTNING_SCALING_RUN`` value, in bytes, kept in the environment (a longer spec goes to a file)."""
_MISSING = object()
_seeded: set[str] = set()


@dataclass(frozen=True)
class RunContext:
    """The run this process executes, or the controller (``spec is None``).

    Example:
        >>> run = current_run()          # in the script the user starts: the controller
        >>> run.is_controller, run.param("hidden", default=256)
        (True, 256)
    """

    spec: RunSpec | None = None
    sweep_dir: str | None = None
    attempt: int = 1
    probe: bool = False
    launch: str = ""

    @property
    def is_controller(self) -> bool:
        """True in the process the user started (every DDP rank of it); False inside a run."""
        return self.spec is None

    @property
    def is_run(self) -> bool:
        return self.spec is not None

    @property
    def seed(self) -> int | None:
        return None if self.spec is None else self.spec.seed

    @property
    def fraction(self) -> float | None:
        return None if self.spec is None else self.spec.fraction

    @property
    def params(self) -> dict[str, Any]:
        return {} if self.spec is None else dict(self.spec.params)

    def param(self, name: str, default: Any = _MISSING) -> Any:
        """This run's value of grid parameter ``name``; ``default`` in the controller or when not searched.

        Grid keys may be CLI paths (``"model.hidden"``); ``param("hidden")`` finds them too.
        """
        if self.spec is not None:
            if name in self.spec.params:
                return self.spec.params[name]
            tails = [k for k in self.spec.params if k.split(".")[-1] == name]
            if len(tails) == 1:
                return self.spec.params[tails[0]]
        if default is _MISSING:
            where = f"grid {sorted(self.spec.params)}" if self.spec is not None else "the controller"
            raise KeyError(f"{name!r} is not searched in {where}; pass current_run().param({name!r}, default=...)")
        return default

    def seed_everything(self) -> int | None:
        """Inside a run, seed every random generator (Python, numpy, torch, dataloader workers) with the
        run's seed, once per run; in the controller do nothing. Returns the seed (``None`` in the controller).

        Call it before building the model, so that each seed of a grid point starts from its own
        weights (``ScalingSweep`` calls it when the run's training starts, for scripts that did not)::

            run = current_run()
            run.seed_everything()
            model = Net(hidden=run.param("hidden", default=256))
        """
        if self.spec is None:
            return None
        if self.spec.run_id not in _seeded:
            _seeded.add(self.spec.run_id)
            from lightning_fabric.utilities.seed import seed_everything

            seed_everything(self.spec.seed, workers=True, verbose=False)
        return self.spec.seed

    def to_env(self) -> str:
        """The value of ``LIGHTNING_SCALING_RUN`` for this run. A spec longer than :data:`ENV_LIMIT` bytes
        (very long grid values) goes to ``<sweep_dir>/specs/<run_id>.json`` and the variable names that
        file: Linux refuses to start a process with one variable over 128 KiB (``Argument list too long``)."""
        assert self.spec is not None
        spec = self.spec.to_dict()
        ctx: dict[str, Any] = {"spec": spec, "sweep_dir": self.sweep_dir, "attempt": self.attempt,
               "probe": self.probe, "launch": self.launch}
        text = json.dumps(ctx)
        if len(text.encode()) <= ENV_LIMIT or not self.sweep_dir:
            return text
        path = Path(self.sweep_dir) / "specs" / f"{self.spec.run_id}.json"
        atomic_write_json(path, spec)
        return json.dumps({**ctx, "spec": None, "spec_file": str(path.resolve())})


def current_run() -> RunContext:
    """The run this process executes (``is_controller`` in the script the user started).

    A lookup of the environment, without side effects: seeding is :meth:`RunContext.seed_everything`.
    """
    raw = os.environ.get(ENV_RUN)
    if not raw:
        return RunContext()
    try:
        data = json.loads(raw)
        if data.get("spec_file"):  # a spec too long for the environment (RunContext.to_env)
            data["spec"] = _read_spec(Path(data["spec_file"]))
        return RunContext(spec=RunSpec.from_dict(data["spec"]), sweep_dir=data.get("sweep_dir"),
                          attempt=int(data.get("attempt", 1)), probe=bool(data.get("probe", False)),
                          launch=str(data.get("launch", "")))
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"{ENV_RUN} is set but is not a lightning-scaling run spec ({exc}); unset it to run "
                           "this script as the controller") from None


def _read_spec(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuntimeError(f"{ENV_RUN} names the run's spec file {path}, which this process cannot read ({exc}); "
                           "the sweep folder must be on storage the runs can read") from None
