"""LocalLauncher: device slots (GPU groups pinned with CUDA_VISIBLE_DEVICES, CPU threads split)."""

from __future__ import annotations

import pytest

from lightning_scaling.sweep.launchers import LocalLauncher


def test_local_slots_pin_gpus_and_split_threads(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    launcher = LocalLauncher()
    assert [s.gpus for s in launcher.slots] == [("0",), ("1",), ("2",), ("3",)]
    pairs = LocalLauncher(devices_per_slot=2)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in pairs.slots] == ["0,1", "2,3"]
    with pytest.raises(ValueError, match="devices_per_slot=8 but only 4 GPUs"):
        LocalLauncher(devices_per_slot=8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = LocalLauncher(slots=2, threads_per_slot=3)
    assert [s.env()["OMP_NUM_THREADS"] for s in cpu.slots] == ["3", "3"]
    assert all(s.env()["CUDA_VISIBLE_DEVICES"] == "" for s in cpu.slots)


@pytest.mark.slow
@pytest.mark.parametrize("fork_server", [False, True])
def test_a_run_with_a_200000_character_grid_value_starts_and_reads_it(tmp_path, fork_server):
    import json
    import sys
    import time

    from lightning_scaling.sweep import RunContext, SweepPlan
    from lightning_scaling.sweep.context import ENV_LIMIT, ENV_RUN
    from lightning_scaling.sweep.launchers import Job

    script = tmp_path / "child.py"
    script.write_text("from lightning_scaling.sweep.context import current_run\n"
                      "print('tag of', len(current_run().param('tag')), 'characters')\n")
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], grid={"tag": ["x" * 200_000]}, monitor="val_err")
    spec = plan.runs[0]
    ctx = RunContext(spec=spec, sweep_dir=str(tmp_path / "sweep"), launch="abc")
    env = {ENV_RUN: ctx.to_env()}  # what the controller gives every run
    assert len(env[ENV_RUN]) < ENV_LIMIT and json.loads(env[ENV_RUN])["launch"] == "abc"
    job = Job(spec=spec, attempt=1, command=[sys.executable, str(script)], env_overrides=env,
              log_path=tmp_path / "sweep" / "logs" / "run.log", launch="abc")
    launcher = LocalLauncher(slots=1, fork_server=fork_server)
    try:
        launcher.submit(job)  # today: OSError "Argument list too long" without the fork server
        deadline = time.time() + 120
        while not (done := launcher.poll()) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        launcher.shutdown()
    log = job.log_path.read_text()
    assert done == [(job, 0)], log
    assert "tag of 200000 characters" in log
