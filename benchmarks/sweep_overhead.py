"""What the sweep costs on top of the training it runs, and how well two slots run in parallel.

The same N runs (equal cost: a fixed number of steps, one per data fraction), measured side by side:

(a) back to back in one process (one ``python`` process: its imports once, then the N runs),
(b) by the sweep with 1 slot,
(c) by the sweep with 2 slots,
(d) by the sweep with 2 slots, runs started as new processes instead of by the fork server,
(e) two copies of (a) at once, each with half the runs: what two parallel workers get from this
    machine without any sweep (shared caches, memory bandwidth, CPU frequency), the ceiling for (c),
(f) side by side, started together: a 1-slot sweep (one thread) and one plain worker, each running
    all N runs. Both see the same machine at the same moment, so the ratio of their spans (first run
    start to last run end) is the sweep's own cost per run, free of the drift between cases that
    run minutes apart (only with ``--cases ...f``).

Each is timed as a whole ``python`` command, as a user would run it; the cases run interleaved,
``--repeats`` times, and each keeps its fastest repeat (a shared machine's speed drifts by ~10%
over minutes, which back-to-back phases would read as overhead). Prints the overhead per run,
(b - a) / N, split into the sweep's fixed cost (controller start and final analysis, read off the
run records) and the gap between consecutive runs in a slot; the parallel ratio c / (a / 2); and its split into
the machine's share e / (a / 2) and the sweep's share c / e. Target: (c) within 1.1x of (a)/2 for
runs of >= 20 s. Run from the repository root:

    python benchmarks/sweep_overhead.py [--seconds-per-run 20] [--runs 16] [--cases ace]

The default of 16 runs is a small study (the README's main job has 36). The sweep's cost is mostly
per sweep, not per run: the fork server imports torch and Lightning once more after the controller
did (it cannot reuse the controller's imports without forking the user's process), and the final
fit writes the figure. That fixed cost is printed as its own line; with fewer runs (8 of 20 s) it
weighs twice as much in the ratio.

With ``--task`` this file is also the training script the sweep re-runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

FRACTIONS = [0.125, 0.25, 0.5, 1.0, 0.0625, 0.03125, 0.015625, 0.0078125]


def _task_objects(steps: int, root: str, callbacks: list):
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    class Data(pl.LightningDataModule):
        def setup(self, stage: str) -> None:
            g = torch.Generator().manual_seed(0)
            teacher = torch.randn(32, 4, generator=g)
            x = torch.randn(5120, 32, generator=g)
            y = (x @ teacher).argmax(1)
            self.train_set, self.val_set = TensorDataset(x[:4096], y[:4096]), TensorDataset(x[4096:], y[4096:])

        def train_dataloader(self):
            return DataLoader(self.train_set, batch_size=32, shuffle=True)

        def val_dataloader(self):
            return DataLoader(self.val_set, batch_size=512)

    class Net(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_err", (self.net(x).argmax(1) != y).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    trainer = pl.Trainer(default_root_dir=root, max_steps=steps, max_epochs=-1, accelerator="cpu", devices=1,
                         check_val_every_n_epoch=None, val_check_interval=steps, callbacks=callbacks, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return Net(), Data(), trainer


def _layout(runs: int) -> tuple[list[float], int]:
    """N equal-cost runs as data fractions x seeds: up to 8 fractions, then 8 fractions x N/8 seeds."""
    if runs <= len(FRACTIONS):
        return FRACTIONS[:runs], 1
    return FRACTIONS, runs // len(FRACTIONS)


def task(args: argparse.Namespace) -> None:
    """The user's script: one model, one Trainer, a ScalingSweep."""
    from lightning_scaling import ScalingSweep, current_run
    from lightning_scaling.sweep import LocalLauncher

    current_run().seed_everything()
    launcher = LocalLauncher(slots=args.slots, fork_server=not args.no_fork_server,
                             threads_per_slot=args.threads_per_slot or None)
    fractions, seeds = _layout(args.runs)
    sweep = ScalingSweep(fractions=fractions, seeds=seeds, monitor="val_err", launcher=launcher, probe=False,
                         bootstrap=0, sweep_dir=args.sweep_dir)
    model, data, trainer = _task_objects(args.steps, args.sweep_dir, [sweep])
    trainer.fit(model, datamodule=data)


def in_process(runs: int, steps: int, root: str, part: int = 0, parts: int = 1) -> tuple[float, float, float]:
    """The same runs back to back in this process (every ``parts``-th from ``part``), subsets through
    DataFraction as in the sweep: their wall time, and when the first started and the last ended
    (after the imports, as a sweep run's record starts after them)."""
    from lightning_scaling import DataFraction

    fractions, seeds = _layout(runs)
    todo = [f for _ in range(seeds) for f in fractions][part::parts]
    start = time.time()
    t0 = time.perf_counter()
    for f in todo:
        model, data, trainer = _task_objects(steps, root, [])
        trainer.fit(model, datamodule=DataFraction(data, fraction=f))
    return time.perf_counter() - t0, start, time.time()


