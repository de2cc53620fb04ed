"""The backbone names this package accepts, their preprocessing and the weights-file check, without
TensorFlow (options are checked with it before TensorFlow starts)."""

import os
import re

from mims_tf.utils import did_you_mean

# keras.applications constructor name -> its preprocessing mode (see BackbonePreprocessing).
_APPLICATIONS = {
    "ResNet50": "caffe", "ResNet101": "caffe", "ResNet152": "caffe",
    "ResNet50V2": "tf", "ResNet101V2": "tf", "ResNet152V2": "tf",
    "VGG16": "caffe", "VGG19": "caffe",
    "MobileNet": "tf", "MobileNetV2": "tf",
    "MobileNetV3Small": "none", "MobileNetV3Large": "none",
    "DenseNet121": "torch", "DenseNet169": "torch", "DenseNet201": "torch",
    "InceptionV3": "tf", "InceptionResNetV2": "tf", "Xception": "tf",
    "NASNetMobile": "tf", "NASNetLarge": "tf",
    **{f"EfficientNetB{i}": "none" for i in range(8)},
    **{f"EfficientNetV2{s}": "none" for s in ("B0", "B1", "B2", "B3", "S", "M", "L")},
    **{f"ConvNeXt{s}": "none" for s in ("Tiny", "Small", "Base", "Large", "XLarge")},
}
LOCAL_BACKBONES = {"resnet34": "tf", "tiny": "tf"}


def _key(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_KEY = {_key(name): name for name in _APPLICATIONS}


def backbone_names():
    """Returns every accepted backbone name (lower case)."""
    return sorted(LOCAL_BACKBONES) + sorted(name.lower() for name in _APPLICATIONS)


def check_backbone_name(name):
    """Returns `name` where it names a backbone (any spelling); otherwise raises ValueError (suggesting one)."""
    preprocessing_mode(name)
    return name


def preprocessing_mode(name):
    """Returns the `BackbonePreprocessing` mode of a backbone name."""
    _check_name(name)
    return LOCAL_BACKBONES.get(name.lower()) or _APPLICATIONS[resolve(name)]


def resolve(name):
    """The `keras.applications` constructor name of a backbone name (any spelling); errors suggest."""
    _check_name(name)
    key = _key(name)
    if key in _BY_KEY:
        return _BY_KEY[key]
    raise ValueError(
        f"Unknown backbone {name!r}.{did_you_mean(name.lower(), backbone_names())} "
        f"Valid: {', '.join(backbone_names())}. Received: backbone={name!r}"
    )


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(f"`backbone` must be a name: a keras.applications model, 'resnet34' or 'tiny'. "
                         f"Received: backbone={name!r}")


def check_weights_type(weights):
    """Returns `weights` where it is None, a string or a path (a file is not looked for); else raises ValueError."""
    if not (weights is None or isinstance(weights, (str, os.PathLike))):
        raise ValueError(f"`weights` must be None, 'imagenet' or the path of a weights file. "
                         f"Received: weights={weights!r}")
    return weights


def check_weights_file(weights):
    """Returns `weights` (a path as `str`) after checking that a weights file exists.

    Args:
        weights: `None`, `"imagenet"` or the path of a weights file.

    Raises:
        ValueError: where `weights` is neither None nor a string or path, or is a path and no file is there.
    """
    if check_weights_type(weights) is None or weights == "imagenet":
        return weights
    weights = os.fspath(weights)
    if not os.path.isfile(weights):
        raise ValueError(
            f"Weights file not found: {weights}. Pass weights=None, 'imagenet' or "
            f"the path of an existing file. Received: weights={weights!r}"
        )
    return weights


def check_feature_layers(feature_layers):
    """Returns `feature_layers` where it is None or a non-empty list or tuple of layer names; otherwise raises
    ValueError (a bare string too: `["conv4"]`, not `"conv4"`)."""
    if feature_layers is None:
        return None
    if isinstance(feature_layers, str):
        raise ValueError(f"`feature_layers` must be None or a list of layer names, e.g. [{feature_layers!r}], not a "
                         f"string. Received: feature_layers={feature_layers!r}")
    if not isinstance(feature_layers, (list, tuple)) or not feature_layers or not all(
        isinstance(name, str) and name for name in feature_layers
    ):
        raise ValueError(f"`feature_layers` must be None or a non-empty list of layer names, e.g. ['conv4', 'conv5']. "
                         f"Received: feature_layers={feature_layers!r}")
    return feature_layers
