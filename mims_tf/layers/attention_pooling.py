"""Attention-based MIL pooling (Ilse et al., ICML 2018)."""

import keras
from keras import ops

from mims_tf.layers.bag_pooling import BagPooling


@keras.saving.register_keras_serializable(package="mims_tf")
class AttentionPooling(BagPooling):
    """Attention-weighted average of a bag's elements (attention-based deep MIL).

    For elements `h_n` (every position, instance and scale of a bag):

        e_n = w^T tanh(V h_n)                        (gated=False)
        e_n = w^T (tanh(V h_n) * sigmoid(U h_n))     (gated=True)
        a = softmax(e) over n,   out = sum_n a_n h_n.

    An extra aggregator the MIMS paper did not compare (preset `mims_attention`).

    Args:
        units: positive int, size L of the attention hidden layer.
        gated: bool, use the gated attention mechanism.
        kernel_initializer: initializer for `V`, `U` and `w`.
        **kwargs: base `Layer` arguments.

    Input shape:
        A tensor `(B, ..., F)` or a list of them with the same F.

    Output shape:
        `(B, F)`.

    Example:

    >>> x = keras.ops.ones((2, 6, 8))
    >>> AttentionPooling(units=16, gated=True)(x).shape
    (2, 8)

    Reference: Ilse, Tomczak, Welling, "Attention-based Deep Multiple Instance
    Learning", ICML 2018, equations 9 and 10.
    """

    def __init__(self, units=64, gated=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"`units` must be a positive integer. Received: units={units}")
        if not isinstance(gated, bool):
            raise ValueError(f"`gated` must be True or False. Received: gated={gated!r}")
        self.units = units
        self.gated = gated
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = self.candidates_shape(input_shape)[-1]
        init = self.kernel_initializer
        self.v_kernel = self.add_weight(name="v_kernel", shape=(channels, self.units), initializer=init)
        if self.gated:
            self.u_kernel = self.add_weight(name="u_kernel", shape=(channels, self.units), initializer=init)
        self.w_kernel = self.add_weight(name="w_kernel", shape=(self.units, 1), initializer=init)

    def attention_scores(self, inputs):
        """Returns the attention weights `a`, shape `(B, N)`, summing to 1 per bag."""
        return self._scores(self.candidates(inputs))

    def pool(self, candidates):
        scores = self._scores(candidates)
        return ops.sum(candidates * ops.expand_dims(scores, -1), axis=1)

    def _scores(self, candidates):
        hidden = ops.tanh(ops.matmul(candidates, self.v_kernel))
        if self.gated:
            hidden = hidden * ops.sigmoid(ops.matmul(candidates, self.u_kernel))
        return ops.softmax(ops.squeeze(ops.matmul(hidden, self.w_kernel), -1), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "gated": self.gated,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
