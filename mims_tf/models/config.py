"""Model configuration and the named presets of the paper's Table 1 and Table 2."""

import dataclasses
import math
import numbers
from collections.abc import Mapping

from mims_tf.models.catalog import check_backbone_name, check_feature_layers, check_weights_type
from mims_tf.utils import check_bool, check_choice, check_int_in, did_you_mean, is_int_in

# Supplement A: MSConv kernels per dataset, {kernel_size: filters}.
KERNEL_SETTINGS = {
    "oct": {2: 8, 3: 10},
    "fundus": {2: 10, 3: 10},
    "crc": {1: 20, 2: 40},
}
HEADS = ("none", "msconv")
# Every layer after the backbone is named with this prefix; the optimizer's
# per-variable learning rate tells head from backbone by it.
HEAD_PREFIX = "head_"
POOLINGS = ("topk", "mean", "max", "attention", "gated_attention", "instance_mean", "instance_max")
PAPER_SCALES = (0.5, 0.75, 1.0)


def weights_text(text):
    """The `weights` a text names: `"none"` (any case) is None (from scratch); anything else as written."""
    return None if text.strip().lower() == "none" else text


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything `build_model` needs. Presets are named instances of this.

    A field with a `help` in its metadata is also a command-line option of `mims train` (its
    `type` there is `str` unless the metadata names another), so a new model option is one edit.

    Attributes:
        name: model name.
        backbone: `keras.applications` name, `"resnet34"` or `"tiny"`.
        weights: None, `"imagenet"` or a path to a weights file.
        freeze_backbone: keep the backbone as loaded (its weights and its batch-norm statistics, which
            then run in inference mode); only the head and classifier train.
        backbone_kwargs: extra constructor arguments (e.g. `{"alpha": 0.25}`).
        feature_layers: None (last feature map) or layer names / `"conv4"`,
            `"conv5"`; with several, each gets its own head and pooling and the
            pooled vectors are concatenated (FeatPyra).
        image_size: `(H, W)` (an int `n` means `(n, n)`), or None for dynamic height and width.
        channels: input channels (3 for ImageNet backbones).
        pyramid_scales: input image pyramid; the backbone is shared across levels.
        head: `"none"` (pool backbone features) or `"msconv"`.
        kernels: MSConv `{kernel_size: filters}` or a name in `KERNEL_SETTINGS`.
        scales: MSConv resize factors.
        dilations: MSConv dilations instead of resizing (Trident), or None.
        magnitude_norm: MagnitudeNorm after MSConv.
        pooling: one of `POOLINGS`; `instance_*` classify each instance first.
        k: top-k size.
        attention_units: hidden size of attention pooling.
        classes: number of classes (softmax output).
    """

    name: str = "mims"
    backbone: str = dataclasses.field(default="resnet101", metadata={
        "help": "backbone: a keras.applications name, resnet34 or tiny"})
    weights: object = dataclasses.field(default="imagenet", metadata={
        "help": "backbone weights: imagenet, a .h5 path, or none (from scratch)", "type": weights_text})
    freeze_backbone: bool = dataclasses.field(default=False, metadata={
        "help": "freeze the backbone's weights and batch-norm statistics (pretrained weights needed): only "
                "the head trains", "type": bool})
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    feature_layers: tuple = None
    image_size: tuple = None
    channels: int = 3
    pyramid_scales: tuple = (1.0,)
    head: str = "msconv"
    kernels: object = dataclasses.field(default="oct", metadata={
        "help": "MSConv kernels: oct, fundus or crc (supplement A)"})
    scales: tuple = PAPER_SCALES
    dilations: tuple = None
    magnitude_norm: bool = True
    pooling: str = "topk"
    k: int = dataclasses.field(default=5, metadata={"help": "top-k size", "type": int})
    attention_units: int = 64
    classes: int = 2

    def __post_init__(self):
        if _is_int(self.image_size):  # a square, as `mims train --image-size` and the data config take it
            object.__setattr__(self, "image_size", (self.image_size, self.image_size))
        if self.backbone_kwargs is None:  # `backbone_kwargs:` left empty in a YAML file
            object.__setattr__(self, "backbone_kwargs", {})

    def replace(self, **overrides):
        """Returns a copy with `overrides`; unknown keys name the nearest valid one."""
        fields = [f.name for f in dataclasses.fields(self)]
        for key, value in overrides.items():
            if key not in fields:
                raise ValueError(
                    f"Unknown model option {key!r}.{did_you_mean(key, fields)} Valid: {', '.join(fields)}. "
                    f"Received: {key}={value!r}"
                )
        return dataclasses.replace(self, **overrides)

    def resolved_kernels(self):
        """Returns the MSConv kernels as a dict `{kernel_size: filters}` of ints; raises ValueError on bad ones."""
        if isinstance(self.kernels, str):
            if self.kernels not in KERNEL_SETTINGS:
                raise ValueError(
                    f"Unknown kernel setting {self.kernels!r}; use one of "
                    f"{sorted(KERNEL_SETTINGS)} or a dict {{kernel_size: filters}}. "
                    f"Received: kernels={self.kernels!r}"
                )
            return dict(KERNEL_SETTINGS[self.kernels])
        if not isinstance(self.kernels, Mapping) or not self.kernels:
            raise ValueError(
                f"`kernels` must be a kernel setting ({', '.join(sorted(KERNEL_SETTINGS))}) or a non-empty dict "
                f"{{kernel_size: filters}}, e.g. {{2: 8, 3: 10}}. Received: kernels={self.kernels!r}"
            )
        resolved = {}
        for size, filters in self.kernels.items():
            size_i, filters_i = _as_int(size), _as_int(filters)
            if not (is_int_in(size_i) and is_int_in(filters_i)):
                raise ValueError(
                    f"`kernels` maps kernel sizes to numbers of filters, both positive integers; {size!r}: "
                    f"{filters!r} is not. Received: kernels={self.kernels!r}"
                )
            resolved[size_i] = filters_i
        return resolved

    def validate(self):
        """Raises ValueError naming the first bad option."""
        check_choice("head", self.head, HEADS)
        check_choice("pooling", self.pooling, POOLINGS)
        for key in ("k", "classes", "channels", "attention_units"):
            check_int_in(key, getattr(self, key))
        if self.classes < 2:
            raise ValueError(f"`classes` must be at least 2 (softmax). Received: classes={self.classes}")
        if self.image_size is not None and not (
            isinstance(self.image_size, (list, tuple)) and len(self.image_size) == 2
            and all(_is_int(v) and v >= 1 for v in self.image_size)
        ):
            raise ValueError(
                f"`image_size` must be None, a positive integer or (height, width). "
                f"Received: image_size={self.image_size!r}"
            )
        check_backbone_name(self.backbone)
        check_weights_type(self.weights)
        if not isinstance(self.backbone_kwargs, Mapping) or not all(isinstance(k, str) for k in self.backbone_kwargs):
            raise ValueError(f"`backbone_kwargs` must be a dict of constructor arguments, e.g. {{'alpha': 0.25}} "
                             f"({{}} for none). Received: backbone_kwargs={self.backbone_kwargs!r}")
        check_feature_layers(self.feature_layers)
        check_bool("freeze_backbone", self.freeze_backbone)
        check_bool("magnitude_norm", self.magnitude_norm)
        _check_positive_numbers("pyramid_scales", self.pyramid_scales)
        if self.head == "msconv":
            self.resolved_kernels()
            _check_positive_numbers("scales", self.scales)
            if self.dilations is not None:
                _check_positive_numbers("dilations", self.dilations, integers=True)
        if self.freeze_backbone and self.weights is None:
            scratch = " (it is trained from scratch by definition)" if self.name == "resnet34_scratch" else ""
            raise ValueError(f"Model {self.name!r} cannot freeze its backbone{scratch}: a frozen backbone keeps its "
                             "weights as loaded, and weights=None leaves them random: give pretrained weights "
                             "('imagenet' or a file) or train the backbone. "
                             "Received: freeze_backbone=True, weights=None")
        return self

    def to_dict(self):
        """Returns a JSON-friendly dict."""
        return dataclasses.asdict(self)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_int(value):
    """`value` as an int where it is a whole number (`3`, `3.0`, `"3"` from JSON keys), else `value` itself."""
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def _check_positive_numbers(name, values, integers=False):
    """Raises ValueError unless `values` is a non-empty list or tuple of finite positive numbers (or integers)."""
    ok = isinstance(values, (list, tuple)) and len(values) > 0 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        and (not integers or v == int(v)) for v in values
    )
    if not ok:
        kind = "positive integers" if integers else "finite positive numbers"
        raise ValueError(f"`{name}` must be a non-empty list of {kind}. Received: {name}={values!r}")


_MSCONV_SINGLE = {"head": "msconv", "scales": (1.0,)}


def _preset(paper_name, tables=(), **config):
    """A preset as data: its `ModelConfig` overrides and metadata (keras-hub style)."""
    return {"metadata": {"paper_name": paper_name, "tables": tuple(tables)}, "config": config}


# name -> preset; Table 1's rows in the paper's order, then Table 2's, then extras. The defaults are MIMS.
PRESETS = {
    "mi_pre": _preset("MI-Pre", ["table1"], head="none"),
    "pyramid_mi_pre": _preset("Pyramid MI-Pre", ["table1"], head="none", pyramid_scales=PAPER_SCALES),
    "mi_pre_conv": _preset("MI-Pre-Conv", ["table1"], **_MSCONV_SINGLE, magnitude_norm=False),
    "mims_noresizing": _preset("MIMS-NoResizing", ["table1"], **_MSCONV_SINGLE),
    "pyramid_mims": _preset("Pyramid MIMS", ["table1"], **_MSCONV_SINGLE, pyramid_scales=PAPER_SCALES),
    "mi_pre_trident": _preset(
        "MI-Pre-Trident", ["table1"], **_MSCONV_SINGLE, dilations=(1, 2, 3), magnitude_norm=False
    ),
    "si_cnn": _preset("SI-CNN", ["table1"], magnitude_norm=False),
    "featpyra_45": _preset(
        "FeatPyra-4,5", ["table1"], **_MSCONV_SINGLE, magnitude_norm=False, feature_layers=("conv4", "conv5")
    ),
    "resnet34_scratch": _preset("ResNet34-scratch", ["table1"], backbone="resnet34", weights=None, head="none"),
    "mims": _preset("MIMS", ["table1"]),
    "mims_patchcls": _preset("MIMS-patchcls", ["table1"], pooling="instance_mean"),
    "mi_pre_conv_patchcls": _preset(
        "MI-Pre-Conv-patchcls", ["table1"], **_MSCONV_SINGLE, magnitude_norm=False, pooling="instance_mean"
    ),
    "mims_mean": _preset("mean", ["table2"], pooling="mean"),
    "mims_max": _preset("max", ["table2"], pooling="max"),
    "mims_maxinst": _preset("max-inst", ["table2"], pooling="instance_max"),
    "mims_top2": _preset("k = 2", ["table2"], k=2),
    "mims_top3": _preset("k = 3", ["table2"], k=3),
    "mims_top4": _preset("k = 4", ["table2"], k=4),
    "mims_top5": _preset("k = 5", ["table2"], k=5),
    "mims_attention": _preset("MIMS + attention MIL (not in the paper)", pooling="attention"),
    "mims_gated_attention": _preset("MIMS + gated attention MIL (not in the paper)", pooling="gated_attention"),
}


def presets_in_table(table):
    """The presets that are rows of the paper's `table` (`"table1"`, `"table2"`), in the paper's order."""
    return tuple(name for name, preset in PRESETS.items() if table in preset["metadata"]["tables"])


def paper_name(preset):
    """The paper's name for a preset (`"mi_pre"` -> `"MI-Pre"`)."""
    return PRESETS[preset]["metadata"]["paper_name"]


def list_presets():
    """Returns the names of every preset (Table 1, Table 2, then extras)."""
    return list(PRESETS)


def get_preset(name, **overrides):
    """Returns the `ModelConfig` of a preset, with optional overrides."""
    check_choice("preset", name, list(PRESETS))
    return ModelConfig(name=name, **PRESETS[name]["config"]).replace(**overrides)
