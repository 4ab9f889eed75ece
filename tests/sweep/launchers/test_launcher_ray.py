"""Ray and SLURM launchers: option mapping and missing extras (fast), and whole sweeps (slow) on a local
Ray instance, on a two-node Ray cluster on loopback (one node lost mid-run), and through submitit's
local executor.

Every sweep starts the controller as a subprocess with a timeout, as in test_sweep_e2e.py. The Ray
processes a test starts are ended by the test (fixture teardown, also on failure): every process of
the sessions its ``ray start`` commands (or its controller) run in, by pid. ``ray stop`` is not used,
because it stops every Ray process on the machine, also those of other jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers.procs import default_sigint, interrupt

from lightning_scaling.sweep.launchers.base import make_launcher, run_on_node

HELPERS = Path(__file__).parents[2] / "helpers"
REPO = Path(__file__).parents[3]
SWEEP = {"fractions": [0.125, 0.25, 0.5, 1.0], "monitor": "val_err", "bootstrap": 100}
FOLDER = ("scaling_sweeps", "sweep_script")


# ------------------------------------------------------------------------------------- helpers
def _env(sweep: dict, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_", "RAY_", "SLURM_", "SUBMITIT_"))}
    env.update({"LS_TEST_SWEEP": json.dumps(sweep), "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **extra})
    return env


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines() if line.strip()) if int(s) == sid]


def _end_session(sid: int, grace: float = 5.0) -> None:
    """End every process of a session this test started (by pid): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _session_pids(sid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while pids and time.time() < deadline:
            time.sleep(0.2)
            pids = _session_pids(sid)
        if not pids:
            return


def _controller(tmp_path: Path, sweep: dict, *, timeout: float = 300, epochs: int = 3, **extra: str):
    """Run the sweep script as the controller in its own session; end whatever it leaves behind."""
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", str(tmp_path), "--epochs", str(epochs)]
    proc = subprocess.Popen(cmd, env=_env(sweep, **extra), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _end_session(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ fast unit tests
def test_missing_ray_extra_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    from lightning_scaling.sweep.launchers.ray import RayLauncher

    with pytest.raises(ImportError, match=r'pip install "lightning-scaling\[ray\]"'):
        RayLauncher()
    with pytest.raises(ImportError, match=r"lightning-scaling\[ray\]"):
        make_launcher("ray")


def test_missing_extra_fails_when_the_callback_is_built(monkeypatch):
    from lightning_scaling import ScalingSweep

    monkeypatch.delenv("LIGHTNING_SCALING_RUN", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"lightning-scaling\[ray\]"):
        ScalingSweep(fractions=SWEEP["fractions"], launcher="ray")
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ImportError, match=r"lightning-scaling\[slurm\]"):
        ScalingSweep(fractions=SWEEP["fractions"], launcher="slurm")
    with pytest.raises(ValueError, match="unknown launcher 'kubernetes'"):
        ScalingSweep(fractions=SWEEP["fractions"], launcher="kubernetes")


def test_sweep_package_imports_neither_ray_nor_submitit():
    code = ("import sys, lightning_scaling.sweep as s; s.RayLauncher, s.SlurmLauncher; "
            "print(sorted(m for m in ('ray', 'submitit', 'torch', 'pytorch_lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env({}), check=True)
    assert out.stdout.strip() == "[]"


def test_make_launcher_names_and_objects():
    from lightning_scaling.sweep import LocalLauncher

    assert isinstance(make_launcher(None, slots=2), LocalLauncher)
    assert make_launcher("local", slots=3).capacity == 3
    obj = LocalLauncher(slots=1)
    assert make_launcher(obj) is obj
    with pytest.raises(ValueError, match="unknown launcher"):
        make_launcher("k8s")
    with pytest.raises(TypeError, match="has no"):
        make_launcher(object())  # type: ignore[arg-type]

    class Remote(LocalLauncher):  # a cluster launcher connects when its capacity is first read
        @property
        def capacity(self) -> int:
            raise AssertionError("connected while the sweep was being built")

    remote = Remote(slots=1)
    assert make_launcher(remote) is remote


def test_ray_launcher_options_from_a_name():
    from lightning_scaling.sweep import RayLauncher

    launcher = make_launcher("ray", slots=3, devices_per_slot=2)
    assert isinstance(launcher, RayLauncher)
    assert launcher.max_concurrent == 3 and launcher.gpus_per_run == 2
    assert make_launcher("ray").gpus_per_run is None  # one GPU per run when the cluster has GPUs
    assert "Ray launcher" in launcher.describe()
    with pytest.raises(ValueError, match="cpus_per_run"):
        RayLauncher(cpus_per_run=0)


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


def test_slurm_restarted_controller_cancels_the_jobs_an_earlier_one_left(tmp_path, monkeypatch):
    from lightning_scaling.sweep import SlurmLauncher

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'scancelled'}\n")
    (bin_dir / "scancel").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = SlurmLauncher(gpus_per_run=0)
    assert launcher.cancel_leftovers() == []  # no folder yet: nothing to read
    launcher._active_path = tmp_path / "active_jobs.json"
    assert launcher.cancel_leftovers() == []
    launcher._active_path.write_text(json.dumps({"jobs": ["101_0", "101_1", "102"]}))
    assert launcher.cancel_leftovers() == ["101_0", "101_1", "102"]
    assert (tmp_path / "scancelled").read_text().split() == ["101_0", "101_1", "102"]


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


# ------------------------------------------------------------------------------------ Ray sweeps
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
    port = _free_port()
    env = _env({})
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    sessions: list[int] = []
    try:
        for cmd in (
            [ray_bin, "start", "--head", f"--port={port}", "--include-dashboard=false",
             f"--ray-client-server-port={_free_port()}", f"--temp-dir={ray_tmp}", *common],
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
            _end_session(sid)


@pytest.mark.slow
def test_ray_local_instance_records_returned_through_ray_retry_and_resume(tmp_path, ray_tmp):
    # shared_storage=False: every run writes into a node-local folder, and its record and log come
    # back through Ray (the path a cluster without shared storage takes), also for the probe
    launcher = {"kind": "ray", "address": "local", "shared_storage": False,
                "init_kwargs": {"num_cpus": 2, "object_store_memory": 80_000_000, "_temp_dir": str(ray_tmp)}}
    proc = _controller(tmp_path, SWEEP, LS_TEST_LAUNCHER=json.dumps(launcher),
                       LS_TEST_FAIL=json.dumps({"raise_once": 0.5}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = tmp_path.joinpath(*FOLDER)
    assert "Ray cluster: 1 node(s), 2 CPUs" in proc.stderr
    recs = _records(folder)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    by = {r["fraction"]: r for r in recs.values()}
    assert by[0.5]["attempt"] == 2 and all(by[f]["attempt"] == 1 for f in (0.125, 0.25, 1.0))
    assert all(r["devices"] == "" for r in recs.values())  # a run without GPUs sees none
    assert json.loads((folder / "probe.json").read_text())["status"] == "ok"
    log = (folder / "logs" / f"{by[0.5]['run_id']}.log").read_text()
    assert "injected failure" in log and "returned through Ray" in log and "Trainer.fit` stopped" in log
    assert not list(folder.glob(".ray-storage-*"))
    assert json.loads((folder / "result.json").read_text())["law"] is not None

    again = _controller(tmp_path, SWEEP, LS_TEST_LAUNCHER=json.dumps(launcher))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 4 runs already finished, 0 to run" in again.stderr
    assert "Ray cluster" not in again.stderr  # nothing to run: Ray is not even started
    assert _records(folder) == recs


@pytest.mark.slow
def test_ray_ctrl_c_cancels_the_runs_and_leaves_no_process(tmp_path, ray_tmp):
    launcher = {"kind": "ray", "address": "local", "grace": 5,
                "init_kwargs": {"num_cpus": 2, "object_store_memory": 80_000_000, "_temp_dir": str(ray_tmp)}}
    env = _env({**SWEEP, "probe": False}, LS_TEST_LAUNCHER=json.dumps(launcher), LS_TEST_FAIL=json.dumps({"sleep": 60}))
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
        _end_session(proc.pid)
    assert proc.returncode != 0
    assert "interrupted: stopping runs" in err
    assert not leftovers, "runs outlived the cancelled Ray tasks"
    assert not _records(logs.parent)  # interrupted runs leave no record, so a resume runs them


@pytest.mark.slow
def test_ray_two_node_cluster_retries_a_failed_run_and_a_run_lost_with_its_node(tmp_path, ray_cluster):
    # launcher="ray" by name: connects through RAY_ADDRESS; one CPU per run, so two runs in flight
    # are on different nodes. After the injected failure the worker node is killed mid-run: its run
    # comes back as a failed attempt (not a hang) and is retried on the head.
    sweep = {**SWEEP, "launcher": "ray", "probe": False}
    env = _env(sweep, RAY_ADDRESS=ray_cluster["address"], LS_TEST_FAIL=json.dumps({"raise_once": 0.5, "sleep": 8}))
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
        _end_session(ray_cluster["worker_session"], grace=0.5)
        _, err = proc.communicate(timeout=300)
    finally:
        _end_session(proc.pid)
    assert proc.returncode == 0, err[-4000:]
    assert "Ray cluster: 2 node(s), 2 CPUs" in err
    recs = _records(folder)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values()), recs
    by = {r["fraction"]: r for r in recs.values()}
    assert by[0.5]["attempt"] == 2  # the injected failure, retried
    lost = [r for f, r in by.items() if f != 0.5 and r["attempt"] == 2]
    assert len(lost) == 1, "exactly the run on the killed node is retried"
    lost_log = (folder / "logs" / f"{lost[0]['run_id']}.log").read_text()
    assert "the Ray task of this run failed" in lost_log and "shared sweep folder" in lost_log
    assert "exit code -1" in err
    assert json.loads((folder / "result.json").read_text())["law"] is not None


# ------------------------------------------------------------------------------- submitit sweep
@pytest.mark.slow
def test_submitit_local_executor_sweep_with_a_retry(tmp_path):
    launcher = {"kind": "slurm", "cluster": "local", "gpus_per_run": 0, "array_parallelism": 2, "time": "0:10:00"}
    proc = _controller(tmp_path, SWEEP, LS_TEST_LAUNCHER=json.dumps(launcher),
                       LS_TEST_FAIL=json.dumps({"raise_once": 0.5}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "submitit 'local' executor launcher" in proc.stderr and "up to 2 runs at once" in proc.stderr
    folder = tmp_path.joinpath(*FOLDER)
    recs = _records(folder)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    by = {r["fraction"]: r for r in recs.values()}
    assert by[0.5]["attempt"] == 2
    log = (folder / "logs" / f"{by[0.5]['run_id']}.log").read_text()
    assert "injected failure" in log and log.count("# submitted as job") == 2 and "submitit local job" in log
    assert any((folder / "submitit").iterdir())  # submitit's own files beside the sweep
    assert json.loads((folder / "result.json").read_text())["law"] is not None
