"""Shared pytest setup: ``helpers`` importable from every test folder, and fast single-threaded torch."""

from __future__ import annotations

import sys
from pathlib import Path

# Test modules live in folders that mirror the package (tests/sweep/, tests/laws/, ...); pytest's default
# import mode puts only each test's own folder on sys.path, so the shared helpers need tests/ itself.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
