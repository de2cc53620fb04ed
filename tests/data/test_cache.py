"""Caches never serve stale or damaged bytes: the disk cache of `BagSource` and the feature cache."""

import os
import time

import numpy as np
import pytest

import mims_tf.data.cache as cache_module
from mims_tf.data import BagSource, from_rows
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


def _bags(tmp_path, count=2, shape=(4, 12, 10), dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        path = tmp_path / f"b{i}.npy"
        np.save(path, (rng.random(shape) * 1000).astype(dtype))
        rows.append({"path": str(path), "label": i % 2, "split": "train"})
    return from_rows(rows)


def _npy(folder):
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".npy"))


def _rewrite_in_place(path, array):
    """Rewrites `path` as `cp -p` or `rsync -a` leave it: other bytes, the same size and modification time."""
    status = os.stat(path)
    with open(path, "r+b") as f:  # in place: the same inode
        np.save(f, array)
    assert os.path.getsize(path) == status.st_size
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.parametrize("remembered", [False, True])
def test_a_file_rewritten_in_place_with_its_size_and_time_kept_is_read_again(tmp_path, monkeypatch, remembered):
    if remembered:  # the hash is remembered even for a file written just now: the status-change time tells
        monkeypatch.setattr(cache_module, "RACY_SECONDS", -60)
    manifest = _bags(tmp_path, count=1, shape=(64, 128, 128))  # 4 MiB: more than its first and last MiB
    cache_dir = str(tmp_path / "cache")
    first = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir).load(0)
    assert os.path.isdir(os.path.join(cache_dir, "hashes")) == remembered
    path = manifest.rows[0]["path"]
    array = np.load(path)
    array[30:34] = 7.0  # the middle slices
    time.sleep(0.02)  # past a coarse clock's tick
    _rewrite_in_place(path, array)
    changed = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir).load(0)
    expected = BagSource(manifest, progress=False, cache="memory").load(0)
    np.testing.assert_array_equal(changed, expected)
    assert not np.array_equal(changed, first) and len(_npy(cache_dir)) == 2


def test_a_second_run_over_unchanged_files_hashes_none_of_them(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "RACY_SECONDS", -60)
    manifest = _bags(tmp_path, count=3)
    cache_dir = str(tmp_path / "cache")
    hashed = []
    digest = cache_module.file_digest
    monkeypatch.setattr(cache_module, "file_digest", lambda path: hashed.append(path) or digest(path))
    first = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    assert len(hashed) == 3
    second = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    assert len(hashed) == 3  # remembered under each file's stamp
    for index in range(3):
        np.testing.assert_array_equal(first.load(index), second.load(index))


def test_a_file_changed_just_now_is_not_remembered(tmp_path):
    manifest = _bags(tmp_path, count=1)  # written just now: a coarse clock could give the next write its stamp
    cache_dir = tmp_path / "cache"
    BagSource(manifest, progress=False, cache="disk", cache_dir=str(cache_dir))
    assert not (cache_dir / "hashes").exists()


def _nan(path):
    array = np.load(path)
    np.save(path, np.full(array.shape, np.nan, array.dtype))


def _emptied(path):
    open(path, "wb").close()


def _truncated(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _longer(path):
    with open(path, "ab") as f:
        f.write(b"\0" * 64)


def _wrong_shape(path):
    array = np.load(path)
    np.save(path, array[..., 0])


def _wrong_dtype(path):
    np.save(path, np.load(path).astype(np.float64))


def _garbage(path):
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY not really")


DAMAGE = {"nan": _nan, "emptied": _emptied, "truncated": _truncated, "longer": _longer,
          "wrong shape": _wrong_shape, "wrong dtype": _wrong_dtype, "garbage": _garbage}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_file_is_removed_and_read_again_with_a_warning_naming_it(tmp_path, caplog, damage):
    manifest = _bags(tmp_path, count=2)
    cache_dir = str(tmp_path / "cache")
    expected = [BagSource(manifest, progress=False, cache="memory").load(i) for i in range(2)]
    BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    files = _npy(cache_dir)
    assert len(files) == 2
    DAMAGE[damage](files[0])
    with caplog.at_level("WARNING", logger="mims_tf"):
        again = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    lines = [r.getMessage() for r in caplog.records if r.name == "mims_tf"]
    assert len(lines) == 1 and files[0] in lines[0] and "damaged" in lines[0], lines
    assert sorted(_npy(cache_dir)) == files  # written again, under its name
    loaded = [again.load(i) for i in range(2)]
    for a, b in zip(loaded, expected):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.load(files[0])).all()


