"""`ModelConfig.validate`: every bad option is a ValueError naming it (checked without TensorFlow)."""

import re

import pytest

from mims_tf.models import ModelConfig, get_preset

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": None}, "Received: backbone=None"),
        ({"backbone": 5}, "Received: backbone=5"),
        ({"backbone": "resnet51"}, "Unknown backbone 'resnet51'. Did you mean"),
        ({"backbone_kwargs": [1]}, "Received: backbone_kwargs=[1]"),
        ({"backbone_kwargs": 5}, "Received: backbone_kwargs=5"),
        ({"weights": 5}, "Received: weights=5"),
        ({"feature_layers": []}, "Received: feature_layers=[]"),
        ({"feature_layers": "conv4"}, "e.g. ['conv4'], not a string"),
        ({"feature_layers": ["conv4", 5]}, "Received: feature_layers=['conv4', 5]"),
        ({"image_size": 32.5}, "Received: image_size=32.5"),
        ({"image_size": (24,)}, "Received: image_size=(24,)"),
        ({"image_size": (0, 24)}, "Received: image_size=(0, 24)"),
        ({"image_size": (True, 24)}, "Received: image_size=(True, 24)"),
        ({"pyramid_scales": 2}, "Received: pyramid_scales=2"),
        ({"pyramid_scales": ["a"]}, "Received: pyramid_scales=['a']"),
        ({"pyramid_scales": [NAN]}, "Received: pyramid_scales=[nan]"),
        ({"pyramid_scales": [1.0, INF]}, "Received: pyramid_scales=[1.0, inf]"),
        ({"pyramid_scales": ()}, "Received: pyramid_scales=()"),
        ({"pyramid_scales": (1.0, 0)}, "finite positive numbers"),
        ({"scales": [INF]}, "Received: scales=[inf]"),
        ({"scales": [NAN, 1.0]}, "Received: scales=[nan, 1.0]"),
        ({"scales": 0.5}, "Received: scales=0.5"),
        ({"dilations": (1, 2.5)}, "Received: dilations=(1, 2.5)"),
        ({"kernels": [3, 5]}, "a kernel setting (crc, fundus, oct) or a non-empty dict"),
        ({"kernels": {}}, "Received: kernels={}"),
        ({"kernels": None}, "Received: kernels=None"),
        ({"kernels": {"a": 2}}, "'a': 2 is not. Received: kernels={'a': 2}"),
        ({"kernels": {2: 0}}, "2: 0 is not"),
        ({"kernels": {2: 1.5}}, "2: 1.5 is not"),
        ({"kernels": "retina"}, "Unknown kernel setting 'retina'"),
        ({"magnitude_norm": "no"}, "Received: magnitude_norm='no'"),
        ({"freeze_backbone": 1}, "Received: freeze_backbone=1"),
    ],
)
def test_bad_options_are_value_errors_naming_them(overrides, message):
    config = get_preset("mims", **{"backbone": "tiny", "weights": None, **overrides})
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()


def test_an_int_image_size_is_a_square_and_good_options_pass():
    assert ModelConfig(image_size=32).image_size == (32, 32)
    assert get_preset("mims").replace(image_size=24).image_size == (24, 24)
    assert get_preset("mims", image_size=None).image_size is None
    config = get_preset("featpyra_45", backbone="tiny", weights=None, image_size=[32, 32], feature_layers=["conv4"],
                        pyramid_scales=[0.5, 1], backbone_kwargs=None).validate()
    assert config.backbone_kwargs == {}  # `backbone_kwargs:` left empty in YAML
    assert config.image_size == [32, 32]
    # kernel sizes may come from JSON keys (strings) or as integral floats; they resolve to ints
    assert get_preset("mims", kernels={"3": 4, 2.0: 2}).validate().resolved_kernels() == {3: 4, 2: 2}
    assert get_preset("mims", kernels="crc").resolved_kernels() == {1: 20, 2: 40}
    # scales and dilations only matter to the MSConv head
    get_preset("mi_pre", backbone="tiny", weights=None, scales=[INF]).validate()
