"""Argument checks shared by every layer: each raises a ``ValueError`` that names the argument and the fix.

Plain Python (no numpy, torch or Lightning), so any module may import it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["require_int"]


def require_int(name: str, value: Any, minimum: int, *, allow_none: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an integer >= ``minimum`` (bools are not).

    >>> require_int("seeds", 2, 1)
    >>> require_int("seeds", True, 1)
    Traceback (most recent call last):
    ...
    ValueError: seeds must be a positive integer, got True
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {kind}{extra}, got {value!r}")
