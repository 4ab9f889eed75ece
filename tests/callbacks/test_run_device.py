"""The device a run saw, in its record (callbacks/run_role.py: device, max_memory_allocated, device_memory)."""

from __future__ import annotations

import torch

from lightning_scaling.callbacks.run_role import device_info


def test_a_cpu_run_records_cpu_and_no_gpu_memory():
    assert device_info(torch.device("cpu")) == {"device": "cpu", "max_memory_allocated": None, "device_memory": None}


def test_a_gpu_run_records_its_device_name_peak_and_total_memory(monkeypatch):
    class Props:
        name = "NVIDIA H100 80GB HBM3"
        total_memory = 80 << 30

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: Props())
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda index: 3 << 30)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert device_info(torch.device("cuda")) == {"device": "cuda:0 (NVIDIA H100 80GB HBM3)",
                                                 "max_memory_allocated": 3 << 30, "device_memory": 80 << 30}
