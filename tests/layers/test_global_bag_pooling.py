import keras
import numpy as np
import pytest

from mims_tf.layers import GlobalBagPooling, TopKPooling
from tests.layers.harness import run_layer_test


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_mean_and_max_over_every_element_of_a_list(mode):
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(2, 3, h, h, 4)).astype("float32") for h in (2, 5)]
    flat = np.concatenate([x.reshape(2, -1, 4) for x in inputs], axis=1)
    expected = flat.mean(axis=1) if mode == "mean" else flat.max(axis=1)
    layer = GlobalBagPooling(mode)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(inputs)), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("input_shape", [(2, 3, 4, 4, 5), [(2, 3, 2, 2, 5), (2, 3, 5, 5, 5)]])
def test_layer_contract(mode, input_shape):
    run_layer_test(
        GlobalBagPooling,
        {"mode": mode},
        input_shape=input_shape,
        expected_output_shape=(2, 5),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


def test_max_equals_top_1():
    x = np.random.default_rng(1).normal(size=(2, 4, 3, 3, 5)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(GlobalBagPooling("max")(x)),
        keras.ops.convert_to_numpy(TopKPooling(k=1)(x)),
    )


def test_bad_mode():
    with pytest.raises(ValueError, match="Received: mode='median'"):
        GlobalBagPooling("median")
