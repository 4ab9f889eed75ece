"""Who am I (sweep/context.py): the controller or a run, its grid values, and seeding on request only."""

from __future__ import annotations

import random

import pytest

from lightning_scaling.sweep import RunContext, SweepPlan, current_run
from lightning_scaling.sweep.context import ENV_RUN


def test_current_run_reads_the_spec(monkeypatch):
    assert current_run().is_controller
    assert current_run().param("hidden", default=3) == 3
    with pytest.raises(KeyError, match="default="):
        current_run().param("hidden")
    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], grid={"model.hidden": [8, 16]}, monitor="val_err")
    ctx = RunContext(spec=plan.runs[1], sweep_dir="/tmp/x", attempt=2)
    monkeypatch.setenv(ENV_RUN, ctx.to_env())
    run = current_run()
    assert run.is_run and run.attempt == 2 and run.sweep_dir == "/tmp/x"
    assert run.param("model.hidden") == run.param("hidden") == 16
    monkeypatch.setenv(ENV_RUN, "not json")
    with pytest.raises(RuntimeError, match="not a lightning-scaling run spec"):
        current_run()


def test_looking_up_the_run_seeds_nothing_and_seeding_is_explicit_deterministic_and_once(monkeypatch):
    import torch

    from lightning_scaling.sweep import context

    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=[7], monitor="val_err")
    monkeypatch.setenv(ENV_RUN, RunContext(spec=plan.runs[0], sweep_dir="/tmp/x").to_env())
    monkeypatch.setattr(context, "_seeded", set())
    for var in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):  # seed_everything sets them: restored afterwards
        monkeypatch.setenv(var, "")
    random.seed(123)
    run = current_run()
    assert run.seed == 7 and random.random() == random.Random(123).random()  # a lookup: no side effect
    assert run.seed_everything() == 7
    first = (random.random(), torch.rand(1).item())
    run.seed_everything()  # once per run: a second call leaves the generators alone
    assert (random.random(), torch.rand(1).item()) != first
    monkeypatch.setattr(context, "_seeded", set())
    current_run().seed_everything()  # the same run, seeded again in a fresh process: the same numbers
    assert (random.random(), torch.rand(1).item()) == first
    monkeypatch.delenv(ENV_RUN)
    assert current_run().seed_everything() is None  # the controller: nothing to seed
