"""Whether a grid study is complete: a law fitted on fewer data sizes than planned says so.

A data size whose every run failed (or diverged) leaves the law with fewer points than the plan
has, which reads like a smaller study unless it is said. The controller marks the result
(:attr:`SweepResult.complete`, a note in its summary and in ``result.json``) and logs it; the
result is still returned (the finished runs are data, and running the script again retries the
failed runs). A script that needs the full study checks ``result.complete``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightning_scaling.sweep.plan import SweepPlan
from lightning_scaling.sweep.record import OK, record_amount
from lightning_scaling.sweep.result import SweepResult

__all__ = ["mark_incomplete", "missing_sizes"]


def missing_sizes(plan: SweepPlan, records: Iterable[Mapping[str, Any]]) -> list[float]:
    """The planned data sizes (fractions or sample counts) without one ``ok`` run among ``records``.

    >>> plan = SweepPlan.build(fractions=[0.125, 0.25, 0.5, 1.0])
    >>> missing_sizes(plan, [{"fraction": f, "size": None, "status": "ok"} for f in (0.125, 0.25, 1.0)])
    [0.5]
    """
    planned = plan.fractions if plan.fractions is not None else plan.sizes or []
    done = {record_amount(r) for r in records if r.get("status") == OK}
    return sorted(a for a in planned if a not in done)


def mark_incomplete(result: SweepResult, plan: SweepPlan, missing: list[float]) -> str | None:
    """Note on ``result`` that the sizes ``missing`` have no finished run; the note, or ``None`` if none is missing."""
    if not missing:
        return None
    result.missing_sizes = list(missing)
    unit = "fractions" if plan.fractions is not None else "sizes"
    fitted = plan.n_sizes - len(missing)
    note = (f"incomplete study: {len(missing)} of {plan.n_sizes} planned data {unit} have no finished run "
            f"({', '.join(f'{m:g}' for m in missing)}), so the laws rest on {fitted}; run the script again to "
            "retry the failed runs")
    result.notes.append(note)
    return note
