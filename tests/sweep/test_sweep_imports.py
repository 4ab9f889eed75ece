"""Importing the sweep machinery loads no Lightning (a sweep folder can be analysed anywhere)."""

from __future__ import annotations

import os
import subprocess
import sys

from lightning_scaling.sweep.context import ENV_RUN


def test_sweep_package_imports_no_lightning():
    code = ("import sys, lightning_scaling.sweep; "
            "assert not [m for m in ('torch', 'pytorch_lightning') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, ENV_RUN: ""})
