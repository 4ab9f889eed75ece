"""W&B agrees with result.json: the controller run's final summary is the final result, the study has
one group of its own and one controller run across resumes (issue 19, item 3)."""

from __future__ import annotations

import json

import pytest
from helpers.wandb_records import merged_runs, one_run, wait_for

from lightning_scaling import WandbReporter
from lightning_scaling.reporting.wandb import STATE_FILE, default_group
from lightning_scaling.sweep import SweepStore

# what the reporter logs with run.log (charts, tables, the figure): W&B keeps their last value in the summary
CHART_KEYS = {"scaling/runs", "scaling/runs_chart", "scaling/runs_chart_table", "scaling/curve",
              "scaling/learning_curve", "scaling/learning_curve_table", "scaling/per_grid_chart",
              "scaling/per_grid_chart_table", "scaling/figure"}


def _final_without_model_size_law(study):
    """The study's final result when only the narrow model finished: one grid point, so no model-size law."""
    narrow = [r for r in study.records if r["params"]["hidden"] == 16]
    final = study.analyse(narrow, bootstrap=50)
    final.save(study.store.root)
    assert final.model_size_law is None and final.law is not None
    return final


def _scaling_summary(run) -> dict:
    return {k: v for k, v in run.summary.items() if k.startswith("scaling/") and k not in CHART_KEYS}


def test_final_summary_is_exactly_the_final_result_after_a_live_model_size_law(wandb_dirs, study):
    assert study.analyse(study.records).model_size_law is not None  # the live fit has one
    reporter = WandbReporter(project="ls-test", live_interval=0)
    reporter.start("digits", study.plan, study.store, study.analyse)
    reporter.update(study.records)
    wait_for(lambda: reporter.live_updates == 1)
    final = _final_without_model_size_law(study)
    reporter.finish(final, study.store)

    run = one_run(wandb_dirs)
    saved = json.loads(study.store.result_path.read_text())
    assert saved["model_size_law"] is None
    expected = {f"scaling/{k}": v for k, v in final.flat_summary().items()}
    assert _scaling_summary(run) == json.loads(json.dumps(expected))
    assert not any(k.startswith("scaling/model_size_law") for k in run.summary)
    assert run.summary["scaling/law/beta"] == saved["law"]["beta"]


def test_a_final_chart_that_fails_still_leaves_the_final_summary_exact(wandb_dirs, study, monkeypatch):
    reporter = WandbReporter(project="ls-test", live_interval=0)
    reporter.start("digits", study.plan, study.store, study.analyse)
    reporter.update(study.records)
    wait_for(lambda: reporter.live_updates == 1)
    final = _final_without_model_size_law(study)

    def broken(*args, **kwargs):
        raise ValueError("cannot draw this curve")

    monkeypatch.setattr(final, "curve_table", broken)
    with pytest.warns(UserWarning, match="drawing the charts failed.*cannot draw this curve"):
        reporter.finish(final, study.store)
    run = one_run(wandb_dirs)
    expected = {f"scaling/{k}": v for k, v in final.flat_summary().items()}
    assert _scaling_summary(run) == json.loads(json.dumps(expected))
    assert "scaling/learning_curve" not in run.summary  # the live fit's chart went with it


def test_a_resumed_study_continues_the_one_controller_run_and_its_summary_stays_exact(wandb_dirs, study):
    first = WandbReporter(project="ls-test", live_interval=0)
    first.start("digits", study.plan, study.store, study.analyse)
    first.update(study.records)
    wait_for(lambda: first.live_updates == 1)
    first.close(failed=True)  # the controller stopped before the end (a resume follows)

    second = WandbReporter(project="ls-test", live_interval=0)  # a new process: only the folder is shared
    second.start("digits", study.plan, study.store, study.analyse, study.records)
    final = _final_without_model_size_law(study)
    second.finish(final, study.store)

    wait_for(lambda: len(merged_runs(wandb_dirs)) == 1 and all(
        r.exit_code is not None for r in merged_runs(wandb_dirs).values()))
    (run,) = merged_runs(wandb_dirs).values()
    assert run.job_type == "scaling-sweep"
    assert run.id == json.loads((study.store.root / STATE_FILE).read_text())["run_id"]
    expected = {f"scaling/{k}": v for k, v in final.flat_summary().items()}
    assert _scaling_summary(run) == json.loads(json.dumps(expected))


def test_the_default_group_is_unique_per_study_and_kept_in_its_folder(tmp_path):
    a, b = tmp_path / "a" / "scaling_sweeps" / "train", tmp_path / "b" / "scaling_sweeps" / "train"
    group_a = WandbReporter().bind("train", a)
    assert group_a.startswith("train-") and group_a != WandbReporter().bind("train", b)
    state = json.loads((a / STATE_FILE).read_text())
    assert state["group"] == group_a == default_group("train", a)
    # a resumed study (a new reporter, the same folder) keeps its group and its controller run's id
    again = WandbReporter()
    assert again.bind("train", a) == group_a
    assert again._run_id == state["run_id"]
    assert WandbReporter(group="mine").bind("train", tmp_path / "c") == "mine"
    assert WandbReporter().bind("train", tmp_path / "d", group="from-logger") == "from-logger"


def test_child_runs_join_the_studys_group(study):
    reporter = WandbReporter()
    reporter.bind("digits", study.store.root)
    env = reporter.child_env(study.plan.runs[0])
    assert env["WANDB_RUN_GROUP"] == default_group("digits", study.store.root)
    assert env["WANDB_JOB_TYPE"] == "scaling-run"


@pytest.mark.parametrize("probe", [True, False])
def test_a_probe_run_is_disabled_whatever_the_logger_asks(probe, monkeypatch):
    monkeypatch.delenv("LIGHTNING_SCALING_WANDB_MODE", raising=False)
    assert WandbReporter.run_mode(probe=probe) == ("disabled" if probe else None)


def test_store_is_untouched_by_binding(tmp_path):
    store = SweepStore(tmp_path / "s")
    WandbReporter().bind("s", store.root)
    assert sorted(p.name for p in store.root.iterdir()) == [STATE_FILE]
