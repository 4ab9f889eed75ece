"""Launchers run each sweep run as an isolated child process; the local one fills a machine's device slots.

A *slot* is what one run gets: one GPU by default (pinned with ``CUDA_VISIBLE_DEVICES``), ``k`` GPUs
for large runs, or on a CPU-only machine a worker process with its share of the cores. The
interface (``capacity``, ``submit``, ``poll``, ``shutdown``) is what cluster launchers implement too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lightning_scaling.sweep.forkserver import ForkedProcess, ForkServer
from lightning_scaling.sweep.plan import RunSpec, require_int

__all__ = ["Job", "Launcher", "LocalLauncher", "Slot", "child_environment", "script_command"]

# variables that would make a child think it is part of the parent's distributed job, cluster
# allocation or W&B run: a run must start as a fresh, single job
_STRIP_EXACT = {
    "LOCAL_RANK", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
    "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUDA_VISIBLE_DEVICES",
    "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_SERVICE", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE", "WANDB_NAME",
}
_STRIP_PREFIXES = ("TORCHELASTIC_", "TORCH_ELASTIC_", "SLURM_", "LSB_", "OMPI_", "PMI_", "PMIX_", "_WANDB_",
                   "WANDB__", "JSM_NAMESPACE_", "PL_TRAINER_")
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def child_environment(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without distributed, cluster and W&B-run variables, plus ``overrides``."""
    env = {k: v for k, v in base.items() if k not in _STRIP_EXACT and not k.startswith(_STRIP_PREFIXES)}
    env.update(overrides)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def script_command() -> list[str]:
    """The command that re-runs this process's script, as Lightning's DDP launcher does.

    Raises:
        RuntimeError: in a notebook or REPL, which has no script to re-run.
    """
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name not in ("__main__", None):
        return [sys.executable, "-m", spec.name.removesuffix(".__main__"), *sys.argv[1:]]
    main_file = getattr(__main__, "__file__", None)
    if not main_file or not Path(main_file).is_file():
        raise RuntimeError(
            "ScalingSweep runs every run by re-running your script, and this interactive session (notebook or "
            "REPL) has no script to re-run. Put the training code in a script and run `python train.py`, or "
            "start the sweep from here with lightning_scaling.run_sweep('train.py', ...), which runs that script "
            "for every run and returns the same result."
        )
    return [sys.executable, os.path.abspath(main_file), *sys.argv[1:]]


@dataclass(frozen=True)
class Slot:
    """What one run gets: GPU ids (empty on CPU) and a thread count."""

    index: int
    gpus: tuple[str, ...] = ()
    threads: int = 1

    def env(self) -> dict[str, str]:
        env = {v: str(self.threads) for v in _THREAD_VARS}
        # an empty CUDA_VISIBLE_DEVICES hides every GPU from a CPU slot, so no run lands on one by accident
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        return env

    def describe(self) -> str:
        return f"GPU {','.join(self.gpus)}" if self.gpus else f"CPU x{self.threads} threads"


@dataclass
class Job:
    """One attempt of one run in a slot."""

    spec: RunSpec
    attempt: int
    command: list[str]
    env_overrides: dict[str, str]
    log_path: Path
    probe: bool = False
    launch: str = ""
    slot: Slot | None = None
    started: float = field(default_factory=time.time)
    process: subprocess.Popen | ForkedProcess | None = field(default=None, repr=False)


