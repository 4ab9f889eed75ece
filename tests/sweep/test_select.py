"""``select``: which monitored value of a run (best over training, or last) ranks it and enters the laws."""

from __future__ import annotations

import io
import json
import math
import sys

import pytest
from helpers.fake_launchers import InstantSlot
from helpers.records import make_record

from lightning_scaling.sweep import SweepPlan, SweepResult, SweepStore
from lightning_scaling.sweep.controller import SweepController, SweepError
from lightning_scaling.sweep.record import missing_value, run_value
from lightning_scaling.sweep.result import analysis

SIZES = [1000, 4000, 16000, 64000]
WIDTHS = [16, 64, 256]


def _values(size: int, width: int) -> tuple[float, float]:
    """(best, final) of a model that overfits small data: the best value favours the widest model at every
    size, the final one the width nearest (in log) 16 (size / 1000)^(2/3): 16, 64, 64, 256."""
    best = 2.0 * size ** -0.2 * (1.0 - 0.01 * WIDTHS.index(width))
    right = 16 * (size / 1000) ** (2 / 3)
    return best, best * (1.0 + 0.05 * abs(math.log(width / right)))


def _records(with_final: bool = True) -> list[dict]:
    recs = []
    for m in SIZES:
        for w in WIDTHS:
            best, final = _values(m, w)
            fields = {"final_value": final, "metrics_at_final": {"val_err": final}} if with_final else {}
            recs.append(dict(make_record(f"m{m}_w{w}", size=m, params={"width": w}, train_size=float(m),
                                         trainable_params=w * 100, best_value=best, **fields)))
    return recs


def test_the_last_value_shows_the_best_model_growing_with_data_where_the_best_value_hides_it():
    by_best = SweepResult.from_records(_records(), monitor="val_err", mode="min", bootstrap=0)
    assert [b["params"]["width"] for b in by_best.best] == [256] * 4
    assert by_best.model_size_law is None and by_best.select == "best"

    by_last = SweepResult.from_records(_records(), monitor="val_err", mode="min", bootstrap=0, select="last")
    assert [b["params"]["width"] for b in by_last.best] == [16, 64, 64, 256]
    assert by_last.model_size_law is not None and by_last.model_size_law.beta_p > 0
    # the selection is in the result, in every run it counted, in result.json and in the W&B summary
    assert by_last.to_dict()["select"] == "last" and json.loads(by_last.to_json())["select"] == "last"
    assert {r["select"] for r in by_last.runs if "error" in r} == {"last"}
    assert by_last.flat_summary()["select"] == "last"
    assert by_last.best[0]["errors"] == [_values(1000, 16)[1]]
    cols, rows = by_last.runs_table()
    assert "final_value" in cols and all(row[cols.index("final_value")] is not None for row in rows)


def test_another_metric_is_read_at_the_same_validation_as_the_monitor():
    res = SweepResult.from_records(_records(), monitor="loss", mode="min", bootstrap=0, select="last",
                                   metric="val_err")
    assert res.best[0]["errors"] == [_values(1000, 16)[1]]
    assert run_value({"metrics_at_best": {"a": 1.0}, "metrics_at_final": {"a": 2.0}}, "last", "a") == 2.0


def test_records_without_a_final_value_are_refused_under_select_last_never_ranked_by_their_best_value():
    old = _records(with_final=False)
    assert missing_value(old, "last") == [r["run_id"] for r in old] and missing_value(old, "best") == []
    with pytest.raises(ValueError, match=r"select='last' ranks runs by their final_value.*m1000_w16.*select='best'"):
        SweepResult.from_records(old, monitor="val_err", mode="min", bootstrap=0, select="last")
    assert SweepResult.from_records(old, monitor="val_err", mode="min", bootstrap=0).law is not None


def test_select_is_checked_with_the_fix():
    with pytest.raises(ValueError, match="select must be 'best'"):
        SweepResult.from_records(_records(), monitor="val_err", mode="min", select="final")
    with pytest.raises(ValueError, match="select must be 'best'"):
        SweepPlan.build(sizes=SIZES, select="max")


