import keras
import numpy as np
import pytest

from mims_tf.layers import AttentionPooling
from tests import reference
from tests.layers.harness import run_layer_test


@pytest.mark.parametrize("gated", [False, True])
def test_attention_pooling_matches_ilse_et_al(gated):
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4, 6)).astype("float32")
    layer = AttentionPooling(units=5, gated=gated)
    got = keras.ops.convert_to_numpy(layer(x))
    v = keras.ops.convert_to_numpy(layer.v_kernel)
    w = keras.ops.convert_to_numpy(layer.w_kernel)
    u = keras.ops.convert_to_numpy(layer.u_kernel) if gated else None
    expected, attention = reference.attention_pool(x, v, w, u)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    scores = keras.ops.convert_to_numpy(layer.attention_scores(x))
    np.testing.assert_allclose(scores, attention, atol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    assert len(layer.trainable_weights) == (3 if gated else 2)


@pytest.mark.parametrize("gated", [False, True])
def test_layer_contract_with_a_list_of_scales(gated):
    run_layer_test(
        AttentionPooling,
        {"units": 4, "gated": gated, "kernel_initializer": "he_normal"},
        input_shape=[(2, 2, 1, 1, 3), (2, 2, 3, 3, 3)],
        expected_output_shape=(2, 3),
        expected_num_trainable_weights=3 if gated else 2,
        expected_num_non_trainable_weights=0,
    )


def test_bad_units():
    with pytest.raises(ValueError, match="Received: units=0"):
        AttentionPooling(units=0)


@pytest.mark.parametrize("gated", ["yes", "false", 1, None])
def test_gated_must_be_a_bool(gated):
    with pytest.raises(ValueError, match="`gated` must be True or False"):
        AttentionPooling(8, gated=gated)
