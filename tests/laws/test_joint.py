"""Laws across curves: shared exponent, model-size law, L(N, D)."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_scaling.laws import (
    fit_joint_law,
    fit_model_size_law,
    fit_shared_exponent,
)


def test_shared_exponent_test_accepts_shared_and_rejects_different():
    rng = np.random.default_rng(0)
    m = np.geomspace(1e2, 1e5, 10)

    def curve(alpha, beta):
        return m, (alpha * m**beta + 0.01) * np.exp(rng.normal(0, 0.02, m.size))

    same = fit_shared_exponent({"w64": curve(5, -0.3), "w256": curve(3, -0.3)}, bootstrap=100)
    assert same.same_exponent and same.beta_interval[0] < -0.3 < same.beta_interval[1]
    assert same.alphas["w64"] > same.alphas["w256"]
    # every per-curve parameter has an interval, and it covers the truth
    for name, alpha in (("w64", 5.0), ("w256", 3.0)):
        lo, hi = same.alpha_intervals[name]
        assert lo < alpha < hi and lo <= same.alphas[name] <= hi
        assert same.gamma_intervals[name][0] <= 0.01 <= same.gamma_intervals[name][1]
    diff = fit_shared_exponent({"a": curve(5, -0.3), "b": curve(3, -0.5)}, bootstrap=0)
    assert not diff.same_exponent and diff.p_value < 1e-3


def test_model_size_law():
    rng = np.random.default_rng(1)
    m = np.geomspace(1e3, 1e7, 9)
    params = 50 * m**0.7 * np.exp(rng.normal(0, 0.05, m.size))
    law = fit_model_size_law(m, params)
    assert law.intervals["beta_p"][0] < 0.7 < law.intervals["beta_p"][1]
    best = law.predict(1e8)  # an extrapolation, with its interval
    assert best.value == pytest.approx(law.sigma * 1e8**law.beta_p)
    assert best.lower < 50 * 1e8**0.7 < best.upper
    assert best.upper - best.lower < 0.3 * best.value
    both = law.predict([1e6, 1e8])
    assert both.value[1] == pytest.approx(best.value) and both.lower[0] < both.value[0] < both.upper[0]


def test_joint_law_recovers_known_parameters():
    rng = np.random.default_rng(2)
    n = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    d = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    loss = (1.8 + 480 / n**0.35 + 2000 / d**0.37) * np.exp(rng.normal(0, 0.002, n.size))
    fit = fit_joint_law(n, d, loss, bootstrap=10)
    assert pytest.approx(1.8, rel=0.02) == fit.E
    assert fit.alpha == pytest.approx(0.35, abs=0.03)
    assert fit.beta == pytest.approx(0.37, abs=0.03)
    assert fit.intervals["E"][0] <= fit.E <= fit.intervals["E"][1]
    nopt, dopt = fit.compute_optimal(1e22)
    assert 6 * nopt * dopt == pytest.approx(1e22)
    pred = fit.predict(1e11, 1e13)  # beyond the data, with its interval
    assert pred.lower <= 1.8 + 480 / 1e11**0.35 + 2000 / 1e13**0.37 <= pred.upper
    assert pred.lower <= pred.value <= pred.upper
    assert fit.predict([1e8, 1e11], [1e10, 1e13]).value[1] == pytest.approx(pred.value)


@pytest.mark.parametrize(
    ("n", "d", "loss", "match"),
    [
        ([1e7] * 5, [1e9] * 5, [2.5] * 5, "cannot determine the 5 parameters"),
        ([1e7, 1e8] * 4, [1e9] * 4 + [1e10] * 4, [2.0] * 8, "loss is constant"),
        ([1e7] * 8, [1e9] * 4 + [1e10] * 4, [2.0, 2.1] * 4, "n_params is 1e\\+07 at every point"),
        ([1e7, 1e8] * 4, [1e9] * 4 + [1e10] * 4, [2.0, -2.1] * 4, "loss must be positive"),
        ([1e7, np.nan] * 4, [1e9] * 4 + [1e10] * 4, [2.0, 2.1] * 4, "n_params must be positive and finite"),
    ],
)
def test_joint_law_bad_input_is_named(n, d, loss, match):
    with pytest.raises(ValueError, match=match):
        fit_joint_law(n, d, loss, bootstrap=0)
