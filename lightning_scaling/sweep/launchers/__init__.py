"""Where a sweep's runs execute: this machine's device slots, a Ray cluster, or SLURM.

The modules, each importing only those below it:

* :mod:`~.base`: the :class:`Launcher` interface, the :class:`Job`, and how a run's process is
  started and stopped (shared by every launcher);
* :mod:`~.forkserver`: starts local runs as forks of a process that imported torch and Lightning once;
* :mod:`~.local`: :class:`LocalLauncher`, one run per device slot of this machine;
* :mod:`~.ray`: :class:`RayLauncher`, one Ray task per run (Ray imported when a launcher is built);
* :mod:`~.slurm`: :class:`SlurmLauncher`, SLURM job arrays through submitit (imported likewise);
* here: :func:`make_launcher`, the factory that picks one by name.
"""

from __future__ import annotations

from lightning_scaling.sweep.launchers.base import Job, Launcher, script_command, tail
from lightning_scaling.sweep.launchers.local import LocalLauncher
from lightning_scaling.sweep.launchers.ray import RayLauncher
from lightning_scaling.sweep.launchers.slurm import SlurmLauncher

__all__ = ["LAUNCHERS", "Job", "Launcher", "LocalLauncher", "RayLauncher", "SlurmLauncher", "make_launcher",
           "script_command", "tail"]

#: the launchers :func:`make_launcher` knows by name
LAUNCHERS = ("local", "ray", "slurm")


def make_launcher(launcher: Launcher | str | None = None, *, slots: int | None = None,
                  devices_per_slot: int = 1, runs_per_device: int | str = 1) -> Launcher:
    """The launcher a sweep uses: ``None``/``"local"`` (local slots), ``"ray"``, ``"slurm"``, or a launcher object.

    ``slots`` caps the parallel runs (local slots, Ray runs in flight, SLURM array parallelism) and
    ``devices_per_slot`` is each run's GPU count. ``runs_per_device`` packs runs: up to that many at once
    per local slot (``"auto"``: as GPU memory allows), on Ray a fractional ``num_gpus`` of
    ``1/runs_per_device`` per one-GPU run (``"auto"`` is local only: Ray gets one run per GPU); SLURM
    jobs get whole GPUs. A launcher object is used as it is.

    Raises:
        ImportError: for ``"ray"``/``"slurm"`` when the extra is not installed (naming the pip command).
        ValueError: for an unknown name.
    """
    name = launcher.strip().lower() if isinstance(launcher, str) else None
    if launcher is None or name == "local":
        return LocalLauncher(slots=slots, devices_per_slot=devices_per_slot, runs_per_device=runs_per_device)
    if isinstance(launcher, str):
        if name == "ray":
            # None: one GPU per run when the cluster has GPUs, none on a CPU cluster
            return RayLauncher(max_concurrent=slots, gpus_per_run=None if devices_per_slot == 1 else devices_per_slot,
                               runs_per_gpu=runs_per_device if isinstance(runs_per_device, int) else 1)
        if name == "slurm":
            if slots is None:
                return SlurmLauncher(gpus_per_run=devices_per_slot)
            return SlurmLauncher(gpus_per_run=devices_per_slot, array_parallelism=slots)
        raise ValueError(f"unknown launcher {launcher!r}: use one of {', '.join(map(repr, LAUNCHERS))} or pass a "
                         "launcher object (LocalLauncher, RayLauncher, SlurmLauncher)")
    # looked up on the class: reading a cluster launcher's capacity would connect to its cluster
    missing = [a for a in ("capacity", "describe", "submit", "poll", "running", "shutdown", "close")
               if not hasattr(type(launcher), a)]
    if missing:
        raise TypeError(f"launcher must be a name ({', '.join(LAUNCHERS)}) or a launcher object; "
                        f"{type(launcher).__name__} has no {', '.join(missing)}")
    return launcher
