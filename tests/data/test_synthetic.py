import numpy as np
import pytest

from mims_tf.data.synthetic import make_volumes


def test_deterministic_by_seed():
    a = make_volumes(count=6, instances=4, size=32, seed=1)
    b = make_volumes(count=6, instances=4, size=32, seed=1)
    c = make_volumes(count=6, instances=4, size=32, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_only_positive_bags_hold_lesions_of_the_requested_size():
    volumes, labels, masks = make_volumes(count=20, instances=6, size=64, lesion_size=(6, 10), lesion_slices=(1, 2),
                                          seed=0)
    assert volumes.dtype == np.uint8 and volumes.shape == (20, 6, 64, 64)
    assert labels.sum() == 10
    assert not masks[labels == 0].any()
    for bag in np.flatnonzero(labels):
        slices = masks[bag].any(axis=(1, 2)).sum()
        assert 1 <= slices <= 2
        extent = masks[bag].any(axis=(0, 2)).sum()  # rows covered by lesions
        assert 3 <= extent <= 2 * 10 + 1
    lesion = volumes[masks].mean()
    background = volumes[~masks].mean()
    assert lesion > background + 30


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Received: lesion_size=\(0, 4\)"):
        make_volumes(lesion_size=(0, 4))
    with pytest.raises(ValueError, match="Received: lesion_slices"):
        make_volumes(instances=4, lesion_slices=(2, 9))


def test_the_lesion_table_says_where_every_planted_lesion_is():
    from mims_tf.data.synthetic import LESION_COLUMNS

    plain = make_volumes(count=10, instances=5, size=48, lesion_size=(6, 10), seed=3)
    volumes, labels, masks, lesions = make_volumes(count=10, instances=5, size=48, lesion_size=(6, 10), seed=3,
                                                   return_lesions=True)
    assert all(np.array_equal(a, b) for a, b in zip(plain, (volumes, labels, masks)))  # the same data either way
    assert lesions.shape[1] == len(LESION_COLUMNS) and len(lesions) >= labels.sum()
    bags, slices = lesions[:, 0].astype(int), lesions[:, 1].astype(int)
    assert set(bags) == set(np.flatnonzero(labels))
    assert {(b, s) for b, s in zip(bags, slices)} == {tuple(i) for i in np.argwhere(masks.any(axis=(2, 3)))}
    for bag, s, row, column, ry, rx in lesions:
        assert masks[int(bag), int(s), int(round(row)), int(round(column))]  # the centre is a lesion pixel
        assert 0.7 * 3 <= min(ry, rx) and max(ry, rx) <= 5


def test_write_dataset_saves_masks_and_lesions_beside_the_images(tmp_path):
    from mims_tf.data.synthetic import write_dataset

    path = write_dataset(str(tmp_path), splits=(("train", 4), ("test", 6)), instances=3, size=32,
                         lesion_size={"train": (6, 10), "test": (3, 5)})
    data = np.load(path)
    for split in ("train", "test"):
        lesions = data[f"{split}_lesions"]
        assert data[f"{split}_masks"].shape == data[f"{split}_images"].shape
        assert set(lesions[:, 0].astype(int)) == set(np.flatnonzero(data[f"{split}_labels"][:, 0]))
    assert data["test_lesions"][:, 4:].max() <= 2.5 < data["train_lesions"][:, 4:].max()
