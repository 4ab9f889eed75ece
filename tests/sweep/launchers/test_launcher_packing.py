"""Packing (launchers/packing.py): up to k runs per slot, never past the GPU's memory, OOM runs alone."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from lightning_scaling.sweep.launchers import Job, LocalLauncher, local
from lightning_scaling.sweep.launchers.packing import GIB, MemoryBook, check_runs_per_device, is_oom
from lightning_scaling.sweep.plan import RunSpec

_ids = itertools.count()


class FakeProcess:
    """Stands in for a run's process: nothing is started, nothing can be signalled by mistake."""

    pid = -1

    def __init__(self):
        self.rc = None

    def poll(self):
        return self.rc

    def wait(self, timeout=None):
        return self.rc


@pytest.fixture
def no_processes(monkeypatch):
    started = []

    def fake_popen(command, env, log, cwd=None):
        started.append(env)
        return FakeProcess()

    monkeypatch.setattr(local, "popen_run", fake_popen)
    return started


def job(tmp_path: Path, params=None, alone=False) -> Job:
    spec = RunSpec(f"run{next(_ids)}", fraction=0.5, size=None, params=dict(params or {}), seed=0, data_seed=0)
    return Job(spec=spec, attempt=1, command=["true"], env_overrides={}, log_path=tmp_path / f"{spec.run_id}.log",
               alone=alone)


def per_slot(launcher: LocalLauncher) -> list[int]:
    return [len(launcher.jobs_on(s)) for s in launcher.slots]


def fill(launcher: LocalLauncher, tmp_path: Path, params=None) -> int:
    """Submit runs of ``params`` while they fit; how many started."""
    n = 0
    while launcher.fits(params) and n < 100:
        launcher.submit(job(tmp_path, params))
        n += 1
    return n


def test_packing_never_starts_more_than_k_runs_per_slot(monkeypatch, tmp_path, no_processes):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    launcher = LocalLauncher(runs_per_device=3, fork_server=False, device_memory=80 * GIB)
    assert launcher.capacity == 6
    launcher.submit(job(tmp_path))
    launcher.submit(job(tmp_path))
    assert per_slot(launcher) == [1, 1]  # spread first: a run gets an empty GPU while there is one
    assert fill(launcher, tmp_path) == 4
    assert per_slot(launcher) == [3, 3] and launcher.capacity == 0
    with pytest.raises(RuntimeError, match="no free slot"):
        launcher.submit(job(tmp_path))
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in no_processes) == ["0", "0", "0", "1", "1", "1"]
    assert "up to 3 runs each" in launcher.describe()


def test_packing_never_plans_past_the_gpus_memory(monkeypatch, tmp_path, no_processes):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    launcher = LocalLauncher(runs_per_device=8, fork_server=False, device_memory=10 * GIB)
    launcher.observe({"params": {"hidden": 512}, "max_memory_allocated": 3 * GIB})
    # 3 GiB peak -> 4.1 GiB planned per run (margin and CUDA context); 90% of 10 GiB holds two
    assert fill(launcher, tmp_path, {"hidden": 512}) == 2
    launcher.observe({"params": {"hidden": 8}, "max_memory_allocated": 100 << 20})
    assert fill(launcher, tmp_path, {"hidden": 8}) == 1  # what is left fits one small run, not more
    assert per_slot(launcher) == [3]


def test_an_unknown_run_needs_an_empty_slot_under_auto_and_a_big_one_keeps_a_whole_gpu(monkeypatch, tmp_path,
                                                                                      no_processes):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    launcher = LocalLauncher(runs_per_device="auto", fork_server=False, device_memory=80 * GIB)
    assert fill(launcher, tmp_path, {"hidden": 8}) == 2  # nothing measured yet: one run per GPU
    launcher.observe({"params": {"hidden": 8}, "max_memory_allocated": 1 * GIB})
    assert fill(launcher, tmp_path, {"hidden": 8}) == 14  # 8 per GPU at most
    fresh = LocalLauncher(runs_per_device="auto", fork_server=False, device_memory=80 * GIB)
    fresh.observe({"params": {"hidden": 4096}, "max_memory_allocated": 50 * GIB})
    assert fill(fresh, tmp_path, {"hidden": 4096}) == 2 and per_slot(fresh) == [1, 1]


def test_auto_k_comes_from_recorded_memory():
    book = MemoryBook()
    assert book.auto_runs({"h": 1}) == 1  # no basis: one run per GPU
    book.observe({"params": {"h": 1}, "max_memory_allocated": 10 * GIB, "device_memory": 80 * GIB})
    assert book.device_memory == 80 * GIB
    assert book.auto_runs({"h": 1}) == 5  # floor(72 / (10 * 1.2 + 0.5))
    book.observe({"params": {"h": 1}, "max_memory_allocated": 20 * GIB})  # the largest peak counts
    assert book.auto_runs({"h": 1}) == 2
    assert book.auto_runs({"h": 2}) == 1  # another grid point's model may be larger: no basis
    book.observe({"params": {"h": 3}, "max_memory_allocated": 1 << 20})
    assert book.auto_runs({"h": 3}) == 8
    book.observe({"params": {"h": 3}}, oom=True)
    assert book.auto_runs({"h": 3}) == 1 and book.whole_device({"h": 3})


def test_a_run_marked_alone_gets_a_slot_to_itself(monkeypatch, tmp_path, no_processes):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    launcher = LocalLauncher(runs_per_device=4, fork_server=False)
    launcher.submit(job(tmp_path))
    assert not launcher.fits({}, alone=True)  # the GPU is not empty
    launcher.poll()
    for p in [j.process for j in launcher.running()]:
        p.rc = 0
    launcher.poll()
    launcher.submit(job(tmp_path, alone=True))
    assert not launcher.fits({})  # nothing beside it
    assert per_slot(launcher) == [1]


def test_on_a_cpu_machine_packed_runs_share_their_core_groups_threads(monkeypatch, tmp_path, no_processes):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    launcher = LocalLauncher(slots=2, threads_per_slot=4, runs_per_device=2, fork_server=False)
    assert fill(launcher, tmp_path) == 4
    assert [env["OMP_NUM_THREADS"] for env in no_processes] == ["2"] * 4
    assert all(env["CUDA_VISIBLE_DEVICES"] == "" for env in no_processes)
    # "auto" on CPU: one run per core group (no GPU memory to pack by)
    auto = LocalLauncher(slots=2, runs_per_device="auto", fork_server=False)
    assert fill(auto, tmp_path) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "many", None])
def test_runs_per_device_is_checked(bad):
    with pytest.raises(ValueError, match="runs_per_device must be a positive integer"):
        check_runs_per_device(bad)


def test_oom_is_recognised_in_a_reason_or_a_log_tail():
    assert is_oom("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB")
    assert is_oom("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate")
    assert not is_oom("ValueError: bad shape") and not is_oom(None)