def one_process(runs: int, steps: int, parts: int = 1) -> float:
    """(a): one python command that imports once and trains the N runs back to back; with ``parts=2``,
    (e): two such commands at once, each with every other run."""
    roots = [tempfile.mkdtemp(prefix="ls-overhead-a-") for _ in range(parts)]
    cmds = [_worker_command(runs, steps, root, f"{i}/{parts}") for i, root in enumerate(roots)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for cmd in cmds]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - t0
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    for p, err in zip(procs, errors, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"the in-process runs failed:\n{err[-3000:]}")
    return wall


def _worker_command(runs: int, steps: int, root: str, part: str = "0/1") -> list[str]:
    """This file as a plain worker: the runs back to back in one process (every ``part``), no sweep."""
    return [sys.executable, __file__, "--in-process", "--runs", str(runs), "--steps", str(steps), "--sweep-dir", root,
            "--part", part]


def _sweep_command(runs: int, steps: int, slots: int, folder: str, *extra: str) -> list[str]:
    """This file as the user's training script, with a sweep of ``slots`` slots writing to ``folder``."""
    return [sys.executable, __file__, "--task", "--runs", str(runs), "--steps", str(steps), "--slots", str(slots),
            "--sweep-dir", folder, *extra]


def _ok_records(folder: str, runs: int) -> list[dict]:
    """The sweep's run records (all ``runs`` of them, all ok, or the benchmark stops); the folder is removed."""
    records = [json.loads(p.read_text()) for p in Path(folder, "runs").glob("*.json")]
    if len(records) != runs or any(r["status"] != "ok" for r in records):
        raise SystemExit(f"expected {runs} ok runs, got {records}")
    shutil.rmtree(folder, ignore_errors=True)
    return records


