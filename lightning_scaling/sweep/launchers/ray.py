"""RayLauncher: the runs of a sweep as Ray tasks on a Ray cluster (``ray start`` on each node).

Each run is one Ray task that asks for the run's CPUs and GPUs; Ray picks the node and pins the
GPUs (the task's ``CUDA_VISIBLE_DEVICES``, which the run keeps). The task starts the user's script as
a child process, exactly as the local launcher does, and waits for it. Ray is imported lazily: this
module imports neither Ray nor Lightning until a launcher is built.

Where records go: when the sweep folder is shared storage (checked per task with a marker file
the controller writes), the run writes its record and log straight into it, as on one machine.
When it is not (a node without the shared filesystem), the run writes into a temporary sweep folder
on its node; the task returns that folder's JSON files and the log through Ray, and the controller
writes them atomically into the real sweep folder. Either way the controller reads the record from
its own folder, so retries and resume work unchanged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning_scaling._checks import require_int
from lightning_scaling.sweep.context import ENV_RUN
from lightning_scaling.sweep.launchers.base import Job, import_extra, run_on_node, thread_environment
from lightning_scaling.sweep.store import atomic_write_text

__all__ = ["RayLauncher"]

# variables that describe the controller's node or session, not the study: never forwarded to a run
_NODE_LOCAL = {"HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "TMPDIR", "DISPLAY", "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK",
               "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "CUDA_VISIBLE_DEVICES", "LIGHTNING_SCALING_RUN"}
_NODE_PREFIXES = ("RAY_", "SUBMITIT_")
# ray.init arguments that describe a local instance; they are refused when connecting to a cluster
_LOCAL_ONLY = {"num_cpus", "num_gpus", "resources", "object_store_memory", "include_dashboard", "dashboard_host",
               "dashboard_port", "_temp_dir", "_system_config", "labels"}
_MAX_LOG = 4 << 20  # bytes of a run's log returned through Ray (its end), when storage is not shared


def _import_ray() -> Any:
    return import_extra("ray", launcher="Ray", extra="ray", alternative='"ray[default]"', name="Ray")


def _run_task(command: list[str], overrides: dict[str, str], log_path: str, cwd: str, gpus: int,
              forwarded: dict[str, str], marker: str | None, token: str, grace: float) -> dict[str, Any]:
    """The Ray task: run one job's command on this node; return its exit code (and files, off shared storage)."""
    shared = marker is None
    if marker is not None:
        with contextlib.suppress(OSError):
            shared = Path(marker).read_text(encoding="utf-8") == token
    node = ""
    with contextlib.suppress(Exception):
        import ray

        node = ray.get_runtime_context().get_node_id()[:12]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f"# on {socket.gethostname()} (Ray node {node}), CUDA_VISIBLE_DEVICES={visible!r}"
    base = {**os.environ, **forwarded}
    if shared:
        rc = run_on_node(command, overrides, log_path, gpus=gpus, base=base, cwd=cwd, grace=grace,
                         header=f"{where}, shared sweep folder\n")
        return {"rc": rc, "shared": True}
    # not shared: the run writes into a temporary sweep folder on this node, returned through Ray
    tmp = Path(tempfile.mkdtemp(prefix="lightning-scaling-"))
    try:
        ctx = json.loads(overrides[ENV_RUN])
        ctx["sweep_dir"] = str(tmp)
        local_log = tmp / "run.log"
        rc = run_on_node(command, {**overrides, ENV_RUN: json.dumps(ctx)}, local_log, gpus=gpus, base=base,
                         cwd=cwd, grace=grace, header=f"{where}, node-local sweep folder (returned through Ray)\n")
        files = {str(p.relative_to(tmp)): p.read_text(encoding="utf-8") for p in tmp.rglob("*.json")
                 if not p.name.startswith(".")}
        with local_log.open("rb") as f:
            f.seek(max(0, local_log.stat().st_size - _MAX_LOG))
            log = f.read().decode("utf-8", errors="replace")
        return {"rc": rc, "shared": False, "files": files, "log": log}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class RayLauncher:
    """Runs each run of a sweep as a Ray task on a Ray cluster, or on a local Ray instance.

    Args:
        address: the cluster to join: ``None`` connects the Ray way (``RAY_ADDRESS``, else
            ``address="auto"``: a cluster started with ``ray start`` on this node) and starts a local
            instance when there is none; ``"local"`` always starts a local instance; or
            ``"HOST:6379"`` / ``"ray://HOST:10001"``.
        gpus_per_run: GPUs per run (Ray pins them); ``None``: 1 when the cluster has GPUs, else 0.
        runs_per_gpu: runs packed on one GPU: a one-GPU run asks Ray for ``num_gpus=1/runs_per_gpu``
            (Ray then places that many on each GPU, each its own process); multi-GPU runs keep whole GPUs.
        cpus_per_run: CPUs per run (also the run's ``OMP_NUM_THREADS``).
        resources: extra Ray resources per run, e.g. ``{"accelerator_type:A100": 0.01}``.
        max_concurrent: runs in flight at once; default: as many as the cluster's CPUs and GPUs
            fit (re-read as nodes join or leave).
        shared_storage: ``None`` (default) checks per run whether the node sees the sweep folder;
            ``True`` requires it; ``False`` always returns records and logs through Ray.
        forward_env: ``True`` gives runs the controller's environment (minus node-specific
            variables) on top of the node's, as the local launcher does; ``False`` only the node's
            (set up your nodes' environment yourself); or a list of variable names to forward.
        init_kwargs: extra ``ray.init`` arguments (``num_cpus`` etc. apply to a local instance only).
        grace: seconds a cancelled run gets between SIGTERM and SIGKILL.

    Ray retries nothing itself (``max_retries=0``): a failed run, or one lost with its node, comes
    back to the controller as a failed attempt, which retries it per ``max_retries`` of the sweep.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        gpus_per_run: int | None = None,
        cpus_per_run: float = 1,
        resources: Mapping[str, float] | None = None,
        max_concurrent: int | None = None,
        shared_storage: bool | None = None,
        forward_env: bool | Sequence[str] = True,
        init_kwargs: Mapping[str, Any] | None = None,
        grace: float = 10.0,
        runs_per_gpu: int = 1,
    ) -> None:
        require_int("gpus_per_run", gpus_per_run, 0, allow_none=True)
        require_int("runs_per_gpu", runs_per_gpu, 1)
        require_int("max_concurrent", max_concurrent, 1, allow_none=True)
        if not (isinstance(cpus_per_run, int | float) and cpus_per_run > 0):
            raise ValueError(f"cpus_per_run must be a positive number, got {cpus_per_run!r}")
        _import_ray()  # a missing extra fails when the sweep is built, not when it starts
        self.address = address
        self.gpus_per_run = gpus_per_run
        self.runs_per_gpu = runs_per_gpu
        self.cpus_per_run = cpus_per_run
        self.resources = dict(resources or {})
        self.max_concurrent = max_concurrent
        self.shared_storage = shared_storage
        self.forward_env = forward_env
        self.init_kwargs = dict(init_kwargs or {})
        self.grace = grace
        self._ray: Any = None
        self._owns_ray = False
        self._remote: Any = None
        self._gpus = 0
        self._limit_cache: tuple[float, int] = (0.0, 1)
        self._jobs: dict[Any, Job] = {}  # ObjectRef -> job
        self._markers: dict[str, tuple[str, str]] = {}  # sweep folder -> (marker path, token)

    # -- connection ------------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = _import_ray()
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **self.init_kwargs}
            remote_kwargs = {k: v for k, v in kwargs.items() if k not in _LOCAL_ONLY}
            address = self.address or os.environ.get("RAY_ADDRESS")
            if address == "local":
                ray.init(address="local", **kwargs)
            elif address:
                ray.init(address=address, **remote_kwargs)
            else:
                try:
                    ray.init(address="auto", **remote_kwargs)
                except ConnectionError:  # no cluster on this node: start a local instance
                    ray.init(**kwargs)
            self._owns_ray = True
        self._ray = ray
        total = ray.cluster_resources()
        has_gpus = total.get("GPU", 0) > 0
        self._gpus = self.gpus_per_run if self.gpus_per_run is not None else int(has_gpus)
        if self._gpus and total.get("GPU", 0) < self._gpus:
            print(f"[lightning-scaling] warning: runs ask for {self._gpus} GPUs but the Ray cluster has "
                  f"{total.get('GPU', 0):g}; they wait until nodes with GPUs join", file=sys.stderr, flush=True)
        self._remote = ray.remote(_run_task).options(
            num_cpus=self.cpus_per_run, num_gpus=self.num_gpus(), resources=self.resources or None, max_retries=0,
            name="lightning-scaling-run")
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        print(f"[lightning-scaling] Ray cluster: {nodes} node(s), {total.get('CPU', 0):g} CPUs, "
              f"{total.get('GPU', 0):g} GPUs; per run {self.cpus_per_run:g} CPUs, {self._gpus} GPUs",
              file=sys.stderr, flush=True)
        return ray

    def num_gpus(self) -> float:
        """The ``num_gpus`` a run asks Ray for: its GPUs, a fraction of one when runs are packed."""
        return 1.0 / self.runs_per_gpu if self._gpus == 1 and self.runs_per_gpu > 1 else float(self._gpus)

    def _limit(self) -> int:
        if self.max_concurrent is not None:
            return self.max_concurrent
        now = time.time()
        if now - self._limit_cache[0] < 5.0:
            return self._limit_cache[1]
        total = self._connect().cluster_resources()
        fits = [total.get("CPU", 0) / self.cpus_per_run]
        if self._gpus:
            fits.append(total.get("GPU", 0) / self.num_gpus())
        fits += [total.get(k, 0) / v for k, v in self.resources.items() if v > 0]
        limit = max(1, math.floor(min(fits) + 1e-9))
        self._limit_cache = (now, limit)
        return limit

    # -- the Launcher interface ------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return max(0, self._limit() - len(self._jobs))

    def describe(self) -> str:
        where = self.address or os.environ.get("RAY_ADDRESS") or "auto (or a local instance)"
        gpus = "auto" if self.gpus_per_run is None and self._ray is None else self._gpus
        cap = self.max_concurrent or "as the cluster fits"
        return f"Ray launcher (address {where}; per run {self.cpus_per_run:g} CPUs, {gpus} GPUs; in parallel: {cap})"

    def _marker(self, sweep_dir: str) -> tuple[str | None, str]:
        if self.shared_storage is True:
            return None, ""
        if self.shared_storage is False:
            return str(Path(tempfile.gettempdir()) / "lightning-scaling-never-shared"), secrets.token_hex(8)
        if sweep_dir not in self._markers:
            token = secrets.token_hex(8)
            path = Path(sweep_dir) / f".ray-storage-{os.getpid()}"
            atomic_write_text(path, token)
            self._markers[sweep_dir] = (str(path), token)
        return self._markers[sweep_dir]

    def submit(self, job: Job) -> None:
        self._connect()
        marker, token = self._marker(job.sweep_dir)
        if self.forward_env is True:
            forwarded = {k: v for k, v in os.environ.items()
                         if k not in _NODE_LOCAL and not k.startswith(_NODE_PREFIXES)}
        elif self.forward_env is False:
            forwarded = {}
        else:
            forwarded = {k: os.environ[k] for k in self.forward_env if k in os.environ}
        overrides = {**thread_environment(max(1, math.floor(self.cpus_per_run))), **job.env_overrides}
        job.log_header("as a Ray task")
        ref = self._remote.remote(list(job.command), overrides, str(job.log_path), os.getcwd(), self._gpus,
                                  forwarded, marker, token, self.grace)
        job.started = time.time()
        self._jobs[ref] = job

    def poll(self) -> list[tuple[Job, int]]:
        if not self._jobs:
            return []
        ray = self._ray
        ready, _ = ray.wait(list(self._jobs), num_returns=len(self._jobs), timeout=0)
        done = []
        for ref in ready:
            job = self._jobs.pop(ref)
            try:
                out = ray.get(ref)
            except Exception as exc:  # the task failed: its node died, its worker crashed, it was cancelled
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                with job.log_path.open("a", encoding="utf-8") as log:
                    log.write(f"\n[lightning-scaling] the Ray task of this run failed: {type(exc).__name__}: "
                              f"{first}\n")
                done.append((job, -1))
                continue
            if not out["shared"]:
                self._store_returned(job, out)
            done.append((job, int(out["rc"])))
        return done

    def _store_returned(self, job: Job, out: Mapping[str, Any]) -> None:
        """Write what a run on a node without the sweep folder returned: its JSON files and its log."""
        root = Path(job.sweep_dir)
        for rel, text in out.get("files", {}).items():
            target = (root / rel).resolve()
            if root.resolve() in target.parents:  # only files inside the sweep folder
                atomic_write_text(target, text)
        with job.log_path.open("a", encoding="utf-8") as log:
            log.write(out.get("log", ""))

    def running(self) -> list[Job]:
        return list(self._jobs.values())

    def shutdown(self, grace: float = 10.0) -> None:
        """Cancel every run: the task stops its run (SIGTERM, SIGKILL after ``grace``), then the task is killed."""
        if self._jobs and self._ray is not None:
            ray = self._ray
            refs = list(self._jobs)
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=False)
            _, left = ray.wait(refs, num_returns=len(refs), timeout=grace + 5)
            for ref in left:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        self._jobs.clear()
        self.close()

    def close(self) -> None:
        """Remove the storage markers; disconnect from Ray (stopping the local instance this launcher started)."""
        for path, _ in self._markers.values():
            Path(path).unlink(missing_ok=True)
        self._markers.clear()
        if self._ray is not None and self._owns_ray and not self._jobs:
            with contextlib.suppress(Exception):
                self._ray.shutdown()
            self._owns_ray = False
        if not self._jobs:
            self._ray = None
            self._remote = None
