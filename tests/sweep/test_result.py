"""From records to laws (sweep/result.py): best model per size, conversions, notes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers.records import make_record

from lightning_scaling.laws import fit_learning_curve
from lightning_scaling.sweep import SweepResult
from lightning_scaling.sweep.report import ReportedFit


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


# -- issue 19 item 4: degenerate fits are not printed as laws; rounding; the figure; under-trained runs ---------
def _flat_records(**fields):
    """A study whose error does not fall with data (every size at ~5.96), two seeds per size."""
    rng = np.random.default_rng(1)
    return [make_record(f"r{m}-{s}", size=m, train_size=m, seed=s, best_value=float(5.96 + 0.02 * rng.normal()),
                        **fields) for m in (100, 200, 400, 800, 1600) for s in (0, 1)]


def test_a_study_whose_error_did_not_fall_prints_no_exponent_anywhere():
    res = SweepResult.from_records(_flat_records(), monitor="val_loss", mode="min", bootstrap=200, targets=[0.05])
    for text in (str(res.law), res.summary(), repr(res), res._repr_html_()):
        assert "no power law" in text
        assert "m^" not in text and "beta" not in text and "e-3" not in text, text
    assert res.law is not None and not res.law.supported
    d = json.loads(res.to_json())
    assert d["law"]["law_supported"] is False and d["law"]["reason"]
    assert not {"beta", "alpha", "gamma", "exponent", "intervals"} & set(d["law"])
    flat = res.flat_summary()
    assert flat["law/law_supported"] is False and not [k for k in flat if "beta" in k or "exponent" in k]
    assert d["predictions"] == {} and "no data need is predicted without a power law" in res.summary()


def test_an_exponent_at_its_bound_is_no_law_even_when_the_fit_returned_one():
    # the paper's degenerate case: beta = -9.86e-305 [-9.86e-305, -9.86e-305]
    fit = fit_learning_curve([100, 200, 400, 800, 1600], [3.7, 3.8, 3.7, 3.75, 3.72], bootstrap=50)
    fit.params["beta"], fit.intervals["beta"] = -9.86e-305, (-9.86e-305, -9.86e-305)
    told = ReportedFit.of(fit)
    assert not told.supported and "does not fall with data" in str(told) and "e-305" not in str(told)


def test_a_point_estimate_is_always_inside_its_interval():
    fit = fit_learning_curve(np.geomspace(100, 1e5, 8), 2 * np.geomspace(100, 1e5, 8) ** -0.3 + 0.01, bootstrap=50)
    fit.params["gamma"], fit.intervals["gamma"] = 0.0, (3.7e-10, 2.0e-9)  # what an estimate on a bound gave
    told = ReportedFit.of(fit)
    for name, value in told.params.items():
        lo, hi = told.intervals[name]
        assert lo <= value <= hi, name
    assert told.intervals["gamma"] == (0.0, 2.0e-9)
    assert told.notes == fit.notes  # an estimate on its bound, missed by rounding: nothing to say


def test_an_estimate_well_outside_its_interval_is_said_not_only_widened():
    # what the default fit's alpha did before its bootstrap was centred on the law averaged over starts
    fit = fit_learning_curve(np.geomspace(100, 1e5, 8), 2 * np.geomspace(100, 1e5, 8) ** -0.3 + 0.01, bootstrap=50)
    fit.intervals["alpha"] = (0.5, 1.5)
    told = ReportedFit.of(fit)
    assert told.intervals["alpha"] == (0.5, fit.params["alpha"])
    assert any("alpha = 2 lay outside its bootstrap interval [0.5, 1.5]" in n for n in told.notes), told.notes
    assert "alpha = 2 lay outside" in str(told) and "alpha = 2 lay outside" in " ".join(told.to_dict()["notes"])


def test_numbers_are_rounded_and_sizes_beyond_the_measured_range_are_said_in_words():
    m = np.geomspace(100, 10_000, 6)
    recs = [make_record(f"r{i}", size=int(x), train_size=float(x), best_value=float(2.2234567 * x**-0.0312345 + 1.1))
            for i, x in enumerate(m)]
    res = SweepResult.from_records(recs, monitor="val_loss", mode="min", bootstrap=0, targets=[2.0])
    text = res.summary()
    assert res.law is not None and res.law.supported, text
    assert "m^-0.0312" in str(res.law) and "-0.03123" not in text
    # halving an error that falls this slowly needs ~1e13 samples: no such number is printed
    assert "beyond 1000x the largest size measured" in text and "e+1" not in text


def test_the_figure_is_scaled_to_the_data_not_to_a_tiny_fitted_floor():
    pytest.importorskip("matplotlib")
    m = np.geomspace(100, 10_000, 6)
    fit = fit_learning_curve(m, 2 * m**-0.3 + 0.1, bootstrap=50)
    fit.params["gamma"] = 8.9e-7  # a floor far below every measured error
    ax = fit.plot()
    lo, hi = ax.get_ylim()
    assert lo > 0.01 and hi < 1.0, (lo, hi)
    assert any("floor" in t.get_text() for t in ax.get_legend().get_texts())


def test_runs_that_were_best_at_their_last_step_are_called_under_trained():
    recs = _flat_records(best_step=200, steps=200)
    res = SweepResult.from_records(recs, monitor="val_loss", mode="min", bootstrap=0)
    assert "under-trained" in res.summary() and "max_epochs" in res.summary()
    early = SweepResult.from_records(_flat_records(best_step=120, steps=200), monitor="val_loss", mode="min",
                                     bootstrap=0)
    assert "under-trained" not in early.summary()


# -- issue 19 item 6: the end table, the notebook view -------------------------------------------------------
def test_the_summary_ends_with_a_table_per_size_and_the_targets_answers():
    recs = [r for r in _records() if r["status"] == "ok"] + [
        make_record("lost", fraction=1.0, params={"hidden": 8}, seed=5, status="failed", reason="boom")]
    res = SweepResult.from_records(recs, monitor="val_err", mode="min", bootstrap=0, targets=[0.05])
    text = res.summary()
    cols, rows = res.table()
    assert cols[:4] == ["size", "train size", "best grid point", "error mean +- sd"]
    assert [r[2] for r in rows] == ["hidden=8", "hidden=64", "hidden=64", "hidden=64", "hidden=64"]
    assert rows[-1][0] == "1" and rows[-1][1] == "4,096" and " +- " in rows[-1][3] and rows[-1][-2:] == ["4", "1"]
    assert re.search(r"\nsize +train size +best grid point +error mean \+- sd", text)
    assert "target val_err error 0.05: data (samples) needed" in text


def test_a_notebook_shows_a_short_repr_and_an_html_table():
    res = SweepResult.from_records(_records(), monitor="val_err", mode="min", bootstrap=0)
    r = repr(res)
    assert r.startswith("<SweepResult val_err: 20/21 runs ok (1 failed); eps(m) = ") and "\n" not in r
    page = res._repr_html_()
    assert page.count("<tr>") == 6 and "<th>best grid point</th>" in page and "hidden=64" in page


def test_a_grid_point_whose_law_is_not_supported_keeps_its_points_marked_without_an_exponent():
    # four noisy sizes: the error falls, but the exponent's interval reaches 0 (one end-to-end study's numbers)
    noisy = dict(zip((512, 1024, 2048, 4096), (0.1064, 0.0908, 0.0947, 0.0664)))
    records = [make_record(f"{m}-{h}", size=m, train_size=m, params={"hidden": h}, trainable_params=10 * h,
                           best_value=noisy[m] if h == 64 else 2 * m**-0.3) for m in noisy for h in (8, 64)]
    res = SweepResult.from_records(records, monitor="val_loss", mode="min", bootstrap=300)
    assert set(res.per_grid) == {"hidden=8", "hidden=64"}
    assert res.per_grid["hidden=8"].supported and not res.per_grid["hidden=64"].supported
    flat = res.flat_summary()
    assert flat["per_grid/hidden=64/law_supported"] is False and "per_grid/hidden=64/exponent" not in flat
    assert "[hidden=64] no power law" in res.summary() and res.shared_exponent is None
