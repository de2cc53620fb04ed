"""Model builder and the paper's presets."""

from mims_tf.models.backbones import backbone_names, build_backbone, resnet34, tiny
from mims_tf.models.builder import HEAD_PREFIX, build_model
from mims_tf.models.config import (
    paper_name,
    presets_in_table,
    KERNEL_SETTINGS,
    PRESETS,
    TABLE1,
    TABLE2,
    ModelConfig,
    get_preset,
    list_presets,
)

__all__ = [
    "HEAD_PREFIX",
    "KERNEL_SETTINGS",
    "PRESETS",
    "TABLE1",
    "TABLE2",
    "ModelConfig",
    "backbone_names",
    "build_backbone",
    "build_model",
    "get_preset",
    "list_presets",
    "paper_name",
    "presets_in_table",
    "resnet34",
    "tiny",
]
