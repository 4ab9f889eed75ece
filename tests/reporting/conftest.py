"""Fixtures of the W&B tests: W&B's folders in the test's temp folder (offline), and a finished study."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import wandb
from helpers.records import spec_record
from helpers.wandb_env import offline_wandb_home

from lightning_scaling.sweep import SweepPlan, SweepResult, SweepStore

SECRET = "sentinel-api-key-0123456789abcdef"


@pytest.fixture
def wandb_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    yield offline_wandb_home(tmp_path / "wandb_home", monkeypatch)
    wandb.teardown()


def study_records(plan: SweepPlan, rng: np.random.Generator) -> list[dict]:
    """A finished study on a known law, eps(m) = 2 m^-0.3 + 0.02: the narrow model wins below 10,000 samples."""
    out = []
    for spec in plan.runs:
        m = spec.fraction * 100_000
        wins = (spec.params["hidden"] == 16) == (m < 10_000)
        err = (2.0 * m**-0.3 + 0.02) * (0.9 if wins else 1.0) * rng.lognormal(0, 0.02)
        out.append(spec_record(
            spec, num_samples=int(m), train_size=m, size_unit="samples", trainable_params=100 * spec.params["hidden"],
            monitor="val_err", best_value=err, best_step=10, steps=20, wall_time_s=1.0,
        ))
    return out


@pytest.fixture
def study(tmp_path):
    plan = SweepPlan.build(fractions=[1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0], grid={"hidden": [16, 64]}, seeds=2,
                           monitor="val_err")
    records = study_records(plan, np.random.default_rng(0))
    store = SweepStore(tmp_path / "sweeps" / "digits")
    store.write_plan(plan.to_dict())
    for r in records:
        store.write_record(r)

    def analyse(recs, bootstrap=100):
        return SweepResult.from_records(recs, monitor="val_err", mode="min", bootstrap=bootstrap, targets=[0.05])

    result = analyse(records, bootstrap=200)
    result.save(store.root)
    return SimpleNamespace(plan=plan, store=store, records=records, analyse=analyse, result=result)
