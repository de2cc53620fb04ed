"""Backbones: any `keras.applications` model, ResNet-34 built here, and a tiny test net."""

import inspect
import os
import re
import warnings

import keras

from mims_tf.models.catalog import (  # noqa: F401
    LOCAL_BACKBONES,
    backbone_names,
    check_backbone_name,
    check_feature_layers,
    check_weights_file,
    preprocessing_mode,
    resolve,
)


def build_backbone(name, weights=None, channels=3, image_size=None, feature_layers=None, **kwargs):
    """Builds a backbone as a `keras.Model` named "backbone" giving feature maps.

    Args:
        name: a `keras.applications` model (any spelling: `"resnet50"`,
            `"ResNet50"`, `"mobilenet_v2"`), `"resnet34"` (built here, for the
            from-scratch baseline) or `"tiny"` (a 3-layer net for tests).
        weights: `None`, `"imagenet"` (downloaded or found in the Keras cache,
            `$KERAS_HOME/models`, default `~/.keras/models`) or a path to a
            weights file.
        channels: input channels.
        image_size: `(H, W)`, or None for dynamic height and width.
        feature_layers: None for the last feature map, or a sequence of layer
            names. `"conv4"` / `"conv5"` name the last blocks of those stages of
            ResNet-style nets (`conv4_block*_out`); in other nets, the last layer
            at output stride 16 / 32 (MobileNet: `conv_pw_11_relu`,
            `conv_pw_13_relu`). Other names are used as is.
        **kwargs: passed to the `keras.applications` constructor (e.g. `alpha`).

    Returns:
        A `keras.Model` taking `(N, H, W, channels)` and returning one feature
        map (or a list, one per feature layer).
    """
    weights = check_weights_file(weights)
    check_backbone_name(name)
    check_feature_layers(feature_layers)
    input_shape = (*(image_size or (None, None)), channels)
    local = name.lower()
    if local in LOCAL_BACKBONES:
        if kwargs:
            raise ValueError(
                f"The {local!r} backbone (built here) takes no extra arguments; they are for "
                f"`keras.applications` models (e.g. alpha for MobileNet). Received: backbone_kwargs={kwargs!r}"
            )
        if weights == "imagenet":
            raise ValueError(
                f"No ImageNet weights exist for the {local!r} backbone (it is built "
                f"here); use weights=None or a path. Received: weights='imagenet'"
            )
        model = resnet34(input_shape) if local == "resnet34" else tiny(input_shape)
        if weights is not None:
            _load_weights(model, weights, local)
    else:
        app = resolve(name)
        model = _build_application(app, weights, input_shape, kwargs)
    outputs = [model.get_layer(n).output for n in resolve_feature_layers(model, feature_layers)]
    return keras.Model(model.inputs, outputs if len(outputs) > 1 else outputs[0], name="backbone")


def _build_application(app, weights, input_shape, kwargs):
    constructor = getattr(keras.applications, app)
    accepted = set(inspect.signature(constructor).parameters) - {"include_top", "weights", "input_shape"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"Backbone {app} takes no argument {', '.join(unknown)} (alpha is MobileNet's "
            f"width multiplier). Received: backbone_kwargs={kwargs!r}"
        )
    try:
        with warnings.catch_warnings():  # a file of another network: one warning per layer before the error
            warnings.simplefilter("ignore")
            return constructor(include_top=False, weights=weights, input_shape=input_shape, **kwargs)
    except Exception as error:  # noqa: BLE001 - turned into one clear message
        message = str(error)
        if weights == "imagenet" and ("fetch failure" in message or "URL" in message):
            url = re.search(r"https?://\S+", message)
            file_name = url.group(0).rstrip(".,:;").split("/")[-1] if url else "<the weights file>"
            cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
            raise RuntimeError(
                f"Could not download the ImageNet weights of {app} (no network?). Put "
                f"{file_name} into the Keras cache {cache}/ or pass weights='/path/to/"
                f"weights.h5' (or weights=None to train from scratch)."
            ) from None
        if isinstance(weights, str) and weights != "imagenet":
            raise ValueError(
                f"Weights file {weights} does not fit backbone {app} with "
                f"input_shape={input_shape}, {kwargs}: {message.splitlines()[0]}"
            ) from None
        raise ValueError(f"Cannot build backbone {app}: {message.splitlines()[0]}") from None


