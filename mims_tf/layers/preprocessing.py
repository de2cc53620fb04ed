"""The backbone's own input scaling, as a layer inside the model."""

import keras
from keras import ops

from mims_tf.utils import check_choice

MODES = ("caffe", "tf", "torch", "none")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="mims_tf")
class BackbonePreprocessing(keras.layers.Layer):
    """Maps pixel values in [0, 255] to what a `keras.applications` backbone expects.

    Keeping this inside the model makes saved and exported models take plain
    pixel values, so Keras, TF Serving and TFLite users feed the same input.

    Args:
        mode: `"caffe"` (RGB to BGR, minus the ImageNet mean; ResNet v1, VGG),
            `"tf"` (scale to [-1, 1]; ResNet v2, MobileNet, Inception, Xception),
            `"torch"` (scale to [0, 1], ImageNet mean and std; DenseNet), or
            `"none"` (backbones that include their own preprocessing:
            EfficientNet, ConvNeXt, MobileNetV3).
        **kwargs: base `Layer` arguments.

    Input shape:
        `(N, H, W, C)` in [0, 255]; `"caffe"` and `"torch"` need C = 3.

    Output shape:
        Same as the input.

    Example:

    >>> BackbonePreprocessing("tf")(keras.ops.full((1, 2, 2, 3), 255.0))  # all 1.0

    Reference: `keras.applications.imagenet_utils.preprocess_input`.
    """

    def __init__(self, mode="tf", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, MODES)

    def build(self, input_shape):
        if self.mode in ("caffe", "torch") and input_shape[-1] != 3:
            raise ValueError(
                f"Preprocessing mode {self.mode!r} needs RGB input (3 channels); turn "
                f"grayscale into 3 channels first. Received: input_shape={input_shape}"
            )

    def call(self, inputs):
        x = inputs
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.cast(ops.convert_to_tensor(_CAFFE_MEAN_BGR), x.dtype)
        if self.mode == "torch":
            mean = ops.cast(ops.convert_to_tensor(_TORCH_MEAN), x.dtype)
            std = ops.cast(ops.convert_to_tensor(_TORCH_STD), x.dtype)
            return (x / 255.0 - mean) / std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
