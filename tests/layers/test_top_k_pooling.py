import re

import keras
import numpy as np
import pytest

from mims_tf.layers import TopKPooling
from tests import reference
from tests.conftest import gradient
from tests.layers.harness import run_layer_test


def _scales(seed=0):
    rng = np.random.default_rng(seed)
    # one bag axis, 3 instances, three scales of different spatial size, 6 channels
    return [rng.normal(size=(2, 3, h, h, 6)).astype("float32") for h in (2, 3, 4)]


def _theta(layer):
    return keras.ops.convert_to_numpy(layer.logits)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 12])
def test_top_k_pooling_matches_equation_2_over_a_list_of_scales(k):
    inputs = _scales()
    layer = TopKPooling(k=k)
    got = keras.ops.convert_to_numpy(layer(inputs))
    expected, _ = reference.top_k_pool(inputs, _theta(layer), k)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.shape == (2, 6) == layer.compute_output_shape([x.shape for x in inputs])


def test_initial_weights_decay_exponentially_are_nonnegative_and_sum_to_one():
    layer = TopKPooling(k=5, decay=0.5)
    layer(_scales())
    w = keras.ops.convert_to_numpy(layer.pooling_weights())
    np.testing.assert_allclose(w, 0.5 ** np.arange(5) / np.sum(0.5 ** np.arange(5)), rtol=1e-6)
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-6


def test_decay_one_is_the_mean_of_the_top_k():
    x = _scales()[2]
    layer = TopKPooling(k=4, decay=1.0)
    got = keras.ops.convert_to_numpy(layer(x))
    flat = np.sort(x.reshape(2, -1, 6), axis=1)[:, ::-1]
    np.testing.assert_allclose(got, flat[:, :4].mean(axis=1), atol=1e-5)


def test_k_one_is_max_pooling():
    x = _scales()[1]
    got = keras.ops.convert_to_numpy(TopKPooling(k=1)(x))
    np.testing.assert_allclose(got, x.reshape(2, -1, 6).max(axis=1), atol=1e-6)


def test_per_channel_weights_match_reference():
    inputs = _scales(1)
    layer = TopKPooling(k=3, per_channel=True)
    layer(inputs)
    theta = np.random.default_rng(5).normal(size=(3, 6)).astype("float32")
    layer.logits.assign(theta)
    got = keras.ops.convert_to_numpy(layer(inputs))
    expected, _ = reference.top_k_pool(inputs, theta, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert tuple(layer.logits.shape) == (3, 6)


def test_gradient_reaches_the_pooling_weights():
    inputs = _scales(2)
    layer = TopKPooling(k=4)
    layer(inputs)
    theta = np.array([0.3, -0.2, 0.1, -0.5], dtype="float32")
    layer.logits.assign(theta)
    tensors = [keras.ops.convert_to_tensor(x) for x in inputs]
    grad = gradient(lambda: keras.ops.sum(layer(tensors)), layer.logits)
    _, flat = reference.top_k_pool(inputs, theta, 4)
    expected = reference.top_k_grad_theta(flat, theta, 4)
    assert np.abs(grad).max() > 1e-3
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_k_larger_than_pooled_elements_is_a_clear_error():
    message = "needs at least k=10 elements per bag and channel, but the input has only 8"
    with pytest.raises(ValueError, match=re.escape(message)):
        TopKPooling(k=10)(keras.ops.ones((2, 2, 2, 2, 3)))


def test_dynamic_axes_are_checked_when_the_call_sees_the_size():
    layer = TopKPooling(k=5)
    layer.build((None, None, 2, 2, 3))
    with pytest.raises(ValueError, match="only 4"):
        layer(keras.ops.ones((1, 1, 2, 2, 3)))


@pytest.mark.parametrize(
    "kwargs, message",
    [({"k": 0}, "Received: k=0"), ({"k": 2.5}, "Received: k=2.5"), ({"decay": 0.0}, "Received: decay=0.0"),
     ({"decay": 1.5}, "Received: decay=1.5")],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TopKPooling(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one axis to pool"):
        TopKPooling(k=1)(keras.ops.ones((2, 3)))
    with pytest.raises(ValueError, match="same, known number of channels"):
        TopKPooling(k=1)([keras.ops.ones((2, 3, 4)), keras.ops.ones((2, 3, 5))])


@pytest.mark.parametrize("per_channel", [False, True])
def test_layer_contract(per_channel):
    layer = run_layer_test(
        TopKPooling,
        {"k": 3, "decay": 0.7, "per_channel": per_channel},
        input_data=_scales(3),
        expected_output_shape=(2, 6),
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )
    assert tuple(layer.logits.shape) == ((3, 6) if per_channel else (3,))


def test_layer_contract_with_one_tensor():
    run_layer_test(TopKPooling, {"k": 5}, input_shape=(2, 4, 3, 3, 6), expected_output_shape=(2, 6))
