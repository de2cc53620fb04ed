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
