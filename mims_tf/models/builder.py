"""One builder for every model of the paper: backbone -> head -> bag pooling -> classifier."""

import keras

from mims_tf import layers as mlayers
from mims_tf.models.backbones import build_backbone, preprocessing_mode
from mims_tf.models.config import HEAD_PREFIX, ModelConfig, get_preset


def _top_k(config, name):
    return mlayers.TopKPooling(config.k, name=name, dtype="float32")


def _global(mode):
    return lambda config, name: mlayers.GlobalBagPooling(mode, name=name, dtype="float32")


def _attention(gated):
    return lambda config, name: mlayers.AttentionPooling(config.attention_units, gated=gated, name=name,
                                                         dtype="float32")


# `ModelConfig.pooling` (its names: `config.POOLINGS`) -> (factory of the pooling layer `(config, name)`, the
# `InstancePooling` mode of the instance probabilities, or None where the pooled vectors are classified per bag).
POOLING_LAYERS = {
    "topk": (_top_k, None),
    "mean": (_global("mean"), None),
    "max": (_global("max"), None),
    "attention": (_attention(False), None),
    "gated_attention": (_attention(True), None),
    "instance_mean": (_top_k, "mean"),
    "instance_max": (_top_k, "max"),
}


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
    make = _LayerMaker()
    levels = _features(config, bags, make)
    return keras.Model(bags, _classify(config, levels, bags, make), name=config.name)


class _LayerMaker:
    """Makes each named layer once: `make(name, factory)` gives the layer of that name, made by `factory()` the
    first time; or, over the layers of a built model (`layers`), that model's layer, so a second graph over
    them shares its weights (a name the model lacks is an error: a new layer there would train unsaved)."""

    def __init__(self, layers=None):
        self.strict = layers is not None
        self.layers = {layer.name: layer for layer in layers or ()}

    def __call__(self, name, factory):
        if name not in self.layers:
            if self.strict:
                raise ValueError(f"The model has no layer {name!r} that its config asks for: split it with the "
                                 f"config it was built from. Received: name={name!r}")
            self.layers[name] = factory()
        return self.layers[name]


def _features(config, bags, make):
    """The backbone's feature maps of every instance: `levels[l][p]` is feature layer l of pyramid level p,
    shape `(B*S, h, w, c)`."""
    images = make("fold_instances", lambda: mlayers.FoldInstances(name="fold_instances"))(bags)
    images = make("preprocessing", lambda: mlayers.BackbonePreprocessing(
        preprocessing_mode(config.backbone), name="preprocessing"))(images)
    backbone = make("backbone", lambda: _backbone(config))
    per_pyramid = []
    for scale in config.pyramid_scales:
        if scale == 1.0:
            level_input = images
        else:
            name = f"pyramid_{scale:g}"
            level_input = make(name, lambda: mlayers.ScaleResize(scale, name=name))(images)
        features = backbone(level_input)
        per_pyramid.append(features if isinstance(features, list) else [features])
    return [list(group) for group in zip(*per_pyramid)]


def _backbone(config):
    backbone = build_backbone(
        config.backbone,
        weights=config.weights,
        channels=config.channels,
        image_size=config.image_size if config.pyramid_scales == (1.0,) else None,
        feature_layers=config.feature_layers,
        **config.backbone_kwargs,
    )
    backbone.trainable = not config.freeze_backbone  # frozen: batch norm in inference mode too (Keras 3)
    return backbone


