"""The configuration of a run: one nested object, mirrored by `config.yaml`.

    model:      preset and `ModelConfig` overrides (validated by `ModelConfig`)
    data:       source, classes, splits, image size (H, W), channels, central slices, normalisation,
                instances per bag, augmentation
    training:   batch size, epochs, steps per epoch, learning rate, backbone multiplier, checkpoint steps
    task (the paper's settings for oct, fundus or histology, under the keys given), seed, precision,
    strategy, sensitivity (target of the decision threshold; None: Youden's J),
    deterministic (deterministic kernels, fixed threads; see `runs/environment.py`), out

Adding a model option is one edit: a field of `ModelConfig` (with a `help` in its metadata, which gives
it a command-line flag too). A flat mapping (every key at the top, as config files before 0.2 were
written) is accepted: each known key goes to its block.
"""

import dataclasses
import math
import os

from mims_tf.data.source import check_normalize
from mims_tf.utils import atomic_open, check_bool, check_choice, did_you_mean

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("none", "mirrored", "multi_worker")
# The model block's defaults: the preset mims on the tiny backbone, from scratch (runs on any CPU).
MODEL_DEFAULTS = {"preset": "mims", "backbone": "tiny", "weights": None}
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds take 32 bits
MAX_IMAGE_SIZE = 4096  # larger instances would exhaust any accelerator's memory before the first step
MIN_IMAGE_SIZE = 8  # smaller instances leave a backbone nothing to see (a 2x2 "image" trained silently before)
# Options that come from the data, not the model block.
_FROM_DATA = ("image_size", "channels", "classes", "name")


@dataclasses.dataclass
class DataConfig:
    """Where the bags come from and how each is prepared for the model.

    Attributes:
        source: a manifest CSV, a MedMNIST-style `.npz`, a folder of class folders, or `"synthetic"`.
        classes: class names in order (the last is the positive class); None: from the data.
        bag_pattern: regex naming the bag in each file name (class folders).
        one_bag_per_file: class folders without a bag pattern: each file is its own bag (say so explicitly:
            tiles of one patient must never be split across train and test).
        group_pattern: regex naming a group (e.g. a patient) in file names that must not span two splits
            (a TCGA patient id is always checked).
        allow_shared_groups: accept a group in two splits.
        split_fractions: train, validation, test fractions where the data has no split.
        split_seed: seed of that split.
        image_size: instance `(height, width)`; an int means a square.
        channels: input channels.
        central: use only the central N instances of each volume (None: all).
        normalize: intensity normalisation (`"auto"`, or see `normalize_volume`).
        instances: instances sampled per bag in training: an int, `(min, max)` or None (the whole bag).
        augment: random flips (and the augmentation of `make_dataset`) in training.
        replacement: sample a bag smaller than `instances` with replacement (copies of instances) to
            `instances`; by default it keeps its own instances, each once, as at test.
        cache: where bags are kept once read, cropped and resized to `image_size`: `"auto"` (in memory
            when they fit `memory_budget_gb`, else on disk when `cache_dir` is set, else read at every
            step), `"memory"`, `"disk"` or `"none"` (see `mims_tf.data.source`).
        memory_budget_gb: gigabytes the bags may take in memory (None: half the memory available).
        cache_dir: folder of the disk cache (files keyed by content and settings; shared across runs).
    """

    source: str = "synthetic"
    classes: list = None
    bag_pattern: str = None
    one_bag_per_file: bool = False
    group_pattern: str = None
    allow_shared_groups: bool = False
    split_fractions: tuple = (0.7, 0.15, 0.15)
    split_seed: int = 0
    image_size: tuple = (64, 64)
    channels: int = 3
    central: int = None
    normalize: object = "auto"
    instances: object = 8
    augment: bool = True
    replacement: bool = False
    cache: str = "auto"
    memory_budget_gb: float = None
    cache_dir: str = None

    def validate(self):
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"`data.source` must be a path or 'synthetic'. Received: source={self.source!r}")
        if isinstance(self.image_size, int) and not isinstance(self.image_size, bool):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(self.image_size) if isinstance(self.image_size, (list, tuple)) else self.image_size
        if not isinstance(self.image_size, tuple) or len(self.image_size) != 2 or not all(
            _positive_int(v, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE) for v in self.image_size
        ):
            raise ValueError(f"`image_size` must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} or (height, "
                             "width) of such. "
                             f"Received: image_size={self.image_size!r}")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ValueError(f"`channels` must be 1 or 3. Received: channels={self.channels!r}")
        check_normalize(self.normalize)
        _check_positive_int("split_seed", self.split_seed, minimum=0, maximum=MAX_SEED)
        if self.central is not None:
            _check_positive_int("central", self.central)
        if isinstance(self.instances, list):
            self.instances = tuple(self.instances)
        if self.instances is not None:
            values = self.instances if isinstance(self.instances, tuple) else (self.instances,)
            if len(values) not in (1, 2) or not all(_positive_int(v) for v in values) or values[0] > values[-1]:
                raise ValueError(f"`instances` must be a positive integer, (min, max) with min <= max, or None. "
                                 f"Received: instances={self.instances!r}")
        from mims_tf.data.splits import check_fractions  # numpy only; no TensorFlow

        self.split_fractions = tuple(check_fractions(self.split_fractions, "split_fractions"))
        for key in ("one_bag_per_file", "allow_shared_groups", "augment", "replacement"):
            check_bool(key, getattr(self, key))
        from mims_tf.data.source import CACHE_MODES  # numpy only; no TensorFlow

        check_choice("cache", self.cache, CACHE_MODES)
        if self.cache == "disk" and not self.cache_dir:
            raise ValueError("cache 'disk' needs a cache folder (`cache_dir`). Received: cache_dir=None")
        budget = _number(self, "memory_budget_gb")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not math.isfinite(budget) or budget < 0):
            raise ValueError(f"`memory_budget_gb` must be a number of gigabytes >= 0. Received: memory_budget_gb={budget!r}")
        if self.classes is not None and not isinstance(self.classes, (list, tuple)):
            raise ValueError(f"`classes` must be a list of class names. Received: classes={self.classes!r}")
        return self


