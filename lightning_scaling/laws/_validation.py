"""Input checks shared by every fitter: each bad input gets an error that names it and the fix."""

from __future__ import annotations

import numpy as np


def as_curve(
    sizes: object, errors: object, *, n_params: int, what: str = "errors", allow_constant: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a learning curve; return float arrays ``x (n,)`` and ``y (n,)`` or ``(n, seeds)``.

    ``errors`` may be 2-D with one column per seed (``nan`` marks a missing seed). Constant ``errors``
    are an error unless ``allow_constant`` (the caller then fits a flat law).
    """
    try:
        x = np.asarray(sizes, dtype=float)
        y = np.asarray(errors, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"sizes and {what} must be numeric sequences: {exc}") from None
    if x.ndim != 1:
        raise ValueError(f"sizes must be 1-D, got shape {x.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{what} must have shape (n_sizes,) or (n_sizes, n_seeds) matching sizes of length {len(x)}, "
            f"got {y.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"sizes must be finite; got non-finite values at positions {np.flatnonzero(~np.isfinite(x))}")
    if np.any(x <= 0):
        raise ValueError(f"sizes must be positive (a power law needs log(size)); got {x[x <= 0][:5]}")
    dup = np.unique(x[np.r_[False, np.diff(np.sort(x)) == 0]]) if len(x) > 1 else np.array([])
    if dup.size:
        raise ValueError(
            f"duplicate sizes {dup[:5].tolist()}: give each size once and put repeated runs (seeds) "
            f"in the columns of a 2-D {what} array of shape (n_sizes, n_seeds)"
        )
    if np.any(np.diff(x) < 0):
        raise ValueError("sizes must be sorted in increasing order; sort sizes and errors together (np.argsort)")
    finite = np.isfinite(y)
    if y.ndim == 1 and not finite.all():
        raise ValueError(f"{what} must be finite; got {y[~finite][:5]} at positions {np.flatnonzero(~finite)[:5]}")
    if y.ndim == 2:
        if np.isinf(y).any():
            raise ValueError(f"{what} must be finite (nan marks a missing seed); got inf")
        if not finite.any(axis=1).all():
            empty = x[~finite.any(axis=1)]
            raise ValueError(f"every size needs at least one finite value of {what}; sizes {empty} have none")
    if np.any(y[finite] <= 0):
        raise ValueError(
            f"{what} must be positive (fits are in log-error space); got {y[finite][y[finite] <= 0][:5]}. "
            "Use an error or loss that is > 0, e.g. 1 - accuracy"
        )
    if len(x) < n_params:
        raise ValueError(
            f"{len(x)} sizes cannot determine {n_params} parameters; measure at least {n_params} sizes "
            f"(more for intervals and region detection) or choose a form with fewer parameters"
        )
    ymean = np.nanmean(y, axis=1) if y.ndim == 2 else y
    if not allow_constant and np.ptp(ymean) <= 1e-12 * np.abs(ymean).max():
        hint = ("there is no learning curve to fit; check that training used the data fraction and that the "
                "monitored metric changes") if what == "errors" else "there is no trend to fit a power law to"
        raise ValueError(f"{what} are constant ({ymean[0]:.6g} at every size): {hint}")
    return x, y
