"""LocalLauncher: the runs of a sweep as child processes on this machine, one per device slot.

A *slot* is what one run gets: one GPU by default (pinned with ``CUDA_VISIBLE_DEVICES``), ``k`` GPUs
for large runs, or on a CPU-only machine a worker process with its share of the cores. On Linux the
runs start as forks of a fork server (:mod:`~lightning_scaling.sweep.launchers.forkserver`) that
imported torch and Lightning once.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from itertools import count
from typing import Any

from lightning_scaling._checks import require_int
from lightning_scaling.sweep.launchers.base import Job, Slot, child_environment, popen_run, thread_environment
from lightning_scaling.sweep.launchers.forkserver import ForkServer
from lightning_scaling.sweep.launchers.packing import (
    AUTO,
    FILL,
    MAX_AUTO_RUNS,
    MemoryBook,
    check_runs_per_device,
    gpu_memory,
)

__all__ = ["LocalLauncher"]


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch, or a broken CUDA install: a CPU machine for our purposes
        return []


# what the fork server imports once, if the controller imported it (the user's script will): the heavy
# packages a training script loads; none of them initialises CUDA when imported (wandb, imported after
# torch, starts no thread either: checked, as a run forks without the server's other threads)
_PRELOAD = ("torch", "pytorch_lightning", "lightning.pytorch", "torchmetrics", "torchvision", "torchaudio", "wandb",
            "lightning_scaling.callbacks", "lightning_scaling.data")


class LocalLauncher:
    """Runs jobs as child processes on this machine: per device slot one, or up to ``runs_per_device``.

    Args:
        slots: number of parallel runs; ``None`` = one per GPU group, or one per CPU core (up to 16)
            on a CPU-only machine.
        devices_per_slot: GPUs per run (``CUDA_VISIBLE_DEVICES`` holds that many ids).
        threads_per_slot: CPU threads per run; default splits the cores evenly between the slots.
        fork_server: start runs as forks of a process that imported torch and Lightning once
            (:mod:`~lightning_scaling.sweep.launchers.forkserver`), saving seconds of imports per run; default
            on Linux. Each run is still its own process.
        runs_per_device: runs at once per slot (a GPU, a GPU group, or on a CPU machine a core group,
            whose threads they share); ``"auto"``: per grid point, as many as the GPU memory holds by
            what earlier runs (or the probe) of it measured, at most 8, one while unknown (on a CPU
            machine: one) (:mod:`~lightning_scaling.sweep.launchers.packing`). Runs are never planned
            past ``device_memory`` when their needs are known; a run marked ``alone`` gets a slot to itself.
        device_memory: one slot's GPU memory in bytes; default: read with ``nvidia-smi`` (never
            initialising CUDA here), else learnt from the runs' records.
    """

    def __init__(
        self,
        slots: int | None = None,
        devices_per_slot: int = 1,
        threads_per_slot: int | None = None,
        fork_server: bool | None = None,
        runs_per_device: int | str = 1,
        device_memory: int | None = None,
    ):
        self.runs_per_device = check_runs_per_device(runs_per_device)
        require_int("device_memory", device_memory, 1, allow_none=True)
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
        if device_memory is None and gpus and self.runs_per_device == AUTO:
            device_memory = gpu_memory(self.slots[0].gpus)
        self.book = MemoryBook(device_memory)
        self._running: dict[int, Job] = {}
        self._ids = count()
        self._kill_at: dict[int, float] = {}
        self.fork_server = sys.platform.startswith("linux") if fork_server is None else fork_server
        self._server: ForkServer | None = None

    def _limit(self) -> int:
        """The most runs one slot may hold (``"auto"``: the most it ever holds, per grid point fewer)."""
        if self.runs_per_device == AUTO:
            return MAX_AUTO_RUNS if self.has_gpus else 1
        return int(self.runs_per_device)

    def jobs_on(self, slot: Slot) -> list[Job]:
        """The runs in flight on ``slot``."""
        return [j for j in self._running.values() if j.slot is not None and j.slot.index == slot.index]

    @property
    def capacity(self) -> int:
        return sum(max(0, self._limit() - len(self.jobs_on(s))) for s in self.slots)

    def describe(self) -> str:
        kinds = {s.describe() for s in self.slots}
        packed = "" if self.runs_per_device == 1 else f", up to {self.runs_per_device} runs each"
        if self.runs_per_device == AUTO:
            packed = f", runs per GPU as its memory allows (at most {MAX_AUTO_RUNS})" if self.has_gpus else ""
        return f"{len(self.slots)} local slots ({', '.join(sorted(kinds))}{packed})"

    def observe(self, record: Mapping[str, Any], *, oom: bool = False) -> None:
        """Learn from a finished run's record (or the probe's): the memory its grid point needs, an OOM."""
        self.book.observe(record, oom=oom)

    def fits(self, params: Mapping[str, Any] | None, alone: bool = False) -> bool:
        """Whether a run of grid point ``params`` (``alone``: on a slot to itself) can start now."""
        return self._slot_for(params, alone) is not None

    def _slot_for(self, params: Mapping[str, Any] | None, alone: bool) -> Slot | None:
        """The emptiest slot that takes one more run: an empty one always; beside others only within the
        count limit, when neither asks to be alone, and (needs known) within the GPU's memory."""
        whole = alone or self.book.whole_device(params)
        for slot in sorted(self.slots, key=lambda s: len(self.jobs_on(s))):
            jobs = self.jobs_on(slot)
            if not jobs:
                return slot
            if whole or any(j.alone or self.book.whole_device(j.spec.params) for j in jobs):
                continue
            limit = self.book.auto_runs(params) if self.runs_per_device == AUTO and self.has_gpus else self._limit()
            if len(jobs) >= limit:
                continue
            needs = [self.book.need(j.spec.params) for j in jobs] + [self.book.need(params)]
            memory = self.book.device_memory
            known = [n for n in needs if n is not None]
            if self.has_gpus and memory and len(known) == len(needs) and sum(known) > memory * FILL:
                continue
            return slot
        return None

    def submit(self, job: Job) -> None:
        slot = self._slot_for(job.spec.params, job.alone)
        if slot is None:
            raise RuntimeError("no free slot: check fits() or capacity before submitting")
        job.slot = slot
        slot_env = slot.env()
        if isinstance(self.runs_per_device, int) and self.runs_per_device > 1:
            # runs packed on a core group share its threads rather than oversubscribing them
            slot_env.update(thread_environment(max(1, slot.threads // self.runs_per_device)))
        env = child_environment(os.environ, {**slot_env, **job.env_overrides})
        job.log_header(f"on {slot.describe()}")
        with job.log_path.open("ab") as log:
            log.write(f"$ {' '.join(job.command)}\n".encode())
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
                job.process = popen_run(job.command, env, log)
        job.started = time.time()
        self._running[next(self._ids)] = job

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
                self._kill_at.pop(index, None)
            elif time.time() > self._kill_at.get(index, math.inf):
                _signal_group(job, signal.SIGKILL)
        return done

    def stop(self, job: Job, grace: float = 10.0) -> None:
        """Stop one run (a run past its time limit): SIGTERM to its process group now, SIGKILL once
        ``grace`` seconds have passed (checked by :meth:`poll`, so the controller never blocks on it)."""
        for index, running in self._running.items():
            if running is job and index not in self._kill_at:
                _signal_group(job, signal.SIGTERM)
                self._kill_at[index] = time.time() + grace

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
