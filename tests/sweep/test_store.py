"""The sweep folder (``sweep/store.py``): atomic writes, reading records back."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers.records import make_record

from lightning_scaling.sweep import SweepStore


def test_store_writes_atomically_and_reads_back(tmp_path):
    store = SweepStore(tmp_path / "s")
    store.write_record(make_record("a", best_value=0.5))
    assert store.read_record("a")["best_value"] == 0.5
    assert not list((tmp_path / "s" / "runs").glob(".*tmp"))  # no temporary left behind
    (tmp_path / "s" / "runs" / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"b.json is not valid JSON"):
        store.records()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_users_umask_not_the_temporary_files_0600(tmp_path, umask, mode):
    from helpers.records import make_record as rec

    from lightning_scaling.sweep import SweepResult

    old = os.umask(umask)
    try:
        store = SweepStore(tmp_path / "s")
        store.write_plan({"runs": []})
        records = [rec(f"r{i}s{k}", train_size=m, seed=k, best_value=3 * m**-0.5 + 0.02 + 0.001 * k)
                   for i, m in enumerate(100 * 2**j for j in range(6)) for k in range(2)]
        for r in records:
            store.write_record(r)
        result = SweepResult.from_records([dict(r) for r in records], monitor="val_err", mode="min", bootstrap=0)
        result.save(store.root, figure=False)
    finally:
        os.umask(old)
    written = [store.plan_path, store.record_path("r0s0"), store.result_path, store.root / "runs.csv",
               store.root / "curve.csv"]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: mode for p in written}


def test_a_record_that_is_not_utf8_json_of_an_object_names_its_file(tmp_path):
    store = SweepStore(tmp_path / "s")
    store.write_record(make_record("a", best_value=0.5))
    bad = tmp_path / "s" / "runs" / "b.json"
    bad.write_bytes(b'{"run_id": "b", "reason": "\xff\xfe"}')
    with pytest.raises(ValueError, match=r"b.json is not UTF-8 text .* fix or remove it"):
        store.records()
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"b.json is not a JSON object \(it holds a list\)"):
        store.records()


@pytest.mark.parametrize(("change", "problem"), [
    ({"best_value": None}, "status ok without a finite numeric best_value (got None)"),
    ({"best_value": "0.5"}, "status ok without a finite numeric best_value (got '0.5')"),
    ({"best_value": float("nan")}, "status ok without a finite numeric best_value (got nan)"),
    ({"status": "great"}, "status 'great' is none of ok, diverged, failed"),
    ({"run_id": "other"}, "run_id 'other' is not the file's name 'b'"),
    ({"params": [1]}, "params is not an object (got [1])"),
])
def test_records_that_break_the_schema_are_ignored_and_named(tmp_path, change, problem):
    store = SweepStore(tmp_path / "s")
    store.write_record(make_record("a", best_value=0.5))
    (tmp_path / "s" / "runs" / "b.json").write_text(json.dumps({**make_record("b", best_value=0.5), **change}))
    assert list(store.records()) == ["a"] and store.read_record("b") is None
    assert store.new_problems() == [f"ignoring {store.record_path('b')}: {problem}; the run is run again"]
    assert store.new_problems() == []  # told once
