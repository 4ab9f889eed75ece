"""Every bad argument of the public API is one clear error, raised before any work (issue 20 item 6).

One table: each row builds a ScalingSweep, calls run_sweep, wraps a DataFraction or builds an
Adaptive/Target with one bad argument, and asserts the exception type, that the message names the
argument (and is one line), and that nothing was started: no sweep folder, no file written. The
CLI has its own table (tests/test_cli.py).
"""

from __future__ import annotations

import math

import pytest
from pytorch_lightning.demos.boring_classes import BoringDataModule

from lightning_scaling import Adaptive, DataFraction, ScalingSweep, Target, run_sweep
from lightning_scaling.sweep.controller import SweepError

F = [0.125, 0.25, 0.5, 1.0]
ADAPT = {"target": Target.error_at(1000), "tolerance": 0.2}


def sweep(**kw):
    """A ScalingSweep with the row's arguments over four fractions, its folder in the test's tmp dir."""
    return lambda tmp: ScalingSweep(**{"fractions": F, "sweep_dir": str(tmp / "sw"), **kw})


def runs(**kw):
    """run_sweep with the row's arguments on a script that exists (it is never started)."""
    def call(tmp):
        script = tmp / "train.py"
        script.write_text("raise SystemExit('the script must not run')\n")
        run_sweep(script, **{"fractions": F, "sweep_dir": tmp / "sw", **kw})
    return call


def wrap(**kw):
    """DataFraction over Lightning's BoringDataModule, its training loader built (the subset chosen)."""
    def call(tmp):
        dm = DataFraction(BoringDataModule(), **{"fraction": 0.5, **kw})
        dm.setup("fit")
        dm.train_dataloader()
    return call


def adaptive(**kw):
    return lambda tmp: Adaptive(**{**ADAPT, **kw})


