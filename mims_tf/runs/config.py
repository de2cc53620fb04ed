"""The configuration of a run: one nested object, mirrored by `config.yaml`, and the schema of `mims train`.

    model:      preset and `ModelConfig` overrides (validated by `ModelConfig`)
    data:       source, classes, splits, image size (H, W), channels, central slices, normalisation,
                instances per bag, augmentation, caching
    training:   batch size, epochs, steps per epoch, learning rate, checkpoint steps, folds, what is kept
    decision:   the rule of the decision threshold (`mims_tf.stats.thresholds`) and its target
    task (the paper's settings for oct, fundus or histology, under the keys given), seed, precision,
    strategy, deterministic (deterministic kernels, fixed threads; see `runs/environment.py`), out

Every field with a `help` in its metadata is a command-line flag of `mims train` (`cli/flags.py` builds
them): the flag's name (`flag`, else the field's), its parser (`type`), `choices`, help and default all
come from here, so an option is one edit. The model block's flags come from `ModelConfig` the same way.
`from_dict` takes the nested form; a flat mapping (every key at the top, as short config files and the
bench's budgets are written) goes through the one adapter `nest_flat`.
"""

import dataclasses
import math
import os

from mims_tf.data.source import CACHE_MODES, check_normalize
from mims_tf.runs.schema import TASKS, class_names, instance_count, number, option, plain, relative_paths, resolve_paths
from mims_tf.stats.thresholds import THRESHOLD_RULES, check_rule
from mims_tf.utils import atomic_open, check_bool, check_choice, check_int_in, did_you_mean, is_int_in, read_yaml

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
KEEP = ("best_auroc", "average_last")  # what best.keras holds (`TrainingConfig.keep`)
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

    source: str = option("synthetic", flag="data", default_text="none: required ('synthetic' for the built-in set)",
                         help="manifest .csv, MedMNIST-style .npz, folder of class folders, or 'synthetic'")
    classes: list = option(type=class_names, default_text="from the data", help=(
        "class names in order, comma-separated; the last is the positive class (e.g. MSS_JPEG,MSIMUT_JPEG)"))
    bag_pattern: str = option(help="regex naming the bag in each file name (class folders), e.g. "
                              "'TCGA-\\w\\w-\\w\\w\\w\\w'")
    one_bag_per_file: bool = option(False, type=bool, help=(
        "class folders without a bag pattern: every file is its own bag (say so: a patient's tiles split across "
        "train and test inflate the results)"))
    group_pattern: str = option(help="regex naming a patient (group) in file names; one group in two splits is refused")
    allow_shared_groups: bool = option(False, type=bool, help="accept one patient (group) in two splits")
    split_fractions: tuple = (0.7, 0.15, 0.15)
    split_seed: int = 0
    image_size: tuple = option((64, 64), type=int, default_text="64", help="instance height and width")
    channels: int = 3
    central: int = option(type=int, default_text="all", help="use only the central N instances of each volume "
                          "(paper OCT: 30)")
    normalize: object = "auto"
    instances: object = option(8, type=instance_count, help=(
        "instances sampled per bag per training step, or a range MIN-MAX drawn per step, one count for the bags "
        "of a step (paper OCT: 12-18)"))
    augment: bool = True
    replacement: bool = False
    cache: str = option("auto", choices=CACHE_MODES, help=(
        "where bags are kept once read, cropped and resized: auto (memory when they fit the memory budget, else "
        "disk with a cache folder, else read every step), memory, disk, none"))
    memory_budget_gb: float = option(type=float, flag="memory_budget", default_text="half the memory available",
                                     help="gigabytes the cached bags may take in memory")
    cache_dir: str = option(help="folder of the disk cache (keyed by each file's content, size and time and the "
                            "settings, shared by runs)")

    def validate(self):
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"`data.source` must be a path or 'synthetic'. Received: source={self.source!r}")
        if isinstance(self.image_size, int) and not isinstance(self.image_size, bool):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(self.image_size) if isinstance(self.image_size, (list, tuple)) else self.image_size
        if not isinstance(self.image_size, tuple) or len(self.image_size) != 2 or not all(
            is_int_in(v, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE) for v in self.image_size
        ):
            raise ValueError(f"`image_size` must be an integer from {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} or (height, "
                             "width) of such. "
                             f"Received: image_size={self.image_size!r}")
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ValueError(f"`channels` must be 1 or 3. Received: channels={self.channels!r}")
        check_normalize(self.normalize)
        check_int_in("split_seed", self.split_seed, minimum=0, maximum=MAX_SEED)
        if self.central is not None:
            check_int_in("central", self.central)
        if isinstance(self.instances, list):
            self.instances = tuple(self.instances)
        if self.instances is not None:
            values = self.instances if isinstance(self.instances, tuple) else (self.instances,)
            if len(values) not in (1, 2) or not all(is_int_in(v) for v in values) or values[0] > values[-1]:
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
        budget = number(self, "memory_budget_gb")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not math.isfinite(budget) or budget < 0):
            raise ValueError("`memory_budget_gb` must be a number of gigabytes >= 0. "
                             f"Received: memory_budget_gb={budget!r}")
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
            (`mims_tf.data.features`), this many views of each training bag: the first as it is, the others
            augmented; 0: no feature cache (the frozen backbone runs at every step).
        folds: K patient-grouped, stratified folds over the train and val bags (`mims_tf.runs.cv`); None: one
            split.
        keep: what `best.keras` holds, `"best_auroc"` or `"average_last"` (`mims_tf.runs.checkpoint.kept_model`).
    """

    batch_size: int = option(4, type=int, help="bags per training step")
    epochs: int = option(10, type=int, help="epochs")
    steps_per_epoch: int = option(type=int, default_text="one pass over the bags", help="training steps per epoch")
    learning_rate: float = option(1e-3, type=float, help="head learning rate (backbone: half)")
    backbone_multiplier: float = 0.5
    checkpoint_steps: int = option(50, type=int, help="save last.keras every N steps (and every epoch)")
    feature_views: int = option(4, type=int, help=(
        "with a frozen backbone: the head trains on the backbone's features computed once, in this many views per "
        "training bag (the first as it is, the others augmented); 0: no feature cache, the frozen backbone runs at "
        "every step"))
    folds: int = option(type=int, default_text="none: one split", help=(
        "cross-validation: K patient-grouped folds over the train and val bags, one run each, calibrated and "
        "thresholded out of fold; the fold ensemble is the model"))
    keep: str = option(type=str, choices=KEEP, default_text="average_last with --folds, else best_auroc", help=(
        "what best.keras holds: best_auroc (the best validation AUROC's epoch) or average_last (the last third of "
        "the epochs' weights averaged)"))

    def validate(self):
        if self.keep is not None:
            check_choice("keep", self.keep, KEEP)
        if self.folds is not None:
            check_int_in("folds", self.folds, minimum=2, maximum=20)
        for key in ("batch_size", "epochs", "checkpoint_steps"):
            check_int_in(key, getattr(self, key))
        check_int_in("feature_views", self.feature_views, minimum=0)
        if self.steps_per_epoch is not None:
            check_int_in("steps_per_epoch", self.steps_per_epoch)
        for key in ("learning_rate", "backbone_multiplier"):
            value = number(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"`{key}` must be a finite number >= 0. Received: {key}={value!r}")
        if self.learning_rate == 0:
            raise ValueError(f"`learning_rate` must be positive. Received: learning_rate={self.learning_rate!r}")
        return self


@dataclasses.dataclass
class DecisionConfig:
    """How the decision threshold on the calibrated P(positive) is chosen on validation.

    Attributes:
        rule: a name of `mims_tf.stats.thresholds.THRESHOLD_RULES` (`"youden"`, `"sensitivity"`, `"specificity"`).
        target: the rule's target in (0, 1] (e.g. a sensitivity of 0.95); None for Youden's J.
    """

    rule: str = option("youden", flag="threshold_rule", choices=tuple(THRESHOLD_RULES), help=(
        "how the decision threshold is chosen on validation: youden (sensitivity + specificity largest), "
        "sensitivity or specificity (the threshold reaching the target)"))
    target: float = option(type=float, flag="threshold_target", default_text="none",
                           help="the target of the sensitivity or specificity rule, e.g. 0.95")

    def validate(self):
        self.target = number(self, "target")
        check_rule(self.rule, self.target)
        return self


BLOCKS = {"data": DataConfig, "training": TrainingConfig, "decision": DecisionConfig}
TOP_LEVEL = ("task", "seed", "precision", "strategy", "deterministic", "out")
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
    decision: DecisionConfig = dataclasses.field(default_factory=DecisionConfig)
    task: str = option(choices=tuple(TASKS), help=(
        "the paper's settings for a task (kernels, image size, slice sampling, batch size, learning rate, "
        "ImageNet ResNet-101), under the options given; printed at the start of the run"))
    seed: int = option(0, type=int, help="seed for initialisation, data order, sampling, augmentation")
    precision: str = option(choices=PRECISIONS, default_text="mixed_float16 on a GPU, mixed_bfloat16 on CPUs with "
                            "AMX, else float32", help="numeric precision of training")
    strategy: str = option("none", choices=STRATEGIES, help=(
        "mirrored: every device of this host; multi_worker: the hosts in TF_CONFIG"))
    deterministic: bool = option(False, type=bool, help=(
        "deterministic TensorFlow kernels, oneDNN off, one thread: the same result on the same machine in any "
        "process (slower; see README, Reproducibility)"))
    out: str = option("runs/mims", help="run folder")

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds and validates a config from a nested mapping (a flat one is first nested by `nest_flat`).

        An unknown key is an error naming the nearest valid key.
        """
        values = nest_flat(values, source)
        nested = {"model": dict(MODEL_DEFAULTS), **{block: {} for block in BLOCKS}}
        task = values.get("task")
        if task is not None:  # the task's settings first: the config's own keys go over them
            check_choice("task", task, list(TASKS))
            for block, settings in TASKS[task].items():
                nested[block].update(settings)
        for key, value in values.items():
            if key == "model" or key in BLOCKS:
                nested[key].update(value)
            else:
                nested[key] = value
        for block, kind in BLOCKS.items():
            known = [f.name for f in dataclasses.fields(kind)]
            for key in nested[block]:
                if key not in known:
                    raise ValueError(f"{source}: unknown config key {block}.{key!r}.{did_you_mean(key, known)} "
                                     f"Valid keys of {block}: {', '.join(known)}")
        blocks = {block: kind(**nested.pop(block)) for block, kind in BLOCKS.items()}
        config = cls(model=nested.pop("model"), **blocks, **nested)
        return config.validate()

    def validate(self):
        if self.precision is not None:
            check_choice("precision", self.precision, PRECISIONS)
        check_choice("strategy", self.strategy, STRATEGIES)
        check_bool("deterministic", self.deterministic)
        check_int_in("seed", self.seed, minimum=0, maximum=MAX_SEED)
        if not isinstance(self.out, str) or not self.out:
            raise ValueError(f"`out` must be a folder path. Received: out={self.out!r}")
        for block in BLOCKS:
            getattr(self, block).validate()
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

        overrides = {k: v for k, v in self.model_overrides().items() if not (k == "k" and v is None)}
        return get_preset(self.preset, **overrides).replace(
            image_size=self.data.image_size, channels=self.data.channels, classes=classes
        ).validate()

    def to_dict(self):
        """A nested, YAML-friendly dict (tuples as lists)."""
        return plain(dataclasses.asdict(self))

    def resolved_precision(self):
        """The precision to use: as set, else `default_precision()`."""
        from mims_tf.runs.environment import default_precision

        return self.precision or default_precision()


