"""From records to laws (sweep/result.py): best model per size, conversions, notes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lightning_scaling.sweep import SweepResult


def _records(beta=-0.5, seeds=2):
    rng = np.random.default_rng(0)
    recs = []
    for i, frac in enumerate([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]):
        n = 4096 * frac
        for hidden, alpha, params in ((8, 6.0, 300), (64, 4.0, 2400)):
            # the wide model wins at every size except the smallest, where the narrow one is better
            a = 3.9 if (hidden == 8 and i == 0) else alpha
            for s in range(seeds):
                err = (a * n**beta + 0.02) * np.exp(rng.normal(0, 0.02))
                recs.append({"run_id": f"{i}-{hidden}-{s}", "status": "ok", "fraction": frac, "size": None,
                             "train_size": n, "size_unit": "samples", "params": {"hidden": hidden}, "seed": s,
                             "best_value": float(err), "trainable_params": params})
    recs.append({"run_id": "x", "status": "failed", "fraction": 1.0, "params": {"hidden": 8}, "seed": 9,
                 "reason": "boom"})
    return recs


def test_result_picks_best_model_per_size_and_fits_laws(tmp_path):
    res = SweepResult.from_records(_records(), monitor="val_err", mode="min", bootstrap=200)
    assert [b["params"]["hidden"] for b in res.best] == [8, 64, 64, 64, 64]
    assert res.law is not None and res.law.resample == "seeds"
    assert res.law.intervals["beta"][0] < -0.5 < res.law.intervals["beta"][1]
    assert set(res.per_grid) == {"hidden=8", "hidden=64"}
    assert res.shared_exponent is not None and res.shared_exponent.same_exponent
    assert res.model_size_law is not None and res.model_size_law.beta_p > 0
    d = json.loads(res.to_json())
    assert d["n_failed"] == 1 and d["n_ok"] == 20 and d["law"]["beta"] == res.law.params["beta"]
    assert "data_to_halve_error" in d["predictions"]
    res.save(tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["law"]["beta"] == res.law.params["beta"]
    assert (tmp_path / "learning_curve.png").stat().st_size > 10_000


def test_result_converts_accuracy_and_rejects_non_accuracy():
    recs = _records()
    for r in recs:
        if "best_value" in r:
            r["best_value"] = 1.0 - r["best_value"]
    res = SweepResult.from_records(recs, monitor="val_acc", mode="max", bootstrap=0)
    assert res.law is not None and res.law.params["beta"] < 0
    recs[0]["best_value"] = 3.0
    with pytest.raises(ValueError, match="not an accuracy"):
        SweepResult.from_records(recs, monitor="val_acc", mode="max", bootstrap=0)


def test_result_without_finished_runs_says_so():
    res = SweepResult.from_records([{"run_id": "a", "status": "failed"}], monitor="m", mode="min")
    assert res.law is None and "no run finished" in res.notes[0]


def test_runs_without_a_size_in_the_unit_fall_back_to_samples_or_are_named():
    recs = [r for r in _records() if r["status"] == "ok"]
    recs[0]["train_size"] = None  # e.g. a stream never sized in the user's unit: its sample count is used
    recs[0]["num_samples"] = 256
    recs[1]["train_size"] = None
    recs[1]["num_samples"] = None
    res = SweepResult.from_records(recs, monitor="val_err", mode="min", bootstrap=0)
    assert res.law is not None
    assert any(recs[1]["run_id"] in n for n in res.notes)


def test_grid_points_are_listed_in_numeric_order():
    records = [
        {"run_id": f"{m}-{h}", "status": "ok", "size": m, "train_size": m, "params": {"hidden": h}, "seed": 0,
         "best_value": (1.0 + 100 / h) * m**-0.3, "trainable_params": 10 * h}
        for m in (100, 200, 400, 800, 1600) for h in (16, 256, 64)
    ]
    res = SweepResult.from_records(records, monitor="val_loss", mode="min", bootstrap=0)
    assert list(res.per_grid) == ["hidden=16", "hidden=64", "hidden=256"]


def test_a_grid_point_whose_error_does_not_fall_is_named_not_fitted():
    records = [
        {"run_id": f"{m}-{h}", "status": "ok", "size": m, "train_size": m, "params": {"hidden": h}, "seed": 0,
         "best_value": 2 * m**-0.3 if h == 64 else 0.5 + 1e-4 * np.log(m), "trainable_params": 10 * h}
        for m in (100, 200, 400, 800, 1600) for h in (4, 64)
    ]
    res = SweepResult.from_records(records, monitor="val_loss", mode="min", bootstrap=100)
    assert list(res.per_grid) == ["hidden=64"]
    assert any("hidden=4: the error does not fall with data" in n for n in res.notes)
    assert res.law.exponent == pytest.approx(-0.3, abs=0.01)
