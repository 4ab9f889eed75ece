"""The launch loop's scheduling (sweep/scheduling.py, sweep/timeouts.py): OOM retried alone, hung runs stopped."""

from __future__ import annotations

import io
import sys
import time

import pytest

from lightning_scaling import ScalingSweep, run_sweep
from lightning_scaling.sweep import SweepPlan, SweepStore
from lightning_scaling.sweep.controller import SweepController
from lightning_scaling.sweep.launchers import LocalLauncher
from lightning_scaling.sweep.plan import RunSpec
from lightning_scaling.sweep.timeouts import FLOOR, RunLimits, check_run_timeout


class ScriptedLauncher:
    """One fake slot holding up to ``k`` runs; ``outcome(job)`` says how each attempt ends:
    ``"ok"`` (a record), ``"oom"`` (a CUDA OOM in its log, exit code 1) or ``"hang"`` (never ends)."""

    def __init__(self, store, outcome, k=2):
        self.store, self.outcome, self.k = store, outcome, k
        self.jobs, self.started, self.stopped, self.observed = [], [], [], []

    @property
    def capacity(self):
        return self.k - len(self.jobs)

    def fits(self, params, alone=False):
        return not self.jobs if alone else self.capacity > 0 and not any(j.alone for j in self.jobs)

    def observe(self, record, oom=False):
        self.observed.append((record.get("max_memory_allocated"), oom))

    def describe(self):
        return "a scripted fake slot"

    def submit(self, job):
        assert self.fits(job.spec.params, job.alone), "submitted a run that does not fit"
        self.started.append((job.spec.run_id, job.attempt, job.alone, len(self.jobs)))
        self.jobs.append(job)
        job.log_header("on a fake slot")

    def stop(self, job, grace):
        self.stopped.append(job.spec.run_id)
        job.rc = -15

    def poll(self):
        done = []
        for job in list(self.jobs):
            what = self.outcome(job)
            if what == "hang" and getattr(job, "rc", None) is None:
                continue
            self.jobs.remove(job)
            if what == "ok":
                s = job.spec
                self.store.write_record({"run_id": s.run_id, "status": "ok", "launch": job.launch, "size": s.size,
                                         "fraction": None, "params": s.params, "seed": s.seed,
                                         "best_value": 0.5, "max_memory_allocated": 1 << 30})
                done.append((job, 0))
            elif what == "oom":
                with job.log_path.open("a") as log:
                    log.write("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
                done.append((job, 1))
            else:
                done.append((job, job.rc))
        return done

    def running(self):
        return list(self.jobs)

    def shutdown(self, grace=10.0):
        pass

    def close(self):
        pass


def controller(tmp_path, launcher_factory, **kwargs):
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)
    launcher = launcher_factory(store)
    ctrl = SweepController(plan, store, launcher=launcher, command=["train.py"], probe=False, poll_interval=0.01,
                           stream=io.StringIO(), analyse=lambda records: None, **kwargs)
    ctrl._conclude = lambda adaptive=None: None  # the fit is not what these tests check
    return ctrl, launcher, store


def test_a_run_that_ran_out_of_gpu_memory_beside_others_is_retried_alone(tmp_path):
    def outcome(job):  # the 200-sample run runs out of memory unless it has the slot to itself
        return "oom" if job.spec.size == 200 and not job.alone else "ok"

    ctrl, launcher, store = controller(tmp_path, lambda s: ScriptedLauncher(s, outcome), max_retries=0)
    ctrl.run()
    oom_id = next(s.run_id for s in ctrl.plan.runs if s.size == 200)
    retries = [(a, alone, beside) for run_id, a, alone, beside in launcher.started if run_id == oom_id]
    # attempt 1 was packed and ran out of memory; attempt 2 ran alone, although max_retries=0
    assert retries == [(1, False, retries[0][2]), (2, True, 0)]
    assert store.read_record(oom_id)["status"] == "ok"
    assert (None, True) in launcher.observed  # packing learnt that this grid point needs a whole GPU
    assert "oom: CUDA out of memory beside other runs" in ctrl.stream.getvalue()


