import keras
import numpy as np
import pytest

from mims_tf.layers import InstancePooling
from tests.layers.harness import run_layer_test


def _probs(classes, seed=0):
    logits = np.random.default_rng(seed).normal(size=(3, 5, classes))
    e = np.exp(logits)
    return (e / e.sum(-1, keepdims=True)).astype("float32")


def test_mean_is_the_mean_of_instance_probabilities():
    p = _probs(3)
    got = keras.ops.convert_to_numpy(InstancePooling("mean")(p))
    np.testing.assert_allclose(got, p.mean(axis=1), atol=1e-6)


def test_max_for_two_classes_is_the_largest_positive_probability():
    p = _probs(2, 1)
    got = keras.ops.convert_to_numpy(InstancePooling("max")(p))
    np.testing.assert_allclose(got[:, 1], p[:, :, 1].max(axis=1), atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)


def test_max_for_several_classes_follows_the_mil_assumption():
    p = _probs(4, 2)
    raw = np.concatenate([p[:, :, :1].min(axis=1), p[:, :, 1:].max(axis=1)], axis=-1)
    got = keras.ops.convert_to_numpy(InstancePooling("max")(p))
    np.testing.assert_allclose(got, raw / raw.sum(-1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_layer_contract(mode):
    run_layer_test(
        InstancePooling,
        {"mode": mode},
        input_data=_probs(3, 3),
        expected_output_shape=(3, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_dynamic_shape_and_errors():
    assert InstancePooling("max").compute_output_shape((None, None, 2)) == (None, 2)
    with pytest.raises(ValueError, match="Received: mode='median'"):
        InstancePooling("median")
    with pytest.raises(ValueError, match="Received: input_shape"):
        InstancePooling("mean")(keras.ops.ones((2, 3)))
