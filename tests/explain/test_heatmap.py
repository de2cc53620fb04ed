import numpy as np
import pytest

from mims_tf.explain.heatmap import (
    COLORMAP,
    DEFAULT_METHOD,
    contributions,
    explain_bag,
    feature_layers,
    heatmaps,
    overlay,
)
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mims_tf.data.synthetic import write_dataset
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import train
    from mims_tf.runs.folder import RunFolder

    folder = tmp_path_factory.mktemp("explain")
    path = write_dataset(folder / "data", seed=0, instances=16, size=64, contrast=0.25, lesion_size=(6, 12))
    train(RunConfig.from_dict(dict(data=path, out=str(folder / "run"), epochs=15, batch_size=8, learning_rate=3e-3)),
          verbose=0)
    model, _, _ = RunFolder(str(folder / "run")).load()
    return model, np.load(path)


def _bag(volume):
    return np.repeat(volume[None, ..., None].astype(np.float32), 3, axis=-1)


def peak_in_lesion_rate(model, data, layer, method=None):
    from scipy.ndimage import binary_dilation

    images, labels, masks = data["test_images"], data["test_labels"][:, 0], data["test_masks"]
    hits = []
    for i in np.flatnonzero(labels):
        t, _ = contributions(model, _bag(images[i]), layer, method=method)
        top = int(np.argmax(np.maximum(t, 0).sum(axis=(1, 2))))
        heat = heatmaps(t, images.shape[2:4])[top]
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        hits.append(bool(binary_dilation(masks[i, top], iterations=4)[y, x]))
    return float(np.mean(hits)), len(hits)


@pytest.mark.slow
def test_heatmap_peaks_fall_inside_planted_lesions_in_most_positive_bags(trained):
    model, data = trained
    assert DEFAULT_METHOD == "smoothgrad"
    rate, bags = peak_in_lesion_rate(model, data, "backbone")  # the default method, SmoothGrad
    print(f"peak in lesion (within 4 px): {rate:.2f} of {bags} positive bags")
    assert bags == 16 and rate >= 0.6


@pytest.mark.slow
def test_explain_writes_ranked_overlays_and_an_index(trained, tmp_path):
    model, data = trained
    i = int(np.flatnonzero(data["test_labels"][:, 0])[0])
    written = explain_bag(model, _bag(data["test_images"][i]), str(tmp_path), slices=3, name="bag")
    assert len(written) == 3 and written[0][1] >= written[1][1] >= written[2][1]
    index = (tmp_path / "index.md").read_text()
    assert all(f"bag_slice{s:03d}.png" in index for s, _, _ in written)
    from PIL import Image

    height, width = np.asarray(Image.open(written[0][2])).shape[:2]
    assert height >= 256 and width >= 512  # the slice beside its overlay, each at least 256 px
    titled = explain_bag(model, _bag(data["test_images"][i]), str(tmp_path / "t"), slices=1, name="bag",
                         prediction="predicted: 1 (P(1) = 0.9000, threshold 0.4000)", class_name="lesion")
    index = (tmp_path / "t" / "index.md").read_text()
    assert index.startswith("# bag: predicted: 1 (P(1) = 0.9000, threshold 0.4000)")
    assert "Explained: class lesion" in index
    assert len(titled) == 1


def test_overlay_blends_a_green_cyan_colour_map_by_value():
    from mims_tf.explain.heatmap import colour_map

    assert COLORMAP == "greens"
    image = np.full((4, 4), 100.0)
    np.testing.assert_array_equal(overlay(image, np.zeros((4, 4), np.uint8)), np.full((4, 4, 3), 100))  # no evidence
    expected = 0.3 * 100 + 0.7 * np.array(colour_map()(1.0)[:3]) * 255
    np.testing.assert_allclose(overlay(image, np.full((4, 4), 255, np.uint8))[0, 0], np.floor(expected), atol=1)
    maps = heatmaps(np.array([[[-1.0, 2.0], [0.5, 4.0]]]), (2, 2))
    assert maps.max() == 255 and maps.min() == 0


def test_colour_is_scaled_by_the_probability_so_weak_evidence_is_pale():
    t = np.array([[[0.0, 1.0], [3.0, 4.0]]])
    strong, weak = heatmaps(t, (2, 2), probability=0.9), heatmaps(t, (2, 2), probability=0.1)
    assert strong.max() == round(0.9 * 255) and weak.max() == round(0.1 * 255)
    with pytest.raises(ValueError, match="Received: probability=1.5"):
        heatmaps(t, (2, 2), probability=1.5)


