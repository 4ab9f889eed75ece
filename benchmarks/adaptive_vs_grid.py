"""The adaptive study against the paper's full grid, answering the same two questions, in one run.

Task (``benchmarks/adaptive_task.py``): teacher-student classification, an MLP of width 2/16/64
(the grid; width 2 is clearly worse), 2 seeds, a fixed number of epochs (a run's cost grows with
its data size). The full data is 32,768 samples; both studies may only use sizes up to a quarter
of it (candidates 128 .. 8,192, geometric).

1. Grid: every candidate size x width x seed, to the end (the reference); its law predicts the
   error at the full data and the data needed for a target error. The same sweep also trains every
   width at the full data (the *measured truth*; not counted in the grid's compute, not fitted).
2. Adaptive, question 1: ``target=Target.error_at(65536)``; question 2:
   ``target=Target.data_needed(e)`` with ``e`` the measured full-data error (so the true answer is
   ~32,768). Each with ``tolerance=0.1`` and ``budget=`` a share of the grid's measured
   device-seconds (``--budgets``, default a quarter and a half): a compute cap a user would state.

Prints device-seconds of each (sum of run wall times x devices, from the records), the ratio,
both predictions with 95% intervals, and the truth. Target: adaptive <= 25% of the grid's compute,
its prediction inside the grid's interval. Run from the repository root (~8 minutes on 2 cores):

    python benchmarks/adaptive_vs_grid.py [--root /tmp/adaptive_bench] [--slots 2]
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

N_FULL = 32768
CANDIDATES = [128, 256, 512, 1024, 2048, 4096, 8192]
GRID = {"hidden": [2, 16, 64]}
SEEDS = 2


def _sweep(folder: Path, slots: int, **kwargs) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "LS_BENCH_SWEEP": json.dumps({"grid": GRID, "seeds": SEEDS, "slots": slots, "bootstrap": 1000,
                                         "sweep_dir": str(folder), **kwargs})}
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "adaptive_task.py")], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the sweep in {folder} failed:\n{proc.stderr[-4000:]}")
    return time.time() - t0


def _fmt(p) -> str:
    return f"{p.value:.4g} [{p.lower:.4g}, {p.upper:.4g}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.25, 0.5],
                        help="adaptive budgets as fractions of the grid's measured device-seconds")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="adaptive_bench_"))

    # 1. the grid over the candidates, plus every width at the full data (the truth)
    grid_dir = root / "grid"
    wall_grid = _sweep(grid_dir, args.slots, sizes=[*CANDIDATES, N_FULL])
    plan = SweepStore(grid_dir).read_plan()
    assert plan is not None
    planned = {r["run_id"] for r in plan["runs"]}
    recs = [r for k, r in SweepStore(grid_dir).records().items() if k in planned]
    grid_recs = [r for r in recs if r["size"] <= N_FULL // 4]
    truth_recs = [r for r in recs if r["size"] == N_FULL and r["status"] == "ok"]
    grid_cost = sum(device_seconds(r) for r in grid_recs)
    grid = SweepResult.from_records(grid_recs, monitor="val_err", mode="min", bootstrap=1000)
    by_width: dict[int, list[float]] = {}
    for r in truth_recs:
        by_width.setdefault(r["params"]["hidden"], []).append(r["best_value"])
    truth = min(sum(v) / len(v) for v in by_width.values())

    print(f"task: teacher-student MLP, widths {GRID['hidden']} x {SEEDS} seeds, {EPOCHS_NOTE}; full data {N_FULL}; "
          f"sizes used <= {N_FULL // 4} (candidates {CANDIDATES})")
    print(f"grid:     {len(grid_recs)} runs, {grid_cost:.1f} device-s (wall {wall_grid:.0f} s incl. the truth runs)")
    questions = [("error at full data", {"error_at": N_FULL}, lambda law: law.predict(N_FULL), f"{truth:.4g}"),
                 (f"data needed for error {truth:.4g}", {"data_needed": truth}, lambda law: law.data_needed(truth),
                  f"~{N_FULL} (the target is the error measured at {N_FULL})")]
    for i, (question, target, ask, measured) in enumerate(questions, 1):
        g = ask(grid.law)
        print(f"question {i}: {question}")
        print(f"  grid:     {_fmt(g)}  ({grid_cost:.1f} device-s)")
        for share in args.budgets:
            folder = root / f"adaptive_{i}_{share:g}"
            _sweep(folder, args.slots, sizes=CANDIDATES, strategy="adaptive", target=target,
                   tolerance=args.tolerance, budget=share * grid_cost)
            res = SweepResult.load(folder, bootstrap=1000)
            a = res.adaptive
            cost = a["device_seconds"]
            p = ask(res.law)
            inside = g.lower <= p.value <= g.upper
            print(f"  adaptive, budget {share:g} x grid: {_fmt(p)}  ({cost:.1f} device-s, {a['runs']} run rungs, sizes "
                  f"{sorted(a['chosen'])}, {len(a['stopped'])} grid points stopped early; stopped: {a['stop_reason']})")
            print(f"    ratio adaptive/grid compute: {cost / grid_cost:.3f} (target <= 0.25: "
                  f"{'met' if cost <= 0.25 * grid_cost else 'NOT met'}); adaptive value inside the grid's interval: "
                  f"{'yes' if inside else 'NO'}; truth inside the adaptive interval: "
                  f"{'yes' if i == 1 and p.lower <= truth <= p.upper else 'n/a' if i == 2 else 'NO'}")
        print(f"  measured truth: {measured}")
    print(f"folders: {root}")


EPOCHS_NOTE = "15 epochs per run (cost grows with data size)"

if __name__ == "__main__":
    main()
