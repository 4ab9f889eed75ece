"""``RunIf``: one decorator for the environment conditions tests need (Lightning's test idiom).

Example:
    >>> RunIf(min_cores=1).name
    'skipif'
"""

from __future__ import annotations

import os
import sys

import pytest


def RunIf(
    *,
    distributed: bool = False,
    skip_windows: bool = False,
    fork: bool = False,
    min_cores: int = 0,
    lightning: bool = False,
) -> pytest.MarkDecorator:
    """A ``skipif`` marker that skips unless every requested condition holds, saying which failed."""
    reasons = []
    if distributed:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_gloo_available()):
            reasons.append("torch.distributed with the gloo backend")
    if skip_windows and sys.platform == "win32":
        reasons.append("a non-Windows platform")
    if fork:
        import multiprocessing

        if "fork" not in multiprocessing.get_all_start_methods():
            reasons.append("the 'fork' start method")
    if lightning:
        import importlib.util

        if importlib.util.find_spec("lightning") is None:
            reasons.append("the `lightning` package (lightning.pytorch)")
    if min_cores and (os.cpu_count() or 1) < min_cores:
        reasons.append(f"at least {min_cores} CPU cores")
    return pytest.mark.skipif(bool(reasons), reason="requires " + ", ".join(reasons))
