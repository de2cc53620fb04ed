import keras
import numpy as np
import pytest

from mims_tf.layers import BackbonePreprocessing
from tests.layers.harness import run_layer_test

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
EXPECTED = {
    "tf": lambda x: x / 127.5 - 1.0,
    "caffe": lambda x: x[..., ::-1] - np.array([103.939, 116.779, 123.68]),
    "torch": lambda x: (x / 255.0 - MEAN) / STD,
    "none": lambda x: x,
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_modes_match_keras_applications_conventions(mode):
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 3, 3)).astype("float32")
    layer = BackbonePreprocessing(mode)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), EXPECTED[mode](x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_layer_contract(mode):
    x = np.random.default_rng(2).uniform(0, 255, size=(2, 4, 5, 3)).astype("float32")
    run_layer_test(
        BackbonePreprocessing,
        {"mode": mode},
        input_data=x,
        expected_output_shape=(2, 4, 5, 3),
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=0,
    )


@pytest.mark.parametrize("mode", ["caffe", "torch"])
def test_keras_applications_preprocess_input_agrees(mode):
    module = {"caffe": keras.applications.resnet, "torch": keras.applications.densenet}[mode]
    x = np.random.default_rng(1).uniform(0, 255, size=(1, 2, 2, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(module.preprocess_input(x.copy()))
    got = keras.ops.convert_to_numpy(BackbonePreprocessing(mode)(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_errors():
    with pytest.raises(ValueError, match="Received: mode='bgr'"):
        BackbonePreprocessing("bgr")
    with pytest.raises(ValueError, match="needs RGB input"):
        BackbonePreprocessing("caffe")(keras.ops.ones((1, 2, 2, 1)))
