"""The sweep's plan (sweep/plan.py): runs, ids, argument checks, geometric sizes."""

from __future__ import annotations

import pytest

from lightning_scaling.sweep import SweepPlan, geometric


def test_plan_orders_largest_first_with_stable_ids():
    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": [8, 16]}, seeds=2, monitor="val_err")
    assert len(plan.runs) == 16
    assert [r.fraction for r in plan.runs[:4]] == [0.8] * 4
    assert plan.runs[-1].fraction == 0.1
    again = SweepPlan.build(fractions=[0.8, 0.4, 0.2, 0.1, 0.05], grid={"hidden": [8, 16]}, seeds=2, monitor="val_err")
    # a run keeps its id when the plan grows, so its finished record is found on resume
    assert {r.run_id for r in plan.runs} < {r.run_id for r in again.runs}
    assert len({r.run_id for r in again.runs}) == len(again.runs)
    assert "16 runs = 4 data fractions" in plan.summary()


def test_plan_diff_names_what_changed():
    plan = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=1, monitor="val_err")
    stored = plan.to_dict()
    grown = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=2, monitor="val_err")
    fatal, notes = grown.diff(stored)
    assert not fatal and notes == ["4 runs added"]
    other = SweepPlan.build(fractions=[0.1, 0.2, 0.4, 0.8], seeds=1, monitor="val_loss")
    fatal, _ = other.diff(stored)
    assert fatal == ["monitor: 'val_err' -> 'val_loss'"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": []}), r"grid\['hidden'\] must be a non-empty list"),
        (dict(fractions=[0.1, 0.2, 0.4, 1.5]), r"fractions must be in \(0, 1\]"),
        (dict(fractions=[0.0, 0.2, 0.4, 0.8]), r"fractions must be in \(0, 1\]"),
        (dict(fractions=[0.1, 0.2, 0.2, 0.8]), "fractions repeat"),
        (dict(sizes=[100, 200, 200, 800]), "sizes repeat"),
        (dict(fractions=[0.25, 0.5, 1.0]), "too few to fit a learning curve"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], sizes=[1, 2, 3, 4]), "exactly one of fractions"),
        (dict(sizes=[100, 200.5, 400, 800]), "positive integer sample counts"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], seeds=0), "seeds"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], mode="maximize"), "mode must be"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": "64"}), "non-empty list"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"hidden": [8, 8]}), "repeats values"),
        (dict(fractions=[0.1, 0.2, 0.4, 0.8], grid={"act": [object()]}), "not JSON-serialisable"),
    ],
)
def test_bad_sweep_arguments_fail_before_any_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SweepPlan.build(**{"monitor": "val_err", **kwargs})


def test_geometric():
    assert geometric(1 / 64, 1.0, 7)[0] == 1 / 64
    assert geometric(1 / 64, 1.0, 7)[-1] == 1.0
    assert geometric(100, 1600, 5) == [100, 200, 400, 800, 1600]
    with pytest.raises(ValueError, match="start < stop"):
        geometric(1.0, 0.5, 3)
