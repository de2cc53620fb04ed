import numpy as np
import pytest

from mims_tf.explain.heatmap import contributions, explain_bag, feature_layers, heatmaps, overlay
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
    train(RunConfig.from_dict(dict(data=path, out=str(folder / "run"), epochs=15, batch_size=8, learning_rate=3e-3)), verbose=0)
    model, _, _ = RunFolder(str(folder / "run")).load()
    return model, np.load(path)


def _bag(volume):
    return np.repeat(volume[None, ..., None].astype(np.float32), 3, axis=-1)


def peak_in_lesion_rate(model, data, layer):
    from scipy.ndimage import binary_dilation

    images, labels, masks = data["test_images"], data["test_labels"][:, 0], data["test_masks"]
    hits = []
    for i in np.flatnonzero(labels):
        t, _ = contributions(model, _bag(images[i]), layer)
        top = int(np.argmax(np.maximum(t, 0).sum(axis=(1, 2))))
        heat = heatmaps(t, images.shape[2:4])[top]
        y, x = np.unravel_index(np.argmax(heat), heat.shape)
        hits.append(bool(binary_dilation(masks[i, top], iterations=4)[y, x]))
    return float(np.mean(hits)), len(hits)


def test_heatmap_peaks_fall_inside_planted_lesions_in_most_positive_bags(trained):
    model, data = trained
    rate, bags = peak_in_lesion_rate(model, data, "backbone")
    print(f"peak in lesion (within 4 px): {rate:.2f} of {bags} positive bags")
    assert bags == 16 and rate >= 0.6


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
    assert index.startswith("# bag: predicted: 1 (P(1) = 0.9000, threshold 0.4000)") and "Explained: class lesion" in index
    assert len(titled) == 1


def test_overlay_formula_and_scaling():
    image = np.full((4, 4), 100.0)
    heat = np.zeros((4, 4), np.uint8)
    from matplotlib import colormaps

    expected = 0.6 * 100 + 0.3 * np.array(colormaps["jet"](0.0)[:3]) * 255
    np.testing.assert_allclose(overlay(image, heat)[0, 0], np.floor(expected), atol=1)
    maps = heatmaps(np.array([[[-1.0, 2.0], [0.5, 4.0]]]), (2, 2))
    assert maps.max() == 255 and maps.min() == 0


def test_bad_layer_and_class(trained):
    model, data = trained
    bag = _bag(data["test_images"][0])
    assert "head_ms_conv" in feature_layers(model)
    with pytest.raises(ValueError, match="no feature layer 'nope'; valid: backbone"):
        contributions(model, bag, "nope")
    with pytest.raises(ValueError, match="Received: class_index=2"):
        contributions(model, bag, class_index=2)
