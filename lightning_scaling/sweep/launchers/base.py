"""Launchers run each sweep run as an isolated child process; the local one fills a machine's device slots.

A *slot* is what one run gets: one GPU by default (pinned with ``CUDA_VISIBLE_DEVICES``), ``k`` GPUs
for large runs, or on a CPU-only machine a worker process with its share of the cores. The
interface (``capacity``, ``submit``, ``poll``, ``shutdown``) is what cluster launchers implement too:
:class:`~lightning_scaling.sweep.launchers.ray.RayLauncher` and
:class:`~lightning_scaling.sweep.launchers.slurm.SlurmLauncher` (:func:`make_launcher` picks one by name).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lightning_scaling._checks import require_int
from lightning_scaling.sweep.launchers.forkserver import ForkedProcess, ForkServer
from lightning_scaling.sweep.plan import RunSpec

__all__ = ["LAUNCHERS", "Job", "Launcher", "LocalLauncher", "Slot", "child_environment", "make_launcher",
           "run_on_node", "script_command"]

LAUNCHERS = ("local", "ray", "slurm")

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
    """What the controller needs from a launcher (local slots here; Ray or SLURM on a cluster).

    A launcher may also have ``wait(timeout)``, returning early when a run ends (without it the
    controller polls every 0.2 s), and ``prepare(command)``, called once before the first run to start
    what runs need (:class:`LocalLauncher` starts its fork server there).
    """

    @property
    def capacity(self) -> int: ...

    def describe(self) -> str: ...

    def submit(self, job: Job) -> None: ...

    def poll(self) -> list[tuple[Job, int]]: ...

    def running(self) -> list[Job]: ...

    def shutdown(self, grace: float = 10.0) -> None: ...

    def close(self) -> None: ...


def make_launcher(launcher: Launcher | str | None = None, *, slots: int | None = None,
                  devices_per_slot: int = 1) -> Launcher:
    """The launcher a sweep uses: ``None``/``"local"`` (local slots), ``"ray"``, ``"slurm"``, or a launcher object.

    ``slots`` caps the parallel runs (local slots, Ray runs in flight, SLURM array parallelism) and
    ``devices_per_slot`` is each run's GPU count. A launcher object is used as it is.

    Raises:
        ImportError: for ``"ray"``/``"slurm"`` when the extra is not installed (naming the pip command).
        ValueError: for an unknown name.
    """
    name = launcher.strip().lower() if isinstance(launcher, str) else None
    if launcher is None or name == "local":
        return LocalLauncher(slots=slots, devices_per_slot=devices_per_slot)
    if isinstance(launcher, str):
        if name == "ray":
            from lightning_scaling.sweep.launchers.ray import RayLauncher

            # None: one GPU per run when the cluster has GPUs, none on a CPU cluster
            return RayLauncher(max_concurrent=slots, gpus_per_run=None if devices_per_slot == 1 else devices_per_slot)
        if name == "slurm":
            from lightning_scaling.sweep.launchers.slurm import SlurmLauncher

            kwargs = {"array_parallelism": slots} if slots is not None else {}
            return SlurmLauncher(gpus_per_run=devices_per_slot, **kwargs)
        raise ValueError(f"unknown launcher {launcher!r}: use one of {', '.join(map(repr, LAUNCHERS))} or pass a "
                         "launcher object (LocalLauncher, RayLauncher, SlurmLauncher)")
    # looked up on the class: reading a cluster launcher's capacity would connect to its cluster
    missing = [a for a in ("capacity", "describe", "submit", "poll", "running", "shutdown", "close")
               if not hasattr(type(launcher), a)]
    if missing:
        raise TypeError(f"launcher must be a name ({', '.join(LAUNCHERS)}) or a launcher object; "
                        f"{type(launcher).__name__} has no {', '.join(missing)}")
    return launcher


def run_on_node(
    command: Sequence[str],
    overrides: Mapping[str, str],
    log_path: str | os.PathLike[str],
    *,
    gpus: int,
    base: Mapping[str, str] | None = None,
    cwd: str | None = None,
    header: str = "",
    grace: float = 10.0,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> int:
    """Run one job's command on the node this code runs on (in a Ray task or a SLURM job) and wait for it.

    The environment is ``base`` (default: this process's) cleaned by :func:`child_environment`, plus
    ``overrides``. GPUs are the ones the scheduler gave this task: the node's ``CUDA_VISIBLE_DEVICES``
    (set by Ray or SLURM) is kept as it is, never replaced; a run without GPUs gets an empty one, so it
    cannot land on a GPU that another task holds. If this process is interrupted (a cancelled Ray
    task, a SLURM requeue), the run gets SIGTERM (Lightning stops cleanly), then SIGKILL after ``grace``.

    Returns:
        The run's exit code (negative: killed by that signal).
    """
    env = child_environment(os.environ if base is None else base, overrides)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if gpus <= 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    elif visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if cwd is None or not Path(cwd).is_dir():
        cwd = None
    with log_path.open("ab") as log:
        if header:
            log.write(header.encode())
        log.write(f"$ {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(command), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
    if on_start is not None:
        on_start(proc)
    try:
        return proc.wait()
    except BaseException:
        stop_process(proc, grace)
        raise


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the run's process group, SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace if sig == signal.SIGTERM else 30)


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


# what the fork server imports once, if the controller imported it (the user's script will): the heavy
# packages a training script loads; none of them initialises CUDA when imported (wandb, imported after
# torch, starts no thread either: checked, as a run forks without the server's other threads)
_PRELOAD = ("torch", "pytorch_lightning", "lightning.pytorch", "torchmetrics", "torchvision", "torchaudio", "wandb",
            "lightning_scaling.callbacks", "lightning_scaling.data")


class LocalLauncher:
    """Runs jobs as child processes on this machine, one per device slot.

    Args:
        slots: number of parallel runs; ``None`` = one per GPU group, or one per CPU core (up to 16)
            on a CPU-only machine.
        devices_per_slot: GPUs per run (``CUDA_VISIBLE_DEVICES`` holds that many ids).
        threads_per_slot: CPU threads per run; default splits the cores evenly between the slots.
        fork_server: start runs as forks of a process that imported torch and Lightning once
            (:mod:`~lightning_scaling.sweep.launchers.forkserver`), saving seconds of imports per run; default
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
        server = self._server_for(job.command)
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

    def prepare(self, command: Sequence[str]) -> None:
        """Start the fork server now for runs of ``command`` (it imports while the controller goes on)."""
        self._server_for(command)

    def _server_for(self, command: Sequence[str]) -> ForkServer | None:
        """The fork server for runs of ``command``: only this interpreter's runs can be its forks."""
        return self._fork_server() if command[:1] == [sys.executable] else None

    def _fork_server(self) -> ForkServer | None:
        if not self.fork_server:
            return None
        if self._server is None:
            preload = [m for m in _PRELOAD if m in sys.modules]
            env = child_environment(os.environ, {"OMP_NUM_THREADS": "1"})
            try:
                self._server = ForkServer(preload, env)
            except (OSError, RuntimeError) as exc:
                print(f"[lightning-scaling] fork server unavailable ({exc}); starting runs as new processes",
                      file=sys.stderr)
                self.fork_server = False
                return None
        return self._server

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking as soon as the fork server reports a run's exit
        (the next run then starts at once instead of at the next poll)."""
        if self._server is not None and self._running and self._server.proc.poll() is None:
            self._server.pump(timeout=timeout)
        else:
            time.sleep(timeout)

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
