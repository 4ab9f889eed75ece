"""RayLauncher: option mapping and a missing extra (fast), and whole sweeps (slow) on a local Ray
instance and on a two-node Ray cluster on loopback (one node lost mid-run).

Every sweep starts the controller as a subprocess with a timeout (``helpers/cluster_sweeps.py``), as
in test_sweep_e2e.py; the Ray processes a test starts are ended by the test, by pid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers.cluster_sweeps import (
    FOLDER,
    HELPERS,
    SWEEP,
    end_session,
    free_port,
    read_records,
    run_controller,
    sweep_env,
)
from helpers.procs import default_sigint, interrupt

from lightning_scaling.sweep.launchers import make_launcher


def test_missing_ray_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from lightning_scaling.sweep.launchers.ray import RayLauncher

    with pytest.raises(ImportError, match=r'pip install "lightning-scaling\[ray\]"'):
        RayLauncher()
    with pytest.raises(ImportError, match=r"lightning-scaling\[ray\]"):
        make_launcher("ray")


def test_ray_launcher_options_from_a_name():
    from lightning_scaling.sweep import RayLauncher

    launcher = make_launcher("ray", slots=3, devices_per_slot=2)
    assert isinstance(launcher, RayLauncher)
    assert launcher.max_concurrent == 3 and launcher.gpus_per_run == 2
    assert make_launcher("ray").gpus_per_run is None  # one GPU per run when the cluster has GPUs
    assert "Ray launcher" in launcher.describe()
    with pytest.raises(ValueError, match="cpus_per_run"):
        RayLauncher(cpus_per_run=0)


@pytest.fixture
def ray_tmp():
    # Ray's socket paths must stay short (107 bytes): a short folder under /tmp, not pytest's tmp_path
    path = Path(tempfile.mkdtemp(prefix="lsray"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ray_cluster(ray_tmp):
    """A two-node Ray cluster on loopback: a head and a worker node, one CPU each."""
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = free_port()
    env = sweep_env({})
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    sessions: list[int] = []
    try:
        for cmd in (
            [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--ray-client-server-port={free_port()}", f"--temp-dir={ray_tmp}", *common],
            [ray_bin, "start", f"--address=127.0.0.1:{port}", *common],
        ):
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            sessions.append(proc.pid)
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0, out[-3000:]
        yield {"address": f"127.0.0.1:{port}", "worker_session": sessions[1]}
    finally:
        for sid in reversed(sessions):
            end_session(sid)


@pytest.mark.slow
def test_ray_local_instance_records_returned_through_ray_retry_and_resume(tmp_path, ray_tmp):
    # shared_storage=False: every run writes into a node-local folder, and its record and log come
    # back through Ray (the path a cluster without shared storage takes), also for the probe
    launcher = {"kind": "ray", "address": "local", "shared_storage": False,
                "init_kwargs": {"num_cpus": 2, "object_store_memory": 80_000_000, "_temp_dir": str(ray_tmp)}}
    proc = run_controller(tmp_path, SWEEP, LS_TEST_LAUNCHER=json.dumps(launcher),
                       LS_TEST_FAIL=json.dumps({"raise_once": 0.5}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = tmp_path.joinpath(*FOLDER)
    assert "Ray cluster: 1 node(s), 2 CPUs" in proc.stderr
    recs = read_records(folder)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    by = {r["fraction"]: r for r in recs.values()}
    assert by[0.5]["attempt"] == 2 and all(by[f]["attempt"] == 1 for f in (0.125, 0.25, 1.0))
    assert all(r["devices"] == "" for r in recs.values())  # a run without GPUs sees none
    assert json.loads((folder / "probe.json").read_text())["status"] == "ok"
    log = (folder / "logs" / f"{by[0.5]['run_id']}.log").read_text()
    assert "injected failure" in log and "returned through Ray" in log and "Trainer.fit` stopped" in log
    assert not list(folder.glob(".ray-storage-*"))
    assert json.loads((folder / "result.json").read_text())["law"] is not None

    again = run_controller(tmp_path, SWEEP, LS_TEST_LAUNCHER=json.dumps(launcher))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 4 runs already finished, 0 to run" in again.stderr
    # nothing to run, but a rerun over finished runs probes first: their fingerprint must still match
    assert "probe: one batch of" in again.stderr
    assert read_records(folder) == recs


@pytest.mark.slow
def test_ray_ctrl_c_cancels_the_runs_and_leaves_no_process(tmp_path, ray_tmp):
    launcher = {"kind": "ray", "address": "local", "grace": 5,
                "init_kwargs": {"num_cpus": 2, "object_store_memory": 80_000_000, "_temp_dir": str(ray_tmp)}}
    env = sweep_env({**SWEEP, "probe": False}, LS_TEST_LAUNCHER=json.dumps(launcher),
                    LS_TEST_FAIL=json.dumps({"sleep": 60}))
    marker = str(tmp_path)
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", marker]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    logs = tmp_path.joinpath(*FOLDER) / "logs"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            text = "".join(p.read_text(errors="replace") for p in logs.glob("*.log")) if logs.is_dir() else ""
            if text.count("Ray node ") >= 2:
                break
            time.sleep(0.5)
        time.sleep(3.0)  # both runs are past their imports, in the injected sleep
        err = interrupt(proc)
        time.sleep(0.5)
        # checked before the teardown ends the controller's session: the launcher stopped the runs itself
        out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        leftovers = [line for line in out.splitlines() if marker in line]
    finally:
        end_session(proc.pid)
    assert proc.returncode != 0
    assert "interrupted: stopping runs" in err
    assert not leftovers, "runs outlived the cancelled Ray tasks"
    assert not read_records(logs.parent)  # interrupted runs leave no record, so a resume runs them


@pytest.mark.slow
def test_ray_two_node_cluster_retries_a_failed_run_and_a_run_lost_with_its_node(tmp_path, ray_cluster):
    # launcher="ray" by name: connects through RAY_ADDRESS; one CPU per run, so two runs in flight
    # are on different nodes. After the injected failure the worker node is killed mid-run: its run
    # comes back as a failed attempt (not a hang) and is retried on the head.
    sweep = {**SWEEP, "launcher": "ray", "probe": False}
    env = sweep_env(sweep, RAY_ADDRESS=ray_cluster["address"], LS_TEST_FAIL=json.dumps({"raise_once": 0.5, "sleep": 8}))
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", str(tmp_path), "--epochs", "2"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    folder = tmp_path.joinpath(*FOLDER)
    try:
        deadline = time.time() + 150
        while time.time() < deadline:
            logs = "".join(p.read_text(errors="replace") for p in (folder / "logs").glob("*.log")) \
                if (folder / "logs").is_dir() else ""
            nodes = {line.split("Ray node ")[1][:12] for line in logs.splitlines() if "Ray node " in line}
            if "injected failure" in logs and len(nodes) == 2 and logs.count("Ray node ") >= 3:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the runs never spread over both nodes")
        time.sleep(2.0)  # both nodes are in a run's sleep now
        end_session(ray_cluster["worker_session"], grace=0.5)
        _, err = proc.communicate(timeout=300)
    finally:
        end_session(proc.pid)
    assert proc.returncode == 0, err[-4000:]
    assert "Ray cluster: 2 node(s), 2 CPUs" in err
    recs = read_records(folder)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values()), recs
    by = {r["fraction"]: r for r in recs.values()}
    assert by[0.5]["attempt"] == 2  # the injected failure, retried
    lost = [r for f, r in by.items() if f != 0.5 and r["attempt"] == 2]
    assert len(lost) == 1, "exactly the run on the killed node is retried"
    lost_log = (folder / "logs" / f"{lost[0]['run_id']}.log").read_text()
    assert "the Ray task of this run failed" in lost_log and "shared sweep folder" in lost_log
    assert "exit code -1" in err
    assert json.loads((folder / "result.json").read_text())["law"] is not None
