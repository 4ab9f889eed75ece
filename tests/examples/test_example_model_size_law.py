"""The known-answer task for both of the paper's exponents (examples/model_size_law/train.py).

Least squares on the first p of infinitely many features whose teacher coefficients decay as j^-1:
the expected test error at (n, p) is known in closed form, the best p grows as n^(1/2) and its
error falls as n^(-1/2). The fast tests check the closed form against direct solves; the slow test
runs the example as a user would and asserts both exponents are recovered inside their intervals.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.examples import load_example

REPO = Path(__file__).parents[2]
SCRIPT = REPO / "examples" / "model_size_law" / "train.py"


@pytest.fixture(scope="module")
def example():
    return load_example("model_size_law")


def test_teacher_tail_beyond_p_is_the_closed_form(example):
    w = example.teacher().double()
    for p in (1, 2, 7, 64):
        # the weight of the features p+1 .. P, plus the tail beyond P that is drawn as noise
        assert float(w[p:, 0].pow(2).sum()) + example.tail(example.P) == pytest.approx(example.tail(p), rel=1e-9)
    # |w_j| ~ sqrt(2a - 1) j^-a
    j = 100
    assert float(w[j - 1, 0].abs()) == pytest.approx(j**-example.A * (2 * example.A - 1) ** 0.5, rel=0.01)


def test_closed_form_matches_direct_least_squares_solves(example):
    torch.manual_seed(0)
    train = example.make_data()
    x, y = train.tensors
    n = 2048
    for p in (4, 16, 64):
        model = example.LeastSquares(p)
        model.training_step((x[:n], y[:n]), 0)
        w = model.linear.weight.detach().double()
        err = float((w - model.teacher.double()).pow(2).sum(1).mean()) + example.tail(p)
        # one draw of the noise, averaged over K outputs: within a few percent of the expectation
        assert err == pytest.approx(example.expected_error(n, p), rel=0.05), p


def test_the_expected_best_p_doubles_when_the_data_quadruples(example):
    best = [example.best_width(n) for n in example.SIZES]
    assert best == [4, 8, 8, 16, 16, 32, 32, 64]
    assert min(example.WIDTHS) < best[0] and best[-1] < max(example.WIDTHS)  # the grid brackets every optimum
    # the continuous optimum p* = (n / sigma^2)^(1/2) and its error 2 sigma n^(-1/2), for n >> p
    n = 1e9
    p_star = (n / example.SIGMA2) ** 0.5
    assert example.expected_error(n, p_star) == pytest.approx(2 * example.SIGMA2**0.5 * n**-0.5, rel=1e-3)


@pytest.mark.slow
def test_both_exponents_are_recovered_and_errors_match_the_closed_form(tmp_path, example):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_TEST_", "LIGHTNING_SCALING_", "WANDB_"))}
    env.update({"PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(tmp_path / "runs")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "runs" / "scaling_sweeps" / "model_size_law"
    result = json.loads((folder / "result.json").read_text())
    assert result["n_ok"] == result["n_runs"] == len(example.SIZES) * len(example.WIDTHS)

    lo, hi = result["law"]["intervals"]["beta"]
    assert lo <= example.BETA_G <= hi, (result["law"]["beta"], lo, hi)
    assert hi - lo < 0.1
    size_law = result["model_size_law"]
    lo, hi = size_law["intervals"]["beta_p"]
    assert lo <= example.BETA_P <= hi, (size_law["beta_p"], lo, hi)
    assert hi - lo < 0.25

    # every measured error within a few percent of the closed form, and the measured best p is the expected one
    for run in result["runs"]:
        expected = example.expected_error(run["size"], run["params"]["p"])
        assert run["best_value"] == pytest.approx(expected, rel=0.06), run["run_id"]
    for row in result["best"]:
        n = round(row["train_size"])
        assert row["params"]["p"] == example.best_width(n)
        assert row["error"] == pytest.approx(example.expected_error(n, row["params"]["p"]), rel=0.03)
    assert np.allclose(size_law["params"], [example.K * example.best_width(n) for n in example.SIZES])

    assert (folder / "model_size_law.png").read_bytes()[:4] == b"\x89PNG"
    assert "beta_g: fitted" in proc.stdout and "beta_p: fitted" in proc.stdout
    assert len(re.findall(r"-> recovered", proc.stdout)) == 2