def test_a_cache_file_damaged_after_the_bags_were_read_is_read_again_at_its_step(tmp_path, caplog):
    manifest = _bags(tmp_path, count=2)
    cache_dir = str(tmp_path / "cache")
    source = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir)
    expected = source.load(1)
    _nan(source._arrays[1])
    with caplog.at_level("WARNING", logger="mims_tf"):
        np.testing.assert_array_equal(source.load(1), expected)
        np.testing.assert_array_equal(source.load(1), expected)  # rewritten: no second warning
    lines = [r.getMessage() for r in caplog.records if r.name == "mims_tf"]
    assert len(lines) == 1 and source._arrays[1] in lines[0] and "NaN" in lines[0]


def test_auto_moving_to_disk_replaces_a_damaged_file_it_finds(tmp_path, caplog):
    manifest = _bags(tmp_path, count=2)
    cache_dir = str(tmp_path / "cache")
    expected = BagSource(manifest, progress=False, cache="disk", cache_dir=cache_dir).load(0)
    path = _npy(cache_dir)[0]
    _nan(path)
    with caplog.at_level("WARNING", logger="mims_tf"):
        source = BagSource(manifest, progress=False, memory_budget=0, cache_dir=cache_dir)  # "auto": disk
    assert source.mode == "disk" and path in caplog.text
    np.testing.assert_array_equal(source.load(0), expected)


def test_a_missing_file_in_disk_mode_is_the_readers_clear_error(tmp_path):
    from mims_tf.data.errors import DataError

    manifest = _bags(tmp_path, count=2)
    os.remove(manifest.rows[0]["path"])
    with pytest.raises(DataError, match="file not found"):
        BagSource(manifest, progress=False, cache="disk", cache_dir=str(tmp_path / "cache"))


# the feature cache

SIZE = (16, 16)


@pytest.fixture(scope="module")
def extractor():
    from mims_tf.models import build_model, get_preset, split_model

    config = get_preset("pyramid_mims", backbone="tiny", weights=None, image_size=SIZE, kernels="crc")
    return split_model(build_model(config), config)[0]


@pytest.mark.parametrize("damage", ["nan", "emptied", "truncated", "wrong shape"])
def test_a_damaged_feature_file_is_extracted_again_with_a_warning_naming_it(tmp_path, caplog, extractor, damage):
    from mims_tf.data.features import extract_features

    source = BagSource(_bags(tmp_path, count=2, shape=(3, 16, 16)), progress=False, cache="memory")
    options = dict(views=1, cache_dir=str(tmp_path / "cache"), identity={"b": "tiny"}, progress=False)
    first = extract_features(extractor, source, SIZE, **options)
    files = _npy(tmp_path / "cache" / "features")
    expected = [np.array(a) for a in first.arrays[0]]
    DAMAGE[damage](files[1])
    with caplog.at_level("WARNING", logger="mims_tf"):
        again = extract_features(extractor, source, SIZE, **options)
    lines = [r.getMessage() for r in caplog.records if r.name == "mims_tf"]
    assert len(lines) == 1 and files[1] in lines[0] and "damaged" in lines[0], lines
    assert _npy(tmp_path / "cache" / "features") == files
    for a, b in zip(again.arrays[0], expected):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.load(files[1]).astype(np.float32)).all()
