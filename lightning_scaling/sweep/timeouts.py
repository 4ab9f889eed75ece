"""Per-run time limits: a hung run is stopped, recorded as a ``timeout`` and retried, never waited on forever.

``run_timeout`` (an argument of :class:`~lightning_scaling.ScalingSweep` and ``run_sweep``) is a number
of seconds, ``None`` for no limit, or ``"auto"`` (default): :data:`FACTOR` times what finished runs
predict for a run of that data size, at least :data:`FLOOR` seconds, and no limit until a run has
finished (there is no basis before). The prediction is the median wall time of finished runs at the
same size, else of the nearest smaller size scaled up in proportion to the data (training cost grows
with it at a fixed number of epochs).

>>> limits = RunLimits("auto")
>>> limits.limit(0.5) is None
True
>>> limits.finished(0.25, 30.0); limits.expected(0.5), limits.limit(0.5)
(60.0, 600.0)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

from lightning_scaling.sweep.record import record_amount

__all__ = ["AUTO", "FACTOR", "FLOOR", "OVER", "RunLimits", "check_run_timeout"]

AUTO = "auto"
#: ``"auto"``: the limit is this multiple of the expected wall time ...
FACTOR = 10.0
#: ... and never below this many seconds (startup, a slow first epoch, packed runs sharing a GPU)
FLOOR = 300.0
#: progress names a run that has taken this multiple of its expected time
OVER = 3.0


def check_run_timeout(value: Any) -> float | str | None:
    """``run_timeout``: seconds (> 0), ``None`` (no limit) or ``"auto"``; else a ValueError naming it.

    >>> check_run_timeout(3600), check_run_timeout(None), check_run_timeout("auto")
    (3600.0, None, 'auto')
    """
    if value is None or (isinstance(value, str) and value == AUTO):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(f"run_timeout must be a number of seconds > 0, None (no limit) or 'auto' (10x what "
                         f"finished runs of that size took), got {value!r}")
    return float(value)


class RunLimits:
    """The time limit of each run, from ``run_timeout`` and the wall times of finished runs.

    Args:
        run_timeout: as :func:`check_run_timeout` accepts it.
    """

    def __init__(self, run_timeout: float | str | None = AUTO) -> None:
        self.run_timeout = check_run_timeout(run_timeout)
        self._times: dict[float, list[float]] = {}

    def finished(self, amount: Any, seconds: float) -> None:
        """A run of data size ``amount`` (its fraction or size) finished after ``seconds``."""
        if isinstance(amount, int | float) and seconds >= 0:
            self._times.setdefault(float(amount), []).append(seconds)

    def expected(self, amount: Any) -> float | None:
        """The wall time finished runs predict for a run of ``amount``, or ``None`` without a basis."""
        if not isinstance(amount, int | float):
            return None
        same = self._times.get(float(amount))
        if same:
            return statistics.median(same)
        smaller = [a for a in self._times if a < amount]
        if smaller:
            nearest = max(smaller)
            return statistics.median(self._times[nearest]) * float(amount) / nearest
        larger = [a for a in self._times if a > amount]
        return statistics.median(self._times[min(larger)]) if larger else None

    def limit(self, amount: Any) -> float | None:
        """Seconds a run of ``amount`` may take before it is stopped; ``None``: no limit (yet)."""
        if self.run_timeout != AUTO:
            return self.run_timeout  # type: ignore[return-value]
        expected = self.expected(amount)
        return None if expected is None else max(FLOOR, FACTOR * expected)

    def expired(self, jobs: Iterable[Any], now: float) -> list[tuple[Any, float]]:
        """The running jobs (with ``spec`` and ``started``) past their limit, with that limit."""
        out = []
        for job in jobs:
            limit = self.limit(record_amount(job.spec))
            if limit is not None and now - job.started > limit:
                out.append((job, limit))
        return out

    def overdue(self, jobs: Iterable[Any], now: float) -> list[str]:
        """``"<run_id> (4.2x expected)"`` for each running job at :data:`OVER` times its expected time or more."""
        out = []
        for job in jobs:
            expected = self.expected(record_amount(job.spec))
            if expected and now - job.started > OVER * max(expected, 1.0):
                out.append(f"{job.spec.run_id} ({(now - job.started) / expected:.1f}x expected)")
        return out
