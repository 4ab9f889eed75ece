"""The digits main job and the known-exponent example, run the way a user runs them.

The subprocess tests use the examples' own smoke or full configurations, through the same code path
as the README's commands. The MNIST loader (the real-dataset path) is tested on small IDX files
written here: no download.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / name / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, name: str, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_", "WANDB_"))}
    home = tmp_path / "wandb_home"
    env.update({"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true",
                "WANDB_CACHE_DIR": str(home / "cache"), "WANDB_CONFIG_DIR": str(home / "config"),
                "WANDB_DATA_DIR": str(home / "data")})
    cmd = [sys.executable, str(EXAMPLES / name / "train.py"), "--root", str(tmp_path / "runs"), *args]
    return subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


# -- digits: the README's main job ------------------------------------------------------------------
@pytest.mark.slow
def test_digits_smoke_study_prints_the_law_and_where_everything_is(tmp_path):
    proc = _run(tmp_path, "digits", "--smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    folder = tmp_path / "runs" / "scaling_sweeps" / "digits_smoke"
    result = json.loads((folder / "result.json").read_text())
    assert result["n_ok"] == result["n_runs"] == 8  # 4 sizes x 2 widths x 1 seed
    assert {r["params"]["width"] for r in result["runs"]} == {8, 64}
    assert sorted({r["num_samples"] for r in result["runs"]}) == [150, 300, 600, 1200]
    # top-2 error of the same models rides along in every record, for the top-k curve
    assert all(0 <= r["metrics_at_best"]["val_top2_err"] <= r["best_value"] for r in result["runs"])
    if result["law"]["law_supported"]:
        assert "top-1 error law: eps(m) =" in out
        assert re.search(r"data needed to halve the top-1 error .*: [\d.e+]+ \[", out)
    else:  # a smoke study's few, short runs may support no power law: then it says so and prints no exponent
        assert "top-1 error law: no power law: " in out and "top-1 exponent" not in out
    printed = dict(re.findall(r"^(result|figure|W&B \(offline\)):\s+(\S+)", out, flags=re.M))
    assert Path(printed["result"]) == folder / "result.json"
    assert Path(printed["figure"]).read_bytes()[:4] == b"\x89PNG"
    assert list(Path(printed["W&B (offline)"]).glob("run-*.wandb"))


def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loader_reads_idx_files(tmp_path, gz):
    digits = _load("digits")
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, gz)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, gz)
    x, y = digits.load_mnist(tmp_path)
    assert x.shape == (12, 784) and x.dtype == np.float32
    np.testing.assert_allclose(x, images.reshape(12, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)


def test_mnist_loader_says_how_to_get_missing_files(tmp_path):
    digits = _load("digits")
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*--download"):
        digits.load_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04not an idx file")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        digits.read_idx(tmp_path / "train-images-idx3-ubyte")


def test_digits_datamodule_keeps_one_stratified_validation_split():
    digits = _load("digits")
    first, second = digits.DigitsData(), digits.DigitsData()
    first.setup("fit")
    second.setup("fit")
    assert (len(first.train_set), len(first.val_set)) == (1200, 597)
    np.testing.assert_array_equal(first.val_set.tensors[1].numpy(), second.val_set.tensors[1].numpy())
    counts = np.bincount(first.val_set.tensors[1].numpy(), minlength=10)
    assert counts.min() >= 55  # stratified: every class ~60 times


# -- the known exponent -------------------------------------------------------------------------------
def test_closed_form_matches_a_direct_least_squares_solve():
    known = _load("known_exponent")
    train, val = known.make_data()
    x, y = train.tensors
    n = 512
    w = np.linalg.lstsq(x[:n].double().numpy(), y[:n].double().numpy(), rcond=None)[0].T
    xv, clean = val.tensors
    err = float(((xv.double().numpy() @ w.T - clean.double().numpy()) ** 2).sum(1).mean() / known.K)
    # one draw of the noise: within a few standard errors (k outputs average it) of the expectation
    assert err == pytest.approx(known.expected_error(n), rel=0.1)


@pytest.mark.slow
def test_known_exponent_is_recovered_inside_the_interval(tmp_path):
    proc = _run(tmp_path, "known_exponent")
    assert proc.returncode == 0, proc.stderr[-3000:]
    known = _load("known_exponent")
    result = json.loads((tmp_path / "runs" / "scaling_sweeps" / "known_exponent" / "result.json").read_text())
    law = result["law"]
    lo, hi = law["intervals"]["beta"]
    assert lo <= -1.0 <= hi, (law["beta"], lo, hi)
    assert hi - lo < 0.1
    for m, e in zip(law["sizes"], law["errors"]):
        assert e == pytest.approx(known.expected_error(m), rel=0.15)
    assert "-> recovered" in proc.stdout
