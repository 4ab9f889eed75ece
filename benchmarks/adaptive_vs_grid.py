"""The adaptive study against the paper's full grid, answering the same two questions, in one run.

Two tasks (``benchmarks/adaptive_task.py`` is the training script of both):

* ``digits``: the README's main job (``examples/digits/train.py``): an MLP of width 8/32/128 (the
  grid), 2 seeds, 600 steps per run at every size (every run costs the same). Full data: the
  1,200 training images; sizes used: up to a quarter of it (37 .. 300 images, geometric).
* ``teacher``: teacher-student classification, an MLP of width 2/16/64 (width 2 clearly worse),
  2 seeds, 15 epochs per run (a run's cost grows with its data size). Full data: 32,768 samples;
  sizes used: up to a quarter of it (128 .. 8,192, geometric).

For each task:

1. Grid: every candidate size x width x seed, to the end (the reference); its law predicts the
   error at the full data and the data needed for a target error. The same sweep also trains every
   width at the full data (the *measured truth*; not counted in the grid's compute, not fitted).
2. Adaptive, question 1: ``target=Target.error_at(full size)``; question 2:
   ``target=Target.data_needed(e)`` with ``e`` the measured full-data error (so the true answer is
   about the full size). Each with ``tolerance=0.1`` and ``budget=`` a share of the grid's measured
   device-seconds (``--budgets``, default a quarter and a half): a compute cap a user would state.

Prints device-seconds of each (sum of run wall times x devices, from the records), the ratio,
both predictions with 95% intervals, and the truth. Target: adaptive <= 25% of the grid's compute,
its prediction inside the grid's interval. Run from the repository root (~15 minutes on 2 cores):

    python benchmarks/adaptive_vs_grid.py [--tasks digits teacher] [--root /tmp/adaptive_bench] [--slots 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightning_scaling.sweep.adaptive import device_seconds  # noqa: E402
from lightning_scaling.sweep.result import SweepResult  # noqa: E402
from lightning_scaling.sweep.store import SweepStore  # noqa: E402

TASKS = {
    "digits": {"full": 1200, "candidates": [37, 53, 75, 106, 150, 212, 300], "grid": {"width": [8, 32, 128]},
               "seeds": 2, "monitor": "val_top1_err",
               "note": "digits (examples/digits), MLP widths [8, 32, 128] x 2 seeds, 600 steps per run"},
    "teacher": {"full": 32768, "candidates": [128, 256, 512, 1024, 2048, 4096, 8192], "grid": {"hidden": [2, 16, 64]},
                "seeds": 2, "monitor": "val_err",
                "note": "teacher-student MLP, widths [2, 16, 64] x 2 seeds, 15 epochs per run (cost grows with size)"},
}


def _sweep(task: str, folder: Path, slots: int, **kwargs) -> float:
    spec = TASKS[task]
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "LS_BENCH_TASK": task,
           "LS_BENCH_SWEEP": json.dumps({"grid": spec["grid"], "seeds": spec["seeds"], "slots": slots,
                                         "bootstrap": 1000, "sweep_dir": str(folder), **kwargs})}
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "adaptive_task.py")], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the sweep in {folder} failed:\n{proc.stderr[-4000:]}")
    return time.time() - t0


def _fmt(p) -> str:
    return f"{p.value:.4g} [{p.lower:.4g}, {p.upper:.4g}]"


def bench(task: str, root: Path, slots: int, tolerance: float, budgets: list[float]) -> None:
    spec = TASKS[task]
    full, candidates, monitor = spec["full"], spec["candidates"], spec["monitor"]
    key = next(iter(spec["grid"]))
    # 1. the grid over the candidates, plus every width at the full data (the truth)
    grid_dir = root / task / "grid"
    wall_grid = _sweep(task, grid_dir, slots, sizes=[*candidates, full])
    plan = SweepStore(grid_dir).read_plan()
    assert plan is not None
    planned = {r["run_id"] for r in plan["runs"]}
    recs = [r for k, r in SweepStore(grid_dir).records().items() if k in planned]
    grid_recs = [r for r in recs if r["size"] <= full // 4]
    truth_recs = [r for r in recs if r["size"] == full and r["status"] == "ok"]
    grid_cost = sum(device_seconds(r) for r in grid_recs)
    grid = SweepResult.from_records(grid_recs, monitor=monitor, mode="min", bootstrap=1000)
    by_point: dict[object, list[float]] = {}
    for r in truth_recs:
        by_point.setdefault(r["params"][key], []).append(r["best_value"])
    truth = min(sum(v) / len(v) for v in by_point.values())

    print(f"== task {task}: {spec['note']}; full data {full}; sizes used <= {full // 4} (candidates {candidates})")
    print(f"grid:     {len(grid_recs)} runs, {grid_cost:.1f} device-s (wall {wall_grid:.0f} s incl. the truth runs)")
    questions = [("error at full data", {"error_at": full}, lambda law: law.predict(full), f"{truth:.4g}"),
                 (f"data needed for error {truth:.4g}", {"data_needed": truth}, lambda law: law.data_needed(truth),
                  f"~{full} (the target is the error measured at {full})")]
    for i, (question, target, ask, measured) in enumerate(questions, 1):
        g = ask(grid.law)
        print(f"question {i}: {question}")
        print(f"  grid:     {_fmt(g)}  ({grid_cost:.1f} device-s)")
        for share in budgets:
            folder = root / task / f"adaptive_{i}_{share:g}"
            _sweep(task, folder, slots, sizes=candidates,
                   strategy={"target": target, "tolerance": tolerance, "budget": share * grid_cost})
            res = SweepResult.load(folder, bootstrap=1000)
            a = res.adaptive
            cost = a["device_seconds"]
            p = ask(res.law)
            inside = g.lower <= p.value <= g.upper
            seeds = {str(s): 1 + a["added_seeds"].count(s) for s in sorted(a["chosen"])}
            print(f"  adaptive, budget {share:g} x grid: {_fmt(p)}  ({cost:.1f} device-s, {a['runs']} run rungs, "
                  f"seeds per size {seeds}, {len(a['stopped'])} grid points stopped early; "
                  f"stopped: {a['stop_reason']})")
            truth_in = (p.lower <= truth <= p.upper) if i == 1 else (p.lower <= full <= p.upper)
            print(f"    ratio adaptive/grid compute: {cost / grid_cost:.3f} (target <= 0.25: "
                  f"{'met' if cost <= 0.25 * grid_cost else 'NOT met'}); adaptive value inside the grid's interval: "
                  f"{'yes' if inside else 'NO'}; truth inside the adaptive interval: {'yes' if truth_in else 'NO'}")
        truth_grid = (g.lower <= truth <= g.upper) if i == 1 else (g.lower <= full <= g.upper)
        print(f"  measured truth: {measured} (inside the grid's interval: {'yes' if truth_grid else 'NO'})")
    print(f"folders: {root / task}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["digits", "teacher"])
    parser.add_argument("--root", default=None)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5],
                        help="adaptive budgets as fractions of the grid's measured device-seconds")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="adaptive_bench_"))
    for task in args.tasks:
        bench(task, root, args.slots, args.tolerance, args.budgets)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
