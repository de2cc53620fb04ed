"""One builder for every model of the paper: backbone -> head -> bag pooling -> classifier."""

import keras

from mims_tf import layers as mlayers
from mims_tf.models.backbones import build_backbone, preprocessing_mode
from mims_tf.models.config import HEAD_PREFIX, ModelConfig, get_preset



def build_model(preset="mims", dtype=None, **overrides):
    """Builds a MIMS-CNN (or a baseline) taking bags `(B, S, H, W, C)`.

    Args:
        preset: a preset name (`list_presets()`) or a `ModelConfig`.
        dtype: the dtype policy of the model's layers (`"float32"`, `"mixed_bfloat16"`,
            `"mixed_float16"`); None: Keras's global policy. The pooling layers and the
            classifier always compute in float32. The global policy is left as it was.
        **overrides: `ModelConfig` fields to change, e.g. `backbone="resnet50"`,
            `weights=None`, `image_size=(224, 224)`, `kernels="crc"`, `k=3`.

    Returns:
        A `keras.Model` from bags of pixel values in [0, 255], shape
        `(B, S, H, W, C)` (S and, unless `image_size` is set, H and W dynamic),
        to class probabilities `(B, classes)` in float32. Bags may be float32 or
        uint8: the model casts them as its first op, so on a GPU a uint8 bag is
        copied to the device at a quarter of the bytes.

    Example:

    >>> model = build_model("mims", backbone="resnet50", weights=None, image_size=(224, 224))
    >>> model.compile(optimizer=mims_tf.train.paper_optimizer(1e-4), loss="sparse_categorical_crossentropy")
    """
    config = preset if isinstance(preset, ModelConfig) else get_preset(preset)
    config = config.replace(**overrides).validate()
    if dtype is None:
        return _build(config)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)  # keras.applications backbones take no dtype argument
    try:
        return _build(config)
    finally:
        keras.config.set_dtype_policy(previous)


def _build(config):

    height, width = config.image_size or (None, None)
    bags = keras.Input((None, height, width, config.channels), name="bags")
    images = mlayers.FoldInstances(name="fold_instances")(bags)
    images = mlayers.BackbonePreprocessing(preprocessing_mode(config.backbone), name="preprocessing")(images)
    backbone = build_backbone(
        config.backbone,
        weights=config.weights,
        channels=config.channels,
        image_size=config.image_size if config.pyramid_scales == (1.0,) else None,
        feature_layers=config.feature_layers,
        **config.backbone_kwargs,
    )
    backbone.trainable = not config.freeze_backbone  # frozen: batch norm in inference mode too (Keras 3)

    # levels[l][p]: feature layer l of pyramid level p, shape (B*S, h, w, c).
    per_pyramid = []
    for scale in config.pyramid_scales:
        level_input = images if scale == 1.0 else mlayers.ScaleResize(scale, name=f"pyramid_{scale:g}")(images)
        features = backbone(level_input)
        per_pyramid.append(features if isinstance(features, list) else [features])
    levels = [list(group) for group in zip(*per_pyramid)]

    instance_level = config.pooling.startswith("instance_")
    suffixes = [""] if len(levels) == 1 else [f"_{i}" for i in range(len(levels))]
    pooled = []
    for feature_maps, suffix in zip(levels, suffixes):
        maps = _head(config, feature_maps, suffix)
        if not instance_level:
            maps = [mlayers.UnfoldInstances(name=f"{HEAD_PREFIX}unfold{suffix}_{i}")([m, bags]) for i, m in enumerate(maps)]
        pooled.append(_pool(config, maps, suffix))
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name=f"{HEAD_PREFIX}concat", dtype="float32")(pooled)

    outputs = keras.layers.Dense(
        config.classes, activation="softmax", dtype="float32", name=f"{HEAD_PREFIX}classifier"
    )(x)
    if instance_level:
        outputs = mlayers.UnfoldInstances(name=f"{HEAD_PREFIX}unfold_probs", dtype="float32")([outputs, bags])
        outputs = mlayers.InstancePooling(
            config.pooling.split("_")[1], name=f"{HEAD_PREFIX}instance_pooling", dtype="float32"
        )(outputs)
    return keras.Model(bags, outputs, name=config.name)


def _head(config, feature_maps, suffix):
    """Applies the head to a list of feature maps (one per pyramid level)."""
    if config.head == "none":
        return feature_maps
    ms_conv = mlayers.MSConv(
        config.resolved_kernels(),
        scales=config.scales,
        dilations=config.dilations,
        activation=None if config.magnitude_norm else "relu",
        name=f"{HEAD_PREFIX}ms_conv{suffix}",
    )
    maps = [y for m in feature_maps for y in ms_conv(m)]  # shared kernels at every level
    if config.magnitude_norm:
        maps = mlayers.MagnitudeNorm(activation="relu", name=f"{HEAD_PREFIX}magnitude_norm{suffix}")(maps)
    return maps


def _pool(config, maps, suffix):
    name = f"{HEAD_PREFIX}pooling{suffix}"
    pooling = config.pooling
    if pooling in ("topk", "instance_mean", "instance_max"):
        layer = mlayers.TopKPooling(config.k, name=name, dtype="float32")
    elif pooling in ("mean", "max"):
        layer = mlayers.GlobalBagPooling(pooling, name=name, dtype="float32")
    else:
        layer = mlayers.AttentionPooling(
            config.attention_units, gated=pooling == "gated_attention", name=name, dtype="float32"
        )
    return layer(maps if len(maps) > 1 else maps[0])
