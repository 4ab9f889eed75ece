"""Packing: several small runs at once on one device slot, never more than its memory holds.

A scaling study is mostly small runs (the smallest data sizes), and one such run per GPU leaves the
GPU nearly idle. ``runs_per_device=k`` lets a :class:`~.local.LocalLauncher` slot (a GPU, a GPU
group with ``devices_per_slot``, or a CPU core group) hold up to ``k`` runs at once, each still its
own process. ``"auto"`` chooses per run from what earlier runs measured: the peak GPU memory a run
of the same grid point needed (``max_memory_allocated`` in its record, else the probe's), with a
margin, against the GPU's memory (``device_memory``). A run whose need is unknown, or that does not
fit beside others, gets a slot to itself, and so does a run retried after a CUDA out-of-memory
failure (:func:`is_oom`).

>>> book = MemoryBook(device_memory=80 * GIB)
>>> book.observe({"params": {"hidden": 64}, "max_memory_allocated": 2 * GIB, "device_memory": 80 * GIB})
>>> round(book.need({"hidden": 64}) / GIB, 2), book.need({"hidden": 4096})
(2.9, None)
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from lightning_scaling.sweep.record import grid_key

__all__ = [
    "AUTO",
    "GIB",
    "MAX_AUTO_RUNS",
    "OOM_MARKERS",
    "MemoryBook",
    "check_runs_per_device",
    "gpu_memory",
    "is_oom",
]

AUTO = "auto"
GIB = 1 << 30
#: the most runs ``runs_per_device="auto"`` puts on one slot (beyond that, small runs mostly queue for the GPU)
MAX_AUTO_RUNS = 8
#: what a run's process holds beyond its tensors' peak: the CUDA context and the caching allocator's slack
CONTEXT_BYTES = 512 << 20
MARGIN = 1.2
#: the share of a GPU's memory packed runs may plan to fill together
FILL = 0.9
#: what the error of a run that ran out of GPU memory says (PyTorch, cuBLAS, cuDNN)
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "CUBLAS_STATUS_ALLOC_FAILED",
               "CUDNN_STATUS_ALLOC_FAILED", "out of memory")


def check_runs_per_device(value: Any) -> int | str:
    """``runs_per_device``: a positive integer or ``"auto"``; else a ValueError naming it and the fix.

    >>> check_runs_per_device(4), check_runs_per_device("auto")
    (4, 'auto')
    """
    if value == AUTO and isinstance(value, str):
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"runs_per_device must be a positive integer (runs at once per GPU or CPU core group) or "
                         f"'auto' (chosen from the memory earlier runs needed), got {value!r}")
    return value


def is_oom(text: str | None) -> bool:
    """Whether a run's failure reason or log tail says it ran out of GPU memory.

    >>> is_oom("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"), is_oom("exit code 1")
    (True, False)
    """
    return bool(text) and any(m in text for m in OOM_MARKERS)  # type: ignore[operator]


def gpu_memory(gpus: Sequence[str]) -> int | None:
    """The smallest total memory (bytes) among ``gpus`` (ids as in ``CUDA_VISIBLE_DEVICES``), read with
    ``nvidia-smi`` so that the controller never initialises CUDA; ``None`` when it cannot be read."""
    if not gpus:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    sizes = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[2].isdigit():
            sizes[parts[0]] = sizes[parts[1]] = int(parts[2]) << 20
    found = [sizes[g] for g in gpus if g in sizes]
    return min(found) if len(found) == len(gpus) else None


class MemoryBook:
    """What runs needed on a device, by grid point: the basis of ``runs_per_device="auto"``.

    Args:
        device_memory: one slot's GPU memory in bytes (``None``: learnt from the runs' records).
    """

    def __init__(self, device_memory: int | None = None) -> None:
        self.device_memory = device_memory
        self._peak: dict[str, int] = {}
        self._whole: set[str] = set()

    def observe(self, record: Mapping[str, Any], *, oom: bool = False) -> None:
        """Learn from a record (or the probe's result): its peak memory, its device's size, an OOM."""
        key = grid_key(record.get("params"))
        if oom:
            self._whole.add(key)
        total = record.get("device_memory")
        if isinstance(total, int) and total > 0 and self.device_memory is None:
            self.device_memory = total
        peak = record.get("max_memory_allocated")
        if isinstance(peak, int) and not isinstance(peak, bool) and peak > 0:
            self._peak[key] = max(peak, self._peak.get(key, 0))

    def need(self, params: Mapping[str, Any] | None) -> int | None:
        """The memory (bytes) a run of this grid point is planned to take, or ``None`` when unknown.

        The largest peak any run (or the probe) of that grid point reached: data size barely moves it, as
        the batch is the same. Another grid point's peak is no basis: its model may be far larger.
        """
        key = grid_key(params)
        if key in self._whole:
            return self.device_memory or None
        peak = self._peak.get(key)
        return None if peak is None else int(peak * MARGIN + CONTEXT_BYTES)

    def whole_device(self, params: Mapping[str, Any] | None) -> bool:
        """Whether this grid point ran out of memory beside other runs (it keeps a slot to itself)."""
        return grid_key(params) in self._whole

    def auto_runs(self, params: Mapping[str, Any] | None) -> int:
        """How many runs of this grid point one slot holds (1 when unknown; at most :data:`MAX_AUTO_RUNS`).

        >>> book = MemoryBook(device_memory=80 * GIB)
        >>> book.auto_runs({}), book.observe({"params": {}, "max_memory_allocated": 4 * GIB}), book.auto_runs({})
        (1, None, 8)
        """
        need = self.need(params)
        if need is None or not self.device_memory or self.whole_device(params):
            return 1
        return max(1, min(MAX_AUTO_RUNS, math.floor(self.device_memory * FILL / need)))
