"""What the controller's launch loop asks before and after each run: does it fit now (packing), is it
past its time limit, and what a failure was (a CUDA out-of-memory error, a timeout).

The launch loop in :mod:`~lightning_scaling.sweep.controller` stays a loop; the rules live here and in
:mod:`~lightning_scaling.sweep.launchers.packing` and :mod:`~lightning_scaling.sweep.timeouts`.
A launcher may have ``fits(params, alone)``, ``observe(record, oom=)`` and ``stop(job, grace)``
(:class:`~lightning_scaling.sweep.launchers.LocalLauncher` has all three); without them a run fits
when ``capacity > 0``, and a run past its limit is noted in the progress but cannot be stopped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning_scaling.sweep.launchers import Job, Launcher, tail
from lightning_scaling.sweep.launchers.packing import is_oom
from lightning_scaling.sweep.plan import RunSpec
from lightning_scaling.sweep.record import OK, record_amount
from lightning_scaling.sweep.timeouts import AUTO, RunLimits

__all__ = ["Scheduler"]

#: seconds between SIGTERM and SIGKILL for a run stopped at its time limit
STOP_GRACE = 10.0


class Scheduler:
    """Packing, OOM retries and time limits for one controller's launcher.

    Args:
        launcher: the sweep's launcher.
        run_timeout: seconds, ``None`` or ``"auto"`` (:mod:`~lightning_scaling.sweep.timeouts`).
    """

    def __init__(self, launcher: Launcher, run_timeout: float | str | None = AUTO) -> None:
        self.launcher = launcher
        self.limits = RunLimits(run_timeout)
        self._alone: set[str] = set()  # runs retried after a CUDA OOM: on a slot to themselves
        self._stopped: dict[str, float] = {}  # launch token -> the limit it was stopped at
        self._warned: set[str] = set()

    def alone(self, spec: RunSpec) -> bool:
        return spec.run_id in self._alone

    def fits(self, spec: RunSpec) -> bool:
        """Whether ``spec``'s run can start now (a packing launcher decides per run; others by capacity)."""
        fits = getattr(self.launcher, "fits", None)
        if callable(fits):
            return bool(fits(spec.params, self.alone(spec)))
        return self.launcher.capacity > 0

    def observe(self, record: Mapping[str, Any], oom: bool = False) -> None:
        """Hand a record (or the probe's result, with the run's ``params``) to a packing launcher."""
        observe = getattr(self.launcher, "observe", None)
        if callable(observe):
            observe(record, oom=oom)

    def finished(self, job: Job, record: Mapping[str, Any]) -> None:
        """A run ended with an outcome: its wall time predicts the others', its memory packs them."""
        if record.get("status") == OK:  # a diverged run stopped early: no basis for the others' time
            self.limits.finished(record_amount(job.spec), time.time() - job.started)
        self.observe(record)

    def failure(self, job: Job, rc: int, reason: str | None) -> tuple[str, bool]:
        """The failure's reason (``"timeout: ..."``, ``"oom: ..."`` or as given) and whether to retry the run
        alone on a slot, beyond ``max_retries`` when it ran out of memory beside other runs."""
        if job.launch in self._stopped:
            limit = self._stopped.pop(job.launch)
            return (f"timeout: stopped after {time.time() - job.started:.0f} s, over its limit of {limit:.0f} s "
                    f"(run_timeout); log {job.log_path} ends with:\n{tail(job.log_path, 8)}", False)
        reason = reason or f"exit code {rc}; log {job.log_path} ends with:\n{tail(job.log_path, 8)}"
        if not (is_oom(reason) or is_oom(tail(job.log_path, 30))):
            return reason, False
        self.observe({"params": job.spec.params}, oom=True)
        packed = not job.alone
        self._alone.add(job.spec.run_id)
        return f"oom: CUDA out of memory{' beside other runs' if packed else ''}; {reason}", packed

    def stop_expired(self, log: Any) -> None:
        """Stop every running run past its time limit (its process group); ``log`` says which."""
        stop = getattr(self.launcher, "stop", None)
        for job, limit in self.limits.expired(self.launcher.running(), time.time()):
            if job.launch in self._stopped:
                continue
            if not callable(stop):
                if job.launch not in self._warned:
                    self._warned.add(job.launch)
                    log(f"{job.spec.run_id} is over its time limit of {limit:.0f} s; this launcher cannot stop it")
                continue
            self._stopped[job.launch] = limit
            log(f"timeout: stopping {job.spec.run_id} (attempt {job.attempt}) after {limit:.0f} s (run_timeout)")
            stop(job, STOP_GRACE)

    def overdue(self) -> str:
        """``"; far over their expected time: run_a (4.1x expected)"`` for progress lines, or ``""``."""
        names = self.limits.overdue(self.launcher.running(), time.time())
        return f"; far over their expected time: {', '.join(names)}" if names else ""
