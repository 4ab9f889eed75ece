"""SlurmLauncher: the runs of a sweep as SLURM jobs, submitted through submitit from the login node.

The controller hands runs over one at a time as its queue allows; the launcher collects the runs
handed over between two polls and submits them as one job array (``executor.batch()``), so the
first wave of a study is one ``sbatch`` and later runs go out in small arrays as slots free up.
``array_parallelism`` caps the runs in SLURM (pending or running) at once, across arrays.

Each job runs the user's script as a child process (as the local launcher does) with the GPUs
SLURM allocated (``CUDA_VISIBLE_DEVICES`` as SLURM sets it). Jobs that time out or are preempted
are requeued by submitit (``submitit.helpers.Checkpointable``): the run is stopped with SIGTERM
and started again from the beginning in the requeued job, with the same launch token, so its
record counts. The sweep folder must be on storage shared by the login and compute nodes (as
SLURM clusters have): runs write their records and logs straight into it.

submitit is imported lazily; this module imports neither it nor Lightning until a launcher is built.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_scaling._checks import require_int
from lightning_scaling.sweep.launchers.base import (
    Job,
    import_extra,
    run_on_node,
    stop_process,
    thread_environment,
)
from lightning_scaling.sweep.store import atomic_write_json, read_json

__all__ = ["SlurmLauncher", "parse_time", "slurm_job_ids"]



# a job, an array task or a heterogeneous component: 123, 123_4, 123+1 (what submitit's job_id holds)
_SLURM_ID = re.compile(r"[0-9]{1,20}(?:[_+][0-9]{1,10})?")


def slurm_job_ids(values: Any, source: Path) -> list[str]:
    """The SLURM job ids among ``values`` (read from ``source``, the untrusted sweep folder): anything else,
    an option such as ``--user=alice`` included, never reaches ``scancel`` and is named on stderr.

    >>> slurm_job_ids(["101_0", 102, "--user=alice"], Path("active_jobs.json"))
    ['101_0', '102']
    """
    ids: list[str] = []
    bad: list[Any] = []
    for value in values if isinstance(values, list) else [values]:
        text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
        if _SLURM_ID.fullmatch(text):
            ids.append(text)
        else:
            bad.append(value)
    if bad:
        print(f"[lightning-scaling] {source} holds values that are no SLURM job ids, not cancelled: "
              f"{', '.join(map(repr, bad))[:300]}", file=sys.stderr, flush=True)
    return ids


def _import_submitit() -> Any:
    return import_extra("submitit", launcher="SLURM", extra="slurm", alternative="submitit")


def parse_time(value: int | str) -> int:
    """A SLURM time limit in minutes: ``90``, ``"90"``, ``"1:30:00"``, ``"2-00:00:00"``, ``"30:00"`` (MM:SS).

    >>> parse_time("1:30:00"), parse_time("2-00:00:00"), parse_time(45)
    (90, 2880, 45)
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"time must be minutes (int) or a SLURM time string, got {value!r}")
    if isinstance(value, int):
        minutes = value
    else:
        m = re.fullmatch(r"\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*", value)
        if not m:
            raise ValueError(f"time {value!r} is not a SLURM time (minutes, MM:SS, HH:MM:SS or D-HH:MM:SS)")
        days, first, second, third = m.groups()  # the first always; the third only after the second
        if days is not None:  # D-HH[:MM[:SS]]
            minutes = int(days) * 1440 + int(first) * 60 + int(second or 0) + (int(third or 0) + 59) // 60
        elif third is not None:  # HH:MM:SS
            minutes = int(first) * 60 + int(second) + (int(third) + 59) // 60
        elif second is not None:  # MM:SS
            minutes = int(first) + (int(second) + 59) // 60
        else:
            minutes = int(first)
    if minutes < 1:
        raise ValueError(f"time must be at least one minute, got {value!r}")
    return minutes


_current: subprocess.Popen | None = None  # the run this SLURM job executes (for checkpoint)


def _remember(proc: subprocess.Popen) -> None:
    global _current
    _current = proc


