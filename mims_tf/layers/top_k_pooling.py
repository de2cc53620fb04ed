"""Top-k pooling with learned rank weights (paper section 2.2, equation 2)."""

import keras
import numpy as np
from keras import ops

from mims_tf.layers.bag_pooling import BagPooling


@keras.saving.register_keras_serializable(package="mims_tf")
class TopKPooling(BagPooling):
    """Weighted average of the k highest activations of each channel in a bag.

    For every channel j, `a_1 >= ... >= a_k` are the k largest values over all
    pooled positions (every axis between the batch axis and the channel axis, of
    every input tensor: positions, instances and scales of one bag), and

        out_j = sum_r w_r * a_r,    w = softmax(theta),

    so the weights are nonnegative and sum to 1. `theta` is learned; it starts so
    that `w_r` is proportional to `decay ** (r - 1)`. With `k=1` this is max
    pooling. Under a mixed precision policy build it with `dtype="float32"`
    (the model builder does) so ranking and weights stay in float32.

    Args:
        k: positive int, the number of top activations pooled (paper: 5).
        decay: float in (0, 1], ratio of consecutive initial weights
            (1.0 starts as a plain mean of the top k).
        per_channel: bool, learn one weight vector per channel instead of one
            shared by all channels.
        **kwargs: base `Layer` arguments.

    Input shape:
        A tensor `(B, ..., F)` or a list of such tensors whose middle axes may
        differ (e.g. one per scale); all have the same F.

    Output shape:
        `(B, F)`.

    Example:

    >>> scales = [keras.ops.ones((2, 3, 4, 4, 8)), keras.ops.ones((2, 3, 2, 2, 8))]
    >>> TopKPooling(k=5)(scales).shape
    (2, 8)

    Reference: Li et al., "Multi-Instance Multi-Scale CNN for Medical Image
    Classification", MICCAI 2019, equation 2.
    """

    def __init__(self, k=5, decay=0.5, per_channel=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
            raise ValueError(f"`k` must be a positive integer. Received: k={k}")
        if not isinstance(decay, (int, float)) or not 0.0 < decay <= 1.0:
            raise ValueError(f"`decay` must be in (0, 1]. Received: decay={decay}")
        self.k = int(k)
        self.decay = float(decay)
        self.per_channel = bool(per_channel)

    def build(self, input_shape):
        _, num_candidates, channels = self.candidates_shape(input_shape)
        _check_k(self.k, num_candidates)
        shape = (self.k, channels) if self.per_channel else (self.k,)
        init = np.arange(self.k, dtype="float32") * np.log(self.decay)
        init = np.broadcast_to(init.reshape((self.k,) + (1,) * (len(shape) - 1)), shape)
        self.logits = self.add_weight(
            name="logits",
            shape=shape,
            initializer=lambda shape, dtype=None: ops.cast(init, dtype or "float32"),
        )

    def pooling_weights(self):
        """Returns the current weights `w = softmax(theta)`, shape `(k,)` or `(k, F)`."""
        # Written out: ops.softmax warns on a size-1 axis (k=1).
        e = ops.exp(self.logits - ops.max(self.logits, axis=0, keepdims=True))
        return e / ops.sum(e, axis=0, keepdims=True)

    def pool(self, candidates):
        _check_k(self.k, ops.shape(candidates)[1])
        top, _ = ops.top_k(ops.transpose(candidates, (0, 2, 1)), self.k, sorted=True)
        weights = ops.cast(self.pooling_weights(), top.dtype)  # (k,) or (k, F)
        if self.per_channel:
            weights = ops.transpose(weights)
        return ops.sum(top * weights, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update({"k": self.k, "decay": self.decay, "per_channel": self.per_channel})
        return config


def _check_k(k, pooled):
    if isinstance(pooled, (int, np.integer)) and k > pooled:
        raise ValueError(
            f"TopKPooling needs at least k={k} elements per bag and channel, but "
            f"the input has only {pooled} (positions x instances x scales). Use a "
            f"smaller `k` or more instances / a larger image. Received: k={k}"
        )
