"""Import an example script (``examples/<name>/train.py``) as a module, without running its ``main``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """The module of ``examples/<name>/train.py``."""
    spec = importlib.util.spec_from_file_location(f"example_{name}_train", EXAMPLES / name / "train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
