"""The installed distribution's version, read from its metadata (one source: ``pyproject.toml``)."""

from __future__ import annotations

import importlib.metadata

try:
    __version__ = importlib.metadata.version("lightning-scaling")
except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
