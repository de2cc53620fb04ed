"""Model builder and the paper's presets.

The presets and `ModelConfig` load without TensorFlow (the command line validates options with them before
TensorFlow starts); the builder and the backbones load on first use.
"""

import importlib

from mims_tf.models.config import (
    HEAD_PREFIX,
    KERNEL_SETTINGS,
    PRESETS,
    ModelConfig,
    get_preset,
    list_presets,
    paper_name,
    presets_in_table,
)

_LAZY = {
    "build_model": "mims_tf.models.builder",
    "split_model": "mims_tf.models.builder",
    "backbone_names": "mims_tf.models.catalog",
    "build_backbone": "mims_tf.models.backbones",
    "resnet34": "mims_tf.models.backbones",
    "tiny": "mims_tf.models.backbones",
}

__all__ = [
    "HEAD_PREFIX",
    "KERNEL_SETTINGS",
    "PRESETS",
    "ModelConfig",
    "backbone_names",
    "build_backbone",
    "build_model",
    "get_preset",
    "list_presets",
    "paper_name",
    "presets_in_table",
    "resnet34",
    "split_model",
    "tiny",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mims_tf.models' has no attribute {name!r}")
