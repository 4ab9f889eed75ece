"""Synthetic learning curves shared by the laws tests."""

from __future__ import annotations

import numpy as np


def noisy_curve(seed: int, *, alpha=3.0, beta=-0.3, gamma=0.02, noise=0.03, n=14, lo=1e3, hi=1e6):
    rng = np.random.default_rng(seed)
    m = np.geomspace(lo, hi, n)
    return m, (alpha * m**beta + gamma) * np.exp(rng.normal(0.0, noise, n))
