import numpy as np
import pytest

from mims_tf.explain.pointing import TOLERANCE, distance_to_lesion, peak
from tests.conftest import requires_tensorflow


def test_distance_to_lesion_is_euclidean_and_zero_inside():
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    assert distance_to_lesion(mask, 6, 6) == 0.0
    assert distance_to_lesion(mask, 7, 10) == 3.0  # three columns right of the lesion's edge
    assert distance_to_lesion(mask, 10, 10) == pytest.approx(np.hypot(3, 3))  # > TOLERANCE: a miss
    assert distance_to_lesion(np.zeros((4, 4), bool), 1, 1) == float("inf")
    assert TOLERANCE == 3


@requires_tensorflow()
def test_the_peak_is_taken_over_every_slice_of_the_bag():
    t = np.zeros((3, 16, 16), np.float32)
    t[0, 2, 2] = 1.0
    t[2, 12, 5] = 5.0  # the bag's strongest contribution is on the last slice
    assert peak(t, (16, 16), blur=0.0) == (2, 12, 5)
    t64 = np.kron(t, np.ones((1, 4, 4), np.float32))  # upsampled: the peak stays on slice 2
    assert peak(t64, (64, 64))[0] == 2


@requires_tensorflow()
def test_pointing_game_scores_hits_and_misses_and_refuses_mismatched_masks(monkeypatch):
    import mims_tf.explain.pointing as pointing

    maps = {0: (7, 7), 1: (1, 14)}

    def fake(model, bag, layer_name, class_index, method):  # a contribution map peaking where `maps` says
        t = np.zeros(bag.shape[1:4], np.float32)
        t[0][maps[int(bag[0, 0, 0, 0, 0])]] = 1.0
        return t, np.array([0.2, 0.8])

    monkeypatch.setattr(pointing, "contributions", fake)
    bags = [np.full((1, 2, 16, 16, 3), i, np.float32) for i in (0, 1)]
    mask = np.zeros((2, 16, 16), bool)
    mask[0, 6:9, 6:9] = True
    result = pointing.pointing_game(None, bags, [mask, mask], blur=0.0)
    assert [b["hit"] for b in result["per_bag"]] == [True, False]
    assert result["hit_rate"] == 0.5 and result["bags"] == 2 and result["per_bag"][0]["probability"] == 0.8
    assert pointing.pointing_game(None, bags[1:], [mask], blur=0.0, tolerance=20)["hit_rate"] == 1.0
    with pytest.raises(ValueError, match="must match the bags"):
        pointing.pointing_game(None, bags, [mask[:, :8]], blur=0.0)
    with pytest.raises(ValueError, match="positive bags only"):
        pointing.pointing_game(None, bags, [np.zeros_like(mask)], blur=0.0)
    with pytest.raises(ValueError, match="Received: tolerance=-1"):
        pointing.pointing_game(None, bags, [mask], tolerance=-1)
