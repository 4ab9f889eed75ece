"""SlurmLauncher: sbatch options, requeue on timeout, leftover jobs of a killed controller (fast), and a
whole sweep through submitit's local executor (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from helpers.cluster_sweeps import FOLDER, SWEEP, read_records, run_controller

from lightning_scaling.sweep.launchers import make_launcher


def test_slurm_parameters_map_to_sbatch_options(tmp_path, monkeypatch):
    from submitit.slurm import slurm

    from lightning_scaling.sweep import SlurmLauncher
    from lightning_scaling.sweep.launchers.slurm import parse_time

    launcher = SlurmLauncher(partition="gpu", time="1:30:00", gpus_per_run=2, cpus_per_run=8, mem_gb=64,
                             array_parallelism=4, max_requeues=2, account="proj", qos="high", constraint="a100",
                             setup=["module load cuda"], additional_parameters={"mail-type": "END"})
    params = launcher.parameters()
    assert params["timeout_min"] == 90 and params["gpus_per_node"] == 2 and params["cpus_per_task"] == 8
    assert params["slurm_partition"] == "gpu" and params["slurm_array_parallelism"] == 4
    assert launcher.capacity == 4 and "partition gpu" in launcher.describe()
    # the sbatch script submitit writes for an array of 6 runs (no cluster needed to render it)
    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # pretend srun exists
    executor = launcher.executor(tmp_path)._executor
    assert isinstance(executor, slurm.SlurmExecutor) and executor.max_num_timeout == 2
    text = slurm._make_sbatch_string(command="run", folder=str(tmp_path), map_count=6, **executor.parameters)
    for flag in ("--partition=gpu", "--time=90", "--gpus-per-node=2", "--cpus-per-task=8", "--array=0-5%4",
                 "--account=proj", "--qos=high", "--constraint=a100", "--mem=64GB", "--mail-type=END",
                 "--signal=USR2@"):
        assert flag in text, flag
    assert "module load cuda" in text
    # a name maps slots and devices_per_slot
    named = make_launcher("slurm", slots=5, devices_per_slot=2)
    assert named.array_parallelism == 5 and named.gpus_per_run == 2
    assert (parse_time(90), parse_time("90"), parse_time("30:00"), parse_time("1-00:00:00")) == (90, 90, 30, 1440)
    for bad in ("soon", "0", True):
        with pytest.raises((ValueError, TypeError)):
            parse_time(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of shell lines"):
        SlurmLauncher(setup="module load cuda")  # type: ignore[arg-type]


def test_slurm_checkpoint_stops_the_run_and_resubmits_the_same_call():
    from lightning_scaling.sweep.launchers import slurm as slurm_launcher

    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    slurm_launcher._remember(proc)
    try:
        fn = slurm_launcher.SlurmRun()
        args = (["python", "train.py"], {"A": "1"}, "/tmp/x.log", "/tmp", 1, 1.0)
        delayed = fn.checkpoint(*args)
        assert proc.poll() == -signal.SIGTERM
        assert delayed.function is fn and delayed.args == args
    finally:
        slurm_launcher._remember(None)  # type: ignore[arg-type]
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def fake_scancel(tmp_path, monkeypatch):
    """A ``scancel`` on PATH that notes its arguments in ``tmp_path/scancelled``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scancelled'}\n")
    (bin_dir / "scancel").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_restarted_controller_cancels_the_jobs_an_earlier_one_left(tmp_path, fake_scancel):
    from lightning_scaling.sweep import SlurmLauncher

    launcher = SlurmLauncher(gpus_per_run=0)
    assert launcher.cancel_leftovers() == []  # no folder yet: nothing to read
    launcher._active_path = tmp_path / "active_jobs.json"
    assert launcher.cancel_leftovers() == []
    launcher._active_path.write_text(json.dumps({"jobs": ["101_0", "101_1", "102"]}))
    assert launcher.cancel_leftovers() == ["101_0", "101_1", "102"]
    assert (tmp_path / "scancelled").read_text().split() == ["101_0", "101_1", "102"]


@pytest.mark.slow
def test_submitit_local_executor_sweep_with_a_retry(tmp_path):
    launcher = {"kind": "slurm", "cluster": "local", "gpus_per_run": 0, "array_parallelism": 2, "time": "0:10:00"}
    proc = run_controller(tmp_path, SWEEP, LS_TEST_LAUNCHER=json.dumps(launcher),
                       LS_TEST_FAIL=json.dumps({"raise_once": 0.5}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "submitit 'local' executor launcher" in proc.stderr and "up to 2 runs at once" in proc.stderr
    folder = tmp_path.joinpath(*FOLDER)
    recs = read_records(folder)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    by = {r["fraction"]: r for r in recs.values()}
    assert by[0.5]["attempt"] == 2
    log = (folder / "logs" / f"{by[0.5]['run_id']}.log").read_text()
    assert "injected failure" in log and log.count("# submitted as job") == 2 and "submitit local job" in log
    assert any((folder / "submitit").iterdir())  # submitit's own files beside the sweep
    assert json.loads((folder / "result.json").read_text())["law"] is not None


def test_job_ids_from_the_sweep_folder_are_validated_before_scancel(tmp_path, fake_scancel, capsys):
    from lightning_scaling.sweep import SlurmLauncher

    launcher = SlurmLauncher(gpus_per_run=0)
    launcher._active_path = tmp_path / "active_jobs.json"
    planted = ["--user=alice", "101; rm -rf ~", "-1", "", True, None, {"a": 1}, "1e5", "101_0", 102, "103+1"]
    launcher._active_path.write_text(json.dumps({"jobs": planted}))
    assert launcher.cancel_leftovers() == ["101_0", "102", "103+1"]
    assert (tmp_path / "scancelled").read_text().split() == ["101_0", "102", "103+1"]
    err = capsys.readouterr().err
    assert "active_jobs.json holds values that are no SLURM job ids, not cancelled: '--user=alice'" in err
    # nothing but ids: scancel is not run at all
    (tmp_path / "scancelled").unlink()
    launcher._active_path.write_text(json.dumps({"jobs": ["--user=alice", "--state=RUNNING"]}))
    assert launcher.cancel_leftovers() == [] and not (tmp_path / "scancelled").exists()
