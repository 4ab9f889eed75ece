"""Whole sweeps under a cluster launcher (Ray, submitit), each controller a subprocess with a timeout.

The processes a test starts are ended by the test (also on failure): every process of the sessions
its ``ray start`` commands (or its controller) run in, by pid. ``ray stop`` is not used, because it
stops every Ray process on the machine, also those of other jobs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HELPERS = Path(__file__).parent
REPO = Path(__file__).parents[2]
SWEEP = {"fractions": [0.125, 0.25, 0.5, 1.0], "monitor": "val_err", "bootstrap": 100}
FOLDER = ("scaling_sweeps", "sweep_script")


def sweep_env(sweep: dict, **extra: str) -> dict[str, str]:
    """This environment without test, run, Ray and SLURM variables, with ``sweep`` for the sweep script."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_", "RAY_", "SLURM_", "SUBMITIT_"))}
    env.update({"LS_TEST_SWEEP": json.dumps(sweep), "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **extra})
    return env


def session_pids(sid: int) -> list[int]:
    """The processes of session ``sid``."""
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines() if line.strip()) if int(s) == sid]


def end_session(sid: int, grace: float = 5.0) -> None:
    """End every process of a session this test started (by pid): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = session_pids(sid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.time() + grace
        while pids and time.time() < deadline:
            time.sleep(0.2)
            pids = session_pids(sid)
        if not pids:
            return


def run_controller(tmp_path: Path, sweep: dict, *, timeout: float = 300, epochs: int = 3, **extra: str):
    """Run the sweep script as the controller in its own session; end whatever it leaves behind."""
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", str(tmp_path), "--epochs", str(epochs)]
    proc = subprocess.Popen(cmd, env=sweep_env(sweep, **extra), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        end_session(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def read_records(folder: Path) -> dict[str, dict]:
    """The run records in a sweep folder, by file name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))}


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
