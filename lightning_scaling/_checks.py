"""Argument checks shared by every layer: each raises an error that names the argument and the fix.

Plain Python (no numpy, torch or Lightning), so any module may import it.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["lightning_namespace", "require_bool", "require_int", "require_numbers", "require_path",
           "require_same_lightning", "require_str"]


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
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {kind}{extra}, got {value!r}")


def require_bool(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise a TypeError naming ``name`` unless ``value`` is ``True`` or ``False`` (or ``None`` if allowed).

    >>> require_bool("probe", "no")
    Traceback (most recent call last):
    ...
    TypeError: probe must be True or False, got 'no'
    """
    if isinstance(value, bool) or (value is None and allow_none):
        return
    extra = " (or None for the default)" if allow_none else ""
    raise TypeError(f"{name} must be True or False{extra}, got {value!r}")


def require_str(name: str, value: Any, example: str, *, allow_none: bool = False) -> None:
    """Raise a TypeError naming ``name`` unless ``value`` is a non-empty string (or ``None`` if allowed).

    >>> require_str("size_unit", "", "'tokens'")
    Traceback (most recent call last):
    ...
    TypeError: size_unit must be a non-empty string such as 'tokens', got ''
    """
    if value is None and allow_none:
        return
    if not isinstance(value, str) or not value.strip():
        extra = " or None" if allow_none else ""
        raise TypeError(f"{name} must be a non-empty string such as {example}{extra}, got {value!r}")


def require_path(name: str, value: Any) -> None:
    """Raise a TypeError naming ``name`` unless ``value`` is ``None``, a non-empty string or a path."""
    if value is None or isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
        return
    raise TypeError(f"{name} must be a folder path (a string or pathlib.Path) or None, got {value!r}")


def require_numbers(name: str, value: Any, example: str, *, integer: bool = False) -> list[Any]:
    """``value`` as a list after checking it is a list of finite numbers (integers when ``integer``).

    Strings, single numbers and bools are refused (``fractions='0.5'`` is no list of fractions),
    and so are floats where integers are asked (``seeds=[1.7]`` is not silently ``[1]``).

    >>> require_numbers("sizes", [10, 20], "[1000, 4000]", integer=True)
    [10, 20]
    >>> require_numbers("fractions", 0.5, "[0.25, 0.5, 1.0]")
    Traceback (most recent call last):
    ...
    TypeError: fractions must be a list of numbers such as [0.25, 0.5, 1.0], got 0.5
    """
    kind = "integers" if integer else "numbers"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of {kind} such as {example}, got {value!r}")
    want = numbers.Integral if integer else numbers.Real
    for v in value:
        if isinstance(v, bool) or not isinstance(v, want) or not math.isfinite(float(v)):
            raise TypeError(f"{name} must be a list of {'integers' if integer else 'finite numbers'} such as "
                            f"{example}, got {list(value)!r} (the entry {v!r})")
    return list(value)


def lightning_namespace(obj: Any) -> str | None:
    """``"lightning.pytorch"`` or ``"pytorch_lightning"``: the Lightning namespace of ``obj``'s class, if any.

    >>> lightning_namespace(3) is None
    True
    """
    found = None
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", "") or ""
        for root in ("lightning.pytorch", "pytorch_lightning"):
            if module == root or module.startswith(root + "."):
                found = found or root
    return found


def require_same_lightning(what: str, obj: Any, trainer: Any) -> None:
    """Raise a TypeError when ``obj`` (the package's ``what``) is of the other Lightning namespace than ``trainer``.

    Lightning ships as ``pytorch_lightning`` and ``lightning.pytorch``; a Trainer of one accepts only
    callbacks and datamodules of its own, and fails on the other's with errors that point elsewhere.
    """
    theirs = lightning_namespace(trainer)
    if theirs is None:
        return
    ours = {cls.__module__.split(".")[0] for cls in type(obj).__mro__}
    if theirs.split(".")[0] in ours:
        return
    fix = ("from lightning_scaling.lightning_pytorch import " + what if theirs == "lightning.pytorch"
           else "from lightning_scaling import " + what)
    other = "pytorch_lightning" if theirs == "lightning.pytorch" else "lightning.pytorch"
    raise TypeError(f"this {what} is for {other} but the Trainer is {theirs}'s (import {theirs} ...): use `{fix}`")
