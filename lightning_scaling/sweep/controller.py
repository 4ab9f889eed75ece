"""The sweep's controller: plans, launches, retries, resumes, and fits (no Lightning import).

Used by the :class:`~lightning_scaling.ScalingSweep` callback in the script the user starts, and
by :func:`run_sweep` from notebooks and programs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from lightning_scaling._checks import require_int
from lightning_scaling.sweep import fingerprint
from lightning_scaling.sweep.adaptive import Adaptive, AdaptiveState
from lightning_scaling.sweep.completeness import mark_incomplete, missing_sizes
from lightning_scaling.sweep.context import ENV_RUN, RunContext
from lightning_scaling.sweep.launchers import Job, Launcher, LocalLauncher, make_launcher, tail
from lightning_scaling.sweep.lock import SweepLock
from lightning_scaling.sweep.options import SweepOptions
from lightning_scaling.sweep.plan import NOT_IN_PLAN, RunSpec, SweepPlan
from lightning_scaling.sweep.probe_checks import probe_without_record, sizes_too_large
from lightning_scaling.sweep.progress import Progress, format_duration
from lightning_scaling.sweep.record import (
    COMPLETED,
    FAILED,
    OK,
    build_record,
    grid_key,
    missing_value,
    missing_value_message,
    run_value,
)
from lightning_scaling.sweep.report import sig
from lightning_scaling.sweep.reporter import Reporter
from lightning_scaling.sweep.result import SweepResult, analysis
from lightning_scaling.sweep.scheduling import Scheduler
from lightning_scaling.sweep.store import SweepStore, atomic_write_json, fitted_records, read_json

__all__ = ["SweepController", "SweepError"]

PROBE_ID = "probe"
ADAPTIVE_FILE = "adaptive.json"


class SweepError(RuntimeError):
    """The sweep cannot go on (bad script, unknown monitor key, changed settings)."""


class SweepController:
    """Runs every planned run that has no final record, then fits the laws.

    Args:
        plan: the sweep's plan.
        store: the sweep folder.
        launcher: where runs execute (default: local slots).
        command: the command that runs the user's script (default: this process's script).
        cli_overrides: append ``--key=value`` for dotted grid keys and ``--seed_everything`` (LightningCLI).
        max_retries: how often a failed run is retried.
        probe: first run one batch of the smallest run to check the script and the monitor key.
        analyse: callable turning records into a :class:`SweepResult`.
        live_analyse: the same, cheaper, for the reporter's live updates (fewer bootstrap replicates).
        reporter: where the sweep is reported besides its folder (:class:`~lightning_scaling.WandbReporter`).
        name: the sweep's name (its W&B group); default: the sweep folder's name.
        stream: where progress goes.
        poll_interval: seconds between polls of a launcher that cannot wake the loop.
        adaptive: run an adaptive study (:class:`~lightning_scaling.Adaptive`) instead of the grid.
        to_error: the sweep's ``to_error`` (an adaptive study ranks grid points on the errors it fits).
        run_timeout: seconds a run may take before it is stopped and retried, ``None`` for no limit, or
            ``"auto"``: 10x what finished runs of its size predict (:mod:`~lightning_scaling.sweep.timeouts`).
        reuse_changed: reuse finished runs whose fingerprint differs from this start's (default: stop
            before any run and say what changed; :mod:`~lightning_scaling.sweep.fingerprint`).
    """

    def __init__(
        self,
        plan: SweepPlan,
        store: SweepStore,
        *,
        launcher: Launcher | None = None,
        command: Sequence[str] | None = None,
        cli_overrides: bool = False,
        max_retries: int = 1,
        probe: bool = True,
        analyse: Callable[[list[dict[str, Any]]], SweepResult] | None = None,
        live_analyse: Callable[[list[dict[str, Any]]], SweepResult] | None = None,
        reporter: Reporter | None = None,
        name: str | None = None,
        stream: TextIO | None = None,
        poll_interval: float = 0.2,
        adaptive: Adaptive | None = None,
        to_error: Callable[[float], float] | None = None,
        run_timeout: float | str | None = "auto",
        reuse_changed: bool = False,
    ) -> None:
        require_int("max_retries", max_retries, 0)
        self.plan = plan
        self.store = store
        self.launcher = launcher or LocalLauncher()
        self.command = list(command) if command is not None else None
        self.cli_overrides = cli_overrides
        self.max_retries = max_retries
        self.probe = probe
        self.analyse = analyse or analysis(monitor=plan.monitor, mode=plan.mode, select=plan.select)
        self.live_analyse = live_analyse or analysis(monitor=plan.monitor, mode=plan.mode, bootstrap=200,
                                                     select=plan.select)
        self.reporter = reporter
        self.name = name or store.root.name
        self.stream = stream or sys.stderr
        self.poll_interval = poll_interval
        self._tracker = Progress(self.log)
        self._status: dict[str, str | None] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._planned_ids = {s.run_id for s in plan.runs}
        self.adaptive = adaptive
        self.to_error = to_error
        self.scheduler = Scheduler(self.launcher, run_timeout)
        self.reuse_changed = reuse_changed
        # the finished runs' fingerprints by grid point: every run started must match them
        self._fingerprints: dict[str, list[dict[str, Any]]] = {}

    # -- helpers ---------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        print(f"[lightning-scaling] {msg}", file=self.stream, flush=True)

    def _job(self, spec: RunSpec, attempt: int, probe: bool = False) -> Job:
        assert self.command is not None
        cmd = list(self.command)
        if self.cli_overrides:
            for k, v in spec.params.items():
                if "." in k:
                    cmd.append(f"--{k}={v if isinstance(v, str) else json.dumps(v)}")
            cmd.append(f"--seed_everything={spec.seed}")
        # a fresh token per launch: the record a run writes is recognised as this launch's, never as a
        # stale one left by an earlier session of the same run
        ctx = RunContext(spec=spec, sweep_dir=str(self.store.root), attempt=attempt, probe=probe,
                         launch=secrets.token_hex(6))
        log = self.store.log_path(PROBE_ID if probe else spec.run_id)
        env = {ENV_RUN: ctx.to_env()}
        expect = fingerprint.expectation(self._fingerprints, spec.params, self.plan.grid)
        if expect is not None:
            env[fingerprint.ENV_EXPECT] = json.dumps(expect)
        if self.reporter is not None:
            # the one-batch probe is no run of the study: it gets no W&B run of its own
            env.update({"WANDB_MODE": "disabled"} if probe else self.reporter.child_env(spec))
        return Job(spec=spec, attempt=attempt, command=cmd, env_overrides=env, log_path=log,
                   probe=probe, launch=ctx.launch, alone=self.scheduler.alone(spec))

    def _check_plan(self) -> None:
        old = self.store.read_plan()
        if old is not None:
            fatal, notes = self.plan.diff(old)
            if fatal and not any(r.get("status") in COMPLETED for r in self.store.records().values()):
                # only finished runs fix a study's settings: a failed probe or failed runs lock nothing
                self.log(f"settings changed since the last start ({'; '.join(fatal)}); no run had finished, so "
                         "the folder takes the new settings")
                fatal = []
            if fatal:
                raise SweepError(
                    f"the sweep folder {self.store.root} holds a study with other settings ({'; '.join(fatal)}); "
                    "its records cannot be mixed with this one. Pass another sweep_dir= or name=, or move the "
                    "folder away to start over"
                )
            for n in notes:
                self.log(f"plan changed since the last start: {n}")
        # the planned runs' records, and an adaptive study's rungs of them (successive halving ranks those too)
        planned = {r.run_id for r in self.plan.runs}
        lacking = missing_value((r for r in self.store.records().values()
                                 if r.get("run_id") in planned or r.get("base_id") in planned), self.plan.select)
        if lacking:
            # refused before anything runs: ranking them by their best value instead would mix two protocols
            raise SweepError(missing_value_message(lacking, self.plan.select, self.store.root / "runs"))
        self.store.write_plan(self.plan.to_dict())

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        """Run the sweep to the end (resuming what is on disk) and return its result.

        The controller holds the sweep folder's lock (:mod:`~lightning_scaling.sweep.lock`) from
        before the probe to the end, also through Ctrl-C and errors: a second controller on the
        folder stops at once, naming this one's host and process.
        """
        with SweepLock(self.store.root, log=self.log, error=SweepError):
            return self._run_locked()

    def _run_locked(self) -> SweepResult:
        self._check_plan()
        if self.adaptive is not None:
            return self._run_adaptive()
        records = self.store.records()
        self._tell_rejected()
        # kept in memory so reporting a finished run does not re-read every record from disk
        self._records = {k: r for k, r in records.items() if k in self._planned_ids}
        self._tracker.cost.learn(self._records.values())  # a resumed study prices its runs from the finished ones
        self._status = {s.run_id: records.get(s.run_id, {}).get("status") for s in self.plan.runs}
        for rec in records.values():  # packing learns what finished runs needed
            self.scheduler.observe(rec)
        todo = [s for s in self.plan.runs if self._status[s.run_id] not in COMPLETED]
        done = len(self.plan.runs) - len(todo)
        self.log(f"plan: {self.plan.summary()}")
        self.log(f"sweep folder: {self.store.root}; {self.launcher.describe()}")
        if done:
            self.log(f"resuming: {done} runs already finished, {len(todo)} to run")
        check = self._load_fingerprints(self._records.values())
        with self._launching() if todo or check else contextlib.nullcontext():
            if todo or check:
                self._prepare_launcher()
            if self.reporter is not None:
                self.reporter.start(self.name, self.plan, self.store, self.live_analyse, list(self._records.values()))
            if check or (todo and self.probe and not any(r.get("status") == OK for r in records.values())):
                self._probe()
            if todo:
                self._loop(todo)
        return self._conclude()

    def _load_fingerprints(self, records: Iterable[dict[str, Any]]) -> bool:
        """Keep the finished runs' fingerprints (every run started is checked against them); whether a probe
        must check this start's before anything is reused or run (also with ``probe=False``)."""
        records = list(records)
        note = fingerprint.legacy_note(records)
        if note:
            self.log(note)
        self._fingerprints = {} if self.reuse_changed else fingerprint.references(records)
        if self.reuse_changed and fingerprint.references(records):
            self.log("reuse_changed=True: finished runs are reused without comparing their fingerprints")
        return bool(self._fingerprints)

    def _prepare_launcher(self) -> None:
        """Resolve the command and let the launcher get ready (the fork server imports torch and Lightning
        meanwhile, in parallel with the reporter's start and the probe's setup)."""
        if self.command is None:
            from lightning_scaling.sweep.launchers import script_command

            self.command = script_command()
        prepare = getattr(self.launcher, "prepare", None)
        if callable(prepare):
            prepare(self.command)

    @contextlib.contextmanager
    def _launching(self) -> Iterator[None]:
        """Runs are in flight: any error stops them (Ctrl-C says how to resume); the launcher closes either way."""
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                self.log("interrupted: stopping runs (finished runs are kept; run the script again to resume)")
            self.launcher.shutdown()
            self._close_reporter()
            raise
        finally:
            self.launcher.close()

    def _conclude(self, adaptive: dict[str, Any] | None = None) -> SweepResult:
        """Fit the laws on the planned runs' records, save the result, and hand it to the reporter."""
        try:
            result = self.analyse(self._planned_records())
            if adaptive is not None:
                result.adaptive = adaptive
            else:
                incomplete = mark_incomplete(result, self.plan, missing_sizes(self.plan, result.runs))
                if incomplete:
                    self.log(incomplete.upper()[:1] + incomplete[1:])
            result.save(self.store.root)
        except BaseException:
            self._close_reporter()
            raise
        if adaptive is not None:
            self.log(f"compute: {adaptive['device_seconds']:.1f} device-seconds spent; the full grid would cost ~"
                     f"{adaptive['grid_device_seconds_estimate']:.1f} ({adaptive['fraction_of_grid']:.0%})")
        self.log(f"result: {self.store.result_path}")
        if self.reporter is not None:
            self.reporter.finish(result, self.store)
        return result

    # -- the adaptive study -----------------------------------------------------------------------
    def _run_adaptive(self) -> SweepResult:
        """Successive halving at each chosen size, sizes chosen by interval narrowing per cost (sweep/adaptive/).

        Runs go out in waves: everything the state allows now, then the next decision on the records.
        """
        assert self.adaptive is not None
        cfg = self.adaptive
        saved = read_json(self.store.root / ADAPTIVE_FILE) or {}
        if saved.get("config") not in (None, cfg.to_dict()):
            self.log("adaptive settings changed since the last start: the sizes chosen so far are kept")
        state = AdaptiveState.restore(self.plan, cfg, saved, to_error=self.to_error)
        records = self.store.records()
        self._records = {k: r for k, r in records.items() if k in self._planned_ids}
        self._status = {}
        for rec in records.values():  # packing learns what finished runs needed
            self.scheduler.observe(rec)
        done = sum(r.get("status") in COMPLETED for r in records.values())
        self.log(f"plan ({cfg.describe()}): candidates {self.plan.summary()}")
        self.log(f"sweep folder: {self.store.root}; {self.launcher.describe()}")
        if done:
            self.log(f"resuming: {done} run rungs already finished")
        probed = any(r.get("status") == OK for r in records.values())
        check = self._load_fingerprints(records.values())
        with self._launching():
            self._prepare_launcher()
            if self.reporter is not None:
                self.reporter.start(self.name, self.plan, self.store, self.live_analyse, list(self._records.values()))
            if check:  # before any decision reuses a finished run
                self._probe()
                probed = True
            while True:
                records = self.store.records()
                self._tell_rejected()
                # the result's own fit (computed only when a decision needs it): the interval decided on is the
                # one reported
                decision = state.decide(records, str(self.store.root), partial(state.law, records, self.analyse),
                                        state.spent(records), slots=lambda: max(1, self.launcher.capacity))
                atomic_write_json(self.store.root / ADAPTIVE_FILE, state.summary(records))
                if decision.done:
                    self.log(f"adaptive study stopped: {decision.reason}")
                    break
                if self.probe and not probed:
                    self._probe()
                    probed = True
                for spec in decision.launch:
                    self._status.setdefault(spec.run_id, None)
                self.log(f"launching {len(decision.launch)} runs: "
                         + ", ".join(sorted({f'{s.size_label} rung {s.rung}' for s in decision.launch})))
                # every launched run ends with a record: _loop writes a failed one for a run that gave up
                self._loop(decision.launch)
        return self._conclude(adaptive=state.summary(self.store.records()))

    def _planned_records(self) -> list[dict[str, Any]]:
        return [dict(r) for r in fitted_records(self.store.records(), self._planned_ids)]

    def _keep(self, record: dict[str, Any]) -> None:
        # an adaptive study's earlier rungs trained on part of the budget: on disk, not reported live (a rung-0
        # record stands for its grid point only once halving has stopped it: the final result and the
        # decisions count those, through store.fitted_records)
        if record["run_id"] not in self._planned_ids:
            return
        self._records[record["run_id"]] = record
        if self.reporter is not None:
            self.reporter.update(list(self._records.values()))

    def _tell_rejected(self) -> None:
        for line in self.store.new_problems():
            self.log(line)

    def _close_reporter(self) -> None:
        if self.reporter is not None:
            self.reporter.close(failed=True)


    def _probe(self) -> None:
        # the smallest run, of a grid point with finished runs if any (its fingerprint is then compared in full)
        smallest = min(self.plan.runs, key=lambda s: (grid_key(s.params) not in self._fingerprints,
                                                      s.fraction or 0, s.size or 0))
        job = self._job(smallest, attempt=1, probe=True)
        self.log(f"probe: one batch of {smallest.run_id} to check the script and the monitor key")
        probe_path = self.store.root / f"{PROBE_ID}.json"
        probe_path.unlink(missing_ok=True)
        while self.launcher.capacity < 1:  # pragma: no cover - a fresh launcher is empty
            time.sleep(self.poll_interval)
        self.launcher.submit(job)
        while True:
            finished = self.launcher.poll()
            if finished:
                _, rc = finished[0]
                break
            time.sleep(self.poll_interval)
        info = read_json(probe_path)
        if fingerprint.refused(info):
            assert info is not None
            raise SweepError(info["reason"])
        if rc == 0 and info is None:
            raise SweepError(probe_without_record(self.command, job.log_path))
        if info is not None and info.get("status") != "ok":
            raise SweepError(f"the probe run stopped: {info.get('reason')}")
        if rc != 0 or info is None:
            raise SweepError(f"the probe run failed (exit code {rc}); nothing else was started. Its log "
                             f"{job.log_path} ends with:\n{tail(job.log_path)}")
        too_large = sizes_too_large(self.plan, info.get("dataset_size"))
        if too_large:
            raise SweepError(f"{too_large}; nothing else was started")
        if info.get("unseeded_model"):
            self.log(f"warning: {info['unseeded_model']}")
        self.scheduler.observe({**info, "params": smallest.params})

    def _loop(self, todo: list[RunSpec]) -> None:
        queue: deque[tuple[RunSpec, int]] = deque((s, 1) for s in todo)
        total = len(self._status) if self.adaptive is not None else len(self.plan.runs)
        failures: dict[str, list[str]] = {}
        last_beat = time.time()
        self._tracker.expect(todo)
        while queue or self.launcher.running():
            while queue and self.scheduler.fits(queue[0][0]):
                spec, attempt = queue.popleft()
                self.launcher.submit(self._job(spec, attempt))
            finished = self.launcher.poll()
            for job, rc in finished:
                rec = self.store.read_record(job.spec.run_id)
                fresh = rec is not None and rec.get("launch") == job.launch
                if fresh and fingerprint.refused(rec):  # changed settings: no retry, nothing mixed
                    assert rec is not None
                    raise SweepError(rec["reason"])
                if fresh and rec is not None and rec["status"] in COMPLETED:
                    self._status[job.spec.run_id] = rec["status"]
                    took = time.time() - job.started
                    self._tracker.finished(job.spec, took)
                    self.scheduler.finished(job, rec)
                    best, took_s = sig(run_value(rec, self.plan.select)), format_duration(took)
                    self.log(f"{rec['status']}: {job.spec.run_id} {self.plan.select} {self.plan.monitor}={best} in "
                             f"{took_s}")
                    self._progress(total)
                    self._keep(rec)
                    continue
                given = rec.get("reason") if fresh and rec else self.store.rejected.get(job.spec.run_id)
                reason, alone = self.scheduler.failure(job, rc, given)
                failures.setdefault(job.spec.run_id, []).append(f"attempt {job.attempt}: {reason}")
                if (job.attempt <= self.max_retries or alone) and NOT_IN_PLAN not in reason:
                    self.log(f"failed (attempt {job.attempt}, retrying): {job.spec.run_id}: {reason.splitlines()[0]}")
                    queue.append((job.spec, job.attempt + 1))
                else:
                    self.log(f"failed (attempt {job.attempt}, giving up): {job.spec.run_id}: {reason.splitlines()[0]}")
                    failed = build_record(job.spec, status=FAILED, attempt=job.attempt, launch=job.launch,
                                          reason=reason, base=rec if fresh and rec else None,
                                          attempts=failures[job.spec.run_id], monitor=self.plan.monitor)
                    self.store.write_record(failed)
                    self._status[job.spec.run_id] = FAILED
                    self._tracker.finished(job.spec, None)
                    self._progress(total)
                    self._keep(dict(failed))
            self.scheduler.stop_expired(self.log)
            if time.time() - last_beat > 30:
                last_beat = time.time()
                self._progress(total, force=False)  # printed only when something changed, or now and then
            if not finished:  # a slot just came free: fill it now, not after the next wait
                self._wait()

    def _wait(self) -> None:
        # a launcher that can tell when a run ends wakes the loop then (LocalLauncher with its fork server)
        wait = getattr(self.launcher, "wait", None)
        if callable(wait):
            wait(self.poll_interval)
        else:
            time.sleep(self.poll_interval)

    def _progress(self, total: int, *, force: bool = True) -> None:
        now = time.time()
        running = [(job.spec, now - job.started) for job in self.launcher.running()]
        self._tracker.report(self._status, total, running, max(1, len(running) + self.launcher.capacity),
                             force=force, extra=self.scheduler.overdue())


