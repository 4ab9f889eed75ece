"""How finished runs become the points of a learning curve: the best grid point at each data size
(the paper's best-fit model size), and each size's seeds side by side. Plain numpy, no fitting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["best_per_size", "seed_matrix"]


def best_per_size(by_amount: Mapping[Any, Mapping[str, list[dict[str, Any]]]],
                  amounts: list[Any]) -> list[dict[str, Any]]:
    """At each data size, the grid point with the lowest mean error over its seeds (the paper's best model)."""
    best_rows = []
    for a in amounts:
        groups = by_amount[a]
        scored = {k: float(np.mean([x["error"] for x in v])) for k, v in groups.items()}
        winner = min(scored, key=scored.__getitem__)
        rows = groups[winner]
        best_rows.append({
            "amount": a, "train_size": float(np.mean([x["train_size"] for x in rows])),
            "params": rows[0].get("params", {}), "error": scored[winner],
            "errors": [x["error"] for x in rows], "seeds": [x["seed"] for x in rows],
            "trainable_params": rows[0].get("trainable_params"),
            "candidates": {k: v for k, v in scored.items()},
        })
    return best_rows


def seed_matrix(errors: Sequence[Sequence[float]]) -> np.ndarray:
    """Errors per size as ``(n_sizes, n_seeds)``, ``nan`` for missing seeds; 1-D when each size has one.

    >>> seed_matrix([[0.3, 0.32], [0.2]])
    array([[0.3 , 0.32],
           [0.2 ,  nan]])
    """
    width = max(len(e) for e in errors)
    out = np.full((len(errors), width), np.nan)
    for i, e in enumerate(errors):
        out[i, : len(e)] = e
    return out if width > 1 else out[:, 0]
