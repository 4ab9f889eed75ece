"""One line per public selection path, for comparing subsets made in processes with different hash seeds."""

from __future__ import annotations

import numpy as np

from lightning_scaling.sampling import StreamSelector, select_indices, stratified_indices


def selections() -> list[str]:
    """Feistel (n > 2**16), small-n sort, stratified with string labels (np.unique on str), stream thinning."""
    return [
        str(select_indices(123457, fraction=0.01, seed=3).tolist()),
        str(select_indices(999, fraction=0.05, seed=-7).tolist()),
        str(stratified_indices(["cat", "dog", "eel"] * 333, fraction=0.1, seed=3).tolist()),
        str(np.flatnonzero(StreamSelector(fraction=0.01, seed=5, stream=3).keep(np.arange(50_000))).tolist()),
    ]
