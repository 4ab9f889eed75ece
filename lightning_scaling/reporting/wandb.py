r"""Weights & Biases reporting for a scaling sweep (wandb only; no Lightning import).

What lands in W&B:

* every training run of the sweep is its own W&B run, in one group named after the sweep, with the
  run's data size, grid values and seed under ``config.scaling`` and its best monitored value in the
  summary (``best/<monitor>``), so panels can be built across the group;
* the controller's run (the script's own ``WandbLogger`` run, or one this reporter starts) receives,
  and re-receives as runs finish, a table of all runs (``scaling/runs``), charts on log10 axes (W&B's
  built-in charts have no log axes), the fitted curve with its band and extrapolation
  (``scaling/learning_curve``), the paper-style figure (``scaling/figure``) and, when the model-size
  law was fitted, its figure (``scaling/model_size_figure``), every fitted parameter and interval in
  the summary (``scaling/law/beta``, ``scaling/law/beta_lower``, ...), and at the end an Artifact
  (type ``scaling-result``) holding ``result.json``, the CSV tables and the figures.

Reporting never stops or slows the sweep: live updates run on a background thread (the newest
state wins); a W&B server that does not answer, or a missing API key, makes the study report offline
(one warning says how to ``wandb sync`` it later, :mod:`~lightning_scaling.reporting.connect`); any
other W&B failure becomes one warning while the results stay in the sweep folder.

The study's W&B identity is kept in its folder (``wandb.json``): the group (default: the sweep's
name and a short hash of the folder's absolute path, so two ``train.py`` studies do not share one)
and the controller run's id, which a resumed study continues (``resume="allow"``). The controller
run's final summary is exactly the final result: keys an earlier (live or resumed) fit left there
are removed.

.. code-block:: python

    sweep = ScalingSweep(fractions=ScalingSweep.geometric(1 / 64, 1, 7), monitor="val_err",
                         targets=[0.05])
    trainer = pl.Trainer(logger=WandbLogger(project="scaling"), callbacks=[sweep])

    # or, without a WandbLogger in the script:
    sweep = ScalingSweep(..., reporter=WandbReporter(project="scaling"))
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import string
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning_scaling.reporting.charts import MAX_CHART_POINTS, chart_payload
from lightning_scaling.reporting.connect import open_run, sync_hint
from lightning_scaling.sweep.plan import RunSpec, SweepPlan
from lightning_scaling.sweep.record import RECORDED
from lightning_scaling.sweep.result import MODEL_SIZE_FIGURE, SweepResult
from lightning_scaling.sweep.store import atomic_write_json, read_json

if TYPE_CHECKING:

    from lightning_scaling.sweep.store import SweepStore

__all__ = ["ENV_WANDB", "ENV_WANDB_MODE", "STATE_FILE", "WandbReporter", "default_group"]

#: set by the controller in every run's environment: "1" when the run reports to W&B
ENV_WANDB = "LIGHTNING_SCALING_WANDB"
#: set by the controller when the runs must report in this mode ("offline": W&B was unreachable)
ENV_WANDB_MODE = "LIGHTNING_SCALING_WANDB_MODE"
#: the study's W&B identity in its sweep folder: group, the controller run's id, its summary keys
STATE_FILE = "wandb.json"
_ID_CHARS = string.ascii_lowercase + string.digits


def default_group(name: str, root: Path) -> str:
    """The W&B group of a study: its name and a short hash of its folder's absolute path.

    Example:
        >>> default_group("train", Path("/runs/a")) != default_group("train", Path("/runs/b"))
        True
    """
    digest = hashlib.sha1(str(Path(root).absolute()).encode()).hexdigest()[:6]
    return f"{name}-{digest}"


class WandbReporter:
    """Pushes a scaling sweep to Weights & Biases.

    The :class:`~lightning_scaling.ScalingSweep` uses one by default when the Trainer has a
    ``WandbLogger``; pass one as ``ScalingSweep(reporter=...)`` to set options, or to report from a
    script without a ``WandbLogger``.

    Args:
        project: W&B project of the runs this reporter starts itself (without a ``WandbLogger``);
            default: W&B's own (``WANDB_PROJECT``).
        entity: W&B entity of those runs.
        group: W&B group of the sweep's runs; default: the sweep's name.
        tags: extra tags on every run of the sweep.
        log_runs: make every training run its own W&B run. ``False`` turns W&B off in the runs
            (``WANDB_MODE=disabled``), the script's ``WandbLogger`` included.
        live_interval: seconds between two live updates of the controller's charts (0: after
            every finished run).
        live_bootstrap: bootstrap replicates of the live fits (the final fit uses the sweep's).
        extrapolate: draw the fitted curve up to this multiple of the largest size.
        curve_points: points of the fitted curve (the chart holds 3 of these series plus the
            measured points; W&B samples a chart above 1,500 points).
        init_kwargs: more ``wandb.init`` arguments for runs this reporter starts (``mode="offline"``,
            ``dir=...``).
        flush_timeout: seconds the end of the sweep waits for a live update still in flight.

    Example:
        >>> reporter = WandbReporter(project="digits-scaling", tags=["mlp"], live_interval=30)
        >>> reporter.group is None  # the sweep's name, once the sweep starts
        True
    """

    def __init__(
        self,
        *,
        project: str | None = None,
        entity: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        log_runs: bool = True,
        live_interval: float = 15.0,
        live_bootstrap: int = 200,
        extrapolate: float = 10.0,
        curve_points: int = 200,
        init_kwargs: Mapping[str, Any] | None = None,
        flush_timeout: float = 120.0,
    ) -> None:
        if isinstance(tags, str):
            raise TypeError(f"tags must be a list of strings, got the string {tags!r}; pass tags=[{tags!r}]")
        for name, value in (("live_interval", live_interval), ("flush_timeout", flush_timeout)):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if not (isinstance(extrapolate, int | float) and math.isfinite(extrapolate) and extrapolate >= 1):
            raise ValueError(f"extrapolate must be a multiple >= 1 of the largest size, got {extrapolate!r}")
        if not (isinstance(curve_points, int) and curve_points >= 2 and 3 * curve_points < MAX_CHART_POINTS):
            raise ValueError(f"curve_points must be an integer in [2, {MAX_CHART_POINTS // 3 - 1}] so a chart "
                             f"stays under W&B's {MAX_CHART_POINTS} points, got {curve_points!r}")
        if not (isinstance(live_bootstrap, int) and live_bootstrap >= 0):
            raise ValueError(f"live_bootstrap must be an integer >= 0, got {live_bootstrap!r}")
        self.project = project
        self.entity = entity
        self.group = group
        self.tags = [str(t) for t in tags]
        self.log_runs = log_runs
        self.live_interval = float(live_interval)
        self.live_bootstrap = live_bootstrap
        self.extrapolate = float(extrapolate)
        self.curve_points = curve_points
        self.init_kwargs = dict(init_kwargs or {})
        self.flush_timeout = float(flush_timeout)
        self._run: Any = None  # the controller's W&B run
        self._owns_run = False
        self._enabled = True
        self._group = group
        self._store: SweepStore | None = None
        self._analyse: Callable[[list[dict[str, Any]]], SweepResult] | None = None
        self._warned: set[str] = set()
        self._failures = 0
        self._cv = threading.Condition()
        self._pending: list[dict[str, Any]] | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._live_updates = 0
        self._summary_keys: set[str] = set()
        self._publish_lock = threading.Lock()
        self._final = False  # the final result is (being) published: a late live update is dropped
        self._run_id: str | None = None
        self._state_path: Path | None = None
        self._offline_why: str | None = None  # W&B was unreachable: the study reports offline

    @property
    def live_updates(self) -> int:
        """How many live updates have been published so far (the final one not counted)."""
        return self._live_updates

    # -- failure handling ------------------------------------------------------------------------
    def _warn(self, what: str, exc: BaseException | None = None) -> None:
        if what in self._warned:
            return
        self._warned.add(what)
        where = f" in {self._store.root}" if self._store is not None else ""
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        warnings.warn(f"W&B reporting: {what}{detail}. The sweep goes on; its results stay{where}.", stacklevel=3)

    def disable(self, why: str, exc: BaseException | None = None) -> None:
        """Report nothing more (and turn W&B off in the runs): one warning says why."""
        self._enabled = False
        self._warn(why, exc)

    def _safe(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._enabled:
            return None
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # any W&B failure is a warning: the sweep must go on
            self._failures += 1
            self._warn(what, exc)
            if self._failures >= 3:
                self.disable("stopped after 3 failures")
            return None

    # -- the controller's side -------------------------------------------------------------------
    def attach(self, run: Any) -> None:
        """Report into an existing W&B run (the script's ``WandbLogger.experiment``)."""
        self._run = run
        self._owns_run = False

    def bind(self, name: str, root: Path, group: str | None = None) -> str:
        """The study's W&B identity, kept in its folder (``wandb.json``): its group and the id of the
        controller's run, which a resumed study continues. Returns the group.

        Args:
            name: the sweep's name.
            root: the sweep folder.
            group: the group the script's ``WandbLogger`` asks for (the reporter's own ``group`` wins).
        """
        path = Path(root) / STATE_FILE
        if self._state_path == path and self._group is not None:
            return self._group
        try:
            state = read_json(path) or {}
        except ValueError as exc:  # a damaged file: a new identity, the study itself loses nothing
            self._warn(f"{path} could not be read; the study gets a new W&B run", exc)
            state = {}
        self._group = self.group or group or state.get("group") or default_group(name, root)
        self._run_id = state.get("run_id") or "".join(secrets.choice(_ID_CHARS) for _ in range(8))
        self._summary_keys |= set(state.get("summary_keys") or ())
        self._state_path = path
        self._save_state()
        return self._group

    def _save_state(self) -> None:
        if self._state_path is None:
            return
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self._state_path, {"group": self._group, "run_id": self._run_id,
                                                 "summary_keys": sorted(self._summary_keys)})
        except OSError as exc:
            self._warn(f"could not write {self._state_path}", exc)

    def open_controller_run(self, init_kwargs: Mapping[str, Any], name: str, root: Path) -> Any:
        """Start the controller's W&B run from a ``WandbLogger``'s ``wandb.init`` arguments: in the study's
        group (job type ``scaling-sweep``), continuing the study's run, and offline when W&B does not
        answer (:func:`~lightning_scaling.reporting.connect.open_run`); a disabled run when it cannot
        start at all (reporting is then off), ``None`` when not even that starts."""
        self.bind(name, root, group=init_kwargs.get("group"))
        kwargs = {**init_kwargs, "group": self._group, "job_type": "scaling-sweep", "id": self._run_id,
                  "resume": "allow"}
        run = self._open("the WandbLogger's run failed to start", kwargs)
        if run is not None:
            self.attach(run)
            return run
        try:  # a disabled run, so Lightning does not try (and wait on) the same start again
            import wandb

            return wandb.init(mode="disabled")
        except Exception:
            return None

    def _open(self, what: str, kwargs: Mapping[str, Any]) -> Any:
        """``open_run`` with one warning on failure (reporting off) or on going offline (how to sync)."""
        try:
            run, why = open_run(kwargs)
        except Exception as exc:
            self.disable(f"{what}; the sweep's runs will not report to W&B either", exc)
            return None
        if why is not None:
            self._offline_why = why
            self._warn(f"{why}. The study reports offline (its runs too) and does not wait on W&B; upload it "
                       f"later with `{sync_hint(run)}`")
        return run

    def start(
        self,
        name: str,
        plan: SweepPlan,
        store: SweepStore,
        analyse: Callable[[list[dict[str, Any]]], SweepResult],
        records: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Open (or attach to) the controller's W&B run and start live updates."""
        self._store = store
        self._analyse = analyse
        try:
            import wandb  # noqa: F401  (only to say clearly when it is missing)
        except ImportError as exc:
            self.disable("wandb is not installed (pip install wandb)", exc)
            return
        self.bind(name, store.root)
        config = {"scaling_sweep": {
            "name": name, "group": self._group, "monitor": plan.monitor, "mode": plan.mode, "select": plan.select,
            "fractions": plan.fractions, "sizes": plan.sizes, "grid": plan.grid, "seeds": plan.seeds,
            "data_seed": plan.data_seed, "n_runs": len(plan.runs), "sweep_dir": str(store.root),
        }}
        if self._run is None:
            self._run = self._open("wandb.init failed", {
                "project": self.project, "entity": self.entity, "group": self._group,
                "job_type": "scaling-sweep", "name": name, "tags": ["lightning-scaling", *self.tags],
                "config": config, **self.init_kwargs, "id": self._run_id, "resume": "allow"})
            if self._run is None:
                return
            self._owns_run = True
        else:
            self._safe("updating the run's config", self._run.config.update, config, allow_val_change=True)
        self._thread = threading.Thread(target=self._worker, name="lightning-scaling-wandb", daemon=True)
        self._thread.start()
        if any(r.get("status") in RECORDED for r in records):
            self.update(records)

    def child_env(self, spec: RunSpec) -> dict[str, str]:
        """Environment of one training run: its W&B group, job type, name and tags."""
        if not (self._enabled and self.log_runs):
            return {ENV_WANDB: "0", ENV_WANDB_MODE: "disabled", "WANDB_MODE": "disabled"}
        env = {
            ENV_WANDB: "1", "WANDB_RUN_GROUP": self._group or "", "WANDB_JOB_TYPE": "scaling-run",
            "WANDB_NAME": spec.run_id, "WANDB_TAGS": ",".join(["lightning-scaling", *self.tags]),
        }
        if self._offline_why is not None:  # the controller could not reach W&B: the runs do not try
            env.update({ENV_WANDB_MODE: "offline", "WANDB_MODE": "offline"})
        return env

    def update(self, records: Sequence[Mapping[str, Any]]) -> None:
        """A run finished: refit and re-log in the background (only the newest state is kept)."""
        if not self._enabled or self._thread is None:
            return
        with self._cv:
            self._pending = [dict(r) for r in records]
            self._cv.notify()

    def _worker(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                records, self._pending = self._pending, None
            self._safe("a live update failed", self._publish_live, records)
            with self._cv:
                self._cv.wait_for(lambda: self._stopping, timeout=self.live_interval)

    def _publish_live(self, records: list[dict[str, Any]]) -> None:
        assert self._analyse is not None
        result = self._analyse(records)
        with self._publish_lock:
            if self._final:  # the final result is out (or going out): this older state must not follow it
                return
            self._publish(result, figure=None)
            self._live_updates += 1

    def _stop_worker(self) -> None:
        if self._thread is None:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        self._thread.join(self.flush_timeout)
        if self._thread.is_alive():
            self._warn(f"a live update still runs after flush_timeout={self.flush_timeout:g} s; not waiting")
        self._thread = None

    def finish(self, result: SweepResult, store: SweepStore) -> None:
        """The sweep ended: log the final result, the figure and the ``result.json`` Artifact."""
        self._final = True
        self._stop_worker()
        if self._run is None:
            return
        figure = store.figure_path if store.figure_path.exists() else None
        # a live update still in W&B's hands (past flush_timeout) must not land after the final result
        if self._publish_lock.acquire(timeout=self.flush_timeout):
            try:
                self._safe("logging the final result", self._publish, result, figure=figure)
            finally:
                self._publish_lock.release()
        else:
            self._warn("a live update still holds the W&B run; the final result was not logged")
        self._safe("logging the result artifact", self._log_artifact, store)
        self.close()

    def close(self, failed: bool = False) -> None:
        """Stop live updates and finish the run this reporter started (not the script's own)."""
        self._stop_worker()
        if self._owns_run and self._run is not None:
            run, self._run = self._run, None
            # finish even after failures (disabled reporting): the run must not be left open
            try:
                run.finish(exit_code=1 if failed else 0)
            except Exception as exc:
                self._warn("finishing the W&B run failed", exc)

    def _publish(self, result: SweepResult, figure: Path | None) -> None:
        try:
            payload = chart_payload(result, figure, extrapolate=self.extrapolate, curve_points=self.curve_points)
        except Exception as exc:  # a chart that cannot be drawn must not leave an earlier fit's summary
            self._warn("drawing the charts failed; the summary still holds the result", exc)
            payload = {}
        summary = {f"scaling/{k}": v for k, v in result.flat_summary().items()}
        # a key an earlier fit had (live, or before a resume) but this one lacks would otherwise linger,
        # stale, in the summary; a chart key of an earlier fit (a law that is gone) too
        keep = summary.keys() | payload.keys() | {f"{k}_table" for k in payload}
        present = {k for k in self._run.summary.keys() if k.startswith("scaling/")}  # noqa: SIM118 (no __iter__)
        for key in sorted((self._summary_keys | present) - keep):
            del self._run.summary[key]
        self._run.summary.update(summary)
        self._summary_keys = set(keep)
        self._save_state()
        if payload:
            self._run.log(payload)

    def _log_artifact(self, store: SweepStore) -> None:
        import wandb

        art = wandb.Artifact(_artifact_name(f"{self._group}-result"), type="scaling-result",
                             description="lightning-scaling sweep result: records, fitted laws, predictions")
        for path in (store.result_path, store.root / "runs.csv", store.root / "curve.csv", store.figure_path,
                     store.root / MODEL_SIZE_FIGURE):
            if path.exists():
                art.add_file(str(path), name=path.name)
        self._run.log_artifact(art)

    # -- a training run's side -------------------------------------------------------------------
    @staticmethod
    def active_in_run() -> bool:
        """Whether the controller asked this training run to report to W&B."""
        return os.environ.get(ENV_WANDB) == "1"

    @staticmethod
    def run_mode(probe: bool = False) -> str | None:
        """The mode this training run's W&B runs must use, whatever the script asks: ``"disabled"`` in
        the probe and when the controller turned W&B off, ``"offline"`` when it could not reach W&B."""
        return "disabled" if probe else os.environ.get(ENV_WANDB_MODE) or None

    def _open_in_run(self, init_kwargs: Mapping[str, Any], probe: bool = False) -> Any:
        """``open_run`` in a training run, in :meth:`run_mode`; a warning when it went offline."""
        kwargs = dict(init_kwargs)
        mode = self.run_mode(probe)
        if mode is not None:
            kwargs["mode"] = mode
        run, why = open_run(kwargs)
        if why is not None:
            self._warn(f"{why}; this run logs offline: upload it later with `{sync_hint(run)}`")
        return run

    def open_run_for_logger(self, init_kwargs: Mapping[str, Any], probe: bool = False) -> Any:
        """A training run's W&B run from its ``WandbLogger``'s ``wandb.init`` arguments, in :meth:`run_mode`
        and never waiting long on W&B (offline instead); a disabled run if even that fails (``None`` if
        W&B cannot start at all)."""
        try:
            return self._open_in_run(init_kwargs, probe)
        except Exception as exc:
            self._warn("the WandbLogger's run failed to start; this run reports nothing to W&B", exc)
            try:
                import wandb

                return wandb.init(mode="disabled")
            except Exception:
                return None

    def run_started(self, run: Any, info: Mapping[str, Any]) -> None:
        """A training run's W&B run exists (the script's ``WandbLogger``): put the run's plan in its config."""
        if run is None or not self.active_in_run():
            return
        self._safe("updating the run's config", run.config.update, {"scaling": dict(info)}, allow_val_change=True)

    def run_finished(self, run: Any, info: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        """A training run ended: its measured size and best value go to its W&B config and summary.

        Without a ``WandbLogger`` (``run`` is ``None``) the reporter starts a short W&B run for it.
        """
        if not self.active_in_run():
            return
        own = run is None
        if own:
            try:
                run = self._open_in_run({"project": self.project, "entity": self.entity, **self.init_kwargs})
            except Exception as exc:
                self._warn("wandb.init failed in a training run", exc)
                return
        config = {**info, **{k: record.get(k) for k in (
            "num_samples", "train_size", "size_unit", "trainable_params")}}
        summary = {
            f"best/{record.get('monitor')}": record.get("best_value"), "scaling/status": record.get("status"),
            f"final/{record.get('monitor')}": record.get("final_value"), "scaling/select": record.get("select"),
            "scaling/best_step": record.get("best_step"), "scaling/steps": record.get("steps"),
            "scaling/train_size": record.get("train_size"), "scaling/wall_time_s": record.get("wall_time_s"),
        }
        if record.get("reason"):
            summary["scaling/reason"] = str(record["reason"]).splitlines()[0]
        self._safe("updating the run's config", run.config.update, {"scaling": config}, allow_val_change=True)
        self._safe("updating the run's summary", run.summary.update,
                   {k: v for k, v in summary.items() if v is not None and _json_number_ok(v)})
        if own:
            self._safe("finishing the run", run.finish)


def _artifact_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "sweep-result"


def _json_number_ok(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)
