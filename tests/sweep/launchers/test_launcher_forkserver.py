"""The fork server: local runs started as forks of a process that imported torch and Lightning once."""

from __future__ import annotations

import json
import sys

import pytest

from lightning_scaling.sweep.launchers import LocalLauncher


def _script_job(tmp_path, name: str, body: str):
    """A job whose run is a small Python script (no Lightning): for the launcher and fork server alone."""
    from lightning_scaling.sweep.launchers import Job
    from lightning_scaling.sweep.plan import RunSpec

    script = tmp_path / f"{name}.py"
    script.write_text(body)
    return Job(spec=RunSpec(name, 1.0, None, {}, 0, 0), attempt=1, command=[sys.executable, str(script)],
               env_overrides={}, log_path=tmp_path / f"{name}.log")


def _sleeper_job(tmp_path, name: str, seconds: float):
    return _script_job(tmp_path, name, f"import time\ntime.sleep({seconds})\n")


@pytest.mark.slow
def test_fork_server_wakes_the_controller_on_exit_and_its_death_fails_runs_not_the_sweep(tmp_path):
    import time

    launcher = LocalLauncher(slots=2, fork_server=True)
    try:
        launcher.submit(_sleeper_job(tmp_path, "quick", 0.3))
        assert launcher._server is not None  # the run was forked, not started as a new process
        t0 = time.time()
        finished = []
        while not finished and time.time() - t0 < 30:
            launcher.wait(5.0)  # returns when the server reports the exit, not after 5 s
            finished = launcher.poll()
        assert [(job.spec.run_id, rc) for job, rc in finished] == [("quick", 0)]
        assert time.time() - t0 < 4.0

        slow = _sleeper_job(tmp_path, "slow", 60)
        launcher.submit(slow)
        launcher._server.proc.kill()  # the server dies: its children die with it (PDEATHSIG)
        t0 = time.time()
        finished = []
        while not finished and time.time() - t0 < 30:
            launcher.wait(0.1)
            finished = launcher.poll()
        assert [(job.spec.run_id, rc) for job, rc in finished] == [("slow", -9)]
        # the next run starts as a new process instead
        launcher.submit(_sleeper_job(tmp_path, "after", 0.1))
        assert launcher._server is None and not launcher.fork_server
        job = launcher.running()[0]
        assert job.process is not None and job.process.wait(timeout=30) == 0
    finally:
        launcher.shutdown(grace=1.0)


@pytest.mark.slow
def test_a_forked_run_starts_like_a_fresh_process_and_a_printing_import_cannot_break_the_server(tmp_path, monkeypatch):
    # a module that prints when imported, preloaded by the server: its output must not reach the protocol
    (tmp_path / "noisy_module.py").write_text("print('hello from an import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    import noisy_module  # noqa: F401  (the server preloads what the controller imported)

    body = (
        "import gc, json, signal, sys\n"
        "json.dump({'gc': gc.isenabled(), 'sigchld': signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,\n"
        "           'wakeup_fd': signal.set_wakeup_fd(-1)}, open(sys.argv[0] + '.json', 'w'))\n"
    )
    launcher = LocalLauncher(slots=1, fork_server=True)
    monkeypatch.setattr("lightning_scaling.sweep.launchers.local._PRELOAD", ("noisy_module",))
    try:
        job = _script_job(tmp_path, "fresh", body)
        launcher.prepare(job.command)
        launcher.submit(job)
        assert launcher._server is not None and launcher.fork_server  # forked, not a fallback subprocess
        assert job.process is not None and job.process.wait(timeout=60) == 0
    finally:
        launcher.shutdown(grace=1.0)
    seen = json.loads((tmp_path / "fresh.py.json").read_text())
    # the server imports with the collector off and installs a SIGCHLD wake-up; a run must not inherit either
    assert seen == {"gc": True, "sigchld": True, "wakeup_fd": -1}
