"""The ``lightning-scaling fit`` command on small files, on a sweep's own outputs, and on bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lightning_scaling.cli as cli
from lightning_scaling.cli import main
from lightning_scaling.sweep.plan import SweepPlan, geometric
from lightning_scaling.sweep.result import SweepResult


@pytest.fixture
def curve_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "curve.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["samples", "val_err", "width", "seed"])
        for width, alpha in (("64", 4.0), ("256", 2.5)):
            for m in np.geomspace(1e3, 1e6, 10):
                for seed in range(2):
                    w.writerow([int(m), (alpha * m**-0.3 + 0.02) * np.exp(rng.normal(0, 0.02)), width, seed])
    return path


def test_text_output_has_law_intervals_and_regions(curve_csv, capsys):
    assert main(["fit", str(curve_csv), "--where", "width=64", "--bootstrap", "200", "--target", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "eps(m) = " in out and "beta = -0.3" in out and "95%" in out
    assert "regions: " in out and "<= irreducible" in out
    assert "data needed for error 0.05:" in out


def test_json_output(curve_csv, capsys):
    assert main(["fit", str(curve_csv), "--where", "width=256", "--json", "--bootstrap", "100"]) == 0
    d = json.loads(capsys.readouterr().out)
    for k in ("alpha", "beta", "gamma"):
        lo, hi = d["intervals"][k]
        assert lo <= d[k] <= hi
    assert d["beta"] == pytest.approx(-0.3, abs=0.05)
    assert d["resample"] == "seeds"  # repeated sizes were taken as seeds


def test_groups_get_a_shared_exponent_test_and_a_plot(curve_csv, tmp_path, capsys):
    png = tmp_path / "fig.png"
    args = ["fit", str(curve_csv), "--group", "width", "--json", "--bootstrap", "100", "--plot", str(png)]
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["groups"]) == {"64", "256"}
    assert d["shared_exponent"]["same_exponent"] is True
    for width, (lo, hi) in d["shared_exponent"]["alpha_intervals"].items():
        assert lo <= d["shared_exponent"]["alphas"][width] <= hi
    assert set(d["shared_exponent"]["alpha_intervals"]) == {"64", "256"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_json_input_of_columns(tmp_path, capsys):
    m = np.geomspace(100, 1e5, 8)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"size": m.tolist(), "loss": (3 * m**-0.4 + 0.1).tolist()}))
    assert main(["fit", str(path), "--json", "--bootstrap", "50", "--all-points"]) == 0
    assert json.loads(capsys.readouterr().out)["beta"] == pytest.approx(-0.4, abs=1e-3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--x", "nope"], "column 'nope' (--x) is not in the file"),
        (["--where", "width"], "expected COLUMN=VALUE"),
        (["--where", "width=1024"], "keeps no rows"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(curve_csv, capsys, extra, message):
    assert main(["fit", str(curve_csv), *extra]) == 2
    assert message in capsys.readouterr().err


def test_unknown_columns_and_bad_data(tmp_path, capsys):
    p = tmp_path / "a.csv"
    p.write_text("foo,bar\n1,2\n")
    assert main(["fit", str(p)]) == 2
    assert "name it with --x" in capsys.readouterr().err
    q = tmp_path / "b.csv"
    q.write_text("size,error\n10,0.5\n100,0.5\n1000,0.5\n10000,0.5\n")
    assert main(["fit", str(q)]) == 2
    assert "constant" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.csv")]) == 2


def test_console_script_runs_on_bundled_data():
    data = Path(__file__).parents[1] / "examples" / "data" / "bit101_imagenet_10shot.csv"
    out = subprocess.run(
        [sys.executable, "-m", "lightning_scaling.cli", "fit", str(data), "--where", "split=fit", "--bootstrap", "100"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert "hestness" in out and "small-data <" in out  # the bundled curve starts near best guess


# -- a sweep's own outputs (result.json, runs.csv) need no flags ------------------------------------------
N_TRAIN = 20_000  # the dataset a fraction plan subsets


def _sweep_records(*, sized: bool = True) -> list[dict[str, Any]]:
    """Records of a 5-fraction x 2-width x 2-seed study monitoring an accuracy (mode="max"), as runs write them.

    The narrow model wins at small data (lower alpha), the wide one at large data (lower floor), so the
    best grid point changes with size; one run failed and one diverged.
    """
    plan = SweepPlan.build(fractions=geometric(1 / 16, 1.0, 5), grid={"width": [16, 64]}, seeds=2,
                           monitor="val_acc", mode="max")
    rng = np.random.default_rng(0)
    alpha, floor = {16: 2.5, 64: 3.5}, {16: 0.06, 64: 0.02}
    records = []
    for spec in plan.runs:
        m = round(spec.fraction * N_TRAIN)
        width = spec.params["width"]
        err = (alpha[width] * m**-0.35 + floor[width]) * float(np.exp(rng.normal(0, 0.01)))
        rec = {"run_id": spec.run_id, "attempt": 1, "status": "ok", "reason": None, "fraction": spec.fraction,
               "size": None, "num_samples": m if sized else None, "train_size": m if sized else None,
               "size_unit": "samples", "params": spec.params, "seed": spec.seed, "data_seed": 0,
               "trainable_params": 1000 * width, "monitor": "val_acc", "mode": "max", "best_value": 1 - err,
               "best_step": 90, "metrics_at_best": {"val_acc": 1 - err}, "steps": 100, "wall_time_s": 3.0}
        records.append(rec)
    by_key = {(r["fraction"], r["params"]["width"], r["seed"]): r for r in records}
    by_key[1.0, 64, 1].update(status="failed", reason="CUDA out of memory", best_value=None)
    by_key[1 / 16, 64, 0].update(status="diverged", reason="loss is nan", best_value=float("nan"))
    return records


@pytest.fixture(scope="module")
def sweep_folder(tmp_path_factory) -> tuple[Path, SweepResult]:
    """A sweep folder written by the package's own writer (SweepResult.save): result.json and runs.csv."""
    folder = tmp_path_factory.mktemp("scaling_sweeps") / "study"
    result = SweepResult.from_records(_sweep_records(), monitor="val_acc", mode="max", bootstrap=50)
    result.save(folder, figure=False)
    return folder, result


