import re

import keras
import numpy as np
import pytest

from mims_tf.layers import ScaleResize, bilinear_resize
from mims_tf.layers.resize import scaled_size
from tests import reference
from tests.conftest import requires_tensorflow
from tests.layers.harness import run_layer_test


@pytest.mark.parametrize("out_size", [(3, 5), (8, 8), (11, 4), (1, 1), (16, 13)])
def test_bilinear_resize_matches_numpy_reference(out_size):
    x = np.random.default_rng(0).normal(size=(2, 7, 6, 3)).astype("float32")
    got = keras.ops.convert_to_numpy(bilinear_resize(keras.ops.convert_to_tensor(x), out_size))
    np.testing.assert_allclose(got, reference.resize_bilinear(x, *out_size), atol=1e-5)


@requires_tensorflow()
@pytest.mark.parametrize("out_size", [(3, 5), (14, 12), (4, 4)])
def test_bilinear_resize_matches_tf_image_resize(out_size):
    import tensorflow as tf

    x = np.random.default_rng(1).normal(size=(2, 7, 6, 3)).astype("float32")
    expected = tf.image.resize(x, out_size, method="bilinear").numpy()
    got = keras.ops.convert_to_numpy(bilinear_resize(keras.ops.convert_to_tensor(x), out_size))
    np.testing.assert_allclose(got, expected, atol=1e-5)


@requires_tensorflow()
def test_resize_by_scale_with_dynamic_size_in_graph():
    import tensorflow as tf

    layer = ScaleResize(0.75)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 2), tf.float32)])
    def f(x):
        return layer(x)

    x = np.random.default_rng(2).normal(size=(1, 8, 6, 2)).astype("float32")
    got = f(x).numpy()
    np.testing.assert_allclose(got, reference.resize_bilinear(x, 6, 4), atol=1e-5)


def test_scaled_size_rounds_half_to_even_and_is_at_least_one():
    assert scaled_size(7, 0.5) == 4  # 3.5 -> 4
    assert scaled_size(5, 0.5) == 2  # 2.5 -> 2
    assert scaled_size(7, 0.75) == 5
    assert scaled_size(1, 0.25) == 1
    got = keras.ops.convert_to_numpy(scaled_size(keras.ops.convert_to_tensor(7), 0.5))
    assert int(got) == 4


@pytest.mark.parametrize("scale, expected", [(0.5, (2, 4, 4, 3)), (1.5, (2, 14, 12, 3)), (1.0, (2, 9, 8, 3))])
def test_scale_resize_layer_contract(scale, expected):
    run_layer_test(
        ScaleResize,
        {"scale": scale},
        input_shape=(2, 9, 8, 3),
        expected_output_shape=expected,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_scale_resize_dynamic_shape_and_errors():
    layer = ScaleResize(0.5)
    assert layer.compute_output_shape((None, 8, None, 3)) == (None, 4, None, 3)
    with pytest.raises(ValueError, match="Received: scale=0"):
        ScaleResize(0)
    for bad in (float("nan"), float("inf"), -float("inf"), True, "2"):  # non-finite ones failed in call
        with pytest.raises(ValueError, match="Received: scale="):
            ScaleResize(bad)


@pytest.mark.parametrize("size", [(-2, 4), (4, 0), (4,), (2, 3, 4)])
def test_bilinear_resize_refuses_static_sizes_that_are_not_positive_pairs(size):
    with pytest.raises(ValueError, match=re.escape(f"Received: size={size!r}")):
        bilinear_resize(keras.ops.ones((1, 8, 8, 3)), size)
