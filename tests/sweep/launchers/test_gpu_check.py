"""benchmarks/gpu_check.py --dry-run: the GPU check's plumbing on CPU (accelerator="cpu", tiny sizes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_check_on_cpu(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--dry-run", "--root",
                           str(tmp_path)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    for check in ("(1)", "(2)", "(3)", "(4)", "(5)", "(6)"):
        assert any(line.startswith("PASS " + check) for line in lines), (check, proc.stdout)
    assert not any(line.startswith("FAIL") for line in lines)
    # the records carry the device each run saw: a CPU slot hides every GPU
    assert "each saw exactly its slot's device [('', 'cpu')]" in proc.stdout
