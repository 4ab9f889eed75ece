"""The :class:`Reporter` protocol: what the sweep's controller calls on a reporter besides the sweep folder.

The controller types against this protocol and never imports a reporter's module, so the sweep
machinery stays free of W&B (or any other service's) code. :class:`~lightning_scaling.WandbReporter`
implements it; any object with these members can report a sweep elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lightning_scaling.sweep.plan import RunSpec, SweepPlan
from lightning_scaling.sweep.result import SweepResult
from lightning_scaling.sweep.store import SweepStore

__all__ = ["Reporter"]


@runtime_checkable
class Reporter(Protocol):
    """What the controller calls on a reporter, in this order: ``start``, ``child_env`` per launched run,
    ``update`` per finished run, then ``finish`` (or ``close(failed=True)`` when the sweep fails).

    Every call happens in the controller's process. A reporter must never stop the sweep: a failure
    of the service it reports to should become a warning.
    """

    @property
    def live_bootstrap(self) -> int:
        """Bootstrap replicates of the live fits handed to ``start`` (``run_sweep`` caps them at this)."""
        ...

    def start(
        self,
        name: str,
        plan: SweepPlan,
        store: SweepStore,
        analyse: Callable[[list[dict[str, Any]]], SweepResult],
        records: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """The sweep starts (or resumes with ``records``): ``analyse`` fits records for live updates."""
        ...

    def child_env(self, spec: RunSpec) -> dict[str, str]:
        """Environment variables of the run ``spec`` (the probe gets none of them)."""
        ...

    def update(self, records: Sequence[Mapping[str, Any]]) -> None:
        """A run finished: ``records`` are the planned runs' final records so far."""
        ...

    def finish(self, result: SweepResult, store: SweepStore) -> None:
        """The sweep ended with ``result`` (saved in ``store``)."""
        ...

    def close(self, failed: bool = False) -> None:
        """The sweep stopped early (``failed=True``): release what ``start`` opened."""
        ...
