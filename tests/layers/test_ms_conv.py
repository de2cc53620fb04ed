import re

import keras
import numpy as np
import pytest

from mims_tf.layers import MSConv
from tests import reference
from tests.conftest import roundtrip
from tests.layers.harness import run_layer_test


def _run(layer, x):
    outputs = layer(keras.ops.convert_to_tensor(x))
    kernels = [keras.ops.convert_to_numpy(k) for k in layer.kernel_weights]
    biases = [keras.ops.convert_to_numpy(b) for b in layer.bias_weights] or [0.0] * len(kernels)
    return [keras.ops.convert_to_numpy(y) for y in outputs], kernels, biases


@pytest.mark.parametrize(
    "kernels, scales",
    [
        ({2: 8, 3: 10}, (0.5, 0.75, 1.0)),  # paper, OCT
        ({2: 10, 3: 10}, (0.5, 0.75, 1.0)),  # paper, fundus
        ({1: 20, 2: 40}, (0.5, 0.75, 1.0)),  # paper, CRC
        ({3: 4}, (0.25, 2.0)),
        ({2: 3}, (1.0,)),
    ],
)
def test_ms_conv_matches_numpy_reference(kernels, scales):
    x = np.random.default_rng(0).normal(size=(3, 7, 6, 5)).astype("float32")
    layer = MSConv(kernels, scales=scales, bias_initializer="random_normal")
    got, k, b = _run(layer, x)
    expected = reference.ms_conv(x, k, b, scales=scales)
    assert len(got) == len(scales)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=1e-4)
    assert [tuple(s) for s in layer.compute_output_shape(x.shape)] == [g.shape for g in got]


def test_ms_conv_shares_kernels_across_scales():
    layer = MSConv({2: 8, 3: 10})
    layer(keras.ops.ones((1, 7, 7, 4)))
    assert [tuple(w.shape) for w in layer.weights] == [(2, 2, 4, 8), (8,), (3, 3, 4, 10), (10,)]
    assert layer.filters == 18 and layer.num_outputs == 3


def test_ms_conv_dilations_match_numpy_reference():
    x = np.random.default_rng(1).normal(size=(2, 9, 9, 3)).astype("float32")
    layer = MSConv({2: 4, 3: 5}, scales=(1.0,), dilations=(1, 2, 3), bias_initializer="random_normal")
    got, k, b = _run(layer, x)
    expected = reference.ms_conv(x, k, b, dilations=(1, 2, 3))
    assert len(got) == 3
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)


@pytest.mark.parametrize("activation, use_bias", [("relu", True), (None, False)])
def test_ms_conv_activation_and_bias_options(activation, use_bias):
    x = np.random.default_rng(2).normal(size=(2, 5, 5, 3)).astype("float32")
    layer = MSConv({3: 4}, scales=(0.5, 1.0), activation=activation, use_bias=use_bias)
    got, k, b = _run(layer, x)
    expected = reference.ms_conv(x, k, b, scales=(0.5, 1.0))
    if activation == "relu":
        expected = [np.maximum(e, 0) for e in expected]
        assert all((g >= 0).all() for g in got)
    assert len(layer.bias_weights) == (1 if use_bias else 0)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)


def test_ms_conv_layer_contract_and_int_kernel_sizes_after_json():
    layer = run_layer_test(
        MSConv,
        {"kernels": {2: 8, 3: 10}, "scales": (0.5, 1.0), "activation": "relu", "kernel_regularizer": "l2"},
        input_shape=(2, 6, 6, 4),
        expected_output_shape=[(2, 3, 3, 18), (2, 6, 6, 18)],
        expected_num_trainable_weights=4,
        expected_num_non_trainable_weights=0,
        expected_num_losses=2,
    )
    assert roundtrip(layer).kernels == {2: 8, 3: 10}


def test_ms_conv_layer_contract_with_dilations():
    run_layer_test(
        MSConv,
        {"kernels": {3: 4}, "scales": (1.0,), "dilations": (1, 2), "use_bias": False},
        input_shape=(2, 7, 5, 3),
        expected_output_shape=[(2, 7, 5, 4)] * 2,
        expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kernels": {}}, "Received: kernels={}"),
        ({"kernels": [3, 4]}, "must be a non-empty dict"),
        ({"kernels": {0: 4}}, "positive kernel sizes"),
        ({"kernels": {2: -1}}, "positive kernel sizes"),
        ({"kernels": {2: 4}, "scales": ()}, "Received: scales=()"),
        ({"kernels": {2: 4}, "scales": (0.5, -1)}, "positive numbers"),
        ({"kernels": {2: 4}, "scales": (0.5, float("inf"))}, "finite positive numbers"),  # failed in call
        ({"kernels": {2: 4}, "scales": (float("nan"),)}, "Received: scales=(nan,)"),
        ({"kernels": {2: 4}, "dilations": (1, 0)}, "positive integers"),
        ({"kernels": {2: 4}, "dilations": (1, 2)}, "not both"),
    ],
)
def test_ms_conv_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        MSConv(**kwargs)


def test_ms_conv_rejects_bad_input_rank():
    with pytest.raises(ValueError, match="expects feature maps"):
        MSConv({2: 4})(keras.ops.ones((2, 5, 3)))