CASES = [
    # ScalingSweep: the sweep's plan
    ("seeds-str", sweep(seeds="12"), TypeError, "seeds"),
    ("seeds-floats", sweep(seeds=[1.7, 2.2]), TypeError, "seeds"),
    ("seeds-zero", sweep(seeds=0), ValueError, "seeds"),
    ("seeds-repeat", sweep(seeds=[1, 1]), ValueError, "seeds"),
    ("seeds-negative", sweep(seeds=[-1, 2]), ValueError, "seeds"),
    ("seeds-bool", sweep(seeds=True), TypeError, "seeds"),
    ("grid-equal-numbers", sweep(grid={"w": [8, 8.0]}), ValueError, "grid['w']"),
    ("grid-nan", sweep(grid={"w": [8, math.nan]}), ValueError, "grid['w']"),
    ("grid-inf", sweep(grid={"w": [8, math.inf]}), ValueError, "grid['w']"),
    ("grid-list", sweep(grid=[8, 16]), TypeError, "grid"),
    ("grid-str-values", sweep(grid={"w": "816"}), ValueError, "grid['w']"),
    ("grid-empty-values", sweep(grid={"w": []}), ValueError, "grid['w']"),
    ("fractions-str", sweep(fractions="0.5"), TypeError, "fractions"),
    ("fractions-number", sweep(fractions=0.5), TypeError, "fractions"),
    ("fractions-over-one", sweep(fractions=[0.1, 0.2, 0.5, 1.5]), ValueError, "fractions"),
    ("fractions-repeat", sweep(fractions=[0.1, 0.2, 0.2, 1.0]), ValueError, "fractions"),
    ("fractions-nan", sweep(fractions=[0.1, 0.2, math.nan, 1.0]), TypeError, "fractions"),
    ("fractions-too-few", sweep(fractions=[0.25, 0.5, 1.0]), ValueError, "sizes"),
    ("sizes-str", sweep(fractions=None, sizes=["10", "20", "40", "80"]), TypeError, "sizes"),
    ("sizes-fractional", sweep(fractions=None, sizes=[10.5, 20, 40, 80]), ValueError, "sizes"),
    ("fractions-and-sizes", sweep(sizes=[10, 20, 40, 80]), ValueError, "sizes="),
    ("monitor-empty", sweep(monitor=""), ValueError, "monitor"),
    ("mode", sweep(mode="minimum"), ValueError, "mode"),
    ("data-seed-float", sweep(data_seed=1.5), ValueError, "data_seed"),
    # ScalingSweep: everything else
    ("size-fn-str", sweep(size_fn="tokens"), TypeError, "size_fn"),
    ("size-unit-empty", sweep(size_unit=""), TypeError, "size_unit"),
    ("sweep-dir-int", lambda tmp: ScalingSweep(fractions=F, sweep_dir=123), TypeError, "sweep_dir"),
    ("name-int", sweep(name=5), TypeError, "name"),
    ("probe-str", sweep(probe="no"), TypeError, "probe"),
    ("cli-overrides-str", sweep(cli_overrides="yes"), TypeError, "cli_overrides"),
    ("targets-number", sweep(targets=0.05), TypeError, "targets"),
    ("targets-negative", sweep(targets=[-0.1]), ValueError, "targets"),
    ("targets-accuracy-over-one", sweep(monitor="val_acc", mode="max", targets=[2.0]), ValueError, "targets"),
    ("targets-error-rate-over-one", sweep(monitor="val_err", targets=[1.5]), ValueError, "targets"),
    ("bootstrap-negative", sweep(bootstrap=-5), ValueError, "bootstrap"),
    ("max-retries-negative", sweep(max_retries=-1), ValueError, "max_retries"),
    ("devices-per-slot-zero", sweep(devices_per_slot=0), ValueError, "devices_per_slot"),
    ("slots-zero", sweep(slots=0), ValueError, "slots"),
    ("launcher-unknown", sweep(launcher="kubernetes"), ValueError, "launcher"),
    ("to-error-str", sweep(to_error="1-x"), TypeError, "to_error"),
    ("reporter-str", sweep(reporter="yes"), TypeError, "reporter"),
    ("strategy-str", sweep(strategy="adaptive"), ValueError, "strategy"),
    ("adaptive-initial-sizes-over-candidates", sweep(strategy=Adaptive(**ADAPT, initial_sizes=10)),
     ValueError, "initial_sizes"),
    ("adaptive-data-needed-accuracy-over-one",
     sweep(monitor="val_acc", mode="max", strategy=Adaptive(target=Target.data_needed(2.0), tolerance=0.2)),
     ValueError, "Target.data_needed"),
    # run_sweep: the same checks, before the script is started
    ("run-sweep-seeds-str", runs(seeds="12"), TypeError, "seeds"),
    ("run-sweep-grid-list", runs(grid=[8, 16]), TypeError, "grid"),
    ("run-sweep-targets-number", runs(targets=0.05), TypeError, "targets"),
    ("run-sweep-bootstrap-negative", runs(bootstrap=-5), ValueError, "bootstrap"),
    ("run-sweep-probe-str", runs(probe="no"), TypeError, "probe"),
    ("run-sweep-reporter-true", runs(reporter=True), ValueError, "reporter"),
    ("run-sweep-no-script", lambda tmp: run_sweep(tmp / "missing.py", fractions=F), FileNotFoundError, "script"),
    # Adaptive and Target
    ("adaptive-no-stopping-rule", lambda tmp: Adaptive(target=Target.error_at(1000)), ValueError, "tolerance="),
    ("adaptive-tolerance-negative", adaptive(tolerance=-1), ValueError, "tolerance"),
    ("adaptive-budget-nan", adaptive(budget=math.nan), ValueError, "budget"),
    ("adaptive-rungs", adaptive(rungs=(0.5, 0.9)), ValueError, "rungs"),
    ("adaptive-eta", adaptive(eta=1), ValueError, "eta"),
    ("adaptive-initial-sizes-three", adaptive(initial_sizes=3), ValueError, "initial_sizes"),
    ("adaptive-start-seeds-zero", adaptive(start_seeds=0), ValueError, "start_seeds"),
    ("adaptive-target-kind", adaptive(target={"error_for": 0.1}), ValueError, "target"),
    ("target-zero", lambda tmp: Target.data_needed(0), ValueError, "target"),
    ("target-nan", lambda tmp: Target.error_at(math.nan), ValueError, "target"),
    # DataFraction
    ("datafraction-fraction-over-one", wrap(fraction=1.5), ValueError, "fraction"),
    ("datafraction-fraction-str", wrap(fraction="0.5"), TypeError, "fraction"),
    ("datafraction-size-zero", wrap(fraction=None, size=0), ValueError, "size"),
    ("datafraction-fraction-and-size", wrap(size=10), ValueError, "size="),
    ("datafraction-seed-float", wrap(seed=1.5), TypeError, "seed"),
    ("datafraction-size-unit-empty", wrap(size_unit=""), TypeError, "size_unit"),
    ("datafraction-size-fn-str", wrap(size_fn="tokens"), TypeError, "size_fn"),
    ("datafraction-size-fn-negative", wrap(size_fn=lambda sample: -1), ValueError, "size_fn"),
    ("datafraction-size-fn-wrong-length", wrap(size_fn=[1.0, 2.0]), ValueError, "size_fn"),
    ("datafraction-size-fn-nan-entry", wrap(size_fn=[math.nan] * 64), ValueError, "size_fn"),
    ("datafraction-not-a-datamodule", lambda tmp: DataFraction(object(), fraction=0.5), TypeError, "DataFraction"),
]


@pytest.mark.parametrize(("build", "exc", "names"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_a_bad_argument_is_one_clear_error_before_any_work(tmp_path, build, exc, names):
    with pytest.raises(exc) as info:
        build(tmp_path)
    message = str(info.value)
    assert names in message, message
    assert "\n" not in message.strip(), message
    assert not isinstance(info.value, SweepError)  # an argument error, not a study that went wrong
    assert not (tmp_path / "sw").exists()
    assert {p.name for p in tmp_path.iterdir()} <= {"train.py"}


def test_the_table_covers_forty_cases_across_the_public_api():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_devices_per_slot_on_a_cpu_only_trainer_is_refused_before_any_run(tmp_path):
    import pytorch_lightning as pl
    from pytorch_lightning.demos.boring_classes import BoringModel

    sweep = ScalingSweep(fractions=F, sweep_dir=str(tmp_path / "sw"), devices_per_slot=4)
    trainer = pl.Trainer(accelerator="cpu", callbacks=[sweep], logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(SweepError, match=r"devices_per_slot=4\) asks for GPUs per run.*CPUAccelerator"):
        trainer.fit(BoringModel())
    assert not (tmp_path / "sw" / "sweep.json").exists()
    assert not (tmp_path / "sw" / "runs").exists()
