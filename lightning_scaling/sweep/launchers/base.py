"""The launcher interface and what every launcher shares: the job, the run's environment, its process.

A launcher runs each sweep run as an isolated child process: :class:`~.local.LocalLauncher` in this
machine's device slots, :class:`~.ray.RayLauncher` as Ray tasks, :class:`~.slurm.SlurmLauncher` as
SLURM jobs. They implement :class:`Launcher` (``capacity``, ``submit``, ``poll``, ``shutdown``) and
start a run's process the same way (:func:`popen_run`, :func:`run_on_node`), in an environment cleaned
of the parent's distributed, cluster and W&B-run variables (:func:`child_environment`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from lightning_scaling.sweep.context import ENV_RUN
from lightning_scaling.sweep.plan import RunSpec

__all__ = ["Job", "Launcher", "RunProcess", "Slot", "child_environment", "die_with_parent", "import_extra", "popen_run",
           "run_on_node", "script_command", "stop_process", "tail", "thread_environment"]

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


def thread_environment(threads: int | str) -> dict[str, str]:
    """The variables that cap a run's CPU threads (OpenMP, MKL, OpenBLAS) at ``threads``."""
    return {v: str(threads) for v in _THREAD_VARS}


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
    """What one run gets: GPU ids (empty on CPU) and a thread count (a :class:`~.local.LocalLauncher`
    device slot, kept on the :class:`Job` it runs)."""

    index: int
    gpus: tuple[str, ...] = ()
    threads: int = 1

    def env(self) -> dict[str, str]:
        env = thread_environment(self.threads)
        # an empty CUDA_VISIBLE_DEVICES hides every GPU from a CPU slot, so no run lands on one by accident
        env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        return env

    def describe(self) -> str:
        return f"GPU {','.join(self.gpus)}" if self.gpus else f"CPU x{self.threads} threads"


class RunProcess(Protocol):
    """A started run's process: a :class:`subprocess.Popen`, or a fork server's
    :class:`~.forkserver.ForkedProcess`."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


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
    #: the run gets its slot to itself (packing puts no other run beside it: a retry after a CUDA OOM)
    alone: bool = False
    process: RunProcess | None = field(default=None, repr=False)

    @property
    def sweep_dir(self) -> str:
        """The sweep folder the run writes into (from its run context)."""
        return str(json.loads(self.env_overrides[ENV_RUN])["sweep_dir"])

    def log_header(self, where: str) -> None:
        """Start this attempt's section of the run's log: which run, which attempt, ``where``, when."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {self.spec.run_id} attempt {self.attempt} {where} "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())


class Launcher(Protocol):
    """What the controller needs from a launcher (local slots, or Ray or SLURM on a cluster).

    A launcher may also have ``wait(timeout)``, returning early when a run ends (without it the
    controller polls every 0.2 s), and ``prepare(command)``, called once before the first run to start
    what runs need (:class:`~.local.LocalLauncher` starts its fork server there).
    """

    @property
    def capacity(self) -> int: ...

    def describe(self) -> str: ...

    def submit(self, job: Job) -> None: ...

    def poll(self) -> list[tuple[Job, int]]: ...

    def running(self) -> list[Job]: ...

    def shutdown(self, grace: float = 10.0) -> None: ...

    def close(self) -> None: ...


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
        proc = popen_run(command, env, log, cwd=cwd)
    if on_start is not None:
        on_start(proc)
    try:
        return proc.wait()
    except BaseException:
        stop_process(proc, grace)
        raise


def popen_run(command: Sequence[str], env: Mapping[str, str], log: IO[bytes],
              cwd: str | None = None) -> subprocess.Popen:
    """Start a run's process: output to ``log``, no stdin, in its own session, killed with its parent on Linux.

    Its own session: Ctrl-C reaches the controller only, which stops runs in order, and the run's
    process group can be signalled as one (:func:`stop_process`).
    """
    return subprocess.Popen(
        list(command), env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
    )


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """``preexec_fn`` (Linux): the kernel kills this process when its parent dies, also by SIGKILL.

    A killed controller (or fork server) so leaves no orphan writing into the sweep folder while the
    resumed controller runs the same run again.
    """
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the run's process group, SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace if sig == signal.SIGTERM else 30)


def import_extra(module: str, *, launcher: str, extra: str, alternative: str, name: str | None = None) -> Any:
    """Import a cluster launcher's optional dependency, or fail naming the pip commands that install it.

    Args:
        module: the module to import (``"ray"``).
        launcher: the launcher that needs it, for the message (``"Ray"``).
        extra: this package's extra that installs it (``"ray"``: ``pip install "lightning-scaling[ray]"``).
        alternative: the other pip command (``'"ray[default]"'``).
        name: the dependency's name in the message (``"Ray"``); default: ``module``.

    Raises:
        ImportError: naming both pip commands.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"the {launcher} launcher needs {name or module}, which is not installed: "
                          f'pip install "lightning-scaling[{extra}]" (or pip install {alternative})') from exc


def tail(path: Path, lines: int = 15) -> str:
    """Last lines of a run's log, for failure reasons."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
