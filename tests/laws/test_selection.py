"""Choosing a form by held-out extrapolation."""

from __future__ import annotations

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
