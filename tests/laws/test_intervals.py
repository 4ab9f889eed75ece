"""Prediction intervals: what they contain, on simulated curves with a known law and known noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats

from lightning_scaling.laws import fit_learning_curve
from lightning_scaling.laws.intervals import bootstrap_band, percentiles


def test_prediction_interval_covers_new_runs_at_the_nominal_rate():
    # a known law with known log-normal noise; each curve is fitted, then a *new run* is drawn at a
    # size inside the data and at one beyond it: a 95% prediction interval must hold ~95% of them
    rng = np.random.default_rng(0)
    m = np.geomspace(1e3, 1e5, 10)
    new = np.array([2e4, 3e5])
    truth = lambda s: 2.0 * s**-0.3 + 0.02  # noqa: E731
    hits = total = 0
    for _ in range(150):
        eps = truth(m) * np.exp(rng.normal(0, 0.03, m.size))
        pred = fit_learning_curve(m, eps, bootstrap=0).predict(new)
        run = truth(new) * np.exp(rng.normal(0, 0.03, new.size))
        hits += int(np.sum((pred.lower <= run) & (run <= pred.upper)))
        total += new.size
    # the nominal rate's binomial band (three standard errors either side)
    lo, hi = stats.binom.ppf([0.00135, 0.99865], total, 0.95) / total
    assert lo <= hits / total <= hi, hits / total


def test_prediction_interval_is_wider_than_the_mean_curves_confidence_interval():
    rng = np.random.default_rng(1)
    m = np.geomspace(1e3, 1e5, 10)
    fit = fit_learning_curve(m, (2.0 * m**-0.3 + 0.02) * np.exp(rng.normal(0, 0.03, m.size)), bootstrap=200)
    pi, ci = fit.predict(1e6), fit.predict(1e6, interval="confidence")
    assert pi.kind == "prediction" and ci.kind == "confidence"
    assert pi.lower < ci.lower <= ci.value <= ci.upper < pi.upper
    assert pi.to_dict()["interval"] == "prediction"
    # the interval widens with the distance beyond the data
    far = fit.predict([2e5, 2e6])
    assert np.all(np.diff(np.log(far.upper / far.lower)) > 0)


def test_data_needed_interval_brackets_the_value():
    rng = np.random.default_rng(2)
    m = np.geomspace(1e3, 1e5, 10)
    fit = fit_learning_curve(m, (2.0 * m**-0.3 + 0.02) * np.exp(rng.normal(0, 0.03, m.size)), bootstrap=0)
    need = fit.data_needed(0.06)
    assert need.lower < need.value < need.upper
    assert need.kind == "prediction" and "prediction interval" in str(need)


def test_bootstrap_band_and_percentiles():
    value = np.array([1.0, 2.0])
    assert bootstrap_band(None, value, 0.9) == (value, value)
    samples = np.array([[0.5, 1.0], [1.5, np.nan], [1.0, 3.0]])
    lo, hi = bootstrap_band(samples, value, 0.5)
    # the replicate with a nan is dropped whole: its 1.5 is not in the band
    np.testing.assert_allclose([lo[0], hi[0], lo[1], hi[1]], [0.625, 0.875, 1.5, 2.5])
    lo, hi = percentiles(np.array([[1.0], [np.inf]]), 0.5)
    assert lo[0] == 1.0 and hi[0] == np.inf


def test_bad_interval_kind():
    m = np.geomspace(10, 1e4, 6)
    with pytest.raises(ValueError, match="interval must be"):
        fit_learning_curve(m, 2 * m**-0.3, bootstrap=0).predict(1e5, interval="credible")  # type: ignore[arg-type]


def test_data_needed_interval_for_a_target_below_the_fitted_floor_still_starts_where_runs_may_reach_it():
    # the floor is estimated, not known: a target just below the fitted floor is unreachable by the
    # fitted curve, yet a new run may reach it; the interval must say from where, or it holds nothing
    rng = np.random.default_rng(3)
    m = np.geomspace(1e3, 1e5, 10)
    fit = fit_learning_curve(m, (2.0 * m**-0.3 + 0.05) * np.exp(rng.normal(0, 0.03, m.size)), bootstrap=0)
    need = fit.data_needed(0.97 * fit.floor)
    assert not need.reachable and need.value == np.inf
    assert m[-1] < need.lower < np.inf and need.upper == np.inf
    assert f"may reach it from {need.lower:.4g} on" in str(need)
    # the lower edge of the prediction interval reaches the target there, and not before
    assert fit.predict(need.lower).lower <= need.target * 1.001
    assert fit.predict(0.9 * need.lower).lower > need.target


def test_interval_carries_the_uncertainty_of_where_the_power_law_starts():
    # an ambiguous bend: the candidate starts disagree about the extrapolation, and the default
    # fit's interval (which averages them) is wider than if the reported start were known
    rng = np.random.default_rng(4)
    m = np.geomspace(100, 1e5, 14)
    eps = (0.9 * (1 + (m / 2e3) ** 0.6) ** -1 + 0.03) * np.exp(rng.normal(0, 0.01, m.size))
    fit = fit_learning_curve(m, eps, bootstrap=0)
    spread = fit.spread
    assert spread is not None and len(spread.members) > 1
    assert spread.member_weights.sum() == pytest.approx(1.0)
    x = np.array([1e5, 1e6])
    start = spread.start_variance(x)
    assert np.all(start > 0) and start[1] > start[0]  # the starts disagree more the farther out
    known = dataclasses.replace(spread, members=spread.members[:1], member_weights=np.ones(1))
    np.testing.assert_allclose(spread.sd(x) ** 2, known.sd(x) ** 2 + start)
