"""The sweep folder (``sweep/store.py``): atomic writes, reading records back."""

from __future__ import annotations

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
