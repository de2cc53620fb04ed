import re

import keras
import numpy as np
import pytest

from mims_tf.layers import MagnitudeNorm
from tests import reference
from tests.conftest import gradient
from tests.layers.harness import run_layer_test


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=i, scale=1 + i, size=(4, h, h, 5)).astype("float32") for i, h in enumerate((2, 3, 4))]


def _params(layer):
    get = keras.ops.convert_to_numpy
    return dict(
        gammas=[get(bn.gamma) for bn in layer.batch_norms],
        betas=[get(bn.beta) for bn in layer.batch_norms],
        means=[get(bn.moving_mean) for bn in layer.batch_norms],
        variances=[get(bn.moving_variance) for bn in layer.batch_norms],
        sw=get(layer.scale_weights),
        epsilon=layer.epsilon,
    )


@pytest.mark.parametrize("training", [True, False])
def test_magnitude_norm_matches_numpy_reference(training):
    ys = _inputs()
    layer = MagnitudeNorm()
    layer.build([y.shape for y in ys])
    sw = np.random.default_rng(1).uniform(0.5, 2.0, size=(3, 5)).astype("float32")
    layer.scale_weights.assign(sw)
    params = _params(layer)
    got = [keras.ops.convert_to_numpy(z) for z in layer(ys, training=training)]
    expected = reference.magnitude_norm(ys, training=training, **params)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_scale_weights_start_at_one_and_receive_gradients():
    ys = _inputs(2)
    layer = MagnitudeNorm(activation="relu")
    out = layer(ys, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer.scale_weights), np.ones((3, 5)))
    assert len(layer.batch_norms) == 3 and all((keras.ops.convert_to_numpy(z) >= 0).all() for z in out)
    tensors = [keras.ops.convert_to_tensor(y) for y in ys]
    grad = gradient(lambda: keras.ops.sum(keras.ops.square(layer(tensors, training=False)[1])), layer.scale_weights)
    assert np.abs(grad[1]).min() > 0 and np.abs(grad[[0, 2]]).max() == 0


def test_training_updates_moving_statistics_per_scale():
    ys = _inputs(3)
    layer = MagnitudeNorm(momentum=0.0)
    layer(ys, training=True)
    for y, bn in zip(ys, layer.batch_norms):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), y.mean(axis=(0, 1, 2)), atol=1e-4)


def test_layer_contract():
    ys = _inputs(4)
    run_layer_test(
        MagnitudeNorm,
        {"momentum": 0.9, "epsilon": 1e-4, "activation": "relu"},
        input_data=ys,
        expected_output_shape=[y.shape for y in ys],
        expected_num_trainable_weights=7,  # gamma and beta per scale, scale_weights
        expected_num_non_trainable_weights=6,  # moving mean and variance per scale
    )


def test_errors():
    ys = _inputs(4)
    layer = MagnitudeNorm()
    layer(ys)
    with pytest.raises(ValueError, match="expects a list of tensors"):
        MagnitudeNorm()(keras.ops.ones((2, 3, 3, 4)))
    with pytest.raises(ValueError, match="same, known number of channels"):
        MagnitudeNorm()([keras.ops.ones((2, 3, 3, 4)), keras.ops.ones((2, 3, 3, 5))])
    with pytest.raises(ValueError, match="built for 3 scales"):
        layer(ys[:2])


@pytest.mark.parametrize("kwargs", [{"momentum": 5}, {"momentum": -0.1}, {"momentum": "0.9"}, {"momentum": None},
                                    {"epsilon": 0}, {"epsilon": float("nan")}, {"epsilon": "1e-3"}])
def test_bad_constructor_arguments_are_refused(kwargs):
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=re.escape(f"Received: {name}={value!r}")):
        MagnitudeNorm(**kwargs)
    MagnitudeNorm(momentum=0, epsilon=1e-5)
    MagnitudeNorm(momentum=1)
