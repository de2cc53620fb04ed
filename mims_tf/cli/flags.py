"""The one table from command-line flags to `RunConfig` keys.

Each flag names where its value goes (`data.source`, `training.epochs`, `model.k`, `seed`). The model
block's flags come from the `ModelConfig` fields that carry a `help` in their metadata, so a new model
option gets its flag without an edit here.
"""

import argparse
import dataclasses
import re

FORMATTER = argparse.RawDescriptionHelpFormatter


def instance_count(text):
    """`--instances` value: `8` (an int, checked by the config) or a range `12-18` (drawn per step)."""
    try:
        return int(text)
    except ValueError:
        pass
    match = re.fullmatch(r"\s*(\d+)\s*[-:,]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a number of instances (8) or a range (12-18), not {text!r}")
    return tuple(int(v) for v in match.groups())


@dataclasses.dataclass(frozen=True)
class Flag:
    """A flag `--<dest>` whose value goes to the config key `key` (`block.name` or a top-level name)."""

    dest: str
    key: str
    type: type
    help: str
    choices: tuple = None


_FLAGS = (
    Flag("task", "task", str, "the paper's settings for a task (kernels, image size, slice sampling, batch size, "
         "learning rate, ImageNet ResNet-101), under the flags given; printed at the start of the run",
         ("oct", "fundus", "histology")),
    Flag("data", "data.source", str, "manifest .csv, MedMNIST-style .npz, folder of class folders, or 'synthetic'"),
    Flag("bag_pattern", "data.bag_pattern", str,
         "regex naming the bag in each file name (class folders), e.g. 'TCGA-\\w\\w-\\w\\w\\w\\w'"),
    Flag("classes", "data.classes", lambda text: [c.strip() for c in text.split(",") if c.strip()],
         "class names in order, comma-separated; the last is the positive class (e.g. MSS_JPEG,MSIMUT_JPEG)"),
    Flag("group_pattern", "data.group_pattern", str,
         "regex naming a patient (group) in file names; one group in two splits is refused"),
    Flag("one_bag_per_file", "data.one_bag_per_file", bool,
         "class folders without --bag-pattern: every file is its own bag (say so: a patient's tiles split across "
         "train and test inflate the results)"),
    Flag("allow_shared_groups", "data.allow_shared_groups", bool, "accept one patient (group) in two splits"),
    Flag("preset", "model.preset", str, "model preset (see `mims presets`); default mims"),
    Flag("image_size", "data.image_size", int, "instance height and width; default 64"),
    Flag("instances", "data.instances", instance_count, "instances sampled per bag per training step, or a range "
         "MIN-MAX drawn per step, one count for the bags of a step (paper OCT: 12-18); default 8"),
    Flag("central", "data.central", int, "use only the central N instances of each volume (paper OCT: 30)"),
    Flag("cache", "data.cache", str, "where bags are kept once read, cropped and resized: auto (memory when they "
         "fit --memory-budget, else disk with --cache-dir, else read every step), memory, disk, none; default auto",
         ("auto", "memory", "disk", "none")),
    Flag("memory_budget", "data.memory_budget_gb", float, "gigabytes the cached bags may take in memory; "
         "default half the memory available"),
    Flag("cache_dir", "data.cache_dir", str, "folder of the disk cache (keyed by each file's content, size and time "
         "and the settings, shared by runs); default none"),
    Flag("batch_size", "training.batch_size", int, "bags per training step; default 4"),
    Flag("epochs", "training.epochs", int, "epochs; default 10"),
    Flag("steps_per_epoch", "training.steps_per_epoch", int, "training steps per epoch; default one pass over the bags"),
    Flag("learning_rate", "training.learning_rate", float, "head learning rate (backbone: half); default 1e-3"),
    Flag("feature_views", "training.feature_views", int, "with --freeze-backbone: the head trains on the backbone's "
         "features computed once, in this many views per training bag (the first as it is, the others augmented); "
         "0: no feature cache, the frozen backbone runs at every step; default 4"),
    Flag("checkpoint_steps", "training.checkpoint_steps", int, "save last.keras every N steps (and every epoch); default 50"),
    Flag("seed", "seed", int, "seed for initialisation, data order, sampling, augmentation; default 0"),
    Flag("precision", "precision", str, "default: mixed_float16 on a GPU, mixed_bfloat16 on CPUs with AMX, else float32",
         ("float32", "mixed_bfloat16", "mixed_float16")),
    Flag("strategy", "strategy", str, "mirrored: every device of this host; multi_worker: the hosts in TF_CONFIG; "
         "default none", ("none", "mirrored", "multi_worker")),
    Flag("sensitivity", "sensitivity", float,
         "choose the decision threshold for this validation sensitivity (e.g. 0.95); default: Youden's J"),
    Flag("deterministic", "deterministic", bool,
         "deterministic TensorFlow kernels, oneDNN off, one thread: the same result on the same machine in any "
         "process (slower; see README, Reproducibility)"),
    Flag("out", "out", str, "run folder; default runs/mims"),
    Flag("alpha", "model.backbone_kwargs.alpha", float, "MobileNet width multiplier (config: model: {backbone_kwargs: {alpha: A}})"),
)


def train_flags():
    """Every flag of `mims train`: the table above and one per documented `ModelConfig` field."""
    from mims_tf.models.config import ModelConfig
    from mims_tf.runs.config import MODEL_DEFAULTS

    def default(name):
        return f"; default {MODEL_DEFAULTS[name] or 'none'}" if name in MODEL_DEFAULTS else "; default: the preset's"

    model = tuple(
        Flag(f.name, f"model.{f.name}", f.metadata.get("type", str), f.metadata["help"] + default(f.name))
        for f in dataclasses.fields(ModelConfig) if "help" in f.metadata
    )
    return _FLAGS[:8] + model + _FLAGS[8:]


def flags_named(*dests):
    """The flags of `mims train` named `dests`, in that order (other commands share their help and parsing)."""
    flags = {flag.dest: flag for flag in train_flags()}
    return tuple(flags[dest] for dest in dests)


def add_flags(parser, flags):
    for flag in flags:
        name = f"--{flag.dest.replace('_', '-')}"
        if flag.type is bool:
            parser.add_argument(name, dest=flag.dest, action="store_const", const=True, default=None, help=flag.help)
        else:
            parser.add_argument(name, dest=flag.dest, type=flag.type, default=None, help=flag.help, choices=flag.choices)


def build_overrides(args, flags):
    """The nested config overrides of the flags that were given (`{"data": {"source": ...}, "seed": 1}`)."""
    overrides = {}
    for flag in flags:
        value = getattr(args, flag.dest)
        if value is None:
            continue
        if flag.key == "model.weights" and value == "none":
            value = None
        *path, name = flag.key.split(".")
        node = overrides
        for part in path:
            node = node.setdefault(part, {})
        node[name] = value
    return overrides
