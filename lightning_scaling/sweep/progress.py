"""The sweep's progress lines: counts, runs in flight, elapsed time and an ETA from a size-aware cost.

A plain mean over finished runs misjudges a study whose runs cost different amounts: the controller
starts the largest runs first, so the first durations are the longest, and in an epoch-based study
a run's cost grows with its training-set size. :class:`CostModel` fits ``seconds = a * amount^b``
(``amount`` the run's fraction or size, times its adaptive budget) to the finished runs and prices
each run still to come by its own amount.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from lightning_scaling.sweep.plan import RunSpec
from lightning_scaling.sweep.record import COMPLETED, FAILED, record_amount

__all__ = ["CostModel", "Progress", "format_duration", "spec_amount"]

#: cost exponent while the finished runs have one size only: an epoch-based run costs in proportion to its data
DEFAULT_EXPONENT = 1.0
#: the fitted exponent is kept in this range (a noisy start must not predict absurd costs)
EXPONENT_RANGE = (0.0, 1.5)
#: seconds between two progress lines when nothing changed
HEARTBEAT_S = 300.0
#: runs in flight named in a progress line (the rest are counted)
SHOWN_RUNNING = 4


def format_duration(seconds: float) -> str:
    """A duration rounded to what an estimate supports: ``"45 s"``, ``"12 min"``, ``"2 h 05 min"``.

    >>> format_duration(44.6), format_duration(725), format_duration(7500), format_duration(float("nan"))
    ('45 s', '12 min', '2 h 05 min', '?')
    """
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def spec_amount(spec: RunSpec) -> float | None:
    """How much a planned run trains, in the plan's unit: its fraction or size, times its adaptive budget."""
    amount = spec.fraction if spec.fraction is not None else spec.size
    if amount is None or not amount > 0:
        return None
    return float(amount) * float(spec.budget if spec.budget is not None else 1.0)


class CostModel:
    """Seconds per run as a power of the run's amount, ``seconds = a * amount^b``, from finished runs.

    With one distinct amount measured, ``b`` is :data:`DEFAULT_EXPONENT` (an epoch-based run costs in
    proportion to its data); with two or more it is fitted on logs and kept in :data:`EXPONENT_RANGE`.

    >>> cost = CostModel()
    >>> cost.add(1.0, 100.0); cost.add(0.5, 50.0)
    >>> round(cost.predict(0.25), 1)
    25.0
    """

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def add(self, amount: float | None, seconds: float | None) -> None:
        """One finished run: its amount and its wall time (ignored unless both are positive and finite)."""
        if amount is None or seconds is None:
            return
        if math.isfinite(amount) and math.isfinite(seconds) and amount > 0 and seconds > 0:
            self.points.append((float(amount), float(seconds)))

    def learn(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Finished runs' records (a resumed study): amount and ``wall_time_s`` of each completed one."""
        for r in records:
            if r.get("status") in COMPLETED:
                amount = record_amount(r)
                budget = r.get("budget")
                scale = float(budget) if isinstance(budget, int | float) and budget > 0 else 1.0
                seconds = r.get("wall_time_s")
                if isinstance(amount, int | float) and isinstance(seconds, int | float):
                    self.add(float(amount) * scale, float(seconds))

    def exponent(self) -> float:
        """The fitted ``b`` (:data:`DEFAULT_EXPONENT` until two distinct amounts finished)."""
        x = np.log([a for a, _ in self.points])
        if len(self.points) < 2 or np.ptp(x) < 1e-9:
            return DEFAULT_EXPONENT
        y = np.log([s for _, s in self.points])
        slope = float(np.polyfit(x, y, 1)[0])
        return min(max(slope, EXPONENT_RANGE[0]), EXPONENT_RANGE[1])

    def predict(self, amount: float | None) -> float:
        """Predicted seconds of a run of ``amount`` (``nan`` before any run finished, or without an amount)."""
        if not self.points:
            return math.nan
        b = self.exponent()
        log_a = float(np.mean([math.log(s) - b * math.log(a) for a, s in self.points]))
        if amount is None:  # a run of unknown size: the typical one
            return float(np.median([s for _, s in self.points]))
        return math.exp(log_a + b * math.log(amount))


class Progress:
    """The progress lines of a sweep: one after each finished run, and a heartbeat only when something changed.

    Args:
        log: where a line goes (the controller's prefixed print).
        clock: the time source (tests pass a fake one).
        heartbeat: seconds after which an unchanged state is printed again.
    """

    def __init__(self, log: Callable[[str], None], *, clock: Callable[[], float] = time.time,
                 heartbeat: float = HEARTBEAT_S) -> None:
        self.log = log
        self.clock = clock
        self.heartbeat = heartbeat
        self.t0 = clock()
        self.cost = CostModel()
        self.pending: dict[str, RunSpec] = {}
        self._last_state: tuple[Any, ...] | None = None
        self._last_time = -math.inf

    def expect(self, specs: Iterable[RunSpec]) -> None:
        """Runs about to be launched (their cost counts in the ETA until they finish)."""
        self.pending.update({s.run_id: s for s in specs})

    def finished(self, spec: RunSpec, seconds: float | None) -> None:
        """A run ended (finished or given up): its time teaches the cost model when it is given."""
        self.pending.pop(spec.run_id, None)
        self.cost.add(spec_amount(spec), seconds)

    def eta(self, running: Sequence[tuple[RunSpec, float]], slots: int) -> float:
        """Seconds until the pending runs are done: ``running`` are ``(spec, seconds since start)``."""
        in_flight = {s.run_id for s, _ in running}
        costs = [max(self.cost.predict(spec_amount(s)) - elapsed, 0.0) for s, elapsed in running]
        costs += [self.cost.predict(spec_amount(s)) for rid, s in self.pending.items() if rid not in in_flight]
        if not costs:
            return 0.0
        if any(math.isnan(c) for c in costs):
            return math.nan
        # the slots share the work, but no estimate is shorter than the longest single run still to go
        return max(sum(costs) / max(1, slots), max(costs))

    def line(self, status: Mapping[str, str | None], total: int, running: Sequence[tuple[RunSpec, float]],
             slots: int) -> str:
        """``"3/8 done, 1 failed | running: a, b | elapsed 2 min | ETA ~5 min"``."""
        done = sum(s in COMPLETED for s in status.values())
        failed = sum(s == FAILED for s in status.values())
        names = sorted(s.run_id for s, _ in running)
        shown = ", ".join(names[:SHOWN_RUNNING]) + (f" +{len(names) - SHOWN_RUNNING} more"
                                                     if len(names) > SHOWN_RUNNING else "")
        parts = [f"{done}/{total} done" + (f", {failed} failed" if failed else ""),
                 f"running: {shown}" if names else "none running",
                 f"elapsed {format_duration(self.clock() - self.t0)}"]
        if done + failed < total:
            parts.append(f"ETA ~{format_duration(self.eta(running, slots))}")
        return " | ".join(parts)

    def report(self, status: Mapping[str, str | None], total: int, running: Sequence[tuple[RunSpec, float]],
               slots: int, *, force: bool = False, extra: str = "") -> None:
        """Print the progress line when forced (a run ended), when the state changed, or after ``heartbeat``.

        ``extra`` is appended to the line (e.g. the runs far over their expected time).
        """
        state = (tuple(sorted(status.items(), key=lambda kv: kv[0])), tuple(sorted(s.run_id for s, _ in running)),
                 extra)
        now = self.clock()
        if not force and state == self._last_state and now - self._last_time < self.heartbeat:
            return
        self._last_state, self._last_time = state, now
        self.log(self.line(status, total, running, slots) + extra)
