import os

import numpy as np
import pytest

from mims_tf.data import BagSource, from_medmnist, make_dataset
from mims_tf.data.features import extract_features, feature_dataset
from mims_tf.models import build_model, get_preset, split_model
from tests.conftest import SHARED, requires_tensorflow

pytestmark = requires_tensorflow()
ADRENAL = os.path.join(SHARED, "data", "adrenalmnist3d", "adrenalmnist3d.npz")
SIZE = (28, 28)


@pytest.fixture(scope="module")
def parts():
    source = BagSource(from_medmnist(ADRENAL), "val", image_size=SIZE, progress=False)
    config = get_preset("pyramid_mims", backbone="tiny", weights=None, image_size=SIZE, kernels="crc")
    model = build_model(config)
    extractor, head = split_model(model, config)
    return source, model, extractor, head


def test_the_head_on_cached_features_scores_as_the_model_on_images(parts):
    source, model, extractor, head = parts
    store = extract_features(extractor, source, SIZE, views=1, progress=False)
    assert store.mode == "memory" and len(store) == len(source) and store.instance_counts() == source.instance_counts()
    assert all(a.dtype == np.float16 for a in store.arrays[0]) and len(store.arrays[0]) == 3  # three pyramid levels
    on_images = model.predict(make_dataset(source, False, image_size=SIZE), verbose=0)
    on_features = head.predict(feature_dataset(store, False), verbose=0)
    np.testing.assert_allclose(on_features, on_images, atol=1e-4)  # float16 features


def test_the_training_stream_is_the_images_stream_batch_for_batch(parts):
    source, _, extractor, head = parts
    store = extract_features(extractor, source, SIZE, views=1, progress=False)
    images = make_dataset(source, True, image_size=SIZE, instances=8, batch_size=4, augment=False, seed=3, repeat=True)
    features = feature_dataset(store, True, instances=8, batch_size=4, seed=3, repeat=True, start_step=30)
    for (x, y), (maps, labels) in zip(images.skip(30).take(3), features.take(3)):
        np.testing.assert_array_equal(y, labels)  # the same bags in the same order, from any start step
        expected = head.predict(extractor.predict(x, verbose=0), verbose=0)
        np.testing.assert_allclose(head.predict(list(maps), verbose=0), expected, atol=1e-4)  # the same instances


def test_a_range_of_instances_per_step_is_the_images_stream_too(parts):
    source, _, extractor, head = parts
    store = extract_features(extractor, source, SIZE, views=1, progress=False)
    images = make_dataset(source, True, image_size=SIZE, instances=(12, 18), batch_size=4, augment=False, seed=2,
                          repeat=True)
    features = feature_dataset(store, True, instances=(12, 18), batch_size=4, seed=2, repeat=True)
    for (x, y), (maps, labels) in zip(images.take(3), features.take(3)):
        np.testing.assert_array_equal(y, labels)
        assert maps[0].shape[:2] == x.shape[:2]  # one count for the step's bags, the same on both streams
        expected = head.predict(extractor.predict(x, verbose=0), verbose=0)
        np.testing.assert_allclose(head.predict(list(maps), verbose=0), expected, atol=1e-4)


def test_views_after_the_first_are_augmented_and_each_epoch_draws_one(parts):
    source, _, extractor, _ = parts
    store = extract_features(extractor, source, SIZE, views=3, seed=0, progress=False)
    plain = extract_features(extractor, source, SIZE, views=1, seed=0, progress=False)
    np.testing.assert_array_equal(store.arrays[0][2], plain.arrays[0][2])
    assert not np.array_equal(store.arrays[1][2], store.arrays[0][2])
    assert not np.array_equal(store.arrays[1][2], store.arrays[2][2])
    other = extract_features(extractor, source, SIZE, views=2, seed=1, progress=False)
    assert not np.array_equal(other.arrays[1][2], store.arrays[1][2])  # the seed fixes the views
    epochs = feature_dataset(store, True, batch_size=1, seed=0, repeat=True)
    batches = [m[2].numpy() for m, _ in epochs.take(len(source) * 4)]
    assert len({b.tobytes() for b in batches}) > len(source)  # bags come back in several views across epochs


def test_a_cache_folder_is_written_once_and_reused_by_the_same_data_and_backbone(parts, tmp_path, monkeypatch):
    source, _, extractor, _ = parts
    first = extract_features(extractor, source, SIZE, views=2, cache_dir=str(tmp_path), identity={"b": "tiny"},
                             progress=False)
    files = sorted(os.listdir(tmp_path / "features"))
    assert first.mode == "disk" and len(files) == 6 and all(f.endswith(".npy") and ".tmp" not in f for f in files)

    def fail(*args, **kwargs):
        raise AssertionError("the backbone ran again")

    monkeypatch.setattr(extractor, "predict_on_batch", fail)
    again = extract_features(extractor, source, SIZE, views=2, cache_dir=str(tmp_path), identity={"b": "tiny"},
                             progress=False)
    assert all(np.array_equal(a, b) for v in range(2) for a, b in zip(first.arrays[v], again.arrays[v]))
    monkeypatch.undo()
    extract_features(extractor, source, SIZE, views=1, cache_dir=str(tmp_path), identity={"b": "other"},
                     progress=False)
    assert len(os.listdir(tmp_path / "features")) == 9  # other settings: their own files


def test_features_over_the_memory_budget_without_a_folder_are_not_kept(parts):
    source, _, extractor, _ = parts
    assert extract_features(extractor, source, SIZE, memory_budget=1000, progress=False) is None
    with pytest.raises(ValueError, match="Received: views=0"):
        extract_features(extractor, source, SIZE, views=0, progress=False)
