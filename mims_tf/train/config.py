"""The configuration of a training run: a YAML file and/or command-line flags."""

import dataclasses
import difflib
import os

from mims_tf.utils import atomic_open

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("none", "mirrored", "multi_worker")


@dataclasses.dataclass
class TrainConfig:
    """Everything `mims train` needs; `config.yaml` in a run folder holds it resolved.

    Data is named by `data`: a manifest CSV, a MedMNIST-style `.npz`, a folder
    of class folders (`bag_pattern` names the bag from each file name), or
    `synthetic` (the built-in set, written into the run folder).
    """

    data: str = "synthetic"
    classes: list = None
    bag_pattern: str = None
    split_fractions: tuple = (0.7, 0.15, 0.15)
    split_seed: int = 0
    preset: str = "mims"
    backbone: str = "tiny"
    weights: str = None
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    kernels: object = "oct"
    k: int = None
    image_size: int = 64
    channels: int = 3
    central: int = None
    instances: object = 8
    normalize: object = "auto"
    augment: bool = True
    batch_size: int = 4
    epochs: int = 10
    steps_per_epoch: int = None
    learning_rate: float = 1e-3
    backbone_multiplier: float = 0.5
    seed: int = 0
    precision: str = None
    strategy: str = "none"
    checkpoint_steps: int = 50
    out: str = "runs/mims"

    @classmethod
    def keys(cls):
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values, source="config"):
        """Builds a config; an unknown key is an error naming the nearest valid key."""
        for key in values:
            if key not in cls.keys():
                close = difflib.get_close_matches(key, cls.keys(), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{source}: unknown config key {key!r}.{hint} Valid keys: {', '.join(cls.keys())}")
        config = cls(**values)
        config.validate()
        return config

    def model_overrides(self):
        """`build_model` options this config sets over the preset's (k only when given)."""
        return {} if self.k is None else {"k": self.k}

    def validate(self):
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ValueError(f"`precision` must be one of {PRECISIONS}. Received: precision={self.precision!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={self.strategy!r}")
        for key in ("image_size", "batch_size", "epochs", "checkpoint_steps", "channels", "k"):
            value = getattr(self, key)
            if key == "k" and value is None:  # the preset's own k
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{key}` must be a positive integer. Received: {key}={value!r}")
        from mims_tf.models import get_preset
        from mims_tf.models.backbones import preprocessing_mode

        get_preset(self.preset, kernels=self.kernels, **self.model_overrides()).validate()  # unknown preset / kernels / k
        preprocessing_mode(self.backbone)  # unknown backbone: "Did you mean ..."
        if isinstance(self.weights, str) and os.path.isfile(self.weights):
            self.weights = os.path.abspath(self.weights)  # config.yaml must find it from any folder (resume)
        if isinstance(self.instances, list):
            self.instances = tuple(self.instances)
        if isinstance(self.split_fractions, list):
            self.split_fractions = tuple(self.split_fractions)
        return self

    def to_dict(self):
        return dataclasses.asdict(self)

    def resolved_precision(self):
        """The precision to use: as set, else mixed_float16 on a GPU, mixed_bfloat16 on a
        CPU with AMX, float32 on other CPUs.

        Measured on this project's CPUs (AVX-512 BF16, no AMX): mixed_bfloat16 trains
        ResNet-50 about 1.4x slower than float32, and float16 convolutions about 1000x
        slower, so bfloat16 is the CPU default only where AMX tiles do the matrix work.
        """
        if self.precision:
            return self.precision
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            return "mixed_float16"
        return "mixed_bfloat16" if cpu_has_amx() else "float32"


def cpu_has_amx():
    """True where /proc/cpuinfo lists the amx_bf16 flag (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any("amx_bf16" in line for line in f if line.startswith("flags"))
    except OSError:
        return False


def load_config(path=None, overrides=None):
    """Reads a YAML config (optional) and applies `overrides` (flags that were given)."""
    import yaml

    values = {}
    if path:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: config file not found")
        try:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: a config file is a mapping of keys to values")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(values, source=path or "config")


def save_config(config, path):
    """Writes the resolved config as YAML, atomically."""
    import yaml

    values = config.to_dict()
    values["split_fractions"] = list(values["split_fractions"])
    if isinstance(values["instances"], tuple):
        values["instances"] = list(values["instances"])
    with atomic_open(path) as f:
        yaml.safe_dump(values, f, sort_keys=False)