@pytest.mark.parametrize("name", ["result.json", "runs.csv"])
def test_a_sweeps_output_fits_its_best_model_per_size_without_flags(sweep_folder, capsys, name):
    folder, result = sweep_folder
    assert main(["fit", str(folder / name), "--json", "--bootstrap", "50"]) == 0
    d = json.loads(capsys.readouterr().out)
    fitted = d["fitted"]
    assert fitted["rows"] == "best grid point per size" and fitted["x"] == "train_size" and fitted["y"] == "error"
    assert (fitted["runs"], fitted["runs_ok"]) == (20, 18)
    # the same rows and the same law as the sweep: the errors are 1 - accuracy, not the accuracies
    assert [b["params"]["width"] for b in fitted["best"]] == [b["params"]["width"] for b in result.best]
    assert {b["params"]["width"] for b in fitted["best"]} == {16, 64}
    assert d["sizes"] == pytest.approx([b["train_size"] for b in result.best])
    assert result.law is not None and d["beta"] == pytest.approx(result.law.params["beta"], rel=1e-9)


def test_result_json_and_runs_csv_print_the_same_law_and_say_what_was_fitted(sweep_folder, capsys):
    folder, _ = sweep_folder
    outs = []
    for name in ("result.json", "runs.csv"):
        assert main(["fit", str(folder / name), "--bootstrap", "50", "--target", "0.2"]) == 0
        outs.append(capsys.readouterr().out.splitlines())
    first = outs[0][0]
    assert first.startswith("fitted: the best grid point at each size (the sweep's learning curve), from the 18 ok "
                            "runs of 20 in sweep result.json")
    assert "x = train_size (samples), y = error of val_acc" in first
    assert outs[0][1] == "  train_size 1250: width=16, 2 seeds"
    assert outs[0][5] == "  train_size 20000: width=64, 1 seed"  # the failed run's seed is missing
    assert outs[0][1:] == outs[1][1:]  # runs.csv gives the same rows and law
    assert outs[0][6].startswith("eps(m) = ") and "data needed for error 0.2:" in "\n".join(outs[0])