def _classify(config, levels, bags, make):
    """Head, bag pooling and classifier over `levels` (see `_features`); `bags` gives the instances per bag."""
    instance_mode = POOLING_LAYERS[config.pooling][1]
    suffixes = [""] if len(levels) == 1 else [f"_{i}" for i in range(len(levels))]
    pooled = []
    for feature_maps, suffix in zip(levels, suffixes):
        maps = _head(config, feature_maps, suffix, make)
        if instance_mode is None:
            maps = [make(f"{HEAD_PREFIX}unfold{suffix}_{i}", lambda i=i: mlayers.UnfoldInstances(
                name=f"{HEAD_PREFIX}unfold{suffix}_{i}"))([m, bags]) for i, m in enumerate(maps)]
        pooled.append(_pool(config, maps, suffix, make))
    if len(pooled) == 1:
        x = pooled[0]
    else:
        x = make(f"{HEAD_PREFIX}concat", lambda: keras.layers.Concatenate(
            name=f"{HEAD_PREFIX}concat", dtype="float32"))(pooled)
    outputs = make(f"{HEAD_PREFIX}classifier", lambda: keras.layers.Dense(
        config.classes, activation="softmax", dtype="float32", name=f"{HEAD_PREFIX}classifier"))(x)
    if instance_mode is not None:
        outputs = make(f"{HEAD_PREFIX}unfold_probs", lambda: mlayers.UnfoldInstances(
            name=f"{HEAD_PREFIX}unfold_probs", dtype="float32"))([outputs, bags])
        outputs = make(f"{HEAD_PREFIX}instance_pooling", lambda: mlayers.InstancePooling(
            instance_mode, name=f"{HEAD_PREFIX}instance_pooling", dtype="float32"))(outputs)
    return outputs


def split_model(model, config):
    """The two halves of a built model, sharing its layers (and so its weights): `(extractor, head)`.

    The extractor maps bags `(B, S, H, W, C)` to the backbone's feature maps, one per (feature layer, pyramid
    level) in that order, each `(B, S, h, w, c)`; the head maps those maps to the model's probabilities. With a
    frozen backbone, features computed once by the extractor can train the head alone (`mims_tf.data.features`),
    and the model then holds the trained head.

    Args:
        model: a model from `build_model(config)`.
        config: its `ModelConfig`.

    Returns:
        `(extractor, head)`, two `keras.Model`s; `head(extractor(bags))` equals `model(bags)`.

    Example:

    >>> config = get_preset("mims", backbone="tiny", weights=None, image_size=(32, 32))
    >>> extractor, head = split_model(build_model(config), config)
    """
    make = _LayerMaker(model.layers)
    height, width = config.image_size or (None, None)
    bags = keras.Input((None, height, width, config.channels), name="bags")
    levels = _features(config, bags, make)
    flat = [m for level in levels for m in level]
    unfolded = [mlayers.UnfoldInstances(name=f"unfold_features_{i}")([m, bags]) for i, m in enumerate(flat)]
    extractor = keras.Model(bags, unfolded, name=f"{config.name}_extractor")
    inputs = [keras.Input(tuple(m.shape[1:]), name=f"features_{i}") for i, m in enumerate(unfolded)]
    fold = mlayers.FoldInstances(name="fold_features")
    folded = iter([fold(x) for x in inputs])
    levels = [[next(folded) for _ in level] for level in levels]
    head = keras.Model(inputs, _classify(config, levels, inputs[0], make), name=f"{config.name}_head")
    return extractor, head


def _head(config, feature_maps, suffix, make):
    """Applies the head to a list of feature maps (one per pyramid level)."""
    if config.head == "none":
        return feature_maps
    ms_conv = make(f"{HEAD_PREFIX}ms_conv{suffix}", lambda: mlayers.MSConv(
        config.resolved_kernels(),
        scales=config.scales,
        dilations=config.dilations,
        activation=None if config.magnitude_norm else "relu",
        name=f"{HEAD_PREFIX}ms_conv{suffix}",
    ))
    maps = [y for m in feature_maps for y in ms_conv(m)]  # shared kernels at every level
    if config.magnitude_norm:
        maps = make(f"{HEAD_PREFIX}magnitude_norm{suffix}", lambda: mlayers.MagnitudeNorm(
            activation="relu", name=f"{HEAD_PREFIX}magnitude_norm{suffix}"))(maps)
    return maps


def _pool(config, maps, suffix, make):
    name = f"{HEAD_PREFIX}pooling{suffix}"
    factory = POOLING_LAYERS[config.pooling][0]
    return make(name, lambda: factory(config, name))(maps if len(maps) > 1 else maps[0])
