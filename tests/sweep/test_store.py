"""The sweep folder (``sweep/store.py``): atomic writes, reading records back."""

from __future__ import annotations

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
        records = [rec(f"r{i}s{k}", train_size=100 * 2**i, seed=k, best_value=3 * (100 * 2**i) ** -0.5 + 0.02 + 0.001 * k)
                   for i in range(6) for k in range(2)]
        for r in records:
            store.write_record(r)
        SweepResult.from_records([dict(r) for r in records], monitor="val_err", mode="min", bootstrap=0).save(store.root, figure=False)
    finally:
        os.umask(old)
    written = [store.plan_path, store.record_path("r0s0"), store.result_path, store.root / "runs.csv",
               store.root / "curve.csv"]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: mode for p in written}
