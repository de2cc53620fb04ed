"""Optimizers with a true per-variable learning rate (backbone at half the head's rate)."""

import re

import keras
from keras import ops

from mims_tf.models.config import HEAD_PREFIX

# Matches every variable that is not in a layer named by the builder's head prefix.
BACKBONE_PATTERN = rf"^(?!{HEAD_PREFIX})"


class LearningRateMultipliers:
    """Mixin: scales the learning rate of each variable whose path matches a pattern.

    `lr_multipliers` maps regular expressions (searched in `variable.path`) to
    factors; the first match wins, unmatched variables keep factor 1. The
    factor multiplies the learning rate inside `update_step`, so with Adam a
    variable really moves at `factor * lr` (scaling gradients would not: Adam
    divides the scale out).
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {}
        for pattern, factor in (lr_multipliers or {}).items():
            re.compile(pattern)
            if not isinstance(factor, (int, float)) or factor < 0:
                raise ValueError(
                    f"Learning-rate multipliers must be nonnegative numbers. Received: {pattern!r}: {factor!r}"
                )
            self.lr_multipliers[pattern] = float(factor)

    def multiplier_for(self, path):
        """Returns the factor for a variable path."""
        for pattern, factor in self.lr_multipliers.items():
            if re.search(pattern, path):
                return factor
        return 1.0

    def build(self, var_list):
        super().build(var_list)
        self._lr_factors = [self.multiplier_for(v.path) for v in var_list]

    def update_step(self, gradient, variable, learning_rate):
        factor = self._lr_factors[self._get_variable_index(variable)]
        if factor != 1.0:
            learning_rate = ops.multiply(learning_rate, factor)
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["lr_multipliers"] = dict(self.lr_multipliers)
        return config


@keras.saving.register_keras_serializable(package="mims_tf")
class Adam(LearningRateMultipliers, keras.optimizers.Adam):
    """`keras.optimizers.Adam` with `lr_multipliers={pattern: factor}`."""


@keras.saving.register_keras_serializable(package="mims_tf")
class AdamW(LearningRateMultipliers, keras.optimizers.AdamW):
    """`keras.optimizers.AdamW` with `lr_multipliers={pattern: factor}`."""


@keras.saving.register_keras_serializable(package="mims_tf")
class SGD(LearningRateMultipliers, keras.optimizers.SGD):
    """`keras.optimizers.SGD` with `lr_multipliers={pattern: factor}`."""


def paper_optimizer(learning_rate=1e-4, backbone_multiplier=0.5, optimizer="adam", **kwargs):
    """Returns an optimizer whose backbone variables learn at `backbone_multiplier * lr`.

    Supplement A: "the learning rate of the underlying layers was set as half of
    the top layers". Works with any model from `build_model` (head layers are
    named `head_*`).

    Args:
        learning_rate: the head's learning rate (float or schedule).
        backbone_multiplier: factor for every non-head variable.
        optimizer: `"adam"`, `"adamw"` or `"sgd"`.
        **kwargs: passed to the optimizer.
    """
    classes = {"adam": Adam, "adamw": AdamW, "sgd": SGD}
    if optimizer not in classes:
        raise ValueError(f"`optimizer` must be one of {sorted(classes)}. Received: optimizer={optimizer!r}")
    return classes[optimizer](
        learning_rate=learning_rate, lr_multipliers={BACKBONE_PATTERN: backbone_multiplier}, **kwargs
    )
