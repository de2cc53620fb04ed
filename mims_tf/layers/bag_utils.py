"""Helpers shared by the bag pooling layers: one bag's elements as `(B, N, F)`."""

from keras import ops


def as_shape_list(input_shape):
    """Returns a list of shape tuples from one shape or a list of shapes."""
    if isinstance(input_shape, dict):
        raise ValueError(f"Expected a tensor or a list of tensors. Received: {input_shape}")
    if len(input_shape) and isinstance(input_shape[0], (list, tuple)):
        return [tuple(s) for s in input_shape]
    return [tuple(input_shape)]


def check_bag_shapes(shapes, layer_name):
    """Checks rank >= 3 and equal channels; returns the number of channels."""
    for shape in shapes:
        if len(shape) < 3:
            raise ValueError(
                f"{layer_name} expects tensors of shape (batch, ..., channels) with "
                f"at least one axis to pool. Received: input_shape={shape}"
            )
    channels = {shape[-1] for shape in shapes}
    if len(channels) != 1 or None in channels:
        raise ValueError(
            f"{layer_name} expects the same, known number of channels in every "
            f"input. Received: input_shape={shapes}"
        )
    return shapes[0][-1]


def static_pool_size(shapes):
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


def flatten_bag(inputs):
    """Flattens a tensor or list of tensors `(B, ..., F)` to one `(B, N, F)` tensor."""
    tensors = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    flat = []
    for x in tensors:
        shape = ops.shape(x)
        flat.append(ops.reshape(x, (shape[0], -1, shape[-1])))
    return flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=1)