def side_by_side(runs: int, steps: int) -> tuple[float, float, float]:
    """(f): a 1-slot, 1-thread sweep and a plain worker with the same runs, started together; the ratio
    of their spans (first run start to last run end), then each span."""
    folder, root = tempfile.mkdtemp(prefix="ls-overhead-f-"), tempfile.mkdtemp(prefix="ls-overhead-a-")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    # the sweep's stderr goes to a file: a pipe nobody reads while the worker runs could fill and stall it
    with tempfile.TemporaryFile("w+") as sweep_log:
        sweep = subprocess.Popen(_sweep_command(runs, steps, 1, folder, "--threads-per-slot", "1"), env=env,
                                 stdout=subprocess.DEVNULL, stderr=sweep_log, text=True)
        worker = subprocess.Popen(_worker_command(runs, steps, root), env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        out, err = worker.communicate()
        sweep.wait()
        sweep_log.seek(0)
        sweep_err = sweep_log.read()
    shutil.rmtree(root, ignore_errors=True)
    if worker.returncode != 0 or sweep.returncode != 0:
        raise SystemExit(f"case (f) failed:\n{err[-2000:]}\n{sweep_err[-2000:]}")
    w0, w1 = json.loads(out.strip().splitlines()[-1])["span"]
    records = _ok_records(folder, runs)
    span = max(r["ended_at"] for r in records) - min(r["started_at"] for r in records)
    return span / (w1 - w0), span, w1 - w0


def by_sweep(runs: int, steps: int, slots: int, fork_server: bool = True) -> tuple[float, float, float]:
    """Wall time of the sweep, its fixed cost, and the mean gap between consecutive runs of a slot."""
    folder = tempfile.mkdtemp(prefix="ls-overhead-")
    cmd = _sweep_command(runs, steps, slots, folder, *([] if fork_server else ["--no-fork-server"]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    end = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"sweep with {slots} slot(s) failed:\n{proc.stderr[-3000:]}")
    records = _ok_records(folder, runs)
    spans = sorted((r["started_at"], r["ended_at"]) for r in records)
    fixed = (spans[0][0] - start) + (end - max(e for _, e in spans))
    # consecutive runs of one slot: each run starts after some earlier run ended
    gaps = [s - max(e for _, e in spans[:i] if e <= s) for i, (s, _) in enumerate(spans) if i >= slots
            and any(e <= s for _, e in spans[:i])]
    return wall, fixed, (sum(gaps) / len(gaps) if gaps else float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-fork-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=0, help="steps per run (default: calibrated)")
    parser.add_argument("--slots", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads-per-slot", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--part", default="0/1", help=argparse.SUPPRESS)
    parser.add_argument("--sweep-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seconds-per-run", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats; each case keeps its fastest")
    parser.add_argument("--cases", default="abcde", help="which cases to run (a and c are always run)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.task:
        task(args)
        return
    if args.in_process:
        part, parts = (int(x) for x in args.part.split("/"))
        _, start, end = in_process(args.runs, args.steps, args.sweep_dir, part, parts)
        print(json.dumps({"span": [start, end]}))  # for (f), which compares it with a sweep's runs
        return
    if args.runs < 4 or (args.runs > len(FRACTIONS) and args.runs % len(FRACTIONS)):
        raise SystemExit(f"--runs must be 4..{len(FRACTIONS)} or a multiple of {len(FRACTIONS)} "
                         "(a sweep fits a curve to >= 4 sizes; more runs are seeds of 8 sizes)")
    os.environ["OMP_NUM_THREADS"] = "1"
    root = tempfile.mkdtemp(prefix="ls-overhead-a-")
    steps, length = args.steps, "steps given"
    if not steps:
        probe = 400
        per_step = in_process(4, probe, root)[0] / (4 * probe)
        steps = max(100, int(args.seconds_per_run / per_step))
        length = f"about {args.seconds_per_run:g} s"
    print(f"{args.runs} runs of {steps} steps each ({length}), 1 thread per run, {os.cpu_count()} cores")
    # the cases interleaved, `--repeats` times, each reported by its fastest repeat: on a shared machine the
    # speed drifts by 10% over minutes, which sequential phases would read as overhead
    cases = {
        "a": lambda: (one_process(args.runs, steps), 0.0, 0.0),
        "c": lambda: by_sweep(args.runs, steps, slots=2),
        "e": lambda: (one_process(args.runs, steps, parts=2), 0.0, 0.0),
        "b": lambda: by_sweep(args.runs, steps, slots=1),
        "d": lambda: by_sweep(args.runs, steps, slots=2, fork_server=False),
        "f": lambda: side_by_side(args.runs, steps),
    }
    cases = {k: v for k, v in cases.items() if k in set(args.cases) | {"a", "c"}}
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for key, measure in cases.items():
            times[key].append(measure())
    shutil.rmtree(root, ignore_errors=True)
    best = {k: min(v) for k, v in times.items()}
    nan = (float("nan"), float("nan"), float("nan"))
    a, b, c, d, e = (best.get(k, nan)[0] for k in "abcde")
    (_, fixed_b, gap_b), (_, fixed_c, gap_c), (_, fixed_d, gap_d) = (best.get(k, nan) for k in "bcd")
    if args.repeats > 1:
        print("repeats (s): " + "; ".join(f"({k}) " + ", ".join(f"{t[0]:.1f}" for t in times[k]) for k in times
                                          if k != "f"))
    n = args.runs
    print(f"(a) one process, back to back:  {a:8.1f} s  ({a / n:.1f} s per run, imports included once)")
    if "b" in best:
        print(f"(b) sweep, 1 slot:              {b:8.1f} s  (fixed {fixed_b:.1f} s, gap between runs {gap_b:.2f} s)")
    print(f"(c) sweep, 2 slots:             {c:8.1f} s  (fixed {fixed_c:.1f} s, gap between runs {gap_c:.2f} s)")
    if "d" in best:
        print(f"(d) sweep, 2 slots, no fork server: {d:4.1f} s  (fixed {fixed_d:.1f} s, "
              f"gap between runs {gap_d:.2f} s)")
    if "e" in best:
        print(f"(e) two processes, half each:   {e:8.1f} s  (no sweep: the machine's own 2-worker time)")
    if "b" in best:
        print(f"overhead per run, (b - a) / N: {(b - a) / n:.2f} s = fixed cost / N + gap + per-run setup")
        print(f"1-slot ratio b / a: {b / a:.3f}")
    print(f"parallel efficiency (a / 2) / c: {a / 2 / c:.3f}; c / (a / 2) = {c / (a / 2):.3f} (target <= 1.1)")
    if args.repeats > 1:
        # the same ratio within each repeat, where (a) and (c) ran minutes apart rather than a repeat apart
        pairs = zip(times["a"], times["c"], strict=True)
        print("per repeat, c / (a / 2): " + ", ".join(f"{tc[0] / (ta[0] / 2):.3f}" for ta, tc in pairs))
    if "e" in best:
        print(f"of which the machine's (two workers without a sweep), e / (a / 2) = {e / (a / 2):.3f}, "
              f"and the sweep's, c / e = {c / e:.3f}")
    if "f" in times:
        ratios = [t[0] for t in times["f"]]
        print("(f) side by side, 1-slot sweep / plain worker, the same runs at the same time: "
              + ", ".join(f"{r:.3f}" for r in ratios) + f" (median {statistics.median(ratios):.3f}; spans "
              + ", ".join(f"{t[1]:.1f} / {t[2]:.1f} s" for t in times["f"]) + ")")
    print(f"fixed cost of the 2-slot sweep: {fixed_c:.1f} s (start to first run, last run to exit), paid once "
          f"per sweep: {fixed_c / (a / 2):.1%} of (a) / 2 at N={n}")


if __name__ == "__main__":
    main()
