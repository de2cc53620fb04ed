"""`BagSource`: where bags are kept (memory, disk cache, read every step) and what is kept (model size)."""

import os

import numpy as np
import pytest

import mims_tf.data.source as source_module
from mims_tf.data import BagSource, from_rows, make_dataset
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


def _bags(tmp_path, count=5, shape=(4, 40, 30), dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        array = rng.integers(0, 256, size=shape).astype(dtype)
        path = tmp_path / f"b{i}.npy"
        np.save(path, array)
        rows.append({"path": str(path), "label": i % 2, "split": "train"})
    return from_rows(rows)


def _npy(folder):
    """The cached bags in `folder` (not the remembered hashes)."""
    return [n for n in os.listdir(folder) if n.endswith(".npy")]


def _loaded(source):
    return [source.load(i) for i in range(len(source))]


def test_auto_keeps_bags_in_memory_within_the_budget_and_says_why(tmp_path):
    source = BagSource(_bags(tmp_path), progress=False, memory_budget=10**9)
    assert source.mode == "memory" and source.cache
    assert "5 bags" in source.reason and "within the budget of 1.00 GB (as set)" in source.reason


def test_over_the_budget_without_a_cache_folder_the_files_are_read_every_step(tmp_path, monkeypatch):
    manifest = _bags(tmp_path)
    memory = _loaded(BagSource(manifest, progress=False, cache="memory"))
    source = BagSource(manifest, progress=False, memory_budget=0)
    assert source.mode == "none" and not source.cache and "no cache folder" in source.reason
    assert source._arrays == []  # nothing kept
    assert source.instance_counts() == [4] * 5  # counted in the up-front pass
    reads = []
    original = source_module.read_volume
    monkeypatch.setattr(source_module, "read_volume", lambda path: reads.append(path) or original(path))
    for a, b in zip(_loaded(source), memory):
        np.testing.assert_array_equal(a, b)
    assert len(reads) == 5


def test_over_the_budget_with_a_cache_folder_a_disk_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    manifest = _bags(tmp_path)
    memory = _loaded(BagSource(manifest, progress=False, cache="memory"))
    cache_dir = tmp_path / "cache"
    first = BagSource(manifest, progress=False, memory_budget=0, cache_dir=str(cache_dir))
    assert first.mode == "disk" and str(cache_dir) in first.reason
    assert len(_npy(cache_dir)) == 5 and not [n for n in os.listdir(cache_dir) if ".tmp" in n]

    def no_reading(path):
        raise AssertionError(f"read {path} although it is in the disk cache")

    monkeypatch.setattr(source_module, "read_volume", no_reading)
    second = BagSource(manifest, progress=False, cache="disk", cache_dir=str(cache_dir))
    for a, b in zip(_loaded(second), memory):
        np.testing.assert_array_equal(a, b)
    assert second.instance_counts() == [4] * 5


def test_the_disk_cache_key_follows_content_and_settings(tmp_path):
    manifest = _bags(tmp_path, count=1)
    cache_dir = str(tmp_path / "cache")
    BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir, central=2)  # other settings
    assert len(_npy(cache_dir)) == 2
    np.save(manifest.rows[0]["path"], np.zeros((4, 40, 30), np.uint8))  # other content, same name and size
    changed = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    assert len(_npy(cache_dir)) == 3 and float(changed.load(0).max()) == 0.0


def test_the_disk_cache_sees_a_change_in_the_middle_of_a_large_file(tmp_path):
    """Every byte is hashed: an edit between the first and last MiB, the modification time kept, is seen."""
    manifest = _bags(tmp_path, count=1, shape=(64, 128, 128), dtype=np.float32)  # 4 MiB
    cache_dir = str(tmp_path / "cache")
    BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    path = manifest.rows[0]["path"]
    array = np.load(path)
    array[30:34] = 0.0
    stamp = os.stat(path).st_mtime_ns
    np.save(path, array)
    os.utime(path, ns=(stamp, stamp))  # as `cp -p` leaves it
    changed = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    assert len(_npy(cache_dir)) == 2 and float(np.abs(changed.load(0)[30:34]).max()) == 0.0


def test_the_disk_cache_keeps_each_item_of_an_npz_apart(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 20, 20), dtype=np.uint8)
    path = tmp_path / "set.npz"
    np.savez(path, train_images=images, train_labels=np.array([0, 1, 0]))
    manifest = from_rows([{"path": f"{path}#train_images/{i}", "label": i % 2, "split": "train"} for i in range(3)])
    cache_dir = str(tmp_path / "cache")
    cached = _loaded(BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir))
    assert len(_npy(cache_dir)) == 3
    for bag, expected in zip(cached, _loaded(BagSource(manifest, progress=False, cache="memory"))):
        np.testing.assert_array_equal(bag, expected)
    assert not np.array_equal(cached[0], cached[1])


def test_bags_are_kept_at_the_model_size_and_batches_match_resizing_later(tmp_path):
    manifest = _bags(tmp_path, shape=(4, 40, 30))
    stored = BagSource(manifest, progress=False, cache="memory")
    resized = BagSource(manifest, progress=False, cache="memory", image_size=(16, 12))
    assert resized._arrays[0].shape == (4, 16, 12, 1) and resized._arrays[0].dtype == np.uint8
    assert (resized._arrays[0].nbytes, stored._arrays[0].nbytes) == (4 * 16 * 12, 4 * 40 * 30)
    options = dict(training=True, image_size=(16, 12), instances=3, batch_size=1, seed=0, augment=False)
    late = np.concatenate([x.numpy().ravel() for x, _ in make_dataset(stored, **options)])
    early = np.concatenate([x.numpy().ravel() for x, _ in make_dataset(resized, **options)])
    assert np.max(np.abs(late - early)) <= 0.5 + 1e-3  # uint8 kept rounded; the same instances sampled


