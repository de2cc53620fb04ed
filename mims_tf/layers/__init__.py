"""Keras layers of the Multi-Instance Multi-Scale CNN (all in `keras.ops`)."""

from mims_tf.layers.attention_pooling import AttentionPooling
from mims_tf.layers.global_bag_pooling import GlobalBagPooling
from mims_tf.layers.instance_pooling import InstancePooling
from mims_tf.layers.instances import FoldInstances, UnfoldInstances
from mims_tf.layers.magnitude_norm import MagnitudeNorm
from mims_tf.layers.ms_conv import MSConv
from mims_tf.layers.preprocessing import BackbonePreprocessing
from mims_tf.layers.resize import ScaleResize, bilinear_resize
from mims_tf.layers.temperature_scaling import TemperatureScaling
from mims_tf.layers.top_k_pooling import TopKPooling

__all__ = [
    "AttentionPooling",
    "BackbonePreprocessing",
    "FoldInstances",
    "GlobalBagPooling",
    "InstancePooling",
    "MSConv",
    "MagnitudeNorm",
    "ScaleResize",
    "TemperatureScaling",
    "TopKPooling",
    "UnfoldInstances",
    "bilinear_resize",
]
