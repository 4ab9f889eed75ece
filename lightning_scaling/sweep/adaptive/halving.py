"""Successive halving: which grid points go on to the next rung of a size, and why the others stop.

Run ids: the last rung of a run has the grid run's own id (its record is interchangeable with a full
grid run's); an earlier rung ``r`` has ``<run_id>_r<r>``, and its checkpoint is
``checkpoints/<run_id>_r<r>.ckpt``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["promote", "rung_id"]


def rung_id(run_id: str, rung: int, n_rungs: int) -> str:
    """The record id of ``rung`` of a run: the run's own id for the last rung, ``<id>_r<rung>`` before it.

    >>> rung_id("f0.25_s0_abc", 0, 2), rung_id("f0.25_s0_abc", 1, 2)
    ('f0.25_s0_abc_r0', 'f0.25_s0_abc')
    """
    return run_id if rung == n_rungs - 1 else f"{run_id}_r{rung}"



def promote(
    scores: Mapping[str, Sequence[float]], *, eta: float, margin: float, noise_z: float,
) -> tuple[list[str], dict[str, str]]:
    """Which grid points go on to the next rung, and why the others stop.

    ``scores`` maps each grid point to its seeds' errors at the rung (lower is better; a diverged or
    failed seed is ``inf``). Errors are compared as ratios, on a log scale, because seed noise grows
    with the error itself (a gap of 0.02 is noise between 0.30 and 0.32, not between 0.01 and 0.03). With
    ``d = mean(log err) - mean(log err of the best)``, the best ``ceil(n / eta)`` grid points go on,
    and so does any other point with ``d <= max(log(1 + margin), noise_z * se)``, where ``se`` is
    the standard error of a difference of two means from the seeds' pooled variance of log errors
    (0 with one seed: then the margin alone decides). A point with no finite error is always
    stopped. (Errors that are not all positive, e.g. a loss that can be negative, are compared as
    plain differences, the margin relative to the best.)

    >>> keep, why = promote({"w8": [0.30, 0.32], "w32": [0.12, 0.13], "w128": [0.11, 0.12]}, eta=3, margin=0.05,
    ...                     noise_z=2.0)
    >>> keep, sorted(why)   # w32 is within two standard errors of the seeds' noise of the best: it goes on
    (['w128', 'w32'], ['w8'])
    """
    finite_all = [x for v in scores.values() for x in v if math.isfinite(x)]
    use_log = bool(finite_all) and min(finite_all) > 0

    def tr(x: float) -> float:
        return math.log(x) if use_log else x

    values = {k: ([tr(x) for x in v] if v and all(math.isfinite(x) for x in v) else None) for k, v in scores.items()}
    means = {k: (float(np.mean(v)) if v is not None else math.inf) for k, v in values.items()}
    ranked = sorted(means, key=lambda k: (means[k], k))
    finite = [k for k in ranked if math.isfinite(means[k])]
    if not finite:
        return [], {k: "no finite error at this rung (diverged or failed)" for k in ranked}
    best = means[finite[0]]
    groups = [np.asarray(values[k], float) for k in finite if len(values[k] or []) >= 2]
    dof = sum(len(g) - 1 for g in groups)
    pooled = math.sqrt(sum(float(np.sum((g - g.mean()) ** 2)) for g in groups) / dof) if dof else 0.0
    n_seeds = min(len(scores[k]) for k in finite)
    se = pooled * math.sqrt(2.0 / n_seeds)
    rel = math.log1p(margin) if use_log else margin * abs(best)
    slack = max(rel, noise_z * se)
    top = max(1, math.ceil(len(scores) / eta))
    unit = "log error" if use_log else "error"
    keep, why = [], {}
    for rank, k in enumerate(ranked):
        m = means[k]
        if not math.isfinite(m):
            why[k] = "no finite error at this rung (diverged or failed)"
        elif rank < top or m - best <= slack:
            keep.append(k)
        else:
            shown = math.exp(m) if use_log else m
            ref = math.exp(best) if use_log else best
            why[k] = (f"rank {rank + 1}/{len(ranked)}: {'geometric ' if use_log else ''}mean error {shown:.4g} vs best "
                      f"{ref:.4g}, worse by {m - best:.3g} in {unit} > margin {slack:.3g} (relative {margin:g}, "
                      f"{noise_z:g} x seed s.e. {se:.3g})")
    return keep, why
