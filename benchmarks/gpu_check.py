"""The GPU path, exercised for real in one command: pinning, packing, NaN, OOM, bf16, a CUDA-free controller.

Runs small sweeps of a real model (an MLP on scikit-learn's bundled digits, no download) through
``run_sweep`` and prints one line per check, ``PASS`` or ``FAIL`` with its figures:

1. one run per GPU (``accelerator="gpu"``): every record shows the run saw exactly the GPU its slot
   pinned (``devices``, its ``CUDA_VISIBLE_DEVICES``) and trained on it (``device`` is ``cuda:0 (...)``);
2. the same 16 runs packed ``k = 1, 2, 4, 8`` per GPU (``runs_per_device=k``): runs per minute of
   each against ``k = 1``, side by side, and the peak GPU memory per run (target: >= 3x at some k);
3. a run made to diverge (NaN on the device) is recorded as diverged by the deferred check, without
   a host sync per step (its reason names the steps between two reads of the device-side flag);
4. a run made to run out of GPU memory (a real CUDA OOM on its first attempt) is recorded as such and
   retried with the GPU to itself, although ``max_retries=0``;
5. ``precision="bf16-mixed"`` runs train;
6. the controller (this process) never initialised CUDA.

Sized to finish in under 6 minutes on one H100 (16 CPU cores). Needs torch, Lightning, torchmetrics
and scikit-learn; no network, no wandb, nothing installed (it runs this source tree)::

    python benchmarks/gpu_check.py              # on a GPU machine
    python benchmarks/gpu_check.py --dry-run    # CPU: the same code path, accelerator="cpu", tiny sizes

Exit code 0 when every judged check passed. With ``--dry-run`` the throughput target of (2) and the
GPU-only parts of (3) are not judged (CPU runs read the loss every step; there is nothing to pack by).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this source tree, also in every run (the sweep re-runs this file)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
os.environ.setdefault("WANDB_MODE", "disabled")
ENV = "LS_GPU_CHECK"
MONITOR = "val_err"


# -- the training script every run executes (--task) -------------------------------------------------
def task() -> None:
    """One run: an MLP of width ``hidden`` on the digits, with the NaN and OOM hooks of ``LS_GPU_CHECK``."""
    import pytorch_lightning as pl
    import torch
    from sklearn.datasets import load_digits
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_scaling import ScalingSweep, current_run

    cfg = json.loads(os.environ[ENV])
    torch.set_num_threads(cfg["threads"])
    run = current_run()
    hidden = int(run.param("hidden", default=64))
    x, y = load_digits(return_X_y=True)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    xs = torch.tensor(x, dtype=torch.float32)[order] / 16.0
    ys = torch.tensor(y)[order]
    n_val = 360
    train = TensorDataset(xs[n_val:], ys[n_val:])
    val = TensorDataset(xs[:n_val], ys[:n_val])

    class MLP(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 10))

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if hidden == cfg.get("oom_hidden") and run.attempt == 1 and not run.probe:
                run_out_of_memory(self.device)
            loss = nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            if hidden == cfg.get("nan_hidden") and self.global_step >= 1:
                loss = loss * torch.tensor(float("nan"), device=loss.device)  # stays on the device
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            err = (self.net(batch[0]).argmax(1) != batch[1]).float().mean()
            self.log(MONITOR, err)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=3e-3)

    trainer = pl.Trainer(accelerator=cfg["accelerator"], devices=1, precision=cfg["precision"],
                         max_epochs=cfg["epochs"], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=cfg["root"],
                         callbacks=[ScalingSweep(**cfg["sweep"])])
    trainer.fit(MLP(), train_dataloaders=DataLoader(train, batch_size=64, shuffle=True),
                val_dataloaders=DataLoader(val, batch_size=360))


def run_out_of_memory(device: Any) -> None:
    """A real CUDA OOM on a GPU (twice the GPU's memory asked for); on CPU the same error, raised."""
    import torch

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.empty(2 * total, dtype=torch.uint8, device=device)
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 160.00 GiB (simulated on CPU)")


# -- the controller's side ---------------------------------------------------------------------------
def recording_launcher(**kwargs: Any) -> Any:
    """A LocalLauncher that notes where each run went and what ran beside it."""
    from lightning_scaling.sweep.launchers import LocalLauncher

    class Recording(LocalLauncher):
        def __init__(self) -> None:
            super().__init__(**kwargs)
            self.placed: dict[str, dict[str, Any]] = {}
            self.most = 0
            self.joined_alone = False

        def submit(self, job: Any) -> None:
            super().submit(job)
            beside = [j for j in self.jobs_on(job.slot) if j is not job]
            self.joined_alone |= any(j.alone for j in beside)
            self.most = max(self.most, len(beside) + 1)
            self.placed[job.launch] = {"run_id": job.spec.run_id, "attempt": job.attempt, "alone": job.alone,
                                       "gpus": ",".join(job.slot.gpus), "beside": len(beside)}

    return Recording()


def sweep(name: str, args: argparse.Namespace, *, runs_per_device: int | str = 1, precision: str = "32-true",
          grid: dict[str, list[Any]] | None = None, seeds: int = 1, sizes: int = 4, probe: bool = True,
          max_retries: int = 1, **hooks: Any) -> tuple[list[dict[str, Any]], Any, float]:
    """Run one study; its records, its launcher, and its wall time in seconds."""
    from lightning_scaling import ScalingSweep, run_sweep
    from lightning_scaling.sweep import SweepStore

    folder = Path(args.root) / name
    kwargs = {"fractions": ScalingSweep.geometric(1 / 16, 1.0, sizes), "grid": grid, "seeds": seeds,
              "monitor": MONITOR, "sweep_dir": str(folder), "max_retries": max_retries, "probe": probe,
              "bootstrap": 0, "runs_per_device": runs_per_device}
    os.environ[ENV] = json.dumps({"accelerator": args.accelerator, "precision": precision, "epochs": args.epochs,
                                  "root": str(folder), "threads": args.threads, "sweep": kwargs, **hooks})
    launcher = recording_launcher(runs_per_device=runs_per_device, slots=args.slots)
    t0 = time.time()
    run_sweep(__file__, args=["--task"], launcher=launcher, **kwargs)  # type: ignore[arg-type]
    seconds = time.time() - t0
    return list(SweepStore(folder).records().values()), launcher, seconds


def line(ok: bool | None, what: str) -> bool:
    print(f"{'PASS' if ok else 'INFO' if ok is None else 'FAIL'} {what}", flush=True)
    return ok is not False


def check_pinned(args: argparse.Namespace) -> bool:
    recs, launcher, secs = sweep("pinned", args)
    want = "cpu" if args.dry_run else "cuda:0 "
    bad = [r["run_id"] for r in recs if r.get("status") != "ok" or not str(r.get("device", "")).startswith(want)
           or r.get("devices") != launcher.placed[r["launch"]]["gpus"] or "," in str(r.get("devices"))]
    seen = sorted({(r.get("devices"), r.get("device")) for r in recs})
    return line(not bad and len(recs) == 4, f"(1) one run per {'core group' if args.dry_run else 'GPU'}: "
                f"{len(recs)} runs in {secs:.0f} s, each saw exactly its slot's device {seen}"
                + (f"; wrong: {bad}" if bad else ""))


def check_packing(args: argparse.Namespace) -> bool:
    rows, ok = [], True
    for k in args.k:
        recs, launcher, secs = sweep(f"packed_k{k}", args, runs_per_device=k, seeds=args.seeds, sizes=args.sizes,
                                     probe=False)
        good = sum(r.get("status") == "ok" for r in recs)
        peaks = [r["max_memory_allocated"] for r in recs if r.get("max_memory_allocated")]
        rows.append((k, good, secs, good / secs * 60, statistics.median(peaks) / 2**20 if peaks else None,
                     launcher.most))
        ok &= good == args.seeds * args.sizes and launcher.most <= k
    base = rows[0][3]
    best = max(r[3] for r in rows) / base if base else 0.0
    for k, good, secs, per_min, peak, most in rows:
        mem = f"{peak:.0f} MiB" if peak is not None else "n/a (CPU)"
        line(None, f"(2)   k={k}: {good} runs in {secs:.1f} s = {per_min:.1f} runs/min ({per_min / base:.2f}x k=1); "
             f"peak memory per run {mem}; most runs at once on a slot {most}")
    judged = None if args.dry_run else ok and best >= 3.0
    line(judged if judged is not None else ok, f"(2) packing k={','.join(map(str, args.k))}: best {best:.2f}x the "
         f"throughput of one run per {'core group' if args.dry_run else 'GPU'} (target >= 3x"
         f"{', not judged on CPU' if args.dry_run else ''}); never more than k runs on a slot: {ok}")
    return ok if args.dry_run else bool(judged)


def check_nan_and_oom(args: argparse.Namespace) -> bool:
    recs, launcher, secs = sweep("nan_oom", args, runs_per_device=4, grid={"hidden": [32, 48, 64]}, max_retries=0,
                                 nan_hidden=48, oom_hidden=64)
    nan = [r for r in recs if r["params"]["hidden"] == 48]
    deferred = all("between steps" in str(r.get("reason")) for r in nan)
    nan_ok = bool(nan) and all(r["status"] == "diverged" for r in nan) and (deferred or args.dry_run)
    ok = line(nan_ok, f"(3) NaN on the device: {sum(r['status'] == 'diverged' for r in nan)}/{len(nan)} runs "
              f"recorded diverged; reason {nan[0].get('reason') if nan else None!r} "
              f"({'read from the device flag, no per-step sync' if deferred else 'read every step (CPU)'})")
    oom = [r for r in recs if r["params"]["hidden"] == 64]
    retried = [p for p in launcher.placed.values() if p["attempt"] == 2]
    alone = all(p["alone"] and p["beside"] == 0 for p in retried) and not launcher.joined_alone
    logs = [(Path(args.root) / "nan_oom" / "logs" / f"{r['run_id']}.log") for r in oom]
    said = all(p.exists() and "out of memory" in p.read_text(errors="replace") for p in logs)
    oom_ok = bool(oom) and all(r["status"] == "ok" and r["attempt"] == 2 for r in oom) and alone and said
    ok &= line(oom_ok, f"(4) CUDA OOM: {len(oom)} runs ran out of memory on attempt 1, retried alone "
               f"(max_retries=0): {sum(r['status'] == 'ok' for r in oom)} ok on attempt 2, alone on the "
               f"{'core group' if args.dry_run else 'GPU'}: {alone}; in {secs:.0f} s")
    return ok


def check_bf16(args: argparse.Namespace) -> bool:
    recs, _, secs = sweep("bf16", args, runs_per_device=2, precision="bf16-mixed", probe=False)
    ok = len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    best = min((r["best_value"] for r in recs if r.get("best_value") is not None), default=None)
    return line(ok, f"(5) precision='bf16-mixed': {sum(r['status'] == 'ok' for r in recs)}/{len(recs)} runs ok in "
                f"{secs:.0f} s, best {MONITOR} {best}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the plumbing only")
    parser.add_argument("--root", default=None, help="where the sweep folders go (default: a temporary folder)")
    parser.add_argument("--k", type=int, nargs="+", default=None, help="runs per device to compare (1 first)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--task", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.task:
        task()
        return 0
    import pytorch_lightning  # noqa: F401  the fork server preloads what the controller imported
    import torch

    args.accelerator = "cpu" if args.dry_run else "gpu"
    args.k = args.k or ([1, 2] if args.dry_run else [1, 2, 4, 8])
    args.epochs = args.epochs or (1 if args.dry_run else 20)
    args.seeds, args.sizes = (1, 4) if args.dry_run else (2, 8)
    args.slots = 1 if args.dry_run else None
    args.threads = 1
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # CPU slots, also on a machine with GPUs
    elif torch.cuda.device_count() < 1:
        line(False, "no GPU visible: run on a GPU machine, or pass --dry-run")
        return 1
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        args.root = args.root or tmp
        ok = check_pinned(args)
        ok &= check_packing(args)
        ok &= check_nan_and_oom(args)
        ok &= check_bf16(args)
        ok &= line(not torch.cuda.is_initialized(), f"(6) the controller never initialised CUDA "
                   f"(torch.cuda.is_initialized() = {torch.cuda.is_initialized()} in pid {os.getpid()})")
    line(ok, f"gpu_check {'--dry-run ' if args.dry_run else ''}done in {time.time() - t0:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