@pytest.mark.parametrize("name", ["result.json", "runs.csv"])
def test_a_sweeps_output_with_group_fits_each_grid_point(sweep_folder, capsys, name):
    folder, _ = sweep_folder
    assert main(["fit", str(folder / name), "--group", "width", "--json", "--bootstrap", "50"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d["groups"]) == {"16", "64"} and d["fitted"]["rows"] == "ok runs"
    assert d["groups"]["64"]["sizes"] == pytest.approx([1250, 2500, 5000, 10000, 20000])


def test_a_sweep_with_fractions_only_is_fitted_on_fractions(tmp_path, capsys):
    # runs that never reported a size (e.g. an unsized stream): the file has fractions, nothing else
    SweepResult.from_records(_sweep_records(sized=False), monitor="val_acc", mode="max", bootstrap=0).save(
        tmp_path, figure=False)
    assert main(["fit", str(tmp_path / "runs.csv"), "--json", "--bootstrap", "20"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fitted"]["x"] == "fraction"
    assert d["sizes"] == pytest.approx(geometric(1 / 16, 1.0, 5))


def test_the_documented_raw_refit_of_result_json_still_works(sweep_folder, capsys):
    folder, _ = sweep_folder
    args = ["fit", str(folder / "result.json"), "--where", "status=ok", "--x", "train_size", "--y", "error",
            "--group", "params", "--bootstrap", "20", "--json"]
    assert main(args) == 0
    assert len(json.loads(capsys.readouterr().out)["groups"]) == 2


# -- every user error: exit 2, one line naming the argument, no traceback, before any fitting work -------------
def _curve_file(tmp_path: Path, scale: float = 1.0, size_scale: float = 1.0) -> Path:
    path = tmp_path / "curve.csv"
    m = np.geomspace(100, 1e5, 8).tolist()
    path.write_text("size,error\n" + "".join(f"{x * size_scale!r},{(3 * x**-0.4 + 0.1) * scale!r}\n" for x in m))
    return path


def _write(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path
    return make


def _with(*extra: str, scale: float = 1.0, size_scale: float = 1.0) -> Callable[[Path], list[str]]:
    def make(tmp_path: Path) -> list[str]:
        return [str(_curve_file(tmp_path, scale, size_scale)), *[e.replace("TMP", str(tmp_path)) for e in extra]]
    return make


def _file(make: Callable[[Path], Path]) -> Callable[[Path], list[str]]:
    return lambda tmp_path: [str(make(tmp_path))]


def _sweep_plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.json"
    plan = SweepPlan.build(fractions=[0.25, 0.5, 1.0, 0.125], seeds=1)
    path.write_text(json.dumps(plan.to_dict()))
    return path


def _failed_sweep_file(tmp_path: Path) -> Path:
    records = [{**r, "status": "failed", "reason": "killed", "best_value": None} for r in _sweep_records()]
    SweepResult.from_records(records, monitor="val_acc", mode="max", bootstrap=0).save(tmp_path, figure=False)
    return tmp_path / "result.json"


BAD_INPUT = [
    # (id, arguments after "fit" built in tmp_path, the argument the message must name, a word of its fix)
    ("non-utf8", _file(_write("latin1.csv", "size,error,note\n10,0.5,caf\xe9\n".encode("latin-1"))), "FILE",
     "UTF-8"),
    ("errors-1e300", _with(scale=1e300), "--y", "rescale"),
    ("sizes-1e300", _with(size_scale=1e297), "--x", "rescale"),
    ("errors-1e-300", _with(scale=1e-300), "--y", "rescale"),
    ("target-0", _with("--target", "0"), "--target", "positive"),
    ("target-negative", _with("--target", "-0.1"), "--target", "positive"),
    ("target-nan", _with("--target", "nan"), "--target", "positive"),
    ("plot-missing-folder", _with("--plot", "TMP/no/such/folder/fig.png"), "--plot", "existing, writable folder"),
    ("plot-under-a-file", _with("--plot", "TMP/curve.csv/fig.png"), "--plot", "existing, writable folder"),
    ("plot-is-a-directory", _with("--plot", "TMP"), "--plot", "give a file name"),
    ("plot-unknown-format", _with("--plot", "TMP/fig.xyz"), "--plot", "e.g. --plot curve.png"),
    ("file-is-a-directory", lambda tmp_path: [str(tmp_path)], "FILE", "is a directory"),
    ("file-missing", lambda tmp_path: [str(tmp_path / "nope.csv")], "FILE", "no such file"),
    ("file-empty", _file(_write("empty.csv", "")), "FILE", "header row"),
    ("file-blank-lines", _file(_write("blank.csv", "\n\n  \n")), "FILE", "header row"),
    ("csv-header-only", _file(_write("header.csv", "size,error\n")), "FILE", "no rows"),
    ("csv-column-named-but-absent", _with("--x", "samples"), "--x", "columns are"),
    ("csv-y-named-but-absent", _with("--y", "val_loss"), "--y", "columns are"),
    ("csv-no-known-columns", _file(_write("foo.csv", "foo,bar\n1,2\n")), "--x", "name it with"),
    ("csv-size-not-a-number", _file(_write("t.csv", "size,error\n10,0.5\nlots,0.4\n")), "--x", "not a number"),
    ("csv-negative-error", _file(_write("n.csv", "size,error\n10,0.5\n100,-0.4\n")), "--y", "1 - accuracy"),
    ("group-absent", _with("--group", "width"), "--group", "columns are"),
    ("where-without-equals", _with("--where", "width"), "--where", "COLUMN=VALUE"),
    ("where-unknown-column", _with("--where", "width=64"), "--where", "COLUMN=VALUE"),
    ("where-keeps-nothing", _with("--where", "size=3"), "--where", "keeps no rows"),
    ("bootstrap-negative", _with("--bootstrap", "-5"), "--bootstrap", "integer >= 0"),
    ("bootstrap-fraction", _with("--bootstrap", "1.5"), "--bootstrap", "integer >= 0"),
    ("confidence-above-1", _with("--confidence", "1.5"), "--confidence", "between 0 and 1"),
    ("confidence-0", _with("--confidence", "0"), "--confidence", "between 0 and 1"),
    ("seed-negative", _with("--seed", "-1"), "--seed", "integer >= 0"),
    ("form-unknown", _with("--form", "linear"), "--form", "choose from"),
    ("json-scalar", _file(_write("s.json", "3")), "FILE", "not a table"),
    ("json-list-of-strings", _file(_write("l.json", '["size", "error"]')), "FILE", "not a table"),
    ("json-unequal-columns", _file(_write("c.json", '{"size": [1, 2], "error": [0.5]}')), "FILE", "not a table"),
    ("json-invalid", _file(_write("bad.json", '{"size": [1, 2,')), "FILE", "not valid JSON"),
    ("json-sweep-plan", _file(_sweep_plan_file), "FILE", "result.json"),
    ("sweep-without-an-ok-run", _file(_failed_sweep_file), "FILE", "status ok"),
]


@pytest.mark.parametrize(("make_args", "argument", "fix"), [row[1:] for row in BAD_INPUT],
                         ids=[row[0] for row in BAD_INPUT])
def test_user_errors_are_one_line_naming_the_argument_before_any_fit(tmp_path, capsys, monkeypatch, make_args,
                                                                     argument, fix):
    def no_fit(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a fit started before the arguments were checked")

    monkeypatch.setattr(cli, "fit_learning_curve", no_fit)
    assert main(["fit", *make_args(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("lightning-scaling: error: ") and argument in err and fix in err
    assert not (tmp_path / "fig.xyz").exists() and not (tmp_path / "no").exists()


def test_a_plot_path_checked_early_leaves_no_file_when_a_later_check_fails(tmp_path, capsys):
    png = tmp_path / "fig.png"
    assert main(["fit", str(_curve_file(tmp_path)), "--x", "nope", "--plot", str(png)]) == 2
    assert "(--x)" in capsys.readouterr().err and not png.exists()


def test_a_byte_order_mark_does_not_rename_the_first_column(tmp_path, capsys):
    path = _curve_file(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # as spreadsheets save "CSV UTF-8"
    assert main(["fit", str(path), "--bootstrap", "0", "--json", "--all-points"]) == 0
    assert json.loads(capsys.readouterr().out)["beta"] == pytest.approx(-0.4, abs=1e-3)


def test_the_console_script_prints_no_traceback_for_a_user_error(tmp_path):
    bad = tmp_path / "latin1.csv"
    bad.write_bytes(b"size,error\n10,0.5\n" + "100,0.4,\xe9\n".encode("latin-1"))
    proc = subprocess.run([sys.executable, "-m", "lightning_scaling.cli", "fit", str(bad), "--target", "0.1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "FILE" in proc.stderr and "not UTF-8" in proc.stderr