def test_bags_already_at_the_model_size_are_kept_exactly(tmp_path):
    manifest = _bags(tmp_path, shape=(3, 16, 16), dtype=np.float32)
    stored = BagSource(manifest, progress=False, cache="memory")
    same = BagSource(manifest, progress=False, cache="memory", image_size=(16, 16))
    for a, b in zip(_loaded(stored), _loaded(same)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cache="ram"), "`cache` must be one of"),
    (dict(cache="disk"), "needs a `cache_dir`"),
    (dict(memory_budget=-1), "`memory_budget` must be >= 0"),
    (dict(image_size=(16,)), "`image_size` must be"),
])
def test_bad_cache_options_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        BagSource(_bags(tmp_path, count=1), progress=False, **kwargs)


def test_auto_decides_when_the_last_of_a_few_bags_is_unreadable(tmp_path):
    manifest = _bags(tmp_path, count=3)
    with open(manifest.rows[-1]["path"], "wb") as f:
        f.write(b"not an array")
    source = BagSource(manifest, progress=False, skip_unreadable=True)
    assert source.mode == "memory" and len(source) == 2 and len(source.skipped) == 1


def test_the_disk_cache_keeps_a_folder_bag(tmp_path):
    from PIL import Image

    folder = tmp_path / "stack"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(folder / f"s{i}.png")
    manifest = from_rows([{"path": str(folder), "label": "0", "split": "train"}])
    cache_dir = str(tmp_path / "cache")
    cached = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir).load(0)
    np.testing.assert_array_equal(cached, BagSource(manifest, progress=False, cache="memory").load(0))
    assert len(_npy(cache_dir)) == 1


def test_a_bag_of_one_image_per_row_is_one_stack_normalised_and_cropped_as_one(tmp_path):
    # ten 16-bit slices of one volume, one row each: `central` crops the stack and one min-max spans the volume
    # (per-file min-max stretched every slice to 0..255, erasing the intensity differences between slices)
    rows = []
    for i in range(10):
        path = tmp_path / f"s{i}.npy"
        np.save(path, np.full((1, 8, 8), 100 * i + np.arange(8)[None, :], np.uint16))
        rows.append({"path": str(path), "label": 1, "bag": "b1", "split": "train"})
    rows.append({"path": str(path), "label": 0, "bag": "b2", "split": "train"})  # keeps the two classes
    rows[-1]["path"] = str(tmp_path / "other.npy")
    np.save(rows[-1]["path"], np.zeros((1, 8, 8), np.uint16))
    source = BagSource(from_rows(rows), progress=False, central=4, cache="memory")
    bag = source.load([b.bag for b in source.bags].index("b1"))
    assert bag.shape == (4, 8, 8, 1)
    stack = np.stack([100 * i + np.arange(8) for i in range(10)]).astype(np.float64)
    expected = (stack - stack.min()) * 255.0 / (stack.max() - stack.min())  # the paper-free reference: one min-max
    np.testing.assert_allclose(bag[:, 0, :, 0], expected[3:7].astype(np.float16), rtol=1e-3)
    # files of several instances each are still volumes of their own: `central` crops each
    for i in range(2):
        np.save(tmp_path / f"v{i}.npy", np.arange(6 * 4, dtype=np.uint8).reshape(6, 2, 2) + i)
    volumes = from_rows([{"path": str(tmp_path / f"v{i}.npy"), "label": 0, "bag": "p", "split": "train"}
                         for i in range(2)])
    both = BagSource(volumes, progress=False, central=2, cache="memory").load(0)
    assert both.shape == (4, 2, 2, 1)


def test_the_same_8_bit_pixels_as_floats_give_the_same_bag(tmp_path):
    # a float copy of 8-bit images was stretched to 0..255 per file while uint8 was kept: the same pixels gave
    # another input (and another prediction); integer types other than uint8 keep their per-volume min-max
    pixels = np.random.default_rng(0).integers(0, 128, (3, 8, 8)).astype(np.uint8)  # 0..127: stretching would show
    arrays = {"uint8": pixels, "float32": pixels.astype(np.float32), "float64": pixels.astype(np.float64),
              "uint16": pixels.astype(np.uint16), "wide": pixels.astype(np.uint16) * 300,
              "fraction": pixels.astype(np.float32) / 255, "mask": (pixels > 60).astype(np.float32)}
    rows = []
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
        rows.append({"path": str(tmp_path / f"{name}.npy"), "label": len(rows) % 2, "split": "train"})
    bags = dict(zip(arrays, _loaded(BagSource(from_rows(rows), progress=False, cache="memory"))))
    for name in ("float32", "float64"):
        np.testing.assert_array_equal(bags[name], bags["uint8"])
    stretched = (pixels - pixels.min()) * (255.0 / (pixels.max() - pixels.min()))
    for name in ("uint16", "wide", "fraction"):  # min-max, as before
        np.testing.assert_allclose(bags[name][..., 0], stretched.astype(np.float16), rtol=2e-3)
    assert set(np.unique(bags["mask"])) == {0.0, 255.0}  # a 0 / 1 mask is stretched, as before
