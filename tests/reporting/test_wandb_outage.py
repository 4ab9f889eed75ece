"""W&B failing never costs the study (issue 20, item 1): unreachable or unauthenticated, the study starts
at once, runs every run offline, keeps its results and says once how to ``wandb sync`` them.

Every server here is a local socket on 127.0.0.1 (``WANDB_BASE_URL``): one that refuses connections
(a closed port), one that accepts and never answers, and an HTTP server that answers 404 (for the
missing API key). No traffic leaves the machine; ``HOME`` is a temp folder so no real key is read.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb
from helpers.wandb_records import offline_runs

from lightning_scaling import WandbReporter
from lightning_scaling.reporting.connect import open_run, unreachable
from lightning_scaling.reporting.wandb import ENV_WANDB_MODE

HELPERS = Path(__file__).parents[1] / "helpers"
REPO = Path(__file__).parents[2]
KEY = "k" * 40


@contextlib.contextmanager
def server(kind: str) -> Iterator[str]:
    """A local W&B server URL: "refuse" (nothing listens), "hang" (accepts, never answers), "http" (404s)."""
    if kind == "refuse":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    elif kind == "hang":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(64)  # connections wait in the backlog: accepted by the kernel, never read
            yield f"http://127.0.0.1:{s.getsockname()[1]}"
    else:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """W&B in its default (online) mode, with its folders and HOME in the temp folder."""
    for var in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(var)
    home = tmp_path / "home"
    for var, sub in (("HOME", ""), ("WANDB_DIR", "wandb"), ("WANDB_CONFIG_DIR", "config"),
                     ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv(ENV_WANDB_MODE, raising=False)
    wandb.teardown()
    yield home
    wandb.teardown()


@pytest.mark.parametrize("kind", ["refuse", "hang"])
def test_an_unreachable_server_is_found_within_seconds(kind):
    with server(kind) as url:
        t0 = time.monotonic()
        why = unreachable(url, timeout=2.0)
        assert why is not None and url in why
        assert time.monotonic() - t0 < 10
    with server("http") as url:
        assert unreachable(url) is None  # any HTTP answer (here 404) is a server


@pytest.mark.parametrize(("kind", "key"), [("refuse", KEY), ("hang", KEY), ("http", "")])
def test_the_run_starts_offline_when_wandb_cannot_be_reached_or_has_no_key(wandb_env, monkeypatch, kind, key):
    monkeypatch.setenv("WANDB_API_KEY", key)
    with server(kind) as url:
        monkeypatch.setenv("WANDB_BASE_URL", url)
        t0 = time.monotonic()
        run, why = open_run({"project": "ls-test"})
        elapsed = time.monotonic() - t0
        run.finish()
    assert why is not None, "the run should have gone offline"
    assert run.settings.mode == "offline"
    assert elapsed < 30  # wandb.init alone waits 120+ s here
    assert offline_runs(wandb_env / "wandb")


def test_the_reporter_says_once_how_to_sync_and_its_runs_go_offline_too(wandb_env, monkeypatch, study):
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    with server("refuse") as url, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setenv("WANDB_BASE_URL", url)
        reporter = WandbReporter(project="ls-test", live_interval=0)
        reporter.start("digits", study.plan, study.store, study.analyse, study.records)
        env = reporter.child_env(study.plan.runs[0])
        reporter.finish(study.result, study.store)
    messages = [str(w.message) for w in caught if "W&B" in str(w.message)]
    assert len(messages) == 1 and "did not answer" in messages[0], messages
    assert re.search(r"`wandb sync \S*wandb/offline-run-\*`", messages[0]), messages[0]
    assert env["WANDB_MODE"] == "offline" and env[ENV_WANDB_MODE] == "offline"
    assert env["WANDB_RUN_GROUP"]  # the runs still report, offline, in the study's group


# -- end to end: a real 4-run sweep, runs in child processes -------------------------------------
def _sweep(tmp_path: Path, mode: str, url: str, key: str, fractions=(0.125, 0.25, 0.5, 1.0)
           ) -> tuple[subprocess.CompletedProcess, float]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_", "WANDB_"))}
    env.update({
        "LS_TEST_SWEEP": json.dumps({"fractions": list(fractions), "monitor": "val_err", "bootstrap": 50, "slots": 2}),
        "LS_TEST_WANDB": mode, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
        "HOME": str(home), "WANDB_BASE_URL": url, "WANDB_API_KEY": key, "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
    })
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", str(tmp_path), "--epochs", "2"]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    return proc, t0


def _check_study(tmp_path: Path, proc: subprocess.CompletedProcess, t0: float, n_runs: int = 4
                 ) -> tuple[list, float]:
    """Every run finished ok with a result; the records and the seconds from the start to the first run."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "sweep_script"
    records = [json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")]
    assert len(records) == n_runs and all(r["status"] == "ok" for r in records)
    assert (folder / "result.json").exists()
    return records, min(r["started_at"] for r in records) - t0


@pytest.fixture(scope="module")
def normal_start(tmp_path_factory) -> float:
    """Seconds to the first run of the same study with W&B offline on purpose (this machine's normal)."""
    root = tmp_path_factory.mktemp("normal")
    proc, t0 = _sweep(root, "logger", "http://127.0.0.1:9", KEY)
    return _check_study(root, proc, t0)[1]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "kind", "key"), [
    ("logger-online", "http", ""),      # a WandbLogger and no API key
    ("logger-online", "refuse", KEY),   # a key, and a server that refuses connections
    ("logger-online", "hang", KEY),     # a key, and a server that accepts and never answers
    ("true", "hang", KEY),              # reporter=True alone
])
def test_a_study_with_wandb_unreachable_runs_every_run_offline(tmp_path, normal_start, mode, kind, key):
    with server(kind) as url:
        proc, t0 = _sweep(tmp_path, mode, url, key)
    records, start = _check_study(tmp_path, proc, t0)
    # the first run starts within seconds of normal (W&B's own retries took 120+ s, or crashed the study)
    assert start < normal_start + 30, f"first run after {start:.0f} s; {normal_start:.0f} s with W&B offline"
    assert proc.stderr.count("wandb sync") == 1, proc.stderr[-3000:]  # said once, with how to upload later
    runs = offline_runs(tmp_path)  # everything W&B kept, to sync later
    assert {r.name for r in runs if r.job_type == "scaling-run"} == {r["run_id"] for r in records}
    assert len([r for r in runs if r.job_type == "scaling-sweep"]) == 1
    assert len(runs) == len(records) + 1  # no probe run


@pytest.mark.slow
def test_a_resumed_study_continues_its_controller_run_and_the_probe_leaves_no_run(tmp_path):
    for fractions in ((0.125, 0.25, 0.5, 1.0), (0.0625, 0.125, 0.25, 0.5, 1.0)):  # the bigger plan resumes
        proc, _ = _sweep(tmp_path, "logger", "http://127.0.0.1:9", KEY, fractions)  # offline=True logger
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = offline_runs(tmp_path)
    controller = [r for r in runs if r.job_type == "scaling-sweep"]
    assert len(controller) == 2 and len({r.id for r in controller}) == 1  # two offline folders, one run
    assert all(r.group and r.job_type for r in runs), [(r.name, r.group, r.job_type) for r in runs]
    assert len([r for r in runs if r.job_type == "scaling-run"]) == 5  # each run once, and no probe run
