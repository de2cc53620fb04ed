"""Magnitude normalisation: per-scale batchnorm and learnable scale weights (section 2.1)."""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mims_tf")
class MagnitudeNorm(keras.layers.Layer):
    """Per-scale BatchNormalization times a learnable weight per scale and channel.

    For the outputs `y_1 .. y_m` of `MSConv` (one per scale):

        z_i = activation(BN_i(y_i) * sw[i])

    where `BN_i` normalises scale i over its own batch statistics and `sw[i, j]`
    (initialised to 1) sets the importance of channel j at scale i. This removes
    the bias of larger scales, which hold more elements and so win more top-k
    places.

    Args:
        momentum: momentum of the BatchNormalization moving statistics, in [0, 1].
        epsilon: BatchNormalization epsilon.
        activation: activation applied after scaling (the model builder uses
            `"relu"`), or None.
        **kwargs: base `Layer` arguments.

    Input shape:
        A list of m tensors `(N, h_i, w_i, F)` with the same F.

    Output shape:
        A list of m tensors of the same shapes.

    Example:

    >>> ys = [keras.ops.ones((4, 4, 4, 18)), keras.ops.ones((4, 7, 7, 18))]
    >>> [z.shape for z in MagnitudeNorm()(ys)]
    [(4, 4, 4, 18), (4, 7, 7, 18)]

    Reference: Li et al., "Multi-Instance Multi-Scale CNN for Medical Image
    Classification", MICCAI 2019, section 2.1 (magnitude normalization).
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, activation=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be a number in [0, 1]. Received: momentum={momentum!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not (
            math.isfinite(epsilon) and epsilon > 0
        ):
            raise ValueError(f"`epsilon` must be a finite positive number. Received: epsilon={epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(
            input_shape[0], (list, tuple)
        ):
            raise ValueError(
                "MagnitudeNorm expects a list of tensors, one per scale. "
                f"Received: input_shape={input_shape}"
            )
        shapes = [tuple(s) for s in input_shape]
        channels = {s[-1] for s in shapes}
        if len(channels) != 1 or None in channels:
            raise ValueError(
                "MagnitudeNorm expects the same, known number of channels at every "
                f"scale. Received: input_shape={shapes}"
            )
        self.batch_norms = []
        for i, shape in enumerate(shapes):
            bn = keras.layers.BatchNormalization(
                momentum=self.momentum, epsilon=self.epsilon, dtype=self.dtype_policy, name=f"bn_{i}"
            )
            bn.build(shape)
            self.batch_norms.append(bn)
        self.scale_weights = self.add_weight(
            name="scale_weights", shape=(len(shapes), shapes[0][-1]), initializer="ones"
        )

    def call(self, inputs, training=None):
        if len(inputs) != len(self.batch_norms):
            raise ValueError(
                f"MagnitudeNorm was built for {len(self.batch_norms)} scales. "
                f"Received: {len(inputs)} inputs"
            )
        outputs = []
        for i, (x, bn) in enumerate(zip(inputs, self.batch_norms)):
            z = bn(x, training=training) * ops.cast(self.scale_weights[i], self.compute_dtype)
            outputs.append(self.activation(z) if self.activation is not None else z)
        return outputs

    def compute_output_shape(self, input_shape):
        return [tuple(s) for s in input_shape]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "activation": keras.activations.serialize(self.activation) if self.activation else None,
            }
        )
        return config
