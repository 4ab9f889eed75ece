"""What the probe and the retry decisions catch before the study's runs (issue 19 item 5, issue 20 item 5).

Unit tests of sweep/probe_checks.py and sweep/completeness.py, then slow ones that start the
test project (tests/helpers/sweep_script.py) through run_sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_scaling import run_sweep
from lightning_scaling.sweep import SweepPlan
from lightning_scaling.sweep.completeness import mark_incomplete, missing_sizes
from lightning_scaling.sweep.controller import SweepError
from lightning_scaling.sweep.probe_checks import sizes_too_large
from lightning_scaling.sweep.result import SweepResult

HELPERS = Path(__file__).parents[1] / "helpers"
REPO = Path(__file__).parents[2]
F = [0.125, 0.25, 0.5, 1.0]


def test_sizes_over_the_dataset_name_the_sizes_and_the_length():
    plan = SweepPlan.build(sizes=[64, 128, 256, 10000])
    assert sizes_too_large(plan, 4096) == ("sizes=[10000] exceed the training set, which has 4096 samples (seen by "
                                           "the probe); use sizes up to 4096, or fractions=")
    assert sizes_too_large(plan, 10000) is None
    assert sizes_too_large(SweepPlan.build(fractions=F), 10) is None


def test_a_size_without_a_finished_run_makes_the_result_incomplete():
    plan = SweepPlan.build(fractions=F)
    records = [{"fraction": f, "size": None, "status": "ok" if f != 0.5 else "failed"} for f in F]
    result = SweepResult(runs=records)
    assert result.complete
    note = mark_incomplete(result, plan, missing_sizes(plan, records))
    assert not result.complete and result.missing_sizes == [0.5]
    assert note in result.notes and "1 of 4 planned data fractions have no finished run (0.5)" in note
    assert "incomplete study" in result.summary()
    assert mark_incomplete(SweepResult(runs=records), plan, []) is None


def _project(monkeypatch, tmp_path, **sweep):
    """The test project's own ScalingSweep arguments (it reads them from LS_TEST_SWEEP)."""
    monkeypatch.setenv("LS_TEST_SWEEP", json.dumps({"monitor": "val_err", "bootstrap": 50, **sweep}))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return ["--root", str(tmp_path), "--epochs", "1"]


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]


@pytest.mark.slow
def test_run_sweep_on_a_script_without_a_scaling_sweep_says_so(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import sys\nfor i in range(3):\n    print(f'\\r{i}it [00:00, 9.9it/s]', file=sys.stderr)\n")
    with pytest.raises(SweepError, match=r"train\.py ended without a record \(exit code 0\): the script adds no "
                                         r"ScalingSweep") as info:
        run_sweep(script, fractions=F, sweep_dir=tmp_path / "sw")
    assert "it/s" not in str(info.value)  # the log's progress bars are no explanation
    assert not (tmp_path / "sw" / "runs").exists() or not _records(tmp_path / "sw")


@pytest.mark.slow
def test_arguments_that_differ_from_the_scripts_are_named_by_the_probe(tmp_path, monkeypatch):
    args = _project(monkeypatch, tmp_path, fractions=F, seeds=1)
    with pytest.raises(SweepError, match=r"differ from the controller's \(seeds: \[0, 1\] -> \[0\] \(the controller"):
        run_sweep(HELPERS / "sweep_script.py", args=args, fractions=F, seeds=2, monitor="val_err",
                  sweep_dir=tmp_path / "sw")
    assert not (tmp_path / "sw" / "runs").exists() or not _records(tmp_path / "sw")


@pytest.mark.slow
def test_a_run_outside_the_scripts_plan_is_not_retried(tmp_path, monkeypatch):
    args = _project(monkeypatch, tmp_path, fractions=F)
    result = run_sweep(HELPERS / "sweep_script.py", args=args, fractions=F, grid={"hidden": [8]},
                       monitor="val_err", sweep_dir=tmp_path / "sw", probe=False, max_retries=2, slots=2)
    records = _records(tmp_path / "sw")
    assert len(records) == 4 and all(r["status"] == "failed" for r in records)
    assert all(len(r["attempts"]) == 1 and "grid: {} -> {'hidden': [8]}" not in r["reason"] for r in records)
    assert all("is not in this script's sweep plan" in r["reason"] and "grid: {'hidden': [8]} -> {}" in r["reason"]
               for r in records)
    assert not result.complete


@pytest.mark.slow
def test_sizes_larger_than_the_dataset_fail_in_the_probe(tmp_path, monkeypatch):
    sizes = [64, 128, 256, 10000]  # the project's training set has 4096 samples
    args = _project(monkeypatch, tmp_path, sizes=sizes)
    with pytest.raises(SweepError, match=r"sizes=\[10000\] exceed the training set, which has 4096 samples"):
        run_sweep(HELPERS / "sweep_script.py", args=args, sizes=sizes, monitor="val_err", sweep_dir=tmp_path / "sw")
    assert not (tmp_path / "sw" / "runs").exists() or not _records(tmp_path / "sw")


@pytest.mark.slow
def test_a_data_size_lost_to_failures_makes_the_study_incomplete(tmp_path, monkeypatch):
    args = _project(monkeypatch, tmp_path, fractions=F, max_retries=0)
    monkeypatch.setenv("LS_TEST_FAIL", json.dumps({"kill_fraction": 0.5}))
    result = run_sweep(HELPERS / "sweep_script.py", args=args, fractions=F, monitor="val_err", bootstrap=50,
                       max_retries=0, sweep_dir=tmp_path / "sw", slots=2)
    assert not result.complete and result.missing_sizes == [0.5]
    saved = json.loads((tmp_path / "sw" / "result.json").read_text())
    assert any(n.startswith("incomplete study: 1 of 4 planned data fractions") for n in saved["notes"])


@pytest.mark.slow
def test_a_model_built_before_the_run_seed_is_named_by_the_probe(tmp_path, monkeypatch, capfd):
    args = _project(monkeypatch, tmp_path, fractions=F)
    monkeypatch.setenv("LS_TEST_UNSEEDED", "1")
    run_sweep(HELPERS / "sweep_script.py", args=args, fractions=F, monitor="val_err", sweep_dir=tmp_path / "sw",
              seeds=1, slots=2)
    err = capfd.readouterr().err
    assert "warning: the model was built before the run seed (0) was set" in err
    assert "current_run().seed_everything()" in err
    monkeypatch.delenv("LS_TEST_UNSEEDED")
    run_sweep(HELPERS / "sweep_script.py", args=args, fractions=F, monitor="val_err", sweep_dir=tmp_path / "sw2",
              seeds=1, slots=2)
    assert "the model was built before the run seed" not in capfd.readouterr().err