def _load_weights(model, path, name):
    try:
        with warnings.catch_warnings():  # a file of another network: one warning per layer before the error
            warnings.simplefilter("ignore")
            model.load_weights(path)
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"Weights file {path} does not fit backbone {name}: {str(error).splitlines()[0]}"
        ) from None


def resolve_feature_layers(model, feature_layers):
    """Returns layer names for `feature_layers` (None: the model's output layer)."""
    if check_feature_layers(feature_layers) is None:
        return [model.layers[-1].name]
    names = [layer.name for layer in model.layers]
    resolved = []
    for wanted in feature_layers:
        if wanted in names:
            resolved.append(wanted)
            continue
        stage = re.fullmatch(r"conv(\d)", wanted)
        matches = [n for n in names if stage and re.fullmatch(rf"conv{stage.group(1)}_block\d+_out", n)]
        if stage and not matches:
            matches = _layers_at_stride(model, 2 ** int(stage.group(1)))
        if not matches:
            raise ValueError(
                f"Backbone {model.name!r} has no layer {wanted!r}. Use layer names "
                f"(e.g. {names[-1]!r}) or 'conv<N>' for the last layer at output stride 2**N. "
                f"Received: feature_layers={list(feature_layers)}"
            )
        resolved.append(matches[-1])
    return resolved


def _layers_at_stride(model, stride):
    """Names of the layers whose output is the input downsampled `stride` times, in layer order."""
    height, width, channels = model.inputs[0].shape[1:]
    height, width = height or 224, width or 224  # a probe size where the input size is dynamic
    layers = []
    for layer in model.layers[1:]:
        try:
            if len(layer.output.shape) == 4:
                layers.append(layer)
        except (AttributeError, ValueError):  # a layer used at several places has no single output
            continue
    if not layers:
        return []
    outputs = keras.Model(model.inputs, [layer.output for layer in layers]).compute_output_spec(
        keras.KerasTensor((1, height, width, channels))
    )
    # "same" padding rounds up, MobileNet's padded "valid" strides round down (112 px at stride 32: 3, not 4)
    sizes = {(-(-height // stride), -(-width // stride)), (height // stride, width // stride)}
    return [layer.name for layer, out in zip(layers, outputs) if tuple(out.shape[1:3]) in sizes]


def _conv_bn_relu(x, filters, kernel, stride, name, relu=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def resnet34(input_shape=(None, None, 3)):
    """ResNet-34 (He et al. 2016, basic blocks 3-4-6-3) without top, Keras layer names.

    Stage outputs are named like `keras.applications` ResNets
    (`conv4_block6_out`, `conv5_block3_out`), so `"conv4"`/`"conv5"` resolve.
    """
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 64, 7, 2, "conv1")
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
    for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=2):
        for block in range(1, blocks + 1):
            name = f"conv{stage}_block{block}"
            stride = 2 if block == 1 and stage > 2 else 1
            shortcut = x
            if stride != 1:
                shortcut = _conv_bn_relu(x, filters, 1, stride, f"{name}_0", relu=False)
            y = _conv_bn_relu(x, filters, 3, stride, f"{name}_1")
            y = _conv_bn_relu(y, filters, 3, 1, f"{name}_2", relu=False)
            x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
            x = keras.layers.Activation("relu", name=f"{name}_out")(x)
    return keras.Model(inputs, x, name="resnet34")


def tiny(input_shape=(None, None, 3)):
    """A 3-convolution net with output stride 8 for fast tests (`conv4`, `conv5` resolve)."""
    inputs = keras.Input(input_shape)
    x = _conv_bn_relu(inputs, 8, 3, 2, "conv1")
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="conv4_block1_out")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv5_block1_out")(x)
    return keras.Model(inputs, x, name="tiny")
