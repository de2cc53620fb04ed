import os
import re
import time
import urllib.error

import h5py
import keras
import numpy as np
import pytest

from mims_tf.models import backbone_names, build_backbone, build_model
from mims_tf.models.backbones import preprocessing_mode, resnet34, resolve_feature_layers
from tests.conftest import SHARED

MOBILENET_H5 = os.path.join(SHARED, "weights", "mobilenet_2_5_224_tf_no_top.h5")


def test_resnet34_has_the_reference_parameter_count():
    model = resnet34((64, 64, 3))
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    # torchvision's resnet34 has 21,797,672 parameters, 513,000 of them in the fc layer.
    assert trainable == 21_797_672 - 513_000
    assert model.output.shape == (None, 2, 2, 512)
    assert resolve_feature_layers(model, ["conv4", "conv5"]) == ["conv4_block6_out", "conv5_block3_out"]


def test_feature_layer_aliases_resolve_for_keras_resnets():
    backbone = build_backbone("resnet50", weights=None, image_size=(64, 64), feature_layers=("conv4", "conv5"))
    assert [tuple(o.shape) for o in backbone.outputs] == [(None, 4, 4, 1024), (None, 2, 2, 2048)]
    assert backbone.name == "backbone"


def test_backbone_names_are_forgiving_and_unknown_ones_suggest():
    assert "resnet101" in backbone_names() and "resnet34" in backbone_names()
    assert preprocessing_mode("ResNet50") == preprocessing_mode("resnet_50") == "caffe"
    assert preprocessing_mode("mobilenet_v2") == "tf"
    with pytest.raises(ValueError, match="Unknown backbone 'resnet5'. Did you mean"):
        build_backbone("resnet5")


def test_unknown_feature_layer_is_named():
    with pytest.raises(ValueError, match="has no layer 'conv9'"):
        build_backbone("tiny", feature_layers=("conv9",))
    with pytest.raises(ValueError, match="has no layer 'conv6'"):
        build_backbone("mobilenet", weights=None, feature_layers=("conv6",), alpha=0.25)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((None,), {}, "Received: backbone=None"),
        (("tiny",), {"weights": 5}, "Received: weights=5"),
        (("tiny",), {"feature_layers": []}, "Received: feature_layers=[]"),
        (("tiny",), {"feature_layers": "conv4"}, "e.g. ['conv4'], not a string"),
    ],
)
def test_bad_argument_types_are_value_errors_naming_them(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_backbone(*args, **kwargs)


def test_catalog_and_feature_layer_checks_refuse_bad_types():
    with pytest.raises(ValueError, match=re.escape("Received: backbone=None")):
        preprocessing_mode(None)
    with pytest.raises(ValueError, match=re.escape("Received: feature_layers='conv4'")):
        resolve_feature_layers(build_backbone("tiny"), "conv4")


def test_constructor_arguments_a_backbone_does_not_take_are_refused():
    # a width multiplier given to a net without one was silently dropped for the nets built here
    with pytest.raises(ValueError, match=r"'tiny' backbone \(built here\) takes no extra arguments.*'alpha': 0.5"):
        build_backbone("tiny", alpha=0.5)
    with pytest.raises(ValueError, match=r"Backbone ResNet50 takes no argument alpha"):
        build_backbone("resnet50", weights=None, alpha=0.5)
    assert build_backbone("mobilenet", weights=None, alpha=0.5, image_size=(32, 32)).count_params() > 0


def test_conv4_conv5_are_the_last_layers_at_stride_16_and_32_in_other_nets():
    model = keras.applications.MobileNet(include_top=False, weights=None, alpha=0.25, input_shape=(None, None, 3))
    assert resolve_feature_layers(model, ["conv4", "conv5"]) == ["conv_pw_11_relu", "conv_pw_13_relu"]
    for size in (None, (96, 96)):
        backbone = build_backbone("mobilenet", weights=None, feature_layers=("conv4", "conv5"), image_size=size,
                                  alpha=0.25)
        assert [tuple(o.shape[1:3]) for o in backbone(np.zeros((1, 96, 96, 3)))] == [(6, 6), (3, 3)]
    # 112 px is no multiple of 32: MobileNet's padded strides round down (7 -> 3), "same" ones would round up
    backbone = build_backbone("mobilenet", weights=None, feature_layers=("conv4", "conv5"), image_size=(112, 112),
                              alpha=0.25)
    assert [tuple(o.shape[1:3]) for o in backbone(np.zeros((1, 112, 112, 3)))] == [(7, 7), (3, 3)]
    resnet = build_backbone("resnet50", weights=None, feature_layers=("conv4", "conv5"), image_size=(112, 112))
    assert [tuple(o.shape[1:3]) for o in resnet(np.zeros((1, 112, 112, 3)))] == [(7, 7), (4, 4)]


def test_local_h5_weights_load_into_a_keras_application():
    backbone = build_backbone("mobilenet", weights=MOBILENET_H5, image_size=(96, 96), alpha=0.25)
    with h5py.File(MOBILENET_H5, "r") as f:
        stored = []
        f["conv1"].visititems(lambda name, obj: stored.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    kernel = keras.ops.convert_to_numpy(backbone.get_layer("conv1").kernel)
    assert any(s.shape == kernel.shape and np.array_equal(s, kernel) for s in stored)
    model = build_model(
        "mims", backbone="mobilenet", weights=MOBILENET_H5, backbone_kwargs={"alpha": 0.25},
        kernels="crc", image_size=(64, 64),
    )
    probs = model.predict(np.full((1, 2, 64, 64, 3), 128.0, "float32"), verbose=0)
    assert probs.shape == (1, 2)


def test_missing_or_mismatched_weights_files_are_clear_errors(tmp_path):
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(ValueError, match=re.escape(f"Weights file not found: {missing}")):
        build_backbone("resnet50", weights=missing)
    with pytest.raises(ValueError, match="does not fit backbone resnet34"):
        build_backbone("resnet34", weights=MOBILENET_H5)
    with pytest.raises(ValueError, match="does not fit backbone MobileNet"):
        build_backbone("mobilenet", weights=MOBILENET_H5, alpha=0.5)
    with pytest.raises(ValueError, match="No ImageNet weights exist for the 'tiny' backbone"):
        build_backbone("tiny", weights="imagenet")


def test_imagenet_without_network_fails_fast_with_where_to_put_the_file(monkeypatch, tmp_path):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    start = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        build_backbone("mobilenet", weights="imagenet", alpha=0.25)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "mobilenet_2_5_224_tf_no_top.h5" in message
    assert "Keras cache" in message and "weights='/path/to/weights.h5'" in message


def test_a_weights_file_of_another_network_is_one_line_without_warnings(tmp_path, recwarn):
    path = str(tmp_path / "mobilenet.weights.h5")
    other = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.25)
    other.save_weights(path)
    with pytest.raises(ValueError, match="does not fit backbone ResNet50"):
        build_backbone("resnet50", weights=path, image_size=(32, 32))
    assert not [w for w in recwarn if "Skipping" in str(w.message) or "could not be loaded" in str(w.message)]
