"""Bilinear resizing that works with dynamic sizes, written in `keras.ops`.

`keras.ops.image.resize` needs a static target size inside a SavedModel trace
(Keras 3.15 runs a Python `if size[0] <= 0` on it). Here resizing is two
matrix products with interpolation matrices built from the (possibly symbolic)
input size, so one code path serves static and dynamic shapes on every backend,
survives `model.export`, and converts to TFLite as builtin ops.

The sampling is the usual "half-pixel centres" bilinear interpolation without
antialiasing: the same as `tf.image.resize(..., "bilinear")` and PyTorch's
`interpolate(mode="bilinear", align_corners=False)`.
"""

import math

import keras
import numpy as np
from keras import ops


def scaled_size(size, scale):
    """Returns `max(1, round(size * scale))`, for a Python int or a scalar tensor.

    Rounding is half-to-even on both paths (Python, NumPy and TensorFlow agree).
    """
    if isinstance(size, (int, np.integer)):
        return max(1, int(np.round(np.float32(size) * np.float32(scale))))
    scaled = ops.round(ops.cast(size, "float32") * scale)
    return ops.maximum(ops.cast(scaled, "int32"), 1)


def interpolation_matrix(in_size, out_size, dtype="float32"):
    """Returns the `(out_size, in_size)` matrix of 1-D bilinear interpolation."""
    in_f = ops.cast(in_size, "float32")
    src = (ops.cast(ops.arange(out_size), "float32") + 0.5) * (
        in_f / ops.cast(out_size, "float32")
    ) - 0.5
    src = ops.clip(src, 0.0, in_f - 1.0)
    low = ops.floor(src)
    frac = ops.expand_dims(src - low, 1)
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, ops.cast(in_size, "int32") - 1)
    columns = ops.expand_dims(ops.arange(in_size, dtype="int32"), 0)
    pick_low = ops.cast(ops.equal(ops.expand_dims(low, 1), columns), "float32")
    pick_high = ops.cast(ops.equal(ops.expand_dims(high, 1), columns), "float32")
    return ops.cast(pick_low * (1.0 - frac) + pick_high * frac, dtype)


def bilinear_resize(images, size):
    """Resizes `(N, H, W, C)` images to `size = (height, width)` (ints or tensors)."""
    if isinstance(size, (list, tuple)) and (len(size) != 2 or any(
        isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v < 1) for v in size
    )):
        raise ValueError(f"`size` must be (height, width), positive. Received: size={size!r}")
    shape = ops.shape(images)
    in_h, in_w = shape[1], shape[2]
    out_h, out_w = size
    dtype = keras.backend.standardize_dtype(images.dtype)
    # Plain transposes and broadcast matmuls, not einsum: TFLite's einsum lowering
    # leaves a dynamic batch as a literal -1 in static shapes (an invalid model).
    if not _same(in_h, out_h):
        rows = ops.transpose(interpolation_matrix(in_h, out_h, dtype))  # (h, out_h)
        images = ops.transpose(ops.matmul(ops.transpose(images, (0, 2, 3, 1)), rows), (0, 3, 1, 2))
    if not _same(in_w, out_w):
        cols = ops.transpose(interpolation_matrix(in_w, out_w, dtype))  # (w, out_w)
        images = ops.transpose(ops.matmul(ops.transpose(images, (0, 1, 3, 2)), cols), (0, 1, 3, 2))
    return images


def resize_by_scale(images, scale):
    """Resizes `(N, H, W, C)` images by `scale` (sizes rounded, at least 1)."""
    if scale == 1.0:
        return images
    shape = ops.shape(images)
    return bilinear_resize(
        images, (scaled_size(shape[1], scale), scaled_size(shape[2], scale))
    )


def _same(a, b):
    return isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)) and a == b


@keras.saving.register_keras_serializable(package="mims_tf")
class ScaleResize(keras.layers.Layer):
    """Resizes images by a constant factor with bilinear interpolation.

    Used for the input image pyramids of the `pyramid_*` presets. Works with
    dynamic height and width (also inside `model.export`).

    Args:
        scale: finite positive float, the factor applied to height and width; the new
            size is `max(1, round(size * scale))`.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(N, H, W, C)`.

    Output shape:
        `(N, round(H * scale), round(W * scale), C)`.

    Example:

    >>> x = keras.ops.ones((2, 8, 8, 3))
    >>> ScaleResize(0.5)(x).shape
    (2, 4, 4, 3)

    Reference: Li et al., MICCAI 2019, section 3.2 (Pyramid MI-Pre, Pyramid MIMS).
    """

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, (int, float, np.integer, np.floating)) or isinstance(scale, bool) or not (
            math.isfinite(scale) and scale > 0
        ):
            raise ValueError(
                f"`scale` must be a finite positive number. Received: scale={scale!r}"
            )
        self.scale = float(scale)

    def call(self, inputs):
        return resize_by_scale(inputs, self.scale)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        h = None if h is None else scaled_size(h, self.scale)
        w = None if w is None else scaled_size(w, self.scale)
        return (n, h, w, c)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config
