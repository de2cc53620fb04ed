import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from mims_tf.stats.calibration import (
    brier_score,
    expected_calibration_error,
    fit_platt,
    fit_temperature,
    reliability_bins,
    temperature_scale,
)
from mims_tf.stats.thresholds import sensitivity_threshold, youden_threshold


def _overconfident(n=2000, seed=0, sharpen=3.0):
    """Labels drawn from true probabilities, and those probabilities sharpened by `sharpen` (over-confident)."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.05, 0.95, n)
    labels = (rng.uniform(size=n) < true).astype(int)
    probs = np.stack([1 - true, true], axis=1)
    return labels, temperature_scale(probs, 1 / sharpen), probs


def test_fitted_temperature_undoes_a_known_sharpening_and_lowers_ece():
    labels, sharp, true = _overconfident()
    temperature = fit_temperature(labels, sharp)
    assert temperature == pytest.approx(3.0, rel=0.15)
    calibrated = temperature_scale(sharp, temperature)
    assert expected_calibration_error(labels, calibrated) < expected_calibration_error(labels, sharp) / 2
    assert brier_score(labels, calibrated) < brier_score(labels, sharp)


def test_ece_and_reliability_against_a_plain_reference():
    labels = np.array([0, 0, 1, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.25, 0.75], [0.6, 0.4], [0.5, 0.5]])
    p = probs[:, 1]
    bins = np.minimum((p * 15).astype(int), 14)
    expected = sum(np.sum(bins == b) * abs(p[bins == b].mean() - labels[bins == b].mean()) for b in set(bins)) / len(p)
    assert expected_calibration_error(labels, probs) == pytest.approx(expected)
    rows = reliability_bins(labels, probs)
    assert len(rows) == 15 and sum(r[0] for r in rows) == 6
    assert brier_score(labels, probs) == pytest.approx(brier_score_loss(labels, p))


def test_multiclass_brier_and_top_label_ece():
    labels = np.array([0, 1, 2])
    probs = np.eye(3)[[0, 1, 2]] * 0.7 + 0.1
    assert brier_score(labels, probs) == pytest.approx(0.04 + 0.01 + 0.01)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.2)


def test_thresholds():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert youden_threshold(labels, scores) == pytest.approx(0.7)
    assert sensitivity_threshold(labels, scores, 1.0) == pytest.approx(0.4)
    assert sensitivity_threshold(labels, scores, 0.75) == pytest.approx(0.7)
    with pytest.raises(ValueError, match="Received: sensitivity=0"):
        sensitivity_threshold(labels, scores, 0)


def test_platt_scaling_also_corrects_a_shift_that_temperature_cannot():
    rng = np.random.default_rng(2)
    true = rng.uniform(0.05, 0.95, 3000)
    labels = (rng.uniform(size=3000) < true).astype(int)
    logit = np.log(true / (1 - true))
    shifted = 1 / (1 + np.exp(-(2.0 * logit - 1.5)))  # over-confident and shifted towards class 0
    probs = np.stack([1 - shifted, shifted], axis=1)
    temperature, bias = fit_platt(labels, probs)
    assert temperature == pytest.approx(2.0, rel=0.15) and bias[0] == 0 and bias[1] == pytest.approx(0.75, abs=0.2)
    platt = temperature_scale(probs, temperature, bias)
    only_t = temperature_scale(probs, fit_temperature(labels, probs))
    assert expected_calibration_error(labels, platt) < expected_calibration_error(labels, only_t) / 2
    assert np.array_equal(np.argsort(platt[:, 1]), np.argsort(probs[:, 1]))  # the ranking is kept