class BothValues(InstantSlot):
    """A submitted run writes its record at once, with the best and the final value of :func:`_values`."""

    def __init__(self, store, submitted, with_final=True):
        super().__init__(store)
        self.submitted, self.with_final = submitted, with_final

    def submit(self, job):
        s = job.spec
        self.submitted.append(s.run_id)
        best, final = _values(s.size, s.params["width"])
        self.store.write_record({"run_id": s.run_id, "status": "ok", "launch": job.launch, "size": s.size,
                                 "fraction": None, "train_size": float(s.size), "params": s.params, "seed": s.seed,
                                 "trainable_params": 100 * s.params["width"], "best_value": best,
                                 **({"final_value": final} if self.with_final else {}), "wall_time_s": 0.1,
                                 "devices": ""})
        super().submit(job)


def _sweep(tmp_path, select, submitted, out=None, with_final=True):
    plan = SweepPlan.build(sizes=SIZES, grid={"width": WIDTHS}, monitor="val_err", select=select)
    store = SweepStore(tmp_path)
    return SweepController(plan, store, launcher=BothValues(store, submitted, with_final),  # type: ignore[arg-type]
                           command=[sys.executable, "train.py"], probe=False, stream=out or io.StringIO(),
                           analyse=analysis(monitor="val_err", mode="min", bootstrap=0, select=select)).run()


def test_changing_select_on_a_rerun_ranks_the_finished_runs_again_and_trains_nothing(tmp_path):
    submitted: list[str] = []
    first = _sweep(tmp_path, "best", submitted)
    assert len(submitted) == 12 and first.model_size_law is None
    out = io.StringIO()
    again = _sweep(tmp_path, "last", submitted, out)
    assert len(submitted) == 12  # nothing trained again
    assert "select: 'best' -> 'last'" in out.getvalue()
    assert again.select == "last" and again.model_size_law is not None
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["select"] == "last" and json.loads((tmp_path / "sweep.json").read_text())["select"] == "last"
    # the folder remembers its selection: a re-analysis uses it unless told otherwise
    assert SweepResult.load(tmp_path, bootstrap=0).select == "last"
    assert SweepResult.load(tmp_path, bootstrap=0, select="best").model_size_law is None


def test_a_rerun_with_select_last_over_records_without_a_final_value_stops_before_any_run(tmp_path):
    submitted: list[str] = []
    _sweep(tmp_path, "best", submitted, with_final=False)
    with pytest.raises(SweepError, match=r"select='last' ranks runs by their final_value.*move those files away"):
        _sweep(tmp_path, "last", submitted)
    assert len(submitted) == 12


def test_the_controllers_own_analysis_ranks_by_the_plans_selection(tmp_path):
    plan = SweepPlan.build(sizes=SIZES, grid={"width": WIDTHS}, monitor="val_err", select="last")
    store = SweepStore(tmp_path)
    result = SweepController(plan, store, launcher=BothValues(store, []),  # type: ignore[arg-type]
                             command=[sys.executable, "train.py"], probe=False, stream=io.StringIO()).run()
    assert result.select == "last" and [b["params"]["width"] for b in result.best] == [16, 64, 64, 256]


def test_an_adaptive_rung_record_without_a_final_value_is_refused_too(tmp_path):
    submitted: list[str] = []
    _sweep(tmp_path, "last", submitted)
    base = SweepPlan.build(sizes=SIZES, grid={"width": WIDTHS}, monitor="val_err").runs[0].run_id
    rung = dict(make_record(f"{base}_r0", size=SIZES[-1], params={"width": 16}, base_id=base, rung=0, budget=1 / 3,
                            best_value=0.5))
    SweepStore(tmp_path).write_record(rung)  # type: ignore[arg-type]
    with pytest.raises(SweepError, match=rf"final_value, which the records of \['{base}_r0'\]"):
        _sweep(tmp_path, "last", submitted)
