"""Mean or max pooling over every element of a bag (the Table 2 "mean" and "max")."""

import keras
from keras import ops

from mims_tf.layers.bag_pooling import BagPooling
from mims_tf.utils import check_choice

MODES = ("mean", "max")


@keras.saving.register_keras_serializable(package="mims_tf")
class GlobalBagPooling(BagPooling):
    """Mean or max of each channel over all positions, instances and scales of a bag.

    The sibling of `TopKPooling` for the paper's "mean" and "max" aggregators
    (max equals `TopKPooling(k=1)`; mean is top-k with k = all and equal weights).

    Args:
        mode: `"mean"` or `"max"`.
        **kwargs: base `Layer` arguments.

    Input shape:
        A tensor `(B, ..., F)` or a list of them with the same F.

    Output shape:
        `(B, F)`.

    Example:

    >>> x = keras.ops.ones((2, 3, 4, 4, 8))
    >>> GlobalBagPooling("mean")(x).shape
    (2, 8)

    Reference: Li et al., MICCAI 2019, Table 2.
    """

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        self.mode = check_choice("mode", mode, MODES)

    def pool(self, candidates):
        return ops.mean(candidates, axis=1) if self.mode == "mean" else ops.max(candidates, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode})
        return config