def run_sweep(
    script: str | Path,
    *,
    args: Sequence[str] = (),
    fractions: Sequence[float] | None = None,
    sizes: Sequence[int] | None = None,
    grid: dict[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] = 1,
    monitor: str = "val_loss",
    mode: str = "min",
    to_error: Callable[[float], float] | None = None,
    data_seed: int = 0,
    sweep_dir: str | Path | None = None,
    name: str | None = None,
    slots: int | None = None,
    devices_per_slot: int = 1,
    launcher: Launcher | str | None = None,
    max_retries: int = 1,
    size_fn: Callable[[Any], float] | None = None,
    size_unit: str = "samples",
    probe: bool = True,
    cli_overrides: bool | None = None,
    bootstrap: int = 1000,
    targets: Sequence[float] = (),
    reporter: Reporter | bool | None = None,
    strategy: str | Adaptive = "grid",
    runs_per_device: int | str = 1,
    run_timeout: float | str | None = "auto",
    reuse_changed: bool = False,
    select: str = "best",
) -> SweepResult:
    """Run a sweep from a notebook or program: every run executes ``python script *args``.

    The script must add a :class:`~lightning_scaling.ScalingSweep` with the same arguments to its
    Trainer (in a run the callback applies the run's data size, grid values and seed). The arguments
    are ``ScalingSweep``'s (:mod:`~lightning_scaling.sweep.options`: same names, defaults, checks and
    meaning), except: ``sweep_dir`` defaults to ``scaling_sweeps/<name or "sweep">``; ``reporter`` (a
    :class:`~lightning_scaling.WandbReporter`) reports from this process, ``None``/``False`` not at
    all; ``size_fn`` and ``size_unit`` act in the runs (the script's callback), only checked here.

    Example::

        result = run_sweep("train.py", fractions=ScalingSweep.geometric(1/16, 1, 5), grid={"hidden": [32, 64]},
                           monitor="val_err", strategy=Adaptive(target=Target.error_at(60000), budget=3600))
    """
    path = Path(script)
    if not path.is_file():
        raise FileNotFoundError(f"script {script!r} not found; pass the path of the training script")
    if reporter is True:
        raise ValueError("run_sweep(reporter=True) has no WandbLogger to take the W&B settings from; pass "
                         "reporter=WandbReporter(project=...)")
    opts = SweepOptions.build(
        fractions=fractions, sizes=sizes, grid=grid, seeds=seeds, monitor=monitor, mode=mode, to_error=to_error,
        data_seed=data_seed, sweep_dir=sweep_dir, name=name, slots=slots, devices_per_slot=devices_per_slot,
        launcher=launcher, max_retries=max_retries, size_fn=size_fn, size_unit=size_unit, probe=probe,
        cli_overrides=cli_overrides, bootstrap=bootstrap, targets=targets, reporter=reporter, strategy=strategy,
        runs_per_device=runs_per_device, run_timeout=run_timeout, reuse_changed=reuse_changed, select=select)
    live = min(bootstrap, reporter.live_bootstrap) if reporter else 0
    store = SweepStore(sweep_dir if sweep_dir is not None else Path("scaling_sweeps") / (name or "sweep"))
    controller = SweepController(
        opts.plan, store, launcher=make_launcher(launcher, slots=slots, devices_per_slot=devices_per_slot,
                                                 runs_per_device=opts.runs_per_device),
        command=[sys.executable, str(path.resolve()), *args], cli_overrides=opts.cli_overrides,
        max_retries=max_retries, probe=probe, analyse=opts.analyse(bootstrap), live_analyse=opts.analyse(live),
        reporter=reporter or None, name=name, adaptive=opts.adaptive, to_error=to_error,
        run_timeout=opts.run_timeout,
        reuse_changed=opts.reuse_changed,
    )
    return controller.run()
