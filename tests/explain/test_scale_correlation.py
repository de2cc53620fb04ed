import os

import numpy as np
import pytest

from mims_tf.explain.scale_correlation import find_images, pearson, scale_correlation
from tests.conftest import SHARED, requires_tensorflow

KATHER = os.path.join(SHARED, "data", "kather-crc-msi")
MOBILENET_H5 = os.path.join(SHARED, "weights", "mobilenet_2_5_224_tf_no_top.h5")


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    expected = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(pearson(a, b), expected, rtol=1e-6)


@requires_tensorflow()
def test_scale_correlation_on_kather_tiles_with_imagenet_mobilenet():
    files = find_images(KATHER, 12, seed=0)
    assert files == find_images(KATHER, 12, seed=0) and len(set(files)) == 12
    table = scale_correlation(files, "mobilenet", MOBILENET_H5, scales=(2.0, 1.0, 0.5), alpha=0.25)
    assert table[1.0][0] == pytest.approx(1.0)
    assert 0.2 < table[0.5][0] < table[1.0][0] and 0.2 < table[2.0][0] < table[1.0][0]


def test_bad_folder_and_count(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        find_images(tmp_path, 3)
    with pytest.raises(ValueError, match="Received: count=99999"):
        find_images(KATHER, 99999)
