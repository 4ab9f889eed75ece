"""W&B reporting: what lands in the offline run files, and that W&B failures never cost a sweep.

W&B runs offline with its data, cache and config folders in the test's temp folder; the assertions
read the ``run-*.wandb`` record logs (``helpers/wandb_records.py``), i.e. the values W&B would sync.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import math
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import wandb
from helpers.wandb_records import OfflineRun, offline_runs, one_run, wait_for

from lightning_scaling import ScalingSweep, WandbReporter
from lightning_scaling.reporting import ENV_WANDB
from lightning_scaling.reporting.wandb import ENV_WANDB_MODE, default_group
from lightning_scaling.sweep import SweepResult

SECRET = "sentinel-api-key-0123456789abcdef"  # the API key conftest.py sets


def _md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_reporter_logs_runs_curve_figure_summary_and_artifact(wandb_dirs, study):
    plan, store, records, analyse, result = study.plan, study.store, study.records, study.analyse, study.result
    reporter = WandbReporter(project="ls-test", tags=["unit"], live_interval=0)
    reporter.start("digits", plan, store, analyse, records[: len(records) // 2])
    wait_for(lambda: reporter.live_updates == 1)
    reporter.update(records)
    wait_for(lambda: reporter.live_updates == 2)
    reporter.finish(result, store)

    run = one_run(wandb_dirs)
    group = default_group("digits", store.root)  # the name and a hash of the folder: unique per study
    assert (run.group, run.job_type, run.name) == (group, "scaling-sweep", "digits")
    assert set(run.tags) == {"lightning-scaling", "unit"}
    assert run.config["scaling_sweep"]["n_runs"] == len(plan.runs)
    assert run.config["scaling_sweep"]["grid"] == {"hidden": [16, 64]}
    assert run.exit_code == 0

    # two live updates, then the final one: the curve forms while runs finish
    logged = [h for h in run.history if "scaling/runs" in h]
    assert [len(run.table(h["scaling/runs"])["data"]) for h in logged] == [len(records) // 2, len(records),
                                                                            len(records)]
    cols, rows = result.runs_table()
    table = run.table(run.last("scaling/runs"))
    assert table["columns"] == cols
    assert table["data"] == json.loads(json.dumps(rows))
    assert len(table["data"]) == len(records)
    err = cols.index("log10_error")
    assert all(math.isclose(r[err], math.log10(r[cols.index("error")])) for r in table["data"])

    curve = run.table(run.last("scaling/curve"))
    c = {name: [row[i] for row in curve["data"]] for i, name in enumerate(curve["columns"])}
    assert max(c["train_size"]) == pytest.approx(10 * 100_000)  # extrapolated to 10x the data
    assert all(lo <= f <= hi for lo, f, hi in zip(c["lower"], c["fit"], c["upper"]))
    assert np.allclose(np.log10(c["fit"]), c["log10_fit"])
    # every chart stays under W&B's 1,500-point sampling limit
    for key in ("scaling/learning_curve_table", "scaling/runs_chart_table", "scaling/per_grid_chart_table"):
        assert 0 < len(run.table(run.last(key))["data"]) <= 1500, key

    figure = run.last("scaling/figure")
    assert figure["_type"] == "image-file"
    assert (run.files / figure["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the summary holds every fitted parameter and interval, equal to result.json
    saved = json.loads(store.result_path.read_text())
    summary = {k.removeprefix("scaling/"): v for k, v in run.summary.items() if k.startswith("scaling/")}
    expected = result.flat_summary()
    assert {k: summary[k] for k in expected} == expected
    assert summary["law/beta"] == saved["law"]["beta"]
    assert [summary["law/beta_lower"], summary["law/beta_upper"]] == saved["law"]["intervals"]["beta"]
    assert summary["model_size_law/beta_p"] == saved["model_size_law"]["beta_p"]
    assert summary["predictions/data_needed/0.05/value"] == saved["predictions"]["data_needed"]["0.05"]["value"]
    assert summary["shared_exponent/p_value"] == saved["shared_exponent"]["p_value"]

    (art,) = [a for a in run.artifacts if a.type == "scaling-result"]
    assert art.name == f"{group}-result"
    contents = {e.path: e for e in art.manifest.contents}
    assert {"result.json", "runs.csv", "curve.csv", "learning_curve.png"} <= set(contents)
    assert contents["result.json"].digest == _md5_b64(store.result_path)


def test_wandb_init_failure_is_a_warning_and_turns_wandb_off_in_the_runs(wandb_dirs, study, monkeypatch):
    plan, store, records, analyse, result = study.plan, study.store, study.records, study.analyse, study.result
    before = store.result_path.read_bytes()

    def refuse(*args, **kwargs):
        raise wandb.errors.CommError("api.wandb.ai unreachable")

    monkeypatch.setattr(wandb, "init", refuse)
    reporter = WandbReporter(project="ls-test")
    with pytest.warns(UserWarning, match=r"wandb.init failed.*CommError: api.wandb.ai unreachable.*results stay"):
        reporter.start("digits", plan, store, analyse, records)
    env = reporter.child_env(plan.runs[0])
    # runs must not each wait on a W&B that the controller could not reach
    assert env == {ENV_WANDB: "0", ENV_WANDB_MODE: "disabled", "WANDB_MODE": "disabled"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reporter.update(records)
        reporter.finish(result, store)
    assert store.result_path.read_bytes() == before
    assert offline_runs(wandb_dirs) == []


def test_wandb_not_installed_is_a_warning_naming_the_install(study, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an absent package looks like to import
    reporter = WandbReporter()
    with pytest.warns(UserWarning, match=r"wandb is not installed \(pip install wandb\)"):
        reporter.start("digits", study.plan, study.store, study.analyse, study.records)
    assert reporter.child_env(study.plan.runs[0])["WANDB_MODE"] == "disabled"
    reporter.finish(study.result, study.store)
    assert SweepResult.load(study.store.root).law is not None


def test_upload_failure_mid_sweep_warns_once_and_the_rest_still_lands(wandb_dirs, study, monkeypatch):
    plan, store, records, analyse, result = study.plan, study.store, study.records, study.analyse, study.result
    reporter = WandbReporter(project="ls-test", live_interval=0)
    reporter.start("digits", plan, store, analyse)

    def broken_log(*args, **kwargs):
        raise ConnectionError("upload failed")

    monkeypatch.setattr(reporter._run, "log", broken_log)
    reporter.update(records)
    with pytest.warns(UserWarning, match="logging the final result.*ConnectionError") as caught:
        reporter.finish(result, store)
    assert sum("logging the final result" in str(w.message) for w in caught) == 1
    run = one_run(wandb_dirs)
    assert [a.type for a in run.artifacts] == ["scaling-result"]  # the artifact still went out
    assert run.exit_code == 0
    assert SweepResult.load(store.root).law is not None


def test_live_updates_never_block_the_sweep_and_only_the_newest_state_is_published(wandb_dirs, study):
    plan, store, records, analyse, result = study.plan, study.store, study.records, study.analyse, study.result
    reporter = WandbReporter(project="ls-test", live_interval=0)
    entered, release = threading.Event(), threading.Event()
    published: list[int] = []

    def slow_publish(recs):
        published.append(len(recs))
        entered.set()
        release.wait(30)

    reporter._publish_live = slow_publish
    reporter.start("digits", plan, store, analyse)
    reporter.update(records[:2])
    assert entered.wait(30)
    # the controller goes on while W&B is busy: these calls return at once, and pile up as one
    for n in (4, 6, 8):
        reporter.update(records[:n])
    assert published == [2]
    release.set()
    wait_for(lambda: len(published) == 2)
    reporter.finish(result, store)
    assert published == [2, 8]


def test_child_env_groups_runs_and_names_them_by_run_id(study):
    plan = study.plan
    reporter = WandbReporter(group="width-study", tags=["mlp"], log_runs=True)
    env = reporter.child_env(plan.runs[3])
    assert env == {ENV_WANDB: "1", "WANDB_RUN_GROUP": "width-study", "WANDB_JOB_TYPE": "scaling-run",
                   "WANDB_NAME": plan.runs[3].run_id, "WANDB_TAGS": "lightning-scaling,mlp"}
    assert WandbReporter(log_runs=False).child_env(plan.runs[0])["WANDB_MODE"] == "disabled"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"tags": "mlp"}, TypeError, r"tags=\['mlp'\]"),
        ({"curve_points": 600}, ValueError, "curve_points"),
        ({"live_interval": -1}, ValueError, "live_interval"),
        ({"extrapolate": 0.5}, ValueError, "extrapolate"),
    ],
)
def test_bad_reporter_options_name_the_parameter(kwargs, error, match):
    with pytest.raises(error, match=match):
        WandbReporter(**kwargs)


def test_sweep_rejects_a_bad_reporter_or_target():
    with pytest.raises(TypeError, match="reporter must be a WandbReporter"):
        ScalingSweep(fractions=[0.25, 0.5, 0.75, 1.0], reporter="wandb")
    with pytest.raises(ValueError, match=r"targets must be positive.*targets=\[0.05\]"):
        ScalingSweep(fractions=[0.25, 0.5, 0.75, 1.0], targets=[0.0])


def test_the_same_tables_land_in_the_sweep_folder_without_wandb(study):
    store, result = study.store, study.result
    cols, rows = result.runs_table()
    with (store.root / "runs.csv").open() as f:
        saved = list(csv.reader(f))
    assert saved[0] == cols
    assert [r[0] for r in saved[1:]] == [r[0] for r in rows]
    with (store.root / "curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert len(curve) == 200
    assert float(curve[-1]["train_size"]) == pytest.approx(1e6)
    assert store.figure_path.read_bytes()[:4] == b"\x89PNG"
    assert result.predictions["data_needed"]["0.05"]["reachable"] is True


# -- end to end: a real sweep, runs in child processes ------------------------------------------
HELPERS = Path(__file__).parents[1] / "helpers"
REPO = Path(__file__).parents[2]


def _sweep(tmp_path: Path, mode: str, sweep: dict, reporter: dict) -> subprocess.CompletedProcess:
    home = tmp_path / "wandb_home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_", "WANDB_"))}
    env.update({
        "LS_TEST_SWEEP": json.dumps(sweep), "LS_TEST_WANDB": mode, "LS_TEST_WANDB_REPORTER": json.dumps(reporter),
        "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true",
        "WANDB_CACHE_DIR": str(home / "cache"), "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_DATA_DIR": str(home / "data"), "WANDB_API_KEY": SECRET,
    })
    cmd = [sys.executable, str(HELPERS / "sweep_script.py"), "--root", str(tmp_path), "--epochs", "3"]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400)


def _check_child_runs(runs: list[OfflineRun], records: dict[str, dict], group: str) -> None:
    children = {r.name: r for r in runs if r.job_type == "scaling-run"}
    assert set(children) == set(records)
    for run_id, child in children.items():
        rec = records[run_id]
        assert child.group == group
        assert "lightning-scaling" in child.tags
        cfg = child.config["scaling"]
        assert (cfg["run_id"], cfg["fraction"], cfg["grid"], cfg["seed"]) == (
            run_id, rec["fraction"], rec["params"], rec["seed"])
        assert (cfg["num_samples"], cfg["trainable_params"]) == (rec["num_samples"], rec["trainable_params"])
        assert child.summary["best/val_err"] == rec["best_value"]
        assert child.summary["scaling/status"] == "ok"


def _no_secret(tmp_path: Path, proc: subprocess.CompletedProcess) -> None:
    assert SECRET not in proc.stdout + proc.stderr
    for path in (tmp_path / "scaling_sweeps").rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.slow
def test_sweep_with_a_wandb_logger_reports_every_run_and_the_curve(tmp_path):
    sweep = {"fractions": [0.125, 0.25, 0.5, 1.0], "grid": {"hidden": [8, 32]}, "monitor": "val_err",
             "bootstrap": 100, "slots": 2, "targets": [0.1]}
    proc = _sweep(tmp_path, "logger", sweep, {"live_interval": 0})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "sweep_script"
    records = {p.stem: json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")}
    assert len(records) == 8
    saved = json.loads((folder / "result.json").read_text())

    runs = offline_runs(tmp_path / "wandb")
    group = default_group("sweep_script", folder)
    _check_child_runs(runs, records, group)
    (controller,) = [r for r in runs if "scaling_sweep" in r.config]
    # the script's own WandbLogger run receives the study, in the study's group
    assert controller.config["scaling_sweep"]["group"] == group
    assert (controller.group, controller.job_type) == (group, "scaling-sweep")
    table = controller.table(controller.last("scaling/runs"))
    assert {row[0] for row in table["data"]} == set(records)
    assert controller.summary["scaling/law/beta"] == saved["law"]["beta"]
    assert controller.summary["scaling/law/gamma_upper"] == saved["law"]["intervals"]["gamma"][1]
    needed = saved["predictions"]["data_needed"]["0.1"]
    assert controller.summary["scaling/predictions/data_needed/0.1/value"] == needed["value"]
    (art,) = [a for a in controller.artifacts if a.type == "scaling-result"]
    digests = {e.path: e.digest for e in art.manifest.contents}
    assert digests["result.json"] == _md5_b64(folder / "result.json")
    _no_secret(tmp_path, proc)


@pytest.mark.slow
def test_sweep_with_a_reporter_and_no_logger_starts_its_own_wandb_runs(tmp_path):
    sweep = {"fractions": [0.125, 0.25, 0.5, 1.0], "monitor": "val_err", "bootstrap": 100, "slots": 2}
    proc = _sweep(tmp_path, "reporter", sweep, {"live_interval": 0})
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "scaling_sweeps" / "sweep_script"
    records = {p.stem: json.loads(p.read_text()) for p in (folder / "runs").glob("*.json")}
    runs = offline_runs(tmp_path / "wandb")
    group = default_group("sweep_script", folder)
    _check_child_runs(runs, records, group)
    (controller,) = [r for r in runs if r.job_type == "scaling-sweep"]
    assert (controller.group, controller.exit_code) == (group, 0)
    assert len(runs) == len(records) + 1  # the probe reports nothing
    assert controller.summary["scaling/n_ok"] == 4
    _no_secret(tmp_path, proc)


def test_a_wandb_reporter_is_the_reporter_the_controller_calls():
    # the controller types against the Reporter protocol and never imports reporting: WandbReporter must
    # keep every member the protocol names, with parameters the controller can call the same way
    import inspect

    from lightning_scaling.sweep.reporter import Reporter

    reporter: Reporter = WandbReporter(live_bootstrap=50)  # checked by mypy where tests are type-checked
    assert isinstance(reporter, Reporter) and reporter.live_bootstrap == 50
    for name in ("start", "child_env", "update", "finish", "close"):
        expected = inspect.signature(getattr(Reporter, name)).parameters.values()
        actual = inspect.signature(getattr(WandbReporter, name)).parameters.values()
        assert [(p.name, p.kind, p.default is p.empty) for p in actual] == \
            [(p.name, p.kind, p.default is p.empty) for p in expected], name
    assert not isinstance(object(), Reporter)
