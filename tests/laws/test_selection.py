"""Choosing a form by held-out extrapolation."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.curves import noisy_curve

from lightning_scaling.laws import (
    extrapolation_error,
    select_form,
)


def test_select_form_prefers_what_extrapolates():
    m, eps = noisy_curve(8, gamma=0.08, noise=0.01, n=16)
    best, scores = select_form(m, eps, forms=("power_law", "hestness"))
    assert best == "hestness" and scores["hestness"] < scores["power_law"]
    assert extrapolation_error("hestness", m, eps) == pytest.approx(scores["hestness"])


def test_start_weights_mix_an_even_prior_with_held_out_scores():
    from lightning_scaling.laws.selection import START_PRIOR, start_weights

    w = start_weights(np.array([0.01, 0.02, 0.5, np.inf]))
    assert w.sum() == pytest.approx(1.0)
    # the best start weighs most; a start 50x worse or unscorable keeps only its prior share
    assert w[0] > w[1] > w[2] and w[2] == pytest.approx(START_PRIOR / 4, rel=1e-3)
    assert w[3] == pytest.approx(START_PRIOR / 4)
    # no finite score at all: every candidate weighs the same
    np.testing.assert_allclose(start_weights(np.array([np.nan, np.inf])), [0.5, 0.5])


def test_default_fit_is_the_law_closest_to_the_average_over_starts():
    # the reported equation is what predict and data_needed use: one law, not a hidden ensemble
    from lightning_scaling.laws import fit_learning_curve

    m = np.geomspace(100, 1e5, 14)
    eps = 0.9 * (1 + (m / 2e3) ** 0.6) ** -1 + 0.03
    fit = fit_learning_curve(m, eps, bootstrap=0)
    p = fit.params
    x = np.array([2e5, 1e6])
    np.testing.assert_allclose(fit.predict(x).value, p["alpha"] * x ** p["beta"] + p["gamma"], rtol=1e-9)
    members, w = fit.spread.members, fit.spread.member_weights
    average = w @ fit.form.log_predict(members, x)
    np.testing.assert_allclose(np.log(fit.predict(x).value), average, atol=0.05)