class SlurmRun:
    """The callable a SLURM job executes: one run of the sweep, requeued on timeout or preemption.

    Checkpointable the way ``submitit.helpers.Checkpointable`` is (submitit looks for a
    ``checkpoint`` method), without importing submitit when this module is imported.
    """

    def __call__(self, command: list[str], overrides: dict[str, str], log_path: str, cwd: str, gpus: int,
                 grace: float = 10.0) -> int:
        job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")
        header = f"# SLURM job {job_id}" if "SLURM_JOB_ID" in os.environ else f"# submitit local job {job_id}"
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        if array:
            header += f" (array {array}_{os.environ.get('SLURM_ARRAY_TASK_ID')})"
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        if restarts and restarts != "0":
            header += f", requeued {restarts}x"
        import socket

        header += f" on {socket.gethostname()}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}\n"
        return run_on_node(command, overrides, log_path, gpus=gpus, cwd=cwd, header=header, grace=grace,
                           on_start=_remember)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Timeout or preemption: stop the run (no record is written), then requeue the same job."""
        if _current is not None:
            grace = args[5] if len(args) > 5 else kwargs.get("grace", 10.0)
            stop_process(_current, float(grace))
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


class SlurmLauncher:
    """Runs each run of a sweep as a SLURM job (job arrays through submitit), from the login node.

    Args:
        partition: SLURM partition (``--partition``).
        time: time limit per run: minutes or a SLURM time string (``"4:00:00"``); a run that hits
            it is requeued, up to ``max_requeues`` times (preemptions are always requeued).
        gpus_per_run: GPUs per run (``--gpus-per-node``); 0 for CPU partitions.
        cpus_per_run: CPUs per run (``--cpus-per-task``); default: SLURM's default.
        mem_gb: memory per run.
        array_parallelism: runs in SLURM at once (``--array=...%N`` within an array, and across arrays).
        max_requeues: how often a run that times out is requeued (submitit's ``max_num_timeout``).
        account, qos, constraint: the sbatch options of those names.
        setup: shell lines run before the job (``module load cuda``, ``source venv/bin/activate``).
        additional_parameters: any other sbatch option, ``{"mail-type": "END"}``.
        folder: submitit's folder (job scripts, pickles, SLURM logs); default ``<sweep folder>/submitit``.
        cluster: ``None`` = SLURM (``"slurm"``); ``"local"`` runs jobs as local processes through
            submitit's local executor (tests, or trying a study on the login node); ``"debug"``
            runs them in this process.
        executor_parameters: more ``executor.update_parameters`` arguments (``slurm_exclude=...``).
    """

    def __init__(
        self,
        *,
        partition: str | None = None,
        time: int | str = 60,
        gpus_per_run: int = 1,
        cpus_per_run: int | None = None,
        mem_gb: float | None = None,
        array_parallelism: int = 32,
        max_requeues: int = 3,
        account: str | None = None,
        qos: str | None = None,
        constraint: str | None = None,
        setup: Sequence[str] = (),
        additional_parameters: Mapping[str, Any] | None = None,
        folder: str | os.PathLike[str] | None = None,
        cluster: str | None = None,
        executor_parameters: Mapping[str, Any] | None = None,
        grace: float = 10.0,
    ) -> None:
        require_int("gpus_per_run", gpus_per_run, 0)
        require_int("cpus_per_run", cpus_per_run, 1, allow_none=True)
        require_int("array_parallelism", array_parallelism, 1)
        require_int("max_requeues", max_requeues, 0)
        if isinstance(setup, str):
            raise TypeError("setup must be a list of shell lines, not one string")
        self.timeout_min = parse_time(time)
        _import_submitit()  # a missing extra fails when the sweep is built, not when it starts
        self.partition = partition
        self.gpus_per_run = gpus_per_run
        self.cpus_per_run = cpus_per_run
        self.mem_gb = mem_gb
        self.array_parallelism = array_parallelism
        self.max_requeues = max_requeues
        self.account = account
        self.qos = qos
        self.constraint = constraint
        self.setup = list(setup)
        self.additional_parameters = dict(additional_parameters or {})
        self.folder = Path(folder) if folder is not None else None
        self.cluster = cluster or "slurm"
        self.executor_parameters = dict(executor_parameters or {})
        self.grace = grace
        self._executor: Any = None
        self._pending: list[Job] = []
        self._jobs: list[tuple[Job, Any]] = []  # (job, submitit job)
        self._active_path: Path | None = None

    def parameters(self) -> dict[str, Any]:
        """The ``AutoExecutor.update_parameters`` arguments (generic ones, and ``slurm_*`` for SLURM)."""
        params: dict[str, Any] = {
            "name": "lightning-scaling", "timeout_min": self.timeout_min, "nodes": 1, "tasks_per_node": 1,
            "gpus_per_node": self.gpus_per_run, "cpus_per_task": self.cpus_per_run, "mem_gb": self.mem_gb,
            "slurm_partition": self.partition, "slurm_array_parallelism": self.array_parallelism,
            "slurm_account": self.account, "slurm_qos": self.qos, "slurm_constraint": self.constraint,
            "slurm_setup": self.setup or None, "slurm_additional_parameters": self.additional_parameters or None,
            # the job gets SIGUSR2 this long before the limit: time to stop the run and requeue
            "slurm_signal_delay_s": max(30, int(self.grace) + 30),
            **self.executor_parameters,
        }
        return {k: v for k, v in params.items() if v is not None}

    def executor(self, folder: str | os.PathLike[str]) -> Any:
        """The submitit executor for this launcher's options, its files in ``folder``."""
        submitit = _import_submitit()
        ex = submitit.AutoExecutor(folder=str(folder), cluster=self.cluster,
                                   **{f"{self.cluster}_max_num_timeout": self.max_requeues}
                                   if self.cluster in ("slurm", "local") else {})
        ex.update_parameters(**self.parameters())
        return ex

    # -- the Launcher interface ------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return max(0, self.array_parallelism - len(self._jobs) - len(self._pending))

    def describe(self) -> str:
        where = "SLURM" if self.cluster == "slurm" else f"submitit {self.cluster!r} executor"
        part = f"partition {self.partition}, " if self.partition else ""
        return (f"{where} launcher ({part}per run {self.gpus_per_run} GPUs, time limit {self.timeout_min} min; "
                f"up to {self.array_parallelism} runs at once, as job arrays)")

    def submit(self, job: Job) -> None:
        if self.capacity < 1:
            raise RuntimeError("the SLURM launcher is full: check capacity before submitting")
        job.log_header(f"as a {self.cluster} job")
        job.started = time.time()
        self._pending.append(job)

    def _flush(self) -> None:
        """Submit the runs handed over since the last poll as one job array."""
        if not self._pending:
            return
        jobs, self._pending = self._pending, []
        if self._executor is None:
            folder = Path(self.folder or Path(jobs[0].sweep_dir) / "submitit")
            self._active_path = folder / "active_jobs.json"
            self.cancel_leftovers()
            # %j is the job id: every job's files apart
            self._executor = self.executor(folder / "%j")
        threads = thread_environment(self.cpus_per_run or 1)
        cwd = os.getcwd()
        fn = SlurmRun()
        submitted = []
        with self._executor.batch():
            for job in jobs:
                overrides = {**threads, **job.env_overrides}
                submitted.append(self._executor.submit(fn, list(job.command), overrides, str(job.log_path), cwd,
                                                       self.gpus_per_run, self.grace))
        for job, sjob in zip(jobs, submitted):
            with job.log_path.open("a", encoding="utf-8") as log:
                log.write(f"# submitted as job {sjob.job_id}\n")
            self._jobs.append((job, sjob))
        self._save_active()

    def _save_active(self) -> None:
        """Note the jobs in SLURM, so that a restarted controller can cancel what this one leaves behind."""
        if self._active_path is not None:
            with contextlib.suppress(OSError):
                atomic_write_json(self._active_path, {"jobs": [str(sjob.job_id) for _, sjob in self._jobs]})

    def cancel_leftovers(self) -> list[str]:
        """Cancel the jobs an earlier controller of this sweep left in SLURM (it was killed, or lost its login).

        Their runs have no record yet, so this controller runs them again; the old jobs would only
        use GPUs and race the new ones for the same record. Returns the cancelled job ids.
        """
        if self._active_path is None or self.cluster != "slurm":
            return []
        with contextlib.suppress(ValueError):
            ids = slurm_job_ids((read_json(self._active_path) or {}).get("jobs", []), self._active_path)
            if ids:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(["scancel", *ids], capture_output=True, timeout=60, check=False)
                    print(f"[lightning-scaling] cancelled {len(ids)} SLURM job(s) left by an earlier controller of "
                          f"this sweep: {' '.join(ids)}", file=sys.stderr, flush=True)
                    return ids
        return []

    def poll(self) -> list[tuple[Job, int]]:
        self._flush()
        done, keep = [], []
        for job, sjob in self._jobs:
            try:
                finished = sjob.done()
            except Exception as exc:  # sacct unreachable for a moment: ask again at the next poll
                print(f"[lightning-scaling] could not read the state of SLURM job {sjob.job_id}: {exc}",
                      file=sys.stderr, flush=True)
                finished = False
            if not finished:
                keep.append((job, sjob))
                continue
            try:
                rc = int(sjob.result())
            except Exception as exc:  # the job itself failed: node failure, OOM, out of requeues, cancelled
                first = (str(exc).strip().splitlines() or [""])[0]
                with job.log_path.open("a", encoding="utf-8") as log:
                    log.write(f"\n[lightning-scaling] SLURM job {sjob.job_id} failed: {type(exc).__name__}: "
                              f"{first} (submitit logs: {sjob.paths.stdout.parent})\n")
                rc = -1
            done.append((job, rc))
        if done:
            self._jobs = keep
            self._save_active()
        return done

    def running(self) -> list[Job]:
        return [job for job, _ in self._jobs] + list(self._pending)

    def shutdown(self, grace: float = 10.0) -> None:
        """Cancel every job (``scancel``: SIGTERM, then SIGKILL); runs not yet submitted are dropped."""
        self._pending.clear()
        for _, sjob in self._jobs:
            with contextlib.suppress(Exception):
                sjob.cancel(check=False)
        deadline = time.time() + grace
        for _, sjob in self._jobs:
            while time.time() < deadline:
                with contextlib.suppress(Exception):
                    if sjob.done():
                        break
                time.sleep(0.5)
        self._jobs.clear()
        self._save_active()

    def close(self) -> None:
        """Nothing to release: submitted jobs belong to SLURM."""
