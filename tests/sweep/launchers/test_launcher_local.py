"""LocalLauncher: device slots (GPU groups pinned with CUDA_VISIBLE_DEVICES, CPU threads split)."""

from __future__ import annotations

import pytest

from lightning_scaling.sweep.launchers import LocalLauncher


def test_local_slots_pin_gpus_and_split_threads(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    launcher = LocalLauncher()
    assert [s.gpus for s in launcher.slots] == [("0",), ("1",), ("2",), ("3",)]
    pairs = LocalLauncher(devices_per_slot=2)
    assert [s.env()["CUDA_VISIBLE_DEVICES"] for s in pairs.slots] == ["0,1", "2,3"]
    with pytest.raises(ValueError, match="devices_per_slot=8 but only 4 GPUs"):
        LocalLauncher(devices_per_slot=8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cpu = LocalLauncher(slots=2, threads_per_slot=3)
    assert [s.env()["OMP_NUM_THREADS"] for s in cpu.slots] == ["3", "3"]
    assert all(s.env()["CUDA_VISIBLE_DEVICES"] == "" for s in cpu.slots)
