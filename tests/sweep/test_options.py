"""One argument list (sweep/options.py): ScalingSweep and run_sweep take the same arguments, checked once."""

from __future__ import annotations

import inspect

import pytest

from lightning_scaling import Adaptive, ScalingSweep, Target, run_sweep
from lightning_scaling.sweep.options import DEFAULTS, SweepOptions

FRACTIONS = [0.125, 0.25, 0.5, 1.0]


def _defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if k not in ("self", "script", "args")}


def test_scaling_sweep_and_run_sweep_take_the_same_arguments_with_the_same_defaults():
    assert _defaults(ScalingSweep.__init__) == DEFAULTS
    assert _defaults(run_sweep) == DEFAULTS
    assert set(inspect.signature(SweepOptions.build).parameters) - {"cls"} == set(DEFAULTS)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strategy": "adaptive"}, ValueError, r"strategy=Adaptive\(target="),
        ({"strategy": "halving"}, ValueError, r"strategy must be 'grid'.*Adaptive\(target="),
        ({"strategy": {"target": {"error_at": 10}}}, ValueError, "strategy must be"),
        ({"to_error": 0.5}, TypeError, "to_error must be a callable"),
        ({"size_fn": "tokens"}, TypeError, "size_fn must be a callable"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"devices_per_slot": 0}, ValueError, "devices_per_slot"),
        ({"slots": 0}, ValueError, "slots"),
        ({"bootstrap": -1}, ValueError, "bootstrap"),
        ({"launcher": "kubernetes"}, ValueError, "unknown launcher 'kubernetes'"),
        ({"reporter": "wandb"}, TypeError, "reporter must be a WandbReporter"),
        ({"targets": [0.0]}, ValueError, "targets must be positive"),
        ({"select": "final"}, ValueError, r"select must be 'best' \(the best .*'last' \(the value of the last"),
    ],
)
def test_both_entry_points_reject_a_bad_argument_by_name_before_any_run(tmp_path, kwargs, error, match):
    script = tmp_path / "train.py"
    script.write_text("raise SystemExit('no run may start')\n")
    with pytest.raises(error, match=match):
        ScalingSweep(fractions=FRACTIONS, **kwargs)
    with pytest.raises(error, match=match):
        run_sweep(script, fractions=FRACTIONS, sweep_dir=tmp_path / "sweep", **kwargs)
    assert not (tmp_path / "sweep").exists()


def test_the_adaptive_settings_are_one_object_on_both_entry_points():
    study = Adaptive(target=Target.error_at(8192), budget=100.0)
    sweep = ScalingSweep(fractions=FRACTIONS, grid={"model.hidden": [8, 64]}, strategy=study)
    assert sweep.adaptive is study and sweep.options.adaptive is study and sweep.cli_overrides
    assert ScalingSweep(fractions=FRACTIONS).adaptive is None
    # a grid study has no budget=, tolerance= or target= to accept and ignore (run_sweep took budget= with the grid)
    for name in ("budget", "tolerance", "target", "rungs", "eta", "initial_sizes", "start_seeds"):
        with pytest.raises(TypeError, match=name):
            run_sweep("train.py", fractions=FRACTIONS, **{name: 1})


def test_the_analysis_uses_the_sweeps_monitor_mode_to_error_and_targets():
    opts = SweepOptions.build(**{**DEFAULTS, "fractions": FRACTIONS, "monitor": "val_acc", "mode": "max",
                                 "to_error": lambda v: 100.0 - v, "targets": [5]})
    recs = [{"run_id": str(f), "status": "ok", "fraction": f, "train_size": 1000 * f, "params": {}, "seed": 0,
             "best_value": 100.0 - 20.0 * (1000 * f) ** -0.3} for f in FRACTIONS]
    result = opts.analyse(0)(recs)
    assert result.monitor == "val_acc" and result.targets == [5.0]
    assert result.law is not None and result.law.params["beta"] == pytest.approx(-0.3, abs=0.01)


@pytest.mark.parametrize("name", ["../../escaped", "..", "a/b", "a\\b", "/abs/sweep", " "])
def test_a_name_cannot_leave_the_sweeps_root(tmp_path, monkeypatch, name):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (work / "train.py").write_text("raise SystemExit('no run may start')\n")
    with pytest.raises(ValueError, match=r"name=.* must be a plain folder name inside scaling_sweeps/.*sweep_dir="):
        ScalingSweep(fractions=FRACTIONS, name=name)
    with pytest.raises(ValueError, match=r"name=.* must be a plain folder name inside scaling_sweeps/.*sweep_dir="):
        run_sweep("train.py", fractions=FRACTIONS, name=name)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "train.py"]


def test_a_grid_value_too_long_for_a_command_line_argument_is_refused_with_cli_overrides():
    long = "x" * 200_000
    with pytest.raises(ValueError, match=r"grid\['model.tag'\] has a value of 200012 bytes.*cli_overrides=False"):
        SweepOptions.build(**{**DEFAULTS, "fractions": FRACTIONS, "grid": {"model.tag": [long]}})
    # without cli_overrides the value reaches the run through its spec (a file when long): no limit
    opts = SweepOptions.build(**{**DEFAULTS, "fractions": FRACTIONS, "grid": {"model.tag": [long]},
                                 "cli_overrides": False})
    assert opts.plan.runs[0].params["model.tag"] == long
