"""End-to-end sweeps of a small real model, each started as the user would: ``python script.py``.

Every test starts the controller as a subprocess with a timeout, so a hang fails the test instead
of stalling CI. The runs themselves are child processes of that controller on CPU slots.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.procs import default_sigint, interrupt
from helpers.runif import RunIf

from lightning_scaling.sweep.record import RUN_RECORD_KEYS

HELPERS = Path(__file__).parent / "helpers"
REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.slow

# every key of a run record (sweep/record.py) but those of adaptive rungs and failed runs
RUN_KEYS = set(RUN_RECORD_KEYS) - {"base_id", "rung", "budget", "budget_limit", "resumed_from",
                                   "cumulative_wall_time_s", "checkpoint", "attempts"}


def _env(sweep: dict, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_"))}
    env.update({"LS_TEST_SWEEP": json.dumps(sweep), "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg",
                "OMP_NUM_THREADS": "1", **extra})
    return env


def _run(tmp_path: Path, sweep: dict, *, script: str = "sweep_script.py", args=(), timeout=400, **extra):
    cmd = [sys.executable, str(HELPERS / script), *args]
    if script == "sweep_script.py":
        cmd += ["--root", str(tmp_path)]
    return subprocess.run(cmd, env=_env(sweep, **extra), cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout)


def _records(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))}


def _leftovers(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


SWEEP = {"fractions": [0.125, 0.25, 0.5, 1.0], "monitor": "val_err", "bootstrap": 200}


def test_two_slots_in_parallel_fit_a_law_and_resume_is_a_no_op(tmp_path):
    sweep = {**SWEEP, "grid": {"hidden": [8, 64]}, "slots": 2}
    proc = _run(tmp_path, sweep)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "sweep_script"
    assert "plan: 8 runs = 4 data fractions" in proc.stderr
    assert "2 local slots" in proc.stderr
    recs = _records(folder)
    assert len(recs) == 8 and all(r["status"] == "ok" for r in recs.values())
    for r in recs.values():
        assert set(r) >= RUN_KEYS
        assert r["num_samples"] == round(r["fraction"] * 4096)
        assert r["train_size"] == r["num_samples"] and r["size_unit"] == "samples"
    assert {r["params"]["hidden"]: r["trainable_params"] for r in recs.values()} == {8: 300, 64: 2372}
    spans = sorted((r["started_at"], r["ended_at"]) for r in recs.values())
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "no two runs overlapped: slots ran serially"

    result = json.loads((folder / "result.json").read_text())
    assert result["law"]["beta"] < 0
    assert result["law"]["intervals"]["beta"][0] <= result["law"]["beta"] <= result["law"]["intervals"]["beta"][1]
    assert len(result["best"]) == 4 and len(result["runs"]) == 8
    assert set(result["per_grid"]) == {"hidden=8", "hidden=64"}
    assert (folder / "learning_curve.png").stat().st_size > 10_000
    printed = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))[7:])
    assert printed["law"]["beta"] == result["law"]["beta"]

    again = _run(tmp_path, sweep)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming: 8 runs already finished, 0 to run" in again.stderr
    assert _records(folder) == recs  # nothing re-ran


def test_failures_are_retried_recorded_and_the_law_still_fitted(tmp_path):
    sweep = {**SWEEP, "fractions": [0.0625, 0.125, 0.25, 0.5, 1.0], "grid": {"hidden": [8, 64]}, "slots": 2,
             "max_retries": 1}
    fail = {"raise_once": 0.5, "nan_hidden": 8, "kill_fraction": 0.0625}
    # runs as plain subprocesses here (no fork server), so both ways of starting a run meet failures
    proc = _run(tmp_path, sweep, LS_TEST_FAIL=json.dumps(fail), LS_TEST_NO_FORK="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = list(_records(tmp_path / "scaling_sweeps" / "sweep_script").values())
    by = {(r["fraction"], r["params"]["hidden"]): r for r in recs}
    assert len(by) == 10
    # an exception on the first attempt: retried, and the retry's record stands
    assert by[(0.5, 64)]["status"] == "ok" and by[(0.5, 64)]["attempt"] == 2
    # NaN loss: diverged, with the reason, and not retried
    nan = by[(0.25, 8)]
    assert nan["status"] == "diverged" and "nan" in nan["reason"].lower() and nan["attempt"] == 1
    # a run killed by a signal (as by the OOM killer): failed after max_retries, every attempt's reason kept
    killed = by[(0.0625, 64)]
    assert killed["status"] == "failed" and len(killed["attempts"]) == 2
    assert "exit code -9" in killed["reason"]
    result = json.loads((tmp_path / "scaling_sweeps" / "sweep_script" / "result.json").read_text())
    assert result["n_failed"] == 2 and result["n_diverged"] == 4
    assert result["law"] is not None and len(result["law"]["sizes"]) == 4  # the four sizes that trained


def test_controller_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path):
    sweep = {**SWEEP, "slots": 1}
    env = _env(sweep, LS_TEST_FAIL=json.dumps({"sleep": 2}))
    marker = str(tmp_path)
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", marker]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "scaling_sweeps" / "sweep_script" / "runs"
    deadline = time.time() + 200
    while time.time() < deadline and len(list(runs.glob("*.json"))) < 1:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _records(runs.parent)
    assert 1 <= len(before) < 4
    time.sleep(1.0)
    assert not _leftovers(marker), "runs outlived their killed controller"

    done = _run(tmp_path, sweep)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming: {len(before)} runs already finished" in done.stderr
    after = _records(runs.parent)
    assert len(after) == 4 and all(r["status"] == "ok" for r in after.values())
    for run_id, rec in before.items():
        assert after[run_id] == rec  # finished runs were not run again


def test_ctrl_c_stops_runs_cleanly_and_the_sweep_resumes(tmp_path):
    sweep = {**SWEEP, "slots": 2}
    env = _env(sweep, LS_TEST_FAIL=json.dumps({"sleep": 30}))
    marker = str(tmp_path)
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", marker]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_sigint)
    logs = tmp_path / "scaling_sweeps" / "sweep_script" / "logs"
    deadline = time.time() + 120
    while time.time() < deadline and len([p for p in logs.glob("*.log") if p.stem != "probe"]) < 2:
        time.sleep(0.2)
    time.sleep(1.0)
    err = interrupt(proc)
    assert proc.returncode != 0
    assert "interrupted: stopping runs" in err
    time.sleep(0.5)
    assert not _leftovers(marker)
    assert not _records(logs.parent)  # interrupted runs leave no record, so a resume runs them


def test_ddp_configured_trainer_ends_on_every_rank_without_hanging(tmp_path):
    sweep = {**SWEEP, "slots": 1, "bootstrap": 100}
    proc = _run(tmp_path, sweep, LS_TEST_DDP="1", timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT" in proc.stdout
    assert "RANK 1 has result True" in proc.stdout
    recs = _records(tmp_path / "scaling_sweeps" / "sweep_script")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())


def test_datafraction_wrapped_by_the_user_is_used(tmp_path):
    proc = _run(tmp_path, {**SWEEP, "slots": 2, "bootstrap": 0}, LS_TEST_WRAP="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = _records(tmp_path / "scaling_sweeps" / "sweep_script")
    assert sorted(r["num_samples"] for r in recs.values()) == [512, 1024, 2048, 4096]


def test_unknown_monitor_stops_before_any_run(tmp_path):
    proc = _run(tmp_path, {**SWEEP, "monitor": "val_acc", "slots": 2})
    assert proc.returncode != 0
    assert "is not among the logged metrics" in proc.stderr and "'val_err'" in proc.stderr
    assert not (tmp_path / "scaling_sweeps" / "sweep_script" / "runs").exists()


def test_lightning_cli_script_with_a_grid_over_a_model_argument(tmp_path):
    sweep = {**SWEEP, "grid": {"model.hidden": [8, 64]}, "slots": 2, "sweep_dir": str(tmp_path / "sweep"),
             "bootstrap": 100}
    proc = _run(tmp_path, sweep, script="cli_sweep_script.py",
                args=["fit", f"--trainer.default_root_dir={tmp_path}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = _records(tmp_path / "sweep")
    assert len(recs) == 8
    assert {r["params"]["model.hidden"]: r["trainable_params"] for r in recs.values()} == {8: 300, 64: 2372}
    logs = "".join(p.read_text() for p in (tmp_path / "sweep" / "logs").glob("*.log"))
    assert "--model.hidden=8" in logs and "--model.hidden=64" in logs
    assert "HIDDEN 64 SEED 0" in logs


@RunIf(lightning=True)
def test_lightning_pytorch_namespace(tmp_path):
    # the project imports lightning.pytorch; the package's classes for it are accepted by its Trainer
    proc = _run(tmp_path, {**SWEEP, "slots": 2, "bootstrap": 100}, LS_TEST_NAMESPACE="lightning", LS_TEST_WRAP="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = _records(tmp_path / "scaling_sweeps" / "sweep_script")
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs.values())
    assert all("lightning.pytorch" in r["versions"] for r in recs.values())
    assert sorted(r["num_samples"] for r in recs.values()) == [512, 1024, 2048, 4096]


def test_run_sweep_from_a_program_or_notebook(tmp_path, monkeypatch):
    from lightning_scaling import run_sweep

    folder = tmp_path / "nb"
    # the script's own ScalingSweep must describe the same study as run_sweep's arguments
    monkeypatch.setenv("LS_TEST_SWEEP", json.dumps({**SWEEP, "sweep_dir": str(folder)}))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    result = run_sweep(HELPERS / "sweep_script.py", args=["--root", str(tmp_path)], fractions=SWEEP["fractions"],
                       monitor="val_err", slots=2, sweep_dir=folder)
    assert result.law is not None and result.law.params["beta"] < 0
    assert len(result.runs) == 4 and all(r["status"] == "ok" for r in result.runs)
    assert json.loads((folder / "result.json").read_text())["law"]["beta"] == result.law.params["beta"]
    with pytest.raises(FileNotFoundError, match="not found"):
        run_sweep(tmp_path / "missing.py", fractions=SWEEP["fractions"])


def test_adaptive_study_halves_resumes_from_checkpoints_and_restarts_without_redoing_work(tmp_path):
    sweep = {"fractions": [0.0625, 0.125, 0.25, 0.5, 1.0], "grid": {"hidden": [8, 64]}, "monitor": "val_err",
             "bootstrap": 100, "slots": 2, "strategy": {"target": {"error_at": 8192}, "tolerance": 0.01,
                                                           "budget": 1000, "rungs": [0.5, 1.0], "eta": 2}}
    proc = _run(tmp_path, sweep, args=["--epochs", "4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "sweep_script"
    assert "adaptive study stopped:" in proc.stderr
    recs = _records(folder)
    rung0 = {k: r for k, r in recs.items() if r.get("rung") == 0}
    final = {k: r for k, r in recs.items() if r.get("rung") == 1}
    assert rung0 and final and all(r["budget"] == 0.5 and r["epochs"] == 2 for r in rung0.values())
    for r in final.values():  # a survivor continued from its rung-0 checkpoint: epochs 2 -> 4, not 0 -> 4
        assert r["resumed_from"].endswith(f"{r['run_id']}_r0.ckpt") and r["epochs"] == 4
        assert r["steps"] == 2 * rung0[f"{r['run_id']}_r0"]["steps"]
    adaptive = json.loads((folder / "adaptive.json").read_text())
    assert adaptive["stop_reason"] and adaptive["device_seconds"] > 0
    result = json.loads((folder / "result.json").read_text())
    assert result["adaptive"]["stop_reason"] == adaptive["stop_reason"] and result["law"] is not None

    # a restart after the study ended runs nothing; after losing one final record it runs only that rung again
    again = _run(tmp_path, sweep, args=["--epochs", "4"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert _records(folder) == recs
    lost = sorted(final)[0]
    (folder / "runs" / f"{lost}.json").unlink()
    third = _run(tmp_path, sweep, args=["--epochs", "4"])
    assert third.returncode == 0, third.stderr[-3000:]
    assert "launching 1 runs" in third.stderr
    after = _records(folder)
    assert set(after) == set(recs)
    assert {k: r for k, r in after.items() if k != lost} == {k: r for k, r in recs.items() if k != lost}
    assert after[lost]["resumed_from"] and after[lost]["epochs"] == 4


def test_adaptive_study_on_a_step_budget_starts_one_seed_and_adds_seeds_as_full_runs(tmp_path):
    # the digits example's kind of Trainer: max_steps, validation every N steps; 4 sizes = the initial ones,
    # so once they ran the only candidates left are further seeds
    sweep = {"fractions": [0.0625, 0.125, 0.25, 0.5], "grid": {"hidden": [8, 64]}, "seeds": 2,
             "monitor": "val_err", "bootstrap": 100, "slots": 2,
             "strategy": {"target": {"error_at": 8192}, "tolerance": 1e-4, "budget": 1000, "rungs": [0.5, 1.0],
                          "eta": 2}}
    proc = _run(tmp_path, sweep, args=["--steps", "40"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "sweep_script"
    recs = _records(folder)
    adaptive = json.loads((folder / "adaptive.json").read_text())
    rung0 = [r for r in recs.values() if r.get("rung") == 0]
    assert rung0 and all(r["seed"] == 0 and r["steps"] == 20 and r["budget_limit"] == "max_steps=20"
                         for r in rung0)
    resumed = [r for r in recs.values() if r.get("rung") == 1 and r["seed"] == 0]
    assert {r["fraction"] for r in resumed} == set(sweep["fractions"])
    assert all(r["resumed_from"] and r["steps"] == 40 for r in resumed)
    # every second seed the study bought reran only its size's survivors, from scratch to the end
    assert sorted(adaptive["added_seeds"]) == sweep["fractions"]
    added = [r for r in recs.values() if r["seed"] == 1]
    assert all(r["rung"] == 1 and r["resumed_from"] is None and r["steps"] == 40 for r in added)
    for f in sweep["fractions"]:
        assert sorted(str(r["params"]) for r in added if r["fraction"] == f) == \
            sorted(str(r["params"]) for r in resumed if r["fraction"] == f)
    assert "every seed" in adaptive["stop_reason"]
    assert all(0 < r["wall_time_s"] < 600 for r in recs.values())