def block_of(key, source="config"):
    """The block (`"model"`, `"data"`, `"training"`, `"decision"`) or top level (`""`) a flat key belongs to."""
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


def nest_flat(values, source="config"):
    """The flat dialect's one adapter: each top-level key that is not a block goes into its block
    (`{"epochs": 3}` -> `{"training": {"epochs": 3}}`); `data: path` means `data: {source: path}`; an older
    run's `sensitivity: 0.9` means `decision: {rule: sensitivity, target: 0.9}`. A nested mapping is returned
    as it is (copied)."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: a config is a mapping of keys to values. Received: {type(values).__name__}")
    nested = {}
    for key, value in values.items():
        if key == "data" and isinstance(value, str):
            nested.setdefault("data", {})["source"] = value
        elif key == "model" or key in BLOCKS:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: `{key}` must be a mapping of keys to values. Received: {key}={value!r}")
            nested.setdefault(key, {}).update(value)
        elif key == "sensitivity":  # config.yaml of runs before the decision block
            if value is not None:
                nested.setdefault("decision", {}).update(rule="sensitivity", target=value)
        elif key in TOP_LEVEL:
            nested[key] = value
        else:
            nested.setdefault(block_of(key, source), {})[key] = value
    return nested


def load_config(path=None, overrides=None):
    """Reads a YAML config (optional) and applies `overrides`, a nested mapping of given values.

    Values that are None are ignored (options not given); a block's mapping is applied key by key.
    """
    values = nest_flat(read_yaml(path) if path else {}, path or "config")
    if path:  # a config file's relative paths are relative to its own folder, not the working directory
        values = resolve_paths(values, os.path.dirname(os.path.abspath(path)))
    overrides = nest_flat(overrides or {}, "overrides")
    if overrides.get("task") is not None:  # a task from the flags sits under the file's keys too
        values["task"] = overrides["task"]
    nested = RunConfig.from_dict(values, source=path or "config").to_dict()
    for key, value in overrides.items():
        if isinstance(value, dict):
            nested[key].update({k: v for k, v in value.items() if v is not None or key == "model"})
        elif value is not None:
            nested[key] = value
    return RunConfig.from_dict(nested, source=path or "config")


def save_config(config, path, relative=False):
    """Writes the config as nested YAML, atomically; with `relative=True` its paths are written relative to the
    file's folder (where `load_config` resolves them from)."""
    import yaml

    values = config.to_dict()
    if relative:
        values = relative_paths(values, os.path.dirname(os.path.abspath(path)))
    with atomic_open(path) as f:
        yaml.safe_dump(values, f, sort_keys=False)
