import keras
import numpy as np
import pytest

from mims_tf.layers import TemperatureScaling
from mims_tf.stats.calibration import temperature_scale
from tests.layers.harness import run_layer_test


def _probs(seed=0, n=5, classes=3):
    logits = np.random.default_rng(seed).normal(size=(n, classes)) * 3
    return (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype("float32")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_matches_the_numpy_formula_and_keeps_the_ranking(temperature):
    p = _probs()
    got = keras.ops.convert_to_numpy(TemperatureScaling(temperature)(p))
    expected = np.exp(np.log(p) / temperature) / np.exp(np.log(p) / temperature).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, temperature_scale(p, temperature), rtol=1e-5, atol=1e-6)
    assert (np.argsort(got[:, 1]) == np.argsort(p[:, 1])).all()  # AUROC unchanged
    np.testing.assert_allclose(got.sum(axis=1), 1, rtol=1e-6)


def test_layer_contract():
    run_layer_test(TemperatureScaling, {"temperature": 1.7}, input_data=_probs(1, 4, 2), expected_output_shape=(4, 2),
                   expected_num_trainable_weights=0, expected_num_non_trainable_weights=0,
                   mixed_precision_output_dtype="float32")


def test_zero_probabilities_stay_finite_and_bad_arguments_are_refused():
    got = keras.ops.convert_to_numpy(TemperatureScaling(3.0)(np.array([[1.0, 0.0]], "float32")))
    assert np.isfinite(got).all() and got[0, 0] > 0.99
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):  # inf flattened every output to 1/classes
        with pytest.raises(ValueError, match="Received: temperature="):
            TemperatureScaling(bad)
    for bad in (0, 1, "0.1", None):
        with pytest.raises(ValueError, match="Received: epsilon="):
            TemperatureScaling(1.0, epsilon=bad)


def test_a_bias_per_class_is_platt_scaling_for_two_classes():
    p = _probs(2, 6, 2)
    got = keras.ops.convert_to_numpy(TemperatureScaling(1.5, bias=[0.0, -0.8])(p))
    logit = np.log(p[:, 1] / p[:, 0])
    np.testing.assert_allclose(got[:, 1], 1 / (1 + np.exp(-(logit / 1.5 - 0.8))), rtol=1e-5)
    np.testing.assert_allclose(got, temperature_scale(p, 1.5, [0.0, -0.8]), rtol=1e-5, atol=1e-6)
    run_layer_test(TemperatureScaling, {"temperature": 0.7, "bias": [0.0, 0.3]}, input_data=p,
                   expected_output_shape=(6, 2),
                   expected_num_trainable_weights=0, mixed_precision_output_dtype="float32")
    with pytest.raises(ValueError, match="one value per class"):
        TemperatureScaling(1.0, bias=[0.0, 0.1, 0.2])(p)
