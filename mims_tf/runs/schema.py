"""The pieces of the run config's schema (`runs/config.py`): `option`, a config field that is also a flag of
`mims train`; the parsers of flag text; the model block's options beyond `ModelConfig`'s own; the paper's
settings by task; which config values are paths (stored relative to a config file's folder, resolved from
it)."""

import dataclasses
import os


def option(default=None, help=None, flag=None, type=None, choices=None, default_text=None, factory=None):
    """A config field; with `help`, also a flag of `mims train` (`flag`: its name where not the field's;
    `type`: a parser of the flag's text; `default_text`: the default in words where the value says little)."""
    metadata = {key: value for key, value in dict(help=help, flag=flag, type=type, choices=choices,
                                                      default_text=default_text).items() if value is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# The model block is a mapping (the preset and `ModelConfig` overrides): its options beyond `ModelConfig`'s own.
MODEL_OPTIONS = {
    "preset": option("mims", help="model preset (see `mims presets`)"),
    "backbone_kwargs.alpha": option(type=float, flag="alpha", default_text="the backbone's",
                                    help="MobileNet width multiplier (config: model: {backbone_kwargs: {alpha: A}})"),
}


# The paper's settings by task (section 3.1, supplement A), applied under what a config or flags set.
# Learning rate: 1e-4 with Adam for every task; the paper gives 0.01 only for CRC-MSI, with an optimizer it
# does not name. The ImageNet ResNet-101 needs its weights (downloaded, or in the Keras cache).
_PAPER_MODEL = {"backbone": "resnet101", "weights": "imagenet"}
TASKS = {
    "oct": {"model": {**_PAPER_MODEL, "kernels": "oct"},
            "data": {"image_size": [224, 224], "central": 30, "instances": [12, 18]},
            "training": {"batch_size": 1, "learning_rate": 1e-4}},
    "fundus": {"model": {**_PAPER_MODEL, "kernels": "fundus"}, "data": {"image_size": [224, 224], "instances": 1},
               "training": {"batch_size": 16, "learning_rate": 1e-4}},
    "histology": {"model": {**_PAPER_MODEL, "kernels": "crc"}, "data": {"image_size": [224, 224], "instances": 8},
                  "training": {"batch_size": 4, "learning_rate": 1e-4}},
}


def class_names(text):
    """`"a, b"` -> `["a", "b"]`: class names in order, comma-separated."""
    return [c.strip() for c in text.split(",") if c.strip()]


def instance_count(text):
    """`"8"` -> 8, `"12-18"` -> (12, 18): instances per bag, or a range drawn per step."""
    import re

    try:
        return int(text)
    except ValueError:
        pass
    match = re.fullmatch(r"\s*(\d+)\s*[-:,]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"expected a number of instances (8) or a range (12-18). Received: {text!r}")
    return tuple(int(v) for v in match.groups())


def number(config, key):
    """The number a float option holds, also where written as text (YAML 1.1 reads `1e-4`, without a dot, as text)."""
    value = getattr(config, key)
    if isinstance(value, str):
        try:
            setattr(config, key, float(value))
        except ValueError:
            pass
    return getattr(config, key)


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# The config's values that are paths: (block or "" for the top level, key).
PATH_KEYS = (("data", "source"), ("data", "cache_dir"), ("model", "weights"), ("", "out"))
_NOT_PATHS = ("synthetic", "imagenet", "none", "")


def _map_paths(values, function):
    values = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for block, key in PATH_KEYS:
        holder = values.get(block) if block else values
        if isinstance(holder, dict) and isinstance(holder.get(key), str) and holder[key].lower() not in _NOT_PATHS:
            holder[key] = function(os.path.expanduser(holder[key]))
    return values


def resolve_paths(values, folder):
    """A nested config mapping with its relative paths (`PATH_KEYS`) joined to `folder`."""
    return _map_paths(values, lambda path: os.path.normpath(os.path.join(folder, path)))


def relative_paths(values, folder):
    """A nested config mapping with its absolute paths (`PATH_KEYS`) made relative to `folder` (same drive)."""
    def relative(path):
        try:
            return os.path.relpath(os.path.abspath(path), folder)  # an in-memory relative path is from here
        except ValueError:  # another drive (Windows)
            return path

    return _map_paths(values, relative)
