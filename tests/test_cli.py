"""The ``lightning-scaling fit`` command on small files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_scaling.cli import main


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
