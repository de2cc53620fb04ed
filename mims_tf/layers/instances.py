"""Folding a bag's instances into the batch axis for a 2-D backbone, and back."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mims_tf")
class FoldInstances(keras.layers.Layer):
    """Reshapes bags `(B, S, H, W, C)` to one 2-D batch `(B * S, H, W, C)`.

    The paper arranges "all slices in a 3D image as a 2D batch" (supplement A),
    so the backbone sees instances as images. B, S, H and W may be dynamic.

    Args:
        **kwargs: base `Layer` arguments.

    Input shape:
        `(B, S, H, W, C)`.

    Output shape:
        `(B * S, H, W, C)`.

    Example:

    >>> FoldInstances()(keras.ops.ones((2, 3, 8, 8, 1))).shape
    (6, 8, 8, 1)

    Reference: Li et al., MICCAI 2019, supplement A.
    """

    def build(self, input_shape):
        if len(input_shape) != 5:
            raise ValueError(
                "Expected bags of shape (batch, instances, height, width, channels). "
                f"Received: input_shape={input_shape}"
            )

    def call(self, inputs):
        if inputs.shape[1] == 0:  # known when called on arrays (eagerly, or traced for their shape)
            raise ValueError(f"A bag needs at least one instance. Received: a bag of shape {tuple(inputs.shape)}")
        shape = ops.shape(inputs)
        return ops.reshape(inputs, (-1, shape[2], shape[3], shape[4]))

    def compute_output_shape(self, input_shape):
        b, s = input_shape[0], input_shape[1]
        n = None if b is None or s is None else b * s
        return (n,) + tuple(input_shape[2:])


@keras.saving.register_keras_serializable(package="mims_tf")
class UnfoldInstances(keras.layers.Layer):
    """Reshapes `(B * S, ...)` back to `(B, S, ...)`, reading S from the bags.

    Args:
        **kwargs: base `Layer` arguments.

    Input shape:
        A list `[x, bags]`: `x` of shape `(B * S, ...)` and the model's input
        `bags` of shape `(B, S, H, W, C)` (only its shape is used).

    Output shape:
        `(B, S, ...)`.

    Example:

    >>> bags = keras.ops.ones((2, 3, 8, 8, 1))
    >>> UnfoldInstances()([keras.ops.ones((6, 4, 4, 5)), bags]).shape
    (2, 3, 4, 4, 5)

    Reference: Li et al., MICCAI 2019, supplement A.
    """

    def build(self, input_shape):
        _check_unfold_shapes(input_shape)

    def call(self, inputs):
        x, bags = inputs
        x_shape = ops.shape(x)
        instances = ops.shape(bags)[1]
        return ops.reshape(x, (-1, instances) + tuple(x_shape[1:]))

    def compute_output_shape(self, input_shape):
        x_shape, bags_shape = _check_unfold_shapes(input_shape)
        return (bags_shape[0], bags_shape[1]) + tuple(x_shape[1:])


def _check_unfold_shapes(input_shape):
    """Returns `(x_shape, bags_shape)` where `input_shape` is of `[x, bags]`, x at least `(B * S,)` and bags at
    least `(B, S)`; otherwise raises ValueError."""
    ok = isinstance(input_shape, (list, tuple)) and len(input_shape) == 2 and all(
        isinstance(shape, (list, tuple)) for shape in input_shape
    )
    if not ok or len(input_shape[0]) < 1 or len(input_shape[1]) < 2:
        raise ValueError(
            "UnfoldInstances expects [x, bags]: x of shape (batch * instances, ...) and bags of shape "
            f"(batch, instances, height, width, channels). Received: input_shape={input_shape}"
        )
    return tuple(input_shape[0]), tuple(input_shape[1])
