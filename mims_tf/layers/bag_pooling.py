"""Base class of the bag pooling layers: a bag's elements as candidates `(B, N, c)`."""

import keras
from keras import ops


class BagPooling(keras.layers.Layer):
    """Base class of layers that pool all elements of a bag into one vector.

    A bag is one tensor `(B, ..., c)` or a list of them whose middle axes may
    differ, e.g. one `(B, S, h_i, w_i, c)` tensor per scale. Every position of
    every instance and scale is a candidate: the bag is flattened to
    `candidates` of shape `(B, N, c)` (`N = sum_i S * h_i * w_i`) and each
    channel is pooled over its N candidates.

    This class owns the shared mechanics: accepting a tensor or a list of
    tensors, the checks of their shapes (rank >= 3, the same known c),
    the flattening (`candidates`) and `compute_output_shape`. A subclass
    implements `pool(candidates)`, mapping `(B, N, c)` to `(B, c)`, and
    creates its weights in `build`, where `candidates_shape(input_shape)`
    checks the input and returns `(B, N, c)` (N is None if not static).

    Args:
        **kwargs: base `Layer` arguments.

    Input shape:
        A tensor `(B, ..., c)` or a list of such tensors with the same c.

    Output shape:
        `(B, c)`.

    Example:

    >>> class MinPooling(BagPooling):
    ...     def pool(self, candidates):
    ...         return keras.ops.min(candidates, axis=1)
    >>> scales = [keras.ops.ones((2, 3, 4, 4, 8)), keras.ops.ones((2, 3, 2, 2, 8))]
    >>> MinPooling()(scales).shape
    (2, 8)

    Reference: Li et al., "Multi-Instance Multi-Scale CNN for Medical Image
    Classification", MICCAI 2019, section 2.2 (pooling over the instances and
    scales of a bag).
    """

    def build(self, input_shape):
        self.candidates_shape(input_shape)

    def call(self, inputs):
        return self.pool(self.candidates(inputs))

    def pool(self, candidates):
        """Pools `candidates` `(B, N, c)` over axis 1 to `(B, c)`; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement `pool(candidates)`.")

    def candidates(self, inputs):
        """Flattens a tensor or list of tensors `(B, ..., c)` to one `(B, N, c)` tensor."""
        tensors = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        flat = []
        for x in tensors:
            shape = ops.shape(x)
            flat.append(ops.reshape(x, (shape[0], -1, shape[-1])))
        return flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=1)

    def candidates_shape(self, input_shape):
        """Checks the bag's shape(s); returns the candidates' shape `(B, N, c)`.

        Raises a `ValueError` unless every input has rank >= 3 and all have the
        same, known number of channels. N is None unless all axes are static.
        """
        shapes = _shape_list(input_shape)
        name = type(self).__name__
        for shape in shapes:
            if len(shape) < 3:
                raise ValueError(
                    f"{name} expects tensors of shape (batch, ..., channels) with "
                    f"at least one axis to pool. Received: input_shape={shape}"
                )
        channels = {shape[-1] for shape in shapes}
        if len(channels) != 1 or None in channels:
            raise ValueError(
                f"{name} expects the same, known number of channels in every "
                f"input. Received: input_shape={shapes}"
            )
        return (shapes[0][0], _num_candidates(shapes), shapes[0][-1])

    def compute_output_shape(self, input_shape):
        shapes = _shape_list(input_shape)
        return (shapes[0][0], shapes[0][-1])


def _shape_list(input_shape):
    """Returns a list of shape tuples from one shape or a list of shapes."""
    if isinstance(input_shape, dict):
        raise ValueError(f"Expected a tensor or a list of tensors. Received: {input_shape}")
    if len(input_shape) and isinstance(input_shape[0], (list, tuple)):
        return [tuple(s) for s in input_shape]
    return [tuple(input_shape)]


def _num_candidates(shapes):
    """Number of pooled elements per bag and channel, or None if unknown."""
    total = 0
    for shape in shapes:
        size = 1
        for dim in shape[1:-1]:
            if dim is None:
                return None
            size *= dim
        total += size
    return total
