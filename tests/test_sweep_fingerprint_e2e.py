"""Reruns of a real study with changed settings (issue 19, items 1 and 2), each started as the user would.

A rerun whose script, arguments, Trainer settings or hyperparameters differ from the finished runs'
stops before any run and says what changed; ``reuse_changed=True`` reuses them anyway; a grown plan
with the same settings reuses them; a failed probe fixes no setting.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HELPERS = Path(__file__).parent / "helpers"
REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.slow

SWEEP = {"fractions": [0.25, 0.5, 0.75, 1.0], "monitor": "val_err", "bootstrap": 50, "slots": 2}


def _start(script: Path, root: Path, sweep: dict, args=(), **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_"))}
    env.update({"LS_TEST_SWEEP": json.dumps(sweep), "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1", **extra})
    return subprocess.run([sys.executable, str(script), "--root", str(root), "--steps", "4", *args], env=env,
                          cwd=root, capture_output=True, text=True, timeout=400)


def _launches(folder: Path) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["launch"] for p in sorted((folder / "runs").glob("*.json"))}


def test_a_rerun_with_changed_settings_refuses_with_the_diff_and_reuses_only_when_told(tmp_path):
    script = tmp_path / "sweep_script.py"
    shutil.copy(HELPERS / "sweep_script.py", script)
    folder = tmp_path / "study"
    sweep = {**SWEEP, "sweep_dir": str(folder)}
    first = _start(script, tmp_path, sweep)
    assert first.returncode == 0, first.stderr[-3000:]
    before = _launches(folder)
    recs = [json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")]
    assert len(recs) == 4
    fps = [r["fingerprint"] for r in recs]
    assert all(f == fps[0] for f in fps)
    assert fps[0]["trainer"]["max_steps"] == 4 and fps[0]["model"]["lr"] == 0.02
    assert fps[0]["args"] == ["--root", str(tmp_path), "--steps", "4"] and fps[0]["script"].startswith("sha256:")

    def refused(proc: subprocess.CompletedProcess, change: str) -> None:
        assert proc.returncode != 0
        assert "the study's settings changed since its finished runs" in proc.stderr, proc.stderr[-3000:]
        assert change in proc.stderr and "reuse_changed=True" in proc.stderr and "name= or sweep_dir=" in proc.stderr
        assert _launches(folder) == before  # nothing mixed, nothing lost

    refused(_start(script, tmp_path, sweep, LS_TEST_TRAINER='{"max_steps": 8}'), "trainer.max_steps: 4 -> 8")
    refused(_start(script, tmp_path, sweep, LS_TEST_HPARAMS='{"lr": 0.01}'), "model.lr: 0.02 -> 0.01")
    refused(_start(script, tmp_path, sweep, args=["--epochs", "3"]), "args: ")
    original = script.read_text()
    script.write_text(original + "# a changed line\n")
    refused(_start(script, tmp_path, sweep), "script: ")
    script.write_text(original)

    reused = _start(script, tmp_path, {**sweep, "reuse_changed": True}, LS_TEST_TRAINER='{"max_steps": 8}')
    assert reused.returncode == 0, reused.stderr[-3000:]
    assert "resuming: 4 runs already finished, 0 to run" in reused.stderr and _launches(folder) == before

    grown = _start(script, tmp_path, {**sweep, "fractions": [0.125, *SWEEP["fractions"]]})
    assert grown.returncode == 0, grown.stderr[-3000:]
    assert "resuming: 4 runs already finished, 1 to run" in grown.stderr
    after = _launches(folder)
    assert len(after) == 5 and {k: after[k] for k in before} == before

    # records of an earlier version, without a fingerprint: resumed as before, with one warning
    for p in (folder / "runs").glob("*.json"):
        rec = json.loads(p.read_text())
        del rec["fingerprint"]
        p.write_text(json.dumps(rec))
    old = _start(script, tmp_path, {**sweep, "fractions": [0.0625, 0.125, *SWEEP["fractions"]]})
    assert old.returncode == 0, old.stderr[-3000:]
    assert old.stderr.count("without a fingerprint") == 1
    assert "resuming: 5 runs already finished, 1 to run" in old.stderr


def test_a_failed_probe_locks_nothing_the_fixed_monitor_runs(tmp_path):
    script = HELPERS / "sweep_script.py"
    folder = tmp_path / "study"
    typo = _start(script, tmp_path, {**SWEEP, "monitor": "val_acc", "sweep_dir": str(folder)})
    assert typo.returncode != 0 and "is not among the logged metrics" in typo.stderr
    fixed = _start(script, tmp_path, {**SWEEP, "sweep_dir": str(folder)})
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    recs = list(_launches(folder))
    assert len(recs) == 4
