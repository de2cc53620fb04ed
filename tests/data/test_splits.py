"""Splits: the same image in two splits (`shared_content`), and the held-out shares (`fold_share`)."""

import collections

import numpy as np
import pytest

from mims_tf.data import from_rows
from mims_tf.data.splits import assign_splits, fold_share


def test_shared_content_finds_copies_across_splits_only(tmp_path):
    from mims_tf.data.splits import shared_content

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (2, 8, 8), dtype=np.uint8) for _ in range(3)]
    for name, array in (("a", arrays[0]), ("a_copy", arrays[0]), ("b", arrays[1]), ("b_copy", arrays[1]),
                        ("c", arrays[2])):
        np.save(tmp_path / f"{name}.npy", array)
    rows = [{"path": str(tmp_path / f"{name}.npy"), "label": str(i % 2), "split": split}
            for i, (name, split) in enumerate([("a", "train"), ("a_copy", "test"), ("b", "train"),
                                               ("b_copy", "train"), ("c", "val")])]
    groups = shared_content(from_rows(rows))
    assert groups == [[("test", str(tmp_path / "a_copy.npy")), ("train", str(tmp_path / "a.npy"))]]
    images = rng.integers(0, 255, (4, 6, 6), dtype=np.uint8)
    np.savez(tmp_path / "set.npz", train_images=images[:3], test_images=images[[3, 1]])
    rows = [{"path": f"{tmp_path / 'set.npz'}#{split}_images/{i}", "label": str(i % 2), "split": split}
            for split, count in (("train", 3), ("test", 2)) for i in range(count)]
    assert [[split for split, _ in group] for group in shared_content(from_rows(rows))] == [["test", "train"]]


def test_training_warns_of_an_image_in_two_splits(tmp_path, caplog):
    from mims_tf.runs.fit import _warn_shared_content

    np.save(tmp_path / "a.npy", np.zeros((2, 8, 8), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((2, 8, 8), np.uint8))
    rows = [{"path": str(tmp_path / "a.npy"), "label": "0", "split": "train"},
            {"path": str(tmp_path / "b.npy"), "label": "1", "split": "test"}]
    with caplog.at_level("WARNING", logger="mims_tf"):
        _warn_shared_content(from_rows(rows))
    assert "1 image(s) appear in more than one split, byte for byte" in caplog.text and "b.npy (test)" in caplog.text


def test_large_files_alike_at_their_samples_but_not_whole_are_no_copies(tmp_path):
    from mims_tf.data.splits import shared_content

    base = np.zeros(400_000, np.uint8)  # 400 kB: same size, same five sampled blocks
    other = base.copy()
    other[50_000] = 7  # between the samples
    for name, array in (("a", base), ("b", other)):
        (tmp_path / f"{name}.raw").write_bytes(array.tobytes())
    rows = [{"path": str(tmp_path / "a.raw"), "label": "0", "split": "train"},
            {"path": str(tmp_path / "b.raw"), "label": "1", "split": "test"}]
    assert shared_content(from_rows(rows)) == []
    (tmp_path / "b.raw").write_bytes(base.tobytes())
    assert len(shared_content(from_rows(rows))) == 1


def test_a_damaged_npz_is_left_to_the_readers(tmp_path):
    from mims_tf.data.splits import shared_content

    np.savez(tmp_path / "set.npz", train_images=np.zeros((2, 4, 4), np.uint8))
    data = (tmp_path / "set.npz").read_bytes()
    (tmp_path / "set.npz").write_bytes(data[: len(data) // 2])
    rows = [{"path": f"{tmp_path / 'set.npz'}#train_images/{i}", "label": str(i), "split": s}
            for i, s in ((0, "train"), (1, "test"))]
    assert shared_content(from_rows(rows)) == []


@pytest.mark.parametrize("fraction, groups, share", [
    (0.15, 100, (1, 7)), (0.15 / 0.85, 100, (1, 6)), (0.2, 100, (1, 5)),  # the defaults: one fold, as always
    (0.6, 100, (3, 5)), (0.4, 100, (2, 5)), (0.9, 100, (9, 10)), (0.3, 100, (3, 10)),  # one fold of 2 or 3 was used
    (0.15, 5, (1, 5)), (0.15, 4, (None, None)), (0.1, 5, (None, None)),  # too few groups to come near
    (0.01, 30, (None, None)), (1e-6, 30, (None, None)), (0.01, 100, (1, 100)),  # 0.01 is never 5 %
])
def test_fold_share_comes_near_the_fraction_asked(fraction, groups, share):
    assert fold_share(fraction, groups) == share


def test_split_fractions_over_a_half_are_honoured():
    # 0.2 / 0.2 / 0.6 gave 50 % test (one fold of two) before
    rows = [{"path": f"/x/{i}.png", "label": i % 2} for i in range(100)]
    split = assign_splits(from_rows(rows), (0.2, 0.2, 0.6), seed=0)
    counts = collections.Counter(row["split"] for row in split.rows)
    assert counts == {"test": 60, "val": 20, "train": 20}, counts
