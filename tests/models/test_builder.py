import re

import numpy as np
import pytest

from mims_tf.models import KERNEL_SETTINGS, build_model, get_preset

TINY = dict(backbone="tiny", weights=None)


def _bags(b, s, h, w, c=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(b, s, h, w, c)).astype("float32")


@pytest.mark.parametrize("setting", sorted(KERNEL_SETTINGS))
def test_paper_kernel_settings_are_selectable(setting):
    model = build_model("mims", kernels=setting, image_size=(24, 24), **TINY)
    assert model.get_layer("head_ms_conv").kernels == KERNEL_SETTINGS[setting]
    assert model.get_layer("head_ms_conv").scales == (0.5, 0.75, 1.0)
    custom = build_model("mims", kernels={3: 4, 5: 2}, image_size=(24, 24), **TINY)
    assert custom.get_layer("head_ms_conv").filters == 6


def test_instances_and_image_size_are_dynamic():
    model = build_model("mims", **TINY)
    assert model.input_shape == (None, None, None, None, 3)
    for shape in [(1, 2, 24, 24), (2, 5, 24, 24), (1, 3, 32, 40)]:
        assert model.predict(_bags(*shape), verbose=0).shape == (shape[0], 2)


def test_a_bag_does_not_depend_on_its_batch_neighbours():
    model = build_model("mims", image_size=(24, 24), **TINY)
    bags = _bags(3, 4, 24, 24)
    together = model.predict(bags, verbose=0)
    alone = model.predict(bags[1:2], verbose=0)
    np.testing.assert_allclose(together[1:2], alone, rtol=1e-5, atol=1e-6)


