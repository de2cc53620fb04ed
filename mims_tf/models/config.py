"""Model configuration and the named presets of the paper's Table 1 and Table 2."""

import dataclasses
import difflib

# Supplement A: MSConv kernels per dataset, {kernel_size: filters}.
KERNEL_SETTINGS = {
    "oct": {2: 8, 3: 10},
    "fundus": {2: 10, 3: 10},
    "crc": {1: 20, 2: 40},
}
HEADS = ("none", "msconv")
POOLINGS = ("topk", "mean", "max", "attention", "gated_attention", "instance_mean", "instance_max")
PAPER_SCALES = (0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything `build_model` needs. Presets are named instances of this.

    Attributes:
        name: model name.
        backbone: `keras.applications` name, `"resnet34"` or `"tiny"`.
        weights: None, `"imagenet"` or a path to a weights file.
        backbone_kwargs: extra constructor arguments (e.g. `{"alpha": 0.25}`).
        feature_layers: None (last feature map) or layer names / `"conv4"`,
            `"conv5"`; with several, each gets its own head and pooling and the
            pooled vectors are concatenated (FeatPyra).
        image_size: `(H, W)`, or None for dynamic height and width.
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
    backbone: str = "resnet101"
    weights: object = "imagenet"
    backbone_kwargs: dict = dataclasses.field(default_factory=dict)
    feature_layers: tuple = None
    image_size: tuple = None
    channels: int = 3
    pyramid_scales: tuple = (1.0,)
    head: str = "msconv"
    kernels: object = "oct"
    scales: tuple = PAPER_SCALES
    dilations: tuple = None
    magnitude_norm: bool = True
    pooling: str = "topk"
    k: int = 5
    attention_units: int = 64
    classes: int = 2

    def replace(self, **overrides):
        """Returns a copy with `overrides`; unknown keys name the nearest valid one."""
        fields = [f.name for f in dataclasses.fields(self)]
        for key in overrides:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"Unknown model option {key!r}.{hint} Valid: {', '.join(fields)}. "
                    f"Received: {key}={overrides[key]!r}"
                )
        return dataclasses.replace(self, **overrides)

    def resolved_kernels(self):
        """Returns the MSConv kernels as a dict."""
        if isinstance(self.kernels, str):
            if self.kernels not in KERNEL_SETTINGS:
                raise ValueError(
                    f"Unknown kernel setting {self.kernels!r}; use one of "
                    f"{sorted(KERNEL_SETTINGS)} or a dict {{kernel_size: filters}}. "
                    f"Received: kernels={self.kernels!r}"
                )
            return dict(KERNEL_SETTINGS[self.kernels])
        return dict(self.kernels)

    def validate(self):
        """Raises ValueError naming the first bad option."""
        _choice("head", self.head, HEADS)
        _choice("pooling", self.pooling, POOLINGS)
        for key in ("k", "classes", "channels", "attention_units"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{key}` must be a positive integer. Received: {key}={value!r}")
        if self.classes < 2:
            raise ValueError(f"`classes` must be at least 2 (softmax). Received: classes={self.classes}")
        if self.image_size is not None and (
            len(tuple(self.image_size)) != 2 or any(not isinstance(v, int) or v < 1 for v in self.image_size)
        ):
            raise ValueError(
                f"`image_size` must be None or (height, width). Received: image_size={self.image_size!r}"
            )
        if not self.pyramid_scales or any(s <= 0 for s in self.pyramid_scales):
            raise ValueError(
                f"`pyramid_scales` must be positive numbers. Received: pyramid_scales={self.pyramid_scales!r}"
            )
        if self.head == "msconv":
            self.resolved_kernels()
        return self

    def to_dict(self):
        """Returns a JSON-friendly dict."""
        return dataclasses.asdict(self)


def _choice(key, value, valid):
    if value not in valid:
        close = difflib.get_close_matches(str(value), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown {key} {value!r}.{hint} Valid: {', '.join(valid)}. Received: {key}={value!r}")


_MIMS = {}  # the defaults are MIMS
_MSCONV_SINGLE = {"head": "msconv", "scales": (1.0,)}

# name -> (the paper's name for it, overrides of the defaults)
PRESETS = {
    "mims": ("MIMS", _MIMS),
    "mi_pre": ("MI-Pre", {"head": "none"}),
    "pyramid_mi_pre": ("Pyramid MI-Pre", {"head": "none", "pyramid_scales": PAPER_SCALES}),
    "mi_pre_conv": ("MI-Pre-Conv", {**_MSCONV_SINGLE, "magnitude_norm": False}),
    "mims_noresizing": ("MIMS-NoResizing", _MSCONV_SINGLE),
    "pyramid_mims": ("Pyramid MIMS", {**_MSCONV_SINGLE, "pyramid_scales": PAPER_SCALES}),
    "mi_pre_trident": (
        "MI-Pre-Trident",
        {**_MSCONV_SINGLE, "dilations": (1, 2, 3), "magnitude_norm": False},
    ),
    "si_cnn": ("SI-CNN", {"magnitude_norm": False}),
    "featpyra_45": (
        "FeatPyra-4,5",
        {**_MSCONV_SINGLE, "magnitude_norm": False, "feature_layers": ("conv4", "conv5")},
    ),
    "resnet34_scratch": ("ResNet34-scratch", {"backbone": "resnet34", "weights": None, "head": "none"}),
    "mims_patchcls": ("MIMS-patchcls", {"pooling": "instance_mean"}),
    "mi_pre_conv_patchcls": (
        "MI-Pre-Conv-patchcls",
        {**_MSCONV_SINGLE, "magnitude_norm": False, "pooling": "instance_mean"},
    ),
    "mims_mean": ("mean", {"pooling": "mean"}),
    "mims_max": ("max", {"pooling": "max"}),
    "mims_maxinst": ("max-inst", {"pooling": "instance_max"}),
    "mims_top2": ("k = 2", {"k": 2}),
    "mims_top3": ("k = 3", {"k": 3}),
    "mims_top4": ("k = 4", {"k": 4}),
    "mims_top5": ("k = 5", {"k": 5}),
    "mims_attention": ("MIMS + attention MIL (not in the paper)", {"pooling": "attention"}),
    "mims_gated_attention": (
        "MIMS + gated attention MIL (not in the paper)",
        {"pooling": "gated_attention"},
    ),
}
TABLE1 = (
    "mi_pre", "pyramid_mi_pre", "mi_pre_conv", "mims_noresizing", "pyramid_mims", "mi_pre_trident",
    "si_cnn", "featpyra_45", "resnet34_scratch", "mims", "mims_patchcls", "mi_pre_conv_patchcls",
)
TABLE2 = ("mims_mean", "mims_max", "mims_maxinst", "mims_top2", "mims_top3", "mims_top4", "mims_top5")


def list_presets():
    """Returns the names of every preset (Table 1, Table 2, then extras)."""
    return list(PRESETS)


def get_preset(name, **overrides):
    """Returns the `ModelConfig` of a preset, with optional overrides."""
    if name not in PRESETS:
        close = difflib.get_close_matches(str(name), list(PRESETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}.{hint} Valid: {', '.join(PRESETS)}. Received: preset={name!r}")
    return ModelConfig(name=name, **PRESETS[name][1]).replace(**overrides)
