"""What every launcher shares: a run's clean environment, a run on a scheduler's node, the script to re-run."""

from __future__ import annotations

import subprocess
import sys

from lightning_scaling.sweep.context import ENV_RUN
from lightning_scaling.sweep.launchers.base import child_environment, run_on_node


def test_child_environment_is_clean():
    parent = {"PATH": "/bin", "LOCAL_RANK": "1", "RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "1234",
              "SLURM_JOB_ID": "7", "TORCHELASTIC_RUN_ID": "x", "WANDB_SERVICE": "s", "WANDB_RUN_ID": "r",
              "CUDA_VISIBLE_DEVICES": "0,1,2,3", "WANDB_API_KEY": "keep-the-user-s-auth", "PL_GLOBAL_SEED": "3"}
    env = child_environment(parent, {"CUDA_VISIBLE_DEVICES": "2", ENV_RUN: "{}"})
    assert env["CUDA_VISIBLE_DEVICES"] == "2"
    assert env["PATH"] == "/bin" and env["WANDB_API_KEY"] == "keep-the-user-s-auth"
    for gone in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID",
                 "WANDB_SERVICE", "WANDB_RUN_ID", "PL_GLOBAL_SEED"):
        assert gone not in env


def test_run_on_node_keeps_the_gpus_the_scheduler_pinned(tmp_path, monkeypatch):
    # Ray and SLURM set CUDA_VISIBLE_DEVICES for the task; the run keeps it (child_environment would drop it)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    cmd = [sys.executable, "-c", "import os; print('GPUS', repr(os.environ['CUDA_VISIBLE_DEVICES']), "
                                 "os.environ.get('SLURM_JOB_ID'), os.environ['X'])"]
    log = tmp_path / "run.log"
    assert run_on_node(cmd, {"X": "x"}, log, gpus=2, header="# head\n") == 0
    assert run_on_node(cmd, {"X": "y"}, log, gpus=0) == 0
    text = log.read_text()
    assert "# head" in text and "GPUS '3,5' None x" in text and "GPUS '' None y" in text
    assert run_on_node([sys.executable, "-c", "raise SystemExit(3)"], {}, log, gpus=0) == 3


def test_an_interactive_session_is_told_how_to_run_a_sweep():
    code = "from lightning_scaling.sweep.launchers.base import script_command; script_command()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "lightning_scaling.run_sweep('train.py'" in proc.stderr
