"""Temperature scaling (and Platt scaling): calibrated class probabilities from a model's softmax output."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mims_tf")
class TemperatureScaling(keras.layers.Layer):
    """Divides the log-probabilities by a temperature, adds a bias, and applies softmax again.

    `p_calibrated = softmax(log(p) / T + b)`: the ranking of bags (and so the
    AUROC) is unchanged; `T > 1` softens over-confident probabilities, `T < 1`
    sharpens timid ones, and `b` (default 0) shifts them. For two classes with
    `b = (0, beta)` this is Platt scaling of the logit:
    `P(positive) = sigmoid(logit(p) / T + beta)`. `T` is fitted on the validation split after training
    (`mims_tf.stats.calibration.fit_temperature`) and stored in the layer's
    config, so a saved or exported model outputs calibrated probabilities.

    Args:
        temperature: a finite positive float (1: probabilities unchanged).
        bias: None, or one float per class added after the division.
        epsilon: probabilities are clipped to `[epsilon, 1]` before the log.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(B, classes)` probabilities (rows sum to 1).

    Output shape:
        `(B, classes)` calibrated probabilities, float32.

    Example:

    >>> layer = TemperatureScaling(2.0)
    >>> layer(keras.ops.convert_to_tensor([[0.9, 0.1]]))  # [[0.75, 0.25]]

    Reference: Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
    """

    def __init__(self, temperature=1.0, bias=None, epsilon=1e-7, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0
        ):  # T -> inf would flatten every output to 1/classes, T -> 0 to one-hot
            raise ValueError(f"`temperature` must be a finite positive number. Received: temperature={temperature!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
            raise ValueError(f"`epsilon` must be in (0, 1). Received: epsilon={epsilon!r}")
        if bias is not None:
            bias = [float(b) for b in bias]
            if not all(b == b and abs(b) != float("inf") for b in bias):
                raise ValueError(f"`bias` must be finite numbers. Received: bias={bias!r}")
        self.temperature = float(temperature)
        self.bias = bias
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError("TemperatureScaling expects probabilities (batch, classes). "
                             f"Received: input_shape={input_shape}")
        if self.bias is not None and input_shape[-1] is not None and len(self.bias) != input_shape[-1]:
            raise ValueError(f"`bias` needs one value per class ({input_shape[-1]}). Received: bias={self.bias}")

    def call(self, inputs):
        logits = ops.log(ops.clip(ops.cast(inputs, "float32"), self.epsilon, 1.0))
        logits = logits / self.temperature
        if self.bias is not None:
            logits = logits + ops.convert_to_tensor(self.bias, "float32")
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature, "bias": self.bias, "epsilon": self.epsilon})
        return config
