"""The sweep folder's lock (sweep/lock.py): one controller at a time, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from lightning_scaling.sweep.lock import LOCK_FILE, SweepLock, SweepLockedError


def _plant(root, **holder):
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    path.write_text(json.dumps({"host": socket.gethostname(), "token": "theirs", "started_at": "earlier", **holder}))
    return path


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_on_this_host_is_named_and_its_lock_kept(tmp_path, live_pid):
    path = _plant(tmp_path, pid=live_pid)
    before = path.read_bytes()
    with pytest.raises(SweepLockedError, match=rf"in use by another controller: host {socket.gethostname()}, "
                                               rf"pid {live_pid}, started earlier.*sweep_dir=.*delete .*{LOCK_FILE}"):
        SweepLock(tmp_path).acquire()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE]


def test_a_lock_whose_process_is_gone_is_taken_over_with_a_message(tmp_path, dead_pid):
    _plant(tmp_path, pid=dead_pid)
    told: list[str] = []
    with SweepLock(tmp_path, log=told.append) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert told == [f"took over the lock of the sweep folder {tmp_path}: its controller (pid {dead_pid} on this "
                    "host) is gone"]
    assert list(tmp_path.iterdir()) == []  # given back, nothing left behind


def test_another_hosts_lock_is_kept_for_its_lease_then_taken_over(tmp_path):
    path = _plant(tmp_path, host="node-7", pid=123)
    with pytest.raises(SweepLockedError, match="host node-7, pid 123"):
        SweepLock(tmp_path, lease=60).acquire()
    old = time.time() - 90
    os.utime(path, (old, old))
    told: list[str] = []
    with SweepLock(tmp_path, lease=60, log=told.append):
        pass
    assert len(told) == 1 and "(host node-7, pid 123) has not refreshed it for 90 s (lease 60 s)" in told[0]


def test_the_holder_refreshes_its_lease_and_a_second_controller_in_this_process_is_refused(tmp_path):
    with SweepLock(tmp_path, lease=0.4) as lock:
        old = time.time() - 100
        os.utime(lock.path, (old, old))
        time.sleep(0.5)  # the holder touched it again meanwhile: not stale
        assert time.time() - lock.path.stat().st_mtime < 1
        with pytest.raises(RuntimeError, match=f"pid {os.getpid()}"):
            SweepLock(tmp_path, lease=0.4, error=RuntimeError).acquire()
    assert not lock.path.exists()


def test_the_lock_is_given_back_on_an_exception_and_on_ctrl_c(tmp_path):
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), SweepLock(tmp_path) as lock:
            raise exc
        assert not lock.path.exists()


def test_two_controllers_finding_one_stale_lock_do_not_both_win(tmp_path, dead_pid):
    _plant(tmp_path, pid=dead_pid)
    first = SweepLock(tmp_path, log=lambda m: None)
    second = SweepLock(tmp_path, log=lambda m: None)
    stale = (tmp_path / LOCK_FILE).read_bytes()
    first.acquire()
    try:
        # the second one read the stale lock before the first replaced it: removing it now finds another file
        assert second._remove_if(stale) is False
        assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == first.token
        with pytest.raises(SweepLockedError, match=f"pid {os.getpid()}"):
            second.acquire()
    finally:
        first.release()
    assert list(tmp_path.iterdir()) == []


# a run without Lightning: it notes that it trained, then writes its record as the callback would
FAKE_RUN = """
import json, os, sys, time
ctx = json.loads(os.environ["LIGHTNING_SCALING_RUN"])
spec = ctx["spec"]
with open(sys.argv[1], "a") as f:
    f.write(spec["run_id"] + "\\n")
time.sleep(1.0)
rec = {"run_id": spec["run_id"], "attempt": ctx["attempt"], "launch": ctx["launch"], "status": "ok", "reason": None,
       "fraction": None, "size": spec["size"], "params": {}, "seed": spec["seed"], "data_seed": spec["data_seed"],
       "monitor": "val_err", "best_value": 3 * spec["size"] ** -0.5, "train_size": float(spec["size"])}
os.makedirs(os.path.join(ctx["sweep_dir"], "runs"), exist_ok=True)
with open(os.path.join(ctx["sweep_dir"], "runs", spec["run_id"] + ".json"), "w") as f:
    json.dump(rec, f)
"""

CONTROLLER = """
import sys
from lightning_scaling import run_sweep
from lightning_scaling.sweep.launchers import LocalLauncher
run_sweep(sys.argv[1], args=[sys.argv[2]], sizes=[100, 200, 400, 800], monitor="val_err", probe=False,
          sweep_dir=sys.argv[3], launcher=LocalLauncher(slots=1, fork_server=False), bootstrap=0)
"""


@pytest.mark.slow
def test_two_controller_processes_on_one_folder_never_train_a_run_twice(tmp_path):
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)

    def start(name):
        trained = tmp_path / f"{name}.trained"
        cmd = [sys.executable, "-c", CONTROLLER, str(script), str(trained), str(tmp_path / name)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), trained

    # the second starts while the first holds the folder: it stops at once, naming the first
    first, trained = start("staggered")
    deadline = time.time() + 120
    while not (tmp_path / "staggered" / LOCK_FILE).exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    second, _ = start("staggered")
    out2, _ = second.communicate(timeout=120)
    out1, _ = first.communicate(timeout=180)
    assert first.returncode == 0, out1
    assert second.returncode != 0 and f"in use by another controller: host {socket.gethostname()}, pid " \
        f"{first.pid}" in out2, out2
    assert sorted(trained.read_text().split()) == sorted({*trained.read_text().split()}) and \
        len(trained.read_text().split()) == 4
    # started together: whichever gets the folder trains every run, once
    pair = [start("together"), start("together")]
    outs = [proc.communicate(timeout=240)[0] for proc, _ in pair]
    runs = pair[0][1].read_text().split()
    assert len(runs) == len(set(runs)) == 4, outs
    assert not (tmp_path / "together" / LOCK_FILE).exists()


@pytest.mark.parametrize("pid", [0, -1, True, "123", None])
def test_a_lock_with_no_usable_pid_is_judged_by_its_lease(tmp_path, pid):
    path = _plant(tmp_path, pid=pid)
    with pytest.raises(SweepLockedError, match="in use by another controller"):
        SweepLock(tmp_path, lease=60).acquire()
    old = time.time() - 90
    os.utime(path, (old, old))
    with SweepLock(tmp_path, lease=60, log=lambda m: None) as lock:
        assert json.loads(lock.path.read_text())["token"] == lock.token