def test_uint8_bags_give_the_float32_bags_results_and_train():
    """uint8 bags (4x fewer bytes to copy to a GPU) are cast on the device, inside the model."""
    model = build_model("mims", image_size=(24, 24), **TINY)
    bags = np.random.default_rng(0).integers(0, 256, size=(2, 3, 24, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.predict(bags, verbose=0), model.predict(bags.astype("float32"), verbose=0))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(bags, np.array([0, 1]), batch_size=1, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_head_layers_carry_the_head_prefix_and_backbone_is_nested():
    model = build_model("featpyra_45", image_size=(24, 24), **TINY)
    names = [layer.name for layer in model.layers]
    assert "backbone" in names
    head_vars = [v.path for v in model.trainable_variables if v.path.startswith("head_")]
    assert {"head_ms_conv_0", "head_ms_conv_1", "head_pooling_0", "head_pooling_1"} <= set(names)
    assert len(head_vars) == 2 * 4 + 2 * 1 + 2  # 2 levels x (2 kernels + 2 biases), 2 top-k, classifier


def test_presets_follow_the_design_table():
    assert get_preset("mims").scales == (0.5, 0.75, 1.0) and get_preset("mims").magnitude_norm
    assert get_preset("si_cnn").magnitude_norm is False
    assert get_preset("mi_pre_trident").dilations == (1, 2, 3)
    assert get_preset("pyramid_mi_pre").pyramid_scales == (0.5, 0.75, 1.0)
    assert get_preset("resnet34_scratch").backbone == "resnet34"
    assert get_preset("resnet34_scratch").weights is None
    assert get_preset("mims_top3").k == 3
    assert get_preset("mims", classes=4).classes == 4


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("mims_topp5",), {}, "Unknown preset 'mims_topp5'. Did you mean 'mims_top5'?"),
        (("mims",), {"kernel": {2: 3}}, "Unknown model option 'kernel'. Did you mean 'kernels'?"),
        (("mims",), {"pooling": "topK"}, "Unknown pooling 'topK'. Did you mean 'topk'?"),
        (("mims",), {"kernels": "retina"}, "Unknown kernel setting 'retina'"),
        (("mims",), {"k": 0}, "Received: k=0"),
        (("mims",), {"classes": 1}, "Received: classes=1"),
        (("mims",), {"image_size": (24,)}, "Received: image_size=(24,)"),
        (("mims",), {"backbone": "resnet51"}, "Unknown backbone 'resnet51'. Did you mean"),
        (("mi_pre_conv_patchcls",), {"image_size": (16, 16)}, "needs at least k=5 elements"),
        (("mims",), {"backbone": "resnet50", "channels": 1, "weights": None}, "needs RGB input"),
        # wrong types: a ValueError naming the option, not a TypeError / AttributeError / IndexError from inside
        (("mims",), {"backbone": None}, "Received: backbone=None"),
        (("mims",), {"backbone_kwargs": [1]}, "Received: backbone_kwargs=[1]"),
        (("mims",), {"weights": 5}, "Received: weights=5"),
        (("mims",), {"feature_layers": []}, "Received: feature_layers=[]"),
        (("mims",), {"feature_layers": "conv4"}, "Received: feature_layers='conv4'"),
        (("pyramid_mims",), {"pyramid_scales": [float("nan")]}, "Received: pyramid_scales=[nan]"),
        (("mims",), {"scales": [float("inf")]}, "Received: scales=[inf]"),
        (("mims",), {"kernels": [3, 5]}, "Received: kernels=[3, 5]"),
        (("mims",), {"kernels": {"a": 2}}, "Received: kernels={'a': 2}"),
    ],
)
def test_bad_arguments_are_clear_errors(args, kwargs, message):
    kw = {**TINY, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        build_model(*args, **kw)


def test_an_int_image_size_is_a_square():
    model = build_model("mims", image_size=24, **TINY)
    assert model.input_shape == (None, None, 24, 24, 3)


def test_k_larger_than_the_bag_is_a_clear_error_at_call_time():
    model = build_model("mims", k=200, image_size=(24, 24), **TINY)
    with pytest.raises(ValueError, match="needs at least k=200 elements"):
        model(_bags(1, 2, 24, 24))


def test_a_frozen_backbone_keeps_weights_and_batch_norm_statistics_while_the_head_trains(tmp_path):
    import keras

    trained = build_model("mims", image_size=(24, 24), **TINY)
    weights = str(tmp_path / "tiny.weights.h5")
    trained.get_layer("backbone").save_weights(weights)
    model = build_model("mims", image_size=(24, 24), backbone="tiny", weights=weights, freeze_backbone=True)
    backbone = model.get_layer("backbone")
    assert not backbone.trainable and backbone.trainable_weights == [] and len(model.trainable_weights) > 0
    before = {w.path: np.array(w) for w in backbone.weights}  # kernels and batch-norm moving statistics
    head_before = [np.array(w) for w in model.trainable_weights]
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(_bags(4, 3, 24, 24), np.array([0, 1, 0, 1]), batch_size=2, epochs=1, verbose=0)
    assert all(np.array_equal(before[w.path], np.array(w)) for w in backbone.weights)
    assert any(not np.array_equal(a, np.array(b)) for a, b in zip(head_before, model.trainable_weights))
    model.save(tmp_path / "frozen.keras")
    assert not keras.saving.load_model(tmp_path / "frozen.keras").get_layer("backbone").trainable


def test_a_frozen_random_backbone_is_refused():
    with pytest.raises(ValueError, match="weights=None leaves them random"):
        build_model("mims", freeze_backbone=True, **TINY)


@pytest.mark.parametrize("preset", ["mims", "pyramid_mims", "featpyra_45", "mims_patchcls", "mi_pre_trident",
                                    "mims_gated_attention", "mi_pre"])
def test_split_model_halves_share_the_models_layers_and_give_its_output(preset, tmp_path):
    import keras

    from mims_tf.models import split_model

    config = get_preset(preset, image_size=(32, 32), kernels="crc", **TINY)
    model = build_model(config)
    extractor, head = split_model(model, config)
    bags = _bags(2, 5, 32, 32)
    maps = extractor.predict(bags, verbose=0)
    maps = maps if isinstance(maps, list) else [maps]
    assert all(m.shape[:2] == (2, 5) for m in maps)  # one map per (feature layer, pyramid level), unfolded
    assert len(maps) == len(config.pyramid_scales) * len(config.feature_layers or [None])
    np.testing.assert_allclose(head.predict(maps, verbose=0), model.predict(bags, verbose=0), atol=1e-6)
    model.get_layer("backbone").trainable = False  # the head's variables are the frozen model's, in its order
    assert [id(v) for v in head.trainable_variables] == [id(v) for v in model.trainable_variables]
    model.save(tmp_path / "m.keras")  # a split model still saves and reloads as itself
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(bags, verbose=0), model.predict(bags, verbose=0), atol=1e-6)


def test_the_builder_makes_a_pooling_layer_for_every_pooling_the_config_accepts():
    from mims_tf.models.builder import POOLING_LAYERS
    from mims_tf.models.config import POOLINGS

    assert set(POOLING_LAYERS) == set(POOLINGS)
