"""Hostile curves: never a crash, never an absurd number, and a note that says what happened."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightning_scaling.laws import fit_learning_curve, get_form, select_form


def _finite(pred) -> bool:
    return bool(np.all(np.isfinite([pred.value, pred.lower, pred.upper])) and pred.lower <= pred.value <= pred.upper)


def test_constant_errors_give_a_flat_prediction_and_a_note():
    m = np.array([10, 100, 1e3, 1e4])
    fit = fit_learning_curve(m, [0.3, 0.3, 0.3, 0.3])
    pred = fit.predict(1e6)
    assert _finite(pred) and pred.value == pytest.approx(0.3)
    assert fit.constant and any("constant" in n for n in fit.notes) and fit.exponent == 0.0
    assert fit.data_needed(0.2).value == math.inf and fit.data_needed(0.4).reachable
    assert "note: errors are constant" in str(fit)
    seeds = fit_learning_curve(m, np.full((4, 3), 0.25), bootstrap=10)
    assert seeds.predict(1e5).value == pytest.approx(0.25)


def test_rising_tail_is_noted_and_not_extrapolated_down():
    m = np.geomspace(100, 1e5, 12)
    eps = 3.0 * m**-0.3 + 0.02
    eps[-3:] = eps[-4] * np.array([1.05, 1.12, 1.2])  # overfitting at the largest sizes
    fit = fit_learning_curve(m, eps, bootstrap=0)
    assert any("rises at the largest sizes" in n for n in fit.notes)
    pred = fit.predict(1e6)
    assert _finite(pred) and pred.value >= 0.99 * np.exp(np.mean(np.log(eps[-2:])))
    assert not fit.data_needed(0.5 * eps.min()).reachable


def test_peaking_tail_is_noted():
    m = np.geomspace(100, 1e5, 12)
    eps = 3.0 * m**-0.3 + 0.02
    eps[-4:] = eps[-5] * np.array([1.2, 1.4, 1.25, 1.1])  # double descent: up, then down again
    fit = fit_learning_curve(m, eps, bootstrap=0)
    assert any("peaks and falls again" in n for n in fit.notes)
    assert _finite(fit.predict(1e6)) and fit.predict(1e6).value >= eps[-5]


@pytest.mark.parametrize("n", [3, 5])
def test_few_points_give_finite_predictions(n):
    m = np.geomspace(100, 1e4, n)
    fit = fit_learning_curve(m, 3.0 * m**-0.3 + 0.02)
    for size in (1e4, 1e5, 1e7):
        assert _finite(fit.predict(size))
    assert fit.notes == []


def test_noisy_curve_gives_a_finite_prediction_without_notes():
    rng = np.random.default_rng(5)
    m = np.geomspace(100, 1e5, 15)
    fit = fit_learning_curve(m, (3.0 * m**-0.3 + 0.02) * np.exp(rng.normal(0, 0.15, m.size)))
    pred = fit.predict(1e6)
    assert _finite(pred) and 0.01 < pred.value < 1.0
    assert pred.upper / pred.lower < math.exp(2 * 1.96 * 1.5) + 1e-9  # never wider than the cap


@pytest.mark.parametrize("scale", [1e250, 1e-250])
def test_extreme_magnitudes(scale):
    m = np.geomspace(1, 1e3, 8)
    big_sizes = fit_learning_curve(m * scale, 2 * m**-0.5 + 0.1, bootstrap=20)
    assert _finite(big_sizes.predict(1e4 * scale))
    big_errors = fit_learning_curve(m, scale * (2 * m**-0.5 + 0.1), bootstrap=20)
    pred = big_errors.predict(1e4)
    assert np.isfinite(pred.value) and pred.value == pytest.approx(scale * (2 * 1e4**-0.5 + 0.1), rel=0.05)


def test_broken_power_law_slopes_are_bounded():
    rng = np.random.default_rng(0)
    m = np.geomspace(10, 1e4, 12)
    eps = (0.5 * m**-0.1) * np.exp(rng.normal(0, 0.05, m.size))
    eps[-2:] *= 0.3  # a noisy tail that an unbounded break turns into errors of 1e-12
    fit = fit_learning_curve(m, eps, form="broken_power_law", bootstrap=0)
    form = get_form("broken_power_law")
    assert fit.params["c0"] <= form.c0_max and fit.params["c1"] <= form.c1_max
    assert fit.predict(1e6).value > 1e-6


def test_select_form_skips_a_form_with_too_many_parameters_with_a_note():
    m = np.geomspace(10, 1e4, 5)
    best, scores = select_form(m, 2 * m**-0.3 + 0.05)
    assert best in scores and "broken_power_law" not in scores
    assert any(n.startswith("broken_power_law skipped") for n in scores.notes)


def test_nan_scores_are_never_ranked(monkeypatch):
    import lightning_scaling.laws.selection as selection

    real = selection.fit_form_subsets
    calls = []

    def poisoned(form, x, y, masks, **kw):
        params, cost = real(form, x, y, masks, **kw)
        calls.append(len(masks))
        if len(calls) == 1:  # the held-out fit of the first candidate start has alpha = inf: its score is nan
            params[0, 0] = np.inf
        return params, cost

    monkeypatch.setattr(selection, "fit_form_subsets", poisoned)
    m = np.geomspace(10, 1e5, 16)
    y = 3.0 * m**-0.3 + 0.02
    cands = selection.start_candidates(get_form("hestness"), m, y, np.ones_like(m), None)
    first = cands[0]
    assert first.start == 0 and first.score == np.inf
    assert first.weight == pytest.approx(selection.START_PRIOR / len(cands))  # the prior's share, no more
    calls.clear()
    cands = selection.start_candidates(get_form("hestness"), m, y, np.ones_like(m), None)
    k, held = selection.reported_start(cands), selection.best_holdout(cands)
    assert 0 < k < len(m) and len(held.residuals) and np.all(np.isfinite(held.residuals))


def test_data_needed_for_a_target_above_every_error_says_it_is_reached():
    m = np.geomspace(100, 1e4, 8)
    fit = fit_learning_curve(m, 3.0 * m**-0.3 + 0.02, bootstrap=0)
    need = fit.data_needed(0.9)
    assert need.value <= m[0] and "above every measured error" in need.note
    assert "reached already" in str(need) and need.to_dict()["note"] == need.note