def test_a_run_out_of_memory_alone_is_recorded_as_oom(tmp_path):
    ctrl, _launcher, store = controller(
        tmp_path, lambda s: ScriptedLauncher(s, lambda job: "oom" if job.spec.size == 400 else "ok"), max_retries=1)
    ctrl.run()
    rec = store.read_record(next(s.run_id for s in ctrl.plan.runs if s.size == 400))
    assert rec["status"] == "failed" and rec["reason"].startswith("oom: ")
    assert "CUDA out of memory" in rec["reason"] and len(rec["attempts"]) == 2


def test_a_hung_run_is_stopped_at_run_timeout_recorded_as_timeout_and_retried(tmp_path):
    ctrl, launcher, store = controller(
        tmp_path, lambda s: ScriptedLauncher(s, lambda job: "hang" if job.spec.size == 100 else "ok"),
        max_retries=1, run_timeout=0.2)
    ctrl.run()
    hung = next(s.run_id for s in ctrl.plan.runs if s.size == 100)
    assert launcher.stopped == [hung, hung]  # the first attempt and its retry
    rec = store.read_record(hung)
    assert rec["status"] == "failed" and rec["reason"].startswith("timeout: stopped after")
    assert "run_timeout" in rec["reason"] and len(rec["attempts"]) == 2
    assert all(store.read_record(s.run_id)["status"] == "ok" for s in ctrl.plan.runs if s.size != 100)


def test_the_automatic_time_limit_follows_finished_runs():
    limits = RunLimits()
    assert limits.limit(100) is None  # no basis before a run has finished: no limit
    limits.finished(100, 60.0)
    limits.finished(100, 80.0)
    assert limits.expected(100) == 70.0 and limits.limit(100) == 700.0
    assert limits.expected(400) == 280.0  # scaled from the nearest smaller size
    assert limits.limit(50) == 700.0  # from the nearest larger one, never below the floor
    limits.finished(10, 1.0)
    assert limits.limit(10) == FLOOR
    assert RunLimits(None).limit(100) is None and RunLimits(5).limit(100) == 5.0


def test_progress_names_runs_far_over_their_expected_time():
    class Job:
        def __init__(self, run_id, size, started):
            self.spec = RunSpec(run_id, fraction=None, size=size, params={}, seed=0, data_seed=0)
            self.started = started

    limits = RunLimits()
    limits.finished(100, 10.0)
    now = time.time()
    assert limits.overdue([Job("slow", 100, now - 45), Job("fine", 100, now - 12)], now) == ["slow (4.5x expected)"]


@pytest.mark.parametrize("bad", [0, -3, float("nan"), float("inf"), "1h", True])
def test_run_timeout_and_runs_per_device_are_checked_on_both_entry_points_before_any_run(tmp_path, bad):
    with pytest.raises(ValueError, match="run_timeout must be a number of seconds"):
        check_run_timeout(bad)
    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('no run may start')\n")
    for kwargs, match in (({"run_timeout": bad}, "run_timeout"), ({"runs_per_device": bad}, "runs_per_device")):
        with pytest.raises(ValueError, match=match):
            ScalingSweep(fractions=[0.125, 0.25, 0.5, 1.0], **kwargs)
        with pytest.raises(ValueError, match=match):
            run_sweep(script, fractions=[0.125, 0.25, 0.5, 1.0], sweep_dir=tmp_path / "sweep", **kwargs)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow
def test_a_run_that_sleeps_forever_is_stopped_by_its_process_group_and_retried(tmp_path):
    plan = SweepPlan.build(sizes=[100, 200, 400, 800], monitor="val_err")
    store = SweepStore(tmp_path)
    # the run's child sleeps too: stopping the run stops its whole process group
    code = "import subprocess, time; subprocess.Popen(['sleep', '1000']); time.sleep(1000)"
    ctrl = SweepController(plan, store, launcher=LocalLauncher(slots=4, fork_server=False),
                           command=[sys.executable, "-c", code], probe=False, max_retries=1, run_timeout=1.0,
                           stream=io.StringIO(), analyse=lambda records: None)
    ctrl._conclude = lambda adaptive=None: None
    t0 = time.time()
    ctrl.run()
    rec = store.read_record(plan.runs[0].run_id)
    assert rec["status"] == "failed" and rec["reason"].startswith("timeout: ")
    assert [a.split(":")[1].strip() for a in rec["attempts"]] == ["timeout", "timeout"]
    assert time.time() - t0 < 60