@dataclasses.dataclass
class TrainingConfig:
    """How the model is optimised.

    Attributes:
        batch_size: bags per training step.
        epochs: epochs.
        steps_per_epoch: steps per epoch (None: one pass over the training bags).
        learning_rate: the head's learning rate.
        backbone_multiplier: the backbone's share of it (paper: 0.5).
        checkpoint_steps: save `last.keras` every N steps (and every epoch).
        feature_views: with a frozen backbone, train the head on the backbone's features computed once
            (`mims_tf.train.features`), this many views of each training bag: the first as it is, the others
            augmented; 0: no feature cache (the frozen backbone runs at every step).
    """

    batch_size: int = 4
    epochs: int = 10
    steps_per_epoch: int = None
    learning_rate: float = 1e-3
    backbone_multiplier: float = 0.5
    checkpoint_steps: int = 50
    feature_views: int = 4

    def validate(self):
        for key in ("batch_size", "epochs", "checkpoint_steps"):
            _check_positive_int(key, getattr(self, key))
        _check_positive_int("feature_views", self.feature_views, minimum=0)
        if self.steps_per_epoch is not None:
            _check_positive_int("steps_per_epoch", self.steps_per_epoch)
        for key in ("learning_rate", "backbone_multiplier"):
            value = _number(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{key}` must be a finite number >= 0. Received: {key}={value!r}")
        if self.learning_rate == 0:
            raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate!r}")
        return self


BLOCKS = {"data": DataConfig, "training": TrainingConfig}
TOP_LEVEL = ("task", "seed", "precision", "strategy", "sensitivity", "deterministic", "out")
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


@dataclasses.dataclass
class RunConfig:
    """Everything a run needs; `config.yaml` in a run folder holds it.

    Example:

    >>> config = RunConfig.from_dict({"model": {"preset": "mi_pre"}, "data": {"source": "adrenal.npz"},
    ...                               "training": {"epochs": 20}, "out": "runs/adrenal"})
    >>> config.model_config(classes=2)  # the ModelConfig to build
    """

    model: dict = dataclasses.field(default_factory=lambda: dict(MODEL_DEFAULTS))
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    task: str = None
    seed: int = 0
    precision: str = None
    strategy: str = "none"
    sensitivity: float = None
    deterministic: bool = False
    out: str = "runs/mims"

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds and validates a config from a nested mapping (or a flat one, each key placed in its block).

        An unknown key is an error naming the nearest valid key.
        """
        if not isinstance(values, dict):
            raise ValueError(f"{source}: a config is a mapping of keys to values. Received: {type(values).__name__}")
        nested = {"model": dict(MODEL_DEFAULTS), "data": {}, "training": {}}
        task = values.get("task")
        if task is not None:  # the task's settings first: the config's own keys go over them
            check_choice("task", task, list(TASKS))
            for block, settings in TASKS[task].items():
                nested[block].update(settings)
        for key, value in values.items():
            if key == "model":
                nested["model"].update(_mapping(source, key, value))
            elif key == "data" and isinstance(value, str):  # `data: path` is short for `data: {source: path}`
                nested["data"]["source"] = value
            elif key in BLOCKS:
                nested[key].update(_mapping(source, key, value))
            elif key in TOP_LEVEL:
                nested[key] = value
            else:  # a flat key: its block
                block = block_of(key, source)
                nested[block][key] = value
        for block, kind in BLOCKS.items():
            known = [f.name for f in dataclasses.fields(kind)]
            for key in nested[block]:
                if key not in known:
                    raise ValueError(f"{source}: unknown config key {block}.{key!r}.{did_you_mean(key, known)} "
                                     f"Valid keys of {block}: {', '.join(known)}")
        config = cls(model=nested.pop("model"), data=DataConfig(**nested.pop("data")),
                     training=TrainingConfig(**nested.pop("training")), **nested)
        return config.validate()

    def validate(self):
        if self.precision is not None:
            check_choice("precision", self.precision, PRECISIONS)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_bool("deterministic", self.deterministic)
        _number(self, "sensitivity")
        if self.sensitivity is not None and (isinstance(self.sensitivity, bool) or not isinstance(
                self.sensitivity, (int, float)) or not 0 < self.sensitivity <= 1):
            raise ValueError(f"`sensitivity` must be in (0, 1] or None. Received: sensitivity={self.sensitivity!r}")
        _check_positive_int("seed", self.seed, minimum=0, maximum=MAX_SEED)
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"`out` must be a folder path. Received: out={self.out!r}")
        self.data.validate()
        self.training.validate()
        for key in _FROM_DATA:
            if key in self.model:
                raise ValueError(f"`model.{key}` comes from the data (data.image_size, data.channels, the classes); "
                                 f"remove it from the model block. Received: {key}={self.model[key]!r}")
        weights = self.model.get("weights")
        if isinstance(weights, str) and os.path.isfile(weights):
            self.model["weights"] = os.path.abspath(weights)  # config.yaml must find it from any folder (resume)
        if isinstance(self.data.source, str) and self.data.source != "synthetic" and os.path.exists(self.data.source):
            self.data.source = os.path.abspath(self.data.source)
        self.model_config(classes=2)  # unknown preset / option / kernels / k / backbone: one clear error
        return self

    @property
    def preset(self):
        return self.model.get("preset", MODEL_DEFAULTS["preset"])

    def model_overrides(self):
        """The model block's `ModelConfig` overrides of the preset (everything but `preset`)."""
        return {k: v for k, v in self.model.items() if k != "preset"}

    def model_config(self, classes):
        """The `ModelConfig` to build: the preset, the model block, and the data's image size and channels."""
        from mims_tf.models import get_preset
        from mims_tf.models.catalog import preprocessing_mode

        overrides = {k: v for k, v in self.model_overrides().items() if not (k == "k" and v is None)}
        config = get_preset(self.preset, **overrides).replace(
            image_size=self.data.image_size, channels=self.data.channels, classes=classes
        ).validate()
        preprocessing_mode(config.backbone)  # unknown backbone: "Did you mean ..."
        return config

    def to_dict(self):
        """A nested, YAML-friendly dict (tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    def resolved_precision(self):
        """The precision to use: as set, else `default_precision()`."""
        from mims_tf.runs.environment import default_precision

        return self.precision or default_precision()


def block_of(key, source="config"):
    """The block (`"model"`, `"data"`, `"training"`) or top level (`""`) a flat key belongs to."""
    from mims_tf.models import ModelConfig

    if key in TOP_LEVEL:
        return ""
    for block, kind in BLOCKS.items():
        if key in [f.name for f in dataclasses.fields(kind)]:
            return block
    model_keys = ["preset"] + [f.name for f in dataclasses.fields(ModelConfig) if f.name not in _FROM_DATA]
    if key in model_keys:
        return "model"
    valid = [*TOP_LEVEL, "model", *BLOCKS, *model_keys,
             *[f.name for kind in BLOCKS.values() for f in dataclasses.fields(kind)]]
    raise ValueError(f"{source}: unknown config key {key!r}.{did_you_mean(key, valid)} Valid keys: {', '.join(valid)}")


def load_config(path=None, overrides=None):
    """Reads a YAML config (optional) and applies `overrides`, a flat or nested mapping of given values.

    Flat values that are None are ignored (options not given); a block's mapping is applied as given.
    """
    values = read_yaml(path) if path else {}
    if (overrides or {}).get("task") is not None:  # a task from the flags sits under the file's keys too
        values = {**values, "task": overrides["task"]}
    nested = RunConfig.from_dict(values, source=path or "config").to_dict()
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if isinstance(value, dict) and key in ("model", *BLOCKS):
            nested[key].update(value)
            continue
        block = block_of(key, "overrides")
        (nested[block] if block else nested)[key] = value
    return RunConfig.from_dict(nested, source=path or "config")


def read_yaml(path):
    """A YAML mapping from `path` (safe loader: no tags, no code); errors name the file."""
    import yaml

    if not os.path.isfile(path):
        raise ValueError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8-sig") as f:
            values = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config file is a mapping of keys to values")
    return values


def save_config(config, path):
    """Writes the config as nested YAML, atomically."""
    import yaml

    with atomic_open(path) as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)


def _mapping(source, key, value):
    if not isinstance(value, dict):
        raise ValueError(f"{source}: `{key}` must be a mapping of keys to values. Received: {key}={value!r}")
    return value


def _number(config, key):
    """The number a float option holds, also where written as text (YAML 1.1 reads `1e-4`, without a dot, as text)."""
    value = getattr(config, key)
    if isinstance(value, str):
        try:
            setattr(config, key, float(value))
        except ValueError:
            pass
    return getattr(config, key)


def _positive_int(value, minimum=1, maximum=None):
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum and (
        maximum is None or value <= maximum)


def _check_positive_int(key, value, minimum=1, maximum=None):
    if not _positive_int(value, minimum, maximum):
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        kind += f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"`{key}` must be {kind}. Received: {key}={value!r}")


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