class Launcher(Protocol):
    """What the controller needs from a launcher (local slots here; Ray or SLURM on a cluster)."""

    @property
    def capacity(self) -> int: ...

    def describe(self) -> str: ...

    def submit(self, job: Job) -> None: ...

    def poll(self) -> list[tuple[Job, int]]: ...

    def running(self) -> list[Job]: ...

    def shutdown(self, grace: float = 10.0) -> None: ...

    def close(self) -> None: ...


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch, or a broken CUDA install: a CPU machine for our purposes
        return []


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the kernel kills the run when the controller dies (also by SIGKILL), so a killed
    # controller leaves no orphan writing into the sweep folder while the resumed one re-runs it
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalLauncher:
    """Runs jobs as child processes on this machine, one per device slot.

    Args:
        slots: number of parallel runs; ``None`` = one per GPU group, or one per CPU core (up to 16)
            on a CPU-only machine.
        devices_per_slot: GPUs per run (``CUDA_VISIBLE_DEVICES`` holds that many ids).
        threads_per_slot: CPU threads per run; default splits the cores evenly between the slots.
        fork_server: start runs as forks of a process that imported torch and Lightning once
            (:mod:`~lightning_scaling.sweep.forkserver`), saving seconds of imports per run; default
            on Linux. Each run is still its own process.
    """

    def __init__(
        self,
        slots: int | None = None,
        devices_per_slot: int = 1,
        threads_per_slot: int | None = None,
        fork_server: bool | None = None,
    ):
        require_int("slots", slots, 1, allow_none=True)
        require_int("devices_per_slot", devices_per_slot, 1)
        require_int("threads_per_slot", threads_per_slot, 1, allow_none=True)
        gpus = _visible_gpus()
        cores = os.cpu_count() or 1
        self.devices_per_slot = devices_per_slot
        self.has_gpus = bool(gpus)
        if gpus:
            groups = [tuple(gpus[i : i + devices_per_slot]) for i in range(0, len(gpus), devices_per_slot)]
            groups = [g for g in groups if len(g) == devices_per_slot]
            if not groups:
                raise ValueError(f"devices_per_slot={devices_per_slot} but only {len(gpus)} GPUs are visible; "
                                 f"use devices_per_slot <= {len(gpus)}")
            n = len(groups) if slots is None else slots
            if n > len(groups):
                raise ValueError(f"slots={n} with devices_per_slot={devices_per_slot} needs {n * devices_per_slot} "
                                 f"GPUs, {len(gpus)} are visible; use slots <= {len(groups)}")
            threads = threads_per_slot or max(1, cores // n)
            self.slots = [Slot(i, groups[i], threads) for i in range(n)]
        else:
            n = slots if slots is not None else min(cores, 16)
            threads = threads_per_slot or max(1, cores // n)
            self.slots = [Slot(i, (), threads) for i in range(n)]
        self._running: dict[int, Job] = {}
        self.fork_server = sys.platform.startswith("linux") if fork_server is None else fork_server
        self._server: ForkServer | None = None

    @property
    def capacity(self) -> int:
        return len(self.slots) - len(self._running)

    def describe(self) -> str:
        kinds = {s.describe() for s in self.slots}
        return f"{len(self.slots)} local slots ({', '.join(sorted(kinds))})"

    def submit(self, job: Job) -> None:
        free = [s for s in self.slots if s.index not in self._running]
        if not free:
            raise RuntimeError("no free slot: check capacity before submitting")
        slot = free[0]
        job.slot = slot
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = child_environment(os.environ, {**slot.env(), **job.env_overrides})
        with job.log_path.open("ab") as log:
            log.write(f"\n===== {job.spec.run_id} attempt {job.attempt} on {slot.describe()} "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n$ {' '.join(job.command)}\n".encode())
        server = self._fork_server() if job.command[:1] == [sys.executable] else None
        if server is not None:
            try:
                job.process = server.spawn(job.command, env, os.getcwd(), job.log_path)
            except (OSError, RuntimeError, ValueError) as exc:
                print(f"[lightning-scaling] fork server failed ({exc}); starting runs as new processes",
                      file=sys.stderr)
                self.fork_server, self._server = False, None
        if job.process is None:
            with job.log_path.open("ab") as log:
                job.process = subprocess.Popen(
                    job.command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    # its own session: Ctrl-C reaches the controller, which stops runs in order
                    start_new_session=True,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
        job.started = time.time()
        self._running[slot.index] = job

    def _fork_server(self) -> ForkServer | None:
        if not self.fork_server:
            return None
        if self._server is None:
            heavy = ("torch", "pytorch_lightning", "lightning.pytorch", "torchmetrics", "lightning_scaling.callbacks",
                     "lightning_scaling.data")
            preload = [m for m in heavy if m in sys.modules]
            env = child_environment(os.environ, {"OMP_NUM_THREADS": "1"})
            try:
                self._server = ForkServer(preload, env)
            except (OSError, RuntimeError) as exc:
                print(f"[lightning-scaling] fork server unavailable ({exc}); starting runs as new processes",
                      file=sys.stderr)
                self.fork_server = False
                return None
        return self._server

    def close(self) -> None:
        """Stop the fork server (after the last run)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def poll(self) -> list[tuple[Job, int]]:
        done = []
        for index, job in list(self._running.items()):
            assert job.process is not None
            rc = job.process.poll()
            if rc is not None:
                done.append((job, rc))
                del self._running[index]
        return done

    def running(self) -> list[Job]:
        return list(self._running.values())

    def shutdown(self, grace: float = 10.0) -> None:
        """Stop every run: SIGTERM to its process group (Lightning stops cleanly), SIGKILL after ``grace``."""
        jobs = list(self._running.values())
        for job in jobs:
            _signal_group(job, signal.SIGTERM)
        deadline = time.time() + grace
        for job in jobs:
            assert job.process is not None
            try:
                job.process.wait(timeout=max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(job, signal.SIGKILL)
                job.process.wait()
        self._running.clear()
        self.close()


def _signal_group(job: Job, sig: int) -> None:
    assert job.process is not None
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.process.pid, sig)


def tail(path: Path, lines: int = 15) -> str:
    """Last lines of a run's log, for failure reasons."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
