"""The model-size law's figure goes to W&B like the learning curve's (``scaling/model_size_figure``)."""

from __future__ import annotations

import time

import pytest

wandb = pytest.importorskip("wandb")
from helpers.wandb_env import offline_wandb_home  # noqa: E402
from helpers.wandb_records import offline_runs  # noqa: E402

from lightning_scaling import WandbReporter  # noqa: E402
from lightning_scaling.sweep import SweepPlan, SweepResult, SweepStore  # noqa: E402
from lightning_scaling.sweep.result import MODEL_SIZE_FIGURE  # noqa: E402


@pytest.fixture
def wandb_home(tmp_path, monkeypatch):
    yield offline_wandb_home(tmp_path / "wandb_home", monkeypatch)
    wandb.teardown()


def test_model_size_figure_is_logged_and_in_the_artifact(tmp_path, wandb_home):
    plan = SweepPlan.build(fractions=[1 / 8, 1 / 4, 1 / 2, 1.0], grid={"hidden": [16, 32, 64]}, monitor="val_err")
    records = []
    for spec in plan.runs:
        m = spec.fraction * 8000
        best = {1 / 8: 16, 1 / 4: 16, 1 / 2: 32, 1.0: 64}[spec.fraction]
        records.append({"run_id": spec.run_id, "status": "ok", "fraction": spec.fraction, "train_size": m,
                        "params": spec.params, "seed": 0, "trainable_params": 100 * spec.params["hidden"],
                        "best_value": m**-0.5 * (1 + 0.3 * abs(spec.params["hidden"] - best) / best)})
    store = SweepStore(tmp_path / "sweep")
    store.write_plan(plan.to_dict())

    def analyse(recs):
        return SweepResult.from_records(recs, monitor="val_err", mode="min", bootstrap=50)

    result = analyse(records)
    assert result.model_size_law is not None
    result.save(store.root)
    assert (store.root / MODEL_SIZE_FIGURE).exists()
    reporter = WandbReporter(project="ls-test", live_interval=0)
    reporter.start("sizes", plan, store, analyse, [])
    reporter.finish(result, store)

    for _ in range(1200):  # the offline run file is written asynchronously
        runs = offline_runs(wandb_home)
        if len(runs) == 1 and runs[0].exit_code is not None:
            break
        time.sleep(0.05)
    (run,) = runs
    figure = run.last("scaling/model_size_figure")
    assert figure["_type"] == "image-file"
    assert (run.files / figure["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
