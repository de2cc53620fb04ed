"""Multi-scale convolution: shared kernels applied to resized feature maps (section 2.1)."""

import keras
import numpy as np
from keras import ops

from mims_tf.layers.resize import resize_by_scale, scaled_size


def normalize_kernels(kernels):
    """Returns `{kernel_size: filters}` with int keys, sorted; raises on bad input."""
    if not isinstance(kernels, dict) or not kernels:
        raise ValueError(
            "`kernels` must be a non-empty dict {kernel_size: filters}, e.g. "
            f"{{2: 8, 3: 10}}. Received: kernels={kernels!r}"
        )
    out = {}
    for size, filters in kernels.items():
        try:
            size_i, filters_i = int(size), int(filters)
        except (TypeError, ValueError):
            size_i = filters_i = 0
        if size_i < 1 or filters_i < 1 or float(size) != size_i or float(filters) != filters_i:
            raise ValueError(
                "`kernels` maps positive kernel sizes to positive numbers of "
                f"filters. Received: kernels={kernels!r}"
            )
        out[size_i] = filters_i
    return dict(sorted(out.items()))


@keras.saving.register_keras_serializable(package="mims_tf")
class MSConv(keras.layers.Layer):
    """Multi-scale convolution (MSConv) with kernels shared across scales.

    For input feature maps `x` of shape `(N, h, w, c)` and each scale `s_i`:

        x_i = bilinear_resize(x, (max(1, round(h * s_i)), max(1, round(w * s_i))))
        y_i = concat_g(conv(x_i, K_g) + b_g)        for kernel groups g

    with `same` padding and **the same kernels `K_g` at every scale**. Several
    kernel sizes (`{kernel_size: filters}`) give the layer several receptive
    fields per scale. With `dilations` instead of resizing, the kernels are
    applied to the unresized input at each dilation rate (the Trident baseline).

    Args:
        kernels: dict `{kernel_size: filters}`. Paper: OCT `{2: 8, 3: 10}`,
            fundus `{2: 10, 3: 10}`, CRC histology `{1: 20, 2: 40}`.
        scales: sequence of positive resize factors (paper: `(0.5, 0.75, 1.0)`).
            Must be `(1.0,)` when `dilations` is given.
        dilations: optional sequence of positive ints; one output per rate,
            no resizing (paper's MI-Pre-Trident uses `(1, 2, 3)`).
        activation: activation applied to each output (None for linear, e.g.
            when `MagnitudeNorm` follows).
        use_bias: bool, add a bias per filter.
        kernel_initializer, bias_initializer: initializers.
        kernel_regularizer: optional regularizer for the kernels.
        **kwargs: base `Layer` arguments.

    Input shape:
        `(N, h, w, c)`; h and w may be dynamic.

    Output shape:
        A list with one `(N, h_i, w_i, F)` tensor per scale (or dilation),
        `F = sum(kernels.values())`.

    Example:

    >>> x = keras.ops.ones((4, 7, 7, 32))
    >>> [y.shape for y in MSConv({2: 8, 3: 10})(x)]
    [(4, 4, 4, 18), (4, 5, 5, 18), (4, 7, 7, 18)]

    Reference: Li et al., "Multi-Instance Multi-Scale CNN for Medical Image
    Classification", MICCAI 2019, section 2.1, equation 1.
    """

    def __init__(
        self,
        kernels,
        scales=(0.5, 0.75, 1.0),
        dilations=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernels = normalize_kernels(kernels)
        self.scales = _positive_tuple(scales, "scales", float)
        if dilations is not None:
            dilations = _positive_tuple(dilations, "dilations", int)
            if self.scales != (1.0,):
                raise ValueError(
                    "MSConv takes either `scales` (resizing) or `dilations` "
                    f"(Trident), not both. Received: scales={scales}, dilations={dilations}"
                )
        self.dilations = dilations
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    @property
    def filters(self):
        """Total number of output channels F."""
        return sum(self.kernels.values())

    @property
    def num_outputs(self):
        """Number of output tensors (scales, or dilations)."""
        return len(self.dilations) if self.dilations else len(self.scales)

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(
                "MSConv expects feature maps (batch, height, width, channels) with "
                f"known channels. Received: input_shape={input_shape}"
            )
        channels = input_shape[-1]
        self.kernel_weights = []
        self.bias_weights = []
        for size, filters in self.kernels.items():
            self.kernel_weights.append(
                self.add_weight(
                    name=f"kernel_{size}",
                    shape=(size, size, channels, filters),
                    initializer=self.kernel_initializer,
                    regularizer=self.kernel_regularizer,
                )
            )
            if self.use_bias:
                self.bias_weights.append(
                    self.add_weight(name=f"bias_{size}", shape=(filters,), initializer=self.bias_initializer)
                )

    def _convolve(self, x, dilation):
        outputs = []
        for i, kernel in enumerate(self.kernel_weights):
            y = ops.conv(x, kernel, strides=1, padding="same", dilation_rate=dilation)
            if self.use_bias:
                y = y + self.bias_weights[i]
            outputs.append(y)
        y = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        return self.activation(y) if self.activation is not None else y

    def call(self, inputs):
        if self.dilations:
            return [self._convolve(inputs, d) for d in self.dilations]
        return [self._convolve(resize_by_scale(inputs, s), 1) for s in self.scales]

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.dilations:
            return [(n, h, w, self.filters)] * len(self.dilations)
        return [
            (
                n,
                None if h is None else scaled_size(h, s),
                None if w is None else scaled_size(w, s),
                self.filters,
            )
            for s in self.scales
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                # JSON keys are strings; __init__ turns them back into ints.
                "kernels": {str(k): v for k, v in self.kernels.items()},
                "scales": list(self.scales),
                "dilations": None if self.dilations is None else list(self.dilations),
                "activation": keras.activations.serialize(self.activation) if self.activation else None,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config


def _positive_tuple(values, name, kind):
    try:
        items = tuple(values)
    except TypeError:
        items = ()
    ok = bool(items) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v) and v > 0
        for v in items
    )
    if ok and kind is int:
        ok = all(float(v).is_integer() for v in items)
    if not ok:
        raise ValueError(
            f"`{name}` must be a non-empty sequence of "
            f"{'positive integers' if kind is int else 'finite positive numbers'}. Received: {name}={values!r}"
        )
    return tuple(kind(v) for v in items)