@pytest.mark.slow
def test_weak_evidence_bag_is_drawn_paler_than_a_strong_one(trained):
    model, data = trained
    images, labels = data["test_images"], data["test_labels"][:, 0]
    peaks = {}
    for i in range(len(labels)):
        bag = _bag(images[i])
        t, probs = contributions(model, bag, method="gradient_x_input")
        peaks[i] = (probs[1], heatmaps(t, images.shape[2:4], probability=float(probs[1])).max())
    (p_weak, weak), (p_strong, strong) = (peaks[min(peaks, key=lambda i: peaks[i][0])],
                                          peaks[max(peaks, key=lambda i: peaks[i][0])])
    assert p_strong - p_weak > 0.05
    assert abs(int(weak) - p_weak * 255) <= 1 and abs(int(strong) - p_strong * 255) <= 1 and weak < strong


def _tiny_model():
    import keras

    from mims_tf.models import build_model

    keras.utils.set_random_seed(1)
    return build_model("mims", backbone="tiny", weights=None, image_size=(16, 16), kernels={1: 4})


def test_smoothgrad_is_the_average_of_gradient_x_input_over_seeded_noisy_copies():
    model = _tiny_model()
    bag = np.random.default_rng(0).uniform(0, 255, (1, 2, 16, 16, 3)).astype(np.float32)
    # At the "preprocessing" layer the watched tensor is the bag's pixels, so noisy copies can be made here.
    smooth, probs = contributions(model, bag, "preprocessing", method="smoothgrad", samples=4, noise=0.1, seed=3)
    rng = np.random.default_rng(3)
    sigma = 0.1 * float(bag.max() - bag.min())
    copies = [(bag[0] + rng.normal(0.0, sigma, bag.shape[1:])).astype(np.float32)[None] for _ in range(4)]
    reference = np.mean([contributions(model, c, "preprocessing", method="gradient_x_input")[0] for c in copies],
                        axis=0)
    np.testing.assert_allclose(smooth, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    plain, plain_probs = contributions(model, bag, "preprocessing", method="gradient_x_input")
    np.testing.assert_allclose(probs, plain_probs, rtol=1e-6)  # the probabilities are the clean bag's
    assert not np.allclose(smooth, plain, rtol=1e-2)
    again, _ = contributions(model, bag, "preprocessing", method="smoothgrad", samples=4, noise=0.1, seed=3)
    np.testing.assert_array_equal(again, smooth)
    with pytest.raises(ValueError, match="Did you mean 'smoothgrad'"):
        contributions(model, bag, method="smoothgrd")
    with pytest.raises(ValueError, match="Received: samples=0"):
        contributions(model, bag, samples=0)


def test_contact_sheet_ranks_the_top_slices(tmp_path):
    from PIL import Image

    model = _tiny_model()
    bag = np.random.default_rng(0).uniform(0, 255, (1, 5, 16, 16, 3)).astype(np.float32)
    written = explain_bag(model, bag, str(tmp_path), slices=2, sheet=4, name="b", method="gradient_x_input")
    sheet = np.asarray(Image.open(tmp_path / "index.png"))
    assert sheet.shape[:2] == (330, round(100 * (2.9 * 4 + 0.9)))  # 4 panels of 290 px and a colour bar
    assert len(written) == 2 and "![top slices](index.png)" in (tmp_path / "index.md").read_text()
    explain_bag(model, bag, str(tmp_path / "all"), slices=2, sheet=9, name="b", method="gradient_x_input")
    assert np.asarray(Image.open(tmp_path / "all" / "index.png")).shape[1] == round(100 * (2.9 * 5 + 0.9))  # 5 slices
    with pytest.raises(ValueError, match="Received: sheet=0"):
        explain_bag(model, bag, str(tmp_path), sheet=0)


@pytest.mark.slow
def test_bad_layer_and_class(trained):
    model, data = trained
    bag = _bag(data["test_images"][0])
    assert "head_ms_conv" in feature_layers(model)
    with pytest.raises(ValueError, match="no feature layer 'nope'; valid: backbone"):
        contributions(model, bag, "nope")
    with pytest.raises(ValueError, match="Received: class_index=2"):
        contributions(model, bag, class_index=2)


def _hue_and_saturation(rgb):
    import colorsys

    return colorsys.rgb_to_hsv(*np.asarray(rgb, float)[:3])[:2]


def test_the_colour_map_stands_apart_from_haematoxylin_and_eosin():
    """H&E: haematoxylin blue-purple, eosin pink (hues about 0.75-1.0 and 0.0-0.05); the map stays green-cyan
    (hues 0.25-0.5) and grows lighter with the value, so it reads on histology and on grey images alike."""
    from mims_tf.explain.heatmap import colour_map

    cmap = colour_map()
    values = np.linspace(0.05, 1.0, 20)
    hues = [_hue_and_saturation(cmap(v))[0] for v in values]
    assert all(0.25 <= h <= 0.5 for h in hues), hues
    lightness = [np.mean(cmap(v)[:3]) for v in values]
    assert all(b > a for a, b in zip(lightness, lightness[1:]))
    pink, purple = np.array([230, 140, 190]), np.array([110, 60, 150])  # eosin, haematoxylin
    tile = np.where(np.arange(16)[:, None, None] < 8, pink, purple).repeat(16, axis=1).astype(np.float32)
    drawn = overlay(tile, np.full((16, 16), 255, np.uint8))
    for pixel in (drawn[0, 0], drawn[15, 15]):
        assert 0.2 <= _hue_and_saturation(pixel / 255.0)[0] <= 0.6  # green-cyan: told apart from the stain


def test_colour_images_are_shown_in_colour_and_slices_named_by_their_files(tmp_path):
    from PIL import Image

    from mims_tf.explain.heatmap import instance_names, is_colour

    model = _tiny_model()
    rng = np.random.default_rng(0)
    bag = np.zeros((1, 3, 16, 16, 3), np.float32)
    bag[..., 0], bag[..., 2] = rng.uniform(150, 255, (1, 3, 16, 16)), rng.uniform(80, 200, (1, 3, 16, 16))
    assert is_colour(bag[0, 0]) and not is_colour(np.repeat(bag[0, 0, ..., :1], 3, axis=-1))
    names = ["tile_a.png", "tile_b.png", "tile_c.png"]
    written = explain_bag(model, bag, str(tmp_path), slices=2, sheet=3, name="b", method="gradient_x_input",
                          slice_names=names)
    index = (tmp_path / "index.md").read_text()
    assert "| rank | slice | file | contribution | figure |" in index
    for s, _, _ in written:
        assert f"| {s} | {names[s]} |" in index
    reference = np.asarray(Image.open(written[0][2]).convert("RGB"), np.int32)[:, : reference_width(written[0][2])]
    assert (np.abs(reference[..., 0] - reference[..., 1]) > 40).mean() > 0.05  # the slice panel is in colour
    with pytest.raises(ValueError, match="one name per slice: 3 slices. Received: 2 names"):
        explain_bag(model, bag, str(tmp_path), slice_names=names[:2], method="gradient_x_input")
    folder = tmp_path / "tiles"
    folder.mkdir()
    for name in ("tile_10.png", "tile_2.png", ".hidden.png", "notes.txt"):
        (folder / name).write_bytes(b"x")
    assert instance_names(str(folder)) == ["tile_2.png", "tile_10.png"]  # the reader's natural order
    assert instance_names(str(folder / "tile_2.png")) is None


def reference_width(path):
    """The left third of a figure: the reference panel (the slice beside its overlay and a colour bar)."""
    from PIL import Image

    return Image.open(path).size[0] // 3


def test_the_contour_encloses_the_region_above_half_the_bags_peak(tmp_path):
    from mims_tf.explain.heatmap import CONTOUR_LEVEL, _figure, _level

    maps = np.zeros((2, 32, 32), np.uint8)
    maps[0, 10:20, 10:20] = 200
    assert _level(maps) == CONTOUR_LEVEL * 200 and _level(np.zeros((2, 4, 4), np.uint8)) is None
    image = np.full((32, 32, 3), 128.0)
    _figure(str(tmp_path / "f.png"), image, maps[0], "t", level=_level(maps))
    from PIL import Image

    pixels = np.asarray(Image.open(tmp_path / "f.png").convert("RGB"), np.int32)
    cyan = (pixels[..., 0] < 80) & (pixels[..., 1] > 200) & (pixels[..., 2] > 200)
    assert cyan.sum() > 20  # the line is drawn


@pytest.mark.slow
def test_pointing_game_on_planted_lesions(trained):
    from mims_tf.explain.pointing import TOLERANCE, pointing_game

    model, data = trained
    positives = np.flatnonzero(data["test_labels"][:, 0])
    result = pointing_game(model, (_bag(data["test_images"][i]) for i in positives),
                           (data["test_masks"][i] for i in positives))
    print(f"pointing game: {result['hits']} of {result['bags']} (within {TOLERANCE} px)")
    assert result["bags"] == 16 and result["tolerance"] == TOLERANCE == 3
    assert result["hit_rate"] >= 0.75
