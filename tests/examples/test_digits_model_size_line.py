"""The digits main job's model-size line: the law when fitted, else why not in terms a user can act on."""

from __future__ import annotations

import pytest
from helpers.examples import load_example

from lightning_scaling import SweepResult


@pytest.fixture(scope="module")
def digits():
    return load_example("digits")


def _result(best_width) -> SweepResult:
    recs = []
    for i, m in enumerate((100, 400, 1600, 6400)):
        for width in (8, 32, 128):
            best = best_width(i)
            recs.append({"run_id": f"m{m}_w{width}", "status": "ok", "size": m, "train_size": m, "seed": 0,
                         "params": {"width": width}, "trainable_params": 100 * width,
                         "best_value": m**-0.5 * (1 + 0.3 * abs(width - best) / best)})
    return SweepResult.from_records(recs, monitor="val_top1_err", mode="min", bootstrap=50)


def test_a_fitted_law_is_printed_with_its_interval(digits):
    line = digits.model_size_line(_result(lambda i: (8, 8, 32, 128)[i]))
    assert line.startswith("model-size law: params(m) =") and "beta_p" in line


@pytest.mark.parametrize(("best", "says"), [
    (128, ["largest model (width=128, 12,800 parameters)", "grid's edge", "examples/model_size_law"]),
    (8, ["smallest model (width=8)", "add smaller models"]),
    (32, ["same model (width=32)", "add larger data sizes"]),
])
def test_no_law_says_why_and_what_to_do(digits, best, says):
    line = digits.model_size_line(_result(lambda i: best))
    assert line.startswith("no model-size law:")
    for part in says:
        assert part in line
