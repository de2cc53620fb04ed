"""Instance-level MIL: aggregate per-instance class probabilities into a bag's."""

import keras
from keras import ops

from mims_tf.utils import check_choice

MODES = ("mean", "max")


@keras.saving.register_keras_serializable(package="mims_tf")
class InstancePooling(keras.layers.Layer):
    """Aggregates the class probabilities of a bag's instances.

    Each instance (slice, tile) is classified first; this layer turns the
    `(B, S, C)` instance probabilities into bag probabilities `(B, C)`:

    - `"mean"`: the mean over instances (the paper's `*-patchcls` models).
    - `"max"`: the standard MIL assumption with class 0 as the negative class:
      a bag's probability of class c >= 1 is the largest over its instances,
      of class 0 the smallest, then renormalised to sum to 1. For two classes
      this is exactly `P(positive) = max_s p_s` (the paper's "max-inst").

    Args:
        mode: `"mean"` or `"max"`.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(B, S, C)` probabilities.

    Output shape:
        `(B, C)`.

    Example:

    >>> p = keras.ops.convert_to_tensor([[[0.9, 0.1], [0.2, 0.8]]])
    >>> InstancePooling("max")(p)  # [[0.2, 0.8]]

    Reference: Li et al., MICCAI 2019, section 3.2 (MIMS-patchcls) and Table 2
    (max-inst).
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, MODES)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "InstancePooling expects instance probabilities of shape "
                f"(batch, instances, classes). Received: input_shape={input_shape}"
            )

    def call(self, inputs):
        if self.mode == "mean":
            return ops.mean(inputs, axis=1)
        negative = ops.min(inputs[:, :, :1], axis=1)
        positive = ops.max(inputs[:, :, 1:], axis=1)
        probs = ops.concatenate([negative, positive], axis=-1)
        return probs / ops.sum(probs, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
