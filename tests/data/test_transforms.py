"""The per-bag transforms of `make_dataset` against plain NumPy references of what they do."""

import os

import numpy as np
import pytest

from mims_tf.data import BagSource, from_rows, make_dataset
from mims_tf.data.transforms import (
    BRIGHTNESS,
    CONTRAST,
    augment_bag,
    augmentation_parameters,
    instance_count,
    prepare_instances,
    sample_indices,
    sample_instances,
)
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()

SEEDS = [(0, 0), (0, 1), (1, 0), (7, 3), (12345, 678)]


def _bag(count, height=3, width=4, channels=1):
    """Instance i holds the value i everywhere: the kept instances can be read off."""
    return (np.arange(count, dtype=np.float32)[:, None, None, None]
            * np.ones((count, height, width, channels), np.float32))


def _reference_indices(total, count, seed):
    """What `sample_indices` should keep, with TF's random primitives and NumPy for the rest."""
    import tensorflow as tf

    seed = np.asarray(seed, np.int64)
    if total >= count:
        permutation = tf.random.experimental.stateless_shuffle(tf.range(total), seed).numpy()
        assert sorted(permutation.tolist()) == list(range(total))
        return np.sort(permutation[:count])
    draws = tf.random.stateless_uniform([count], seed + 2, 0, total, dtype=tf.int32).numpy()
    return np.sort(draws)


@pytest.mark.parametrize("total", [1, 3, 10, 30])
@pytest.mark.parametrize("count", [1, 4, 10, 18, 40])
def test_sample_indices_match_the_reference(total, count):
    for seed in SEEDS:
        index = sample_indices(total, count, seed).numpy()
        np.testing.assert_array_equal(index, _reference_indices(total, count, seed))
        assert index.dtype == np.int32 and len(index) == count
        assert np.all(np.diff(index) >= 0) and index.min() >= 0 and index.max() < total  # volume order
        if total >= count:
            assert len(set(index.tolist())) == count  # distinct instances
        if total == count:
            np.testing.assert_array_equal(index, np.arange(total))  # the whole bag, in order
        np.testing.assert_array_equal(index, sample_indices(total, count, seed).numpy())  # same seed, same result


def test_sample_indices_differ_between_seeds_and_cover_the_bag():
    draws = {tuple(sample_indices(30, 12, (s, 0)).numpy().tolist()) for s in range(40)}
    assert len(draws) == 40
    assert set().union(*draws) == set(range(30))
    small = {tuple(sample_indices(3, 8, (s, 1)).numpy().tolist()) for s in range(40)}
    assert len(small) > 1 and set().union(*small) == {0, 1, 2}


def test_sample_instances_keeps_the_sampled_instances_in_order():
    import tensorflow as tf

    for total, count in [(10, 4), (3, 5), (6, 6)]:
        bag = _bag(total)
        for seed in SEEDS:
            got = sample_instances(bag, count, seed, replacement=True).numpy()
            np.testing.assert_array_equal(got, bag[_reference_indices(total, count, seed)])
            # a tensor count, an int64 seed tensor: the same instances
            same = sample_instances(tf.constant(bag), tf.constant(count), tf.constant(seed, tf.int64), replacement=True)
            np.testing.assert_array_equal(same.numpy(), got)
            # by default at most the bag's own instances, each once
            kept = sample_instances(bag, count, seed).numpy()
            np.testing.assert_array_equal(kept, bag[_reference_indices(total, min(count, total), seed)])
    bag = _bag(5)
    assert sample_instances(bag, None, (0, 0)) is bag


def test_a_count_range_is_drawn_per_seed_with_both_ends_included():
    import tensorflow as tf

    counts = []
    for s in range(200):
        seed = (s, 2)
        count = int(instance_count((12, 18), seed))
        expected = tf.random.stateless_uniform([], np.asarray(seed, np.int64) + 1, 12, 19, dtype=tf.int32)
        assert count == int(expected)
        got = sample_instances(_bag(30), (12, 18), seed).numpy()
        np.testing.assert_array_equal(got, _bag(30)[_reference_indices(30, count, seed)])
        counts.append(count)
    assert set(counts) == set(range(12, 19))
    assert int(instance_count(5, (0, 0))) == 5


def _reference_resize(bag, height, width):
    """Bilinear with half-pixel centres (TF 2's `tf.image.resize`, no antialiasing)."""

    def axis_weights(size_in, size_out):
        source = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
        low = np.floor(source)
        frac = (source - low).astype(np.float32)
        top = np.clip(low, 0, size_in - 1).astype(int)
        bottom = np.clip(np.ceil(source), 0, size_in - 1).astype(int)
        return top, bottom, frac

    top, bottom, fy = axis_weights(bag.shape[1], height)
    left, right, fx = axis_weights(bag.shape[2], width)
    rows = bag[:, top] * (1 - fy)[None, :, None, None] + bag[:, bottom] * fy[None, :, None, None]
    return rows[:, :, left] * (1 - fx)[None, None, :, None] + rows[:, :, right] * fx[None, None, :, None]


def test_prepare_instances_resizes_bilinearly_and_sets_the_channels():
    rng = np.random.default_rng(0)
    gray = rng.uniform(0, 255, (2, 4, 5, 1)).astype(np.float32)
    rgba = rng.uniform(0, 255, (2, 4, 5, 4)).astype(np.float32)
    rgb = rgba[..., :3]
    # same size: only the channels change
    np.testing.assert_array_equal(prepare_instances(gray, (4, 5), 3).numpy(), np.repeat(gray, 3, axis=-1))
    np.testing.assert_array_equal(prepare_instances(rgba, (4, 5), 3).numpy(), rgb)
    np.testing.assert_allclose(prepare_instances(rgb, (4, 5), 1).numpy(), rgb.mean(-1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(prepare_instances(gray, (4, 5), 1).numpy(), gray)
    for size in [(8, 10), (7, 3), (2, 2), (4, 9)]:
        got = prepare_instances(gray, size, 3).numpy()
        assert got.shape == (2, *size, 3) and got.dtype == np.float32
        np.testing.assert_allclose(got, np.repeat(_reference_resize(gray, *size), 3, axis=-1), atol=1e-3)
        np.testing.assert_allclose(prepare_instances(rgb, size, 1).numpy(),
                                   _reference_resize(rgb, *size).mean(-1, keepdims=True), atol=1e-3)
    with pytest.raises(ValueError, match="Received: channels=2"):
        prepare_instances(gray, (4, 5), 2)


def _reference_augment(bag, flip, contrast, brightness):
    x = bag[:, :, ::-1] if flip else bag
    return np.clip((x - np.float32(127.5)) * np.float32(contrast) + np.float32(127.5) + np.float32(brightness), 0, 255)


def test_augmentation_parameters_are_in_range_and_both_flips_happen():
    flips = []
    for s in range(200):
        flip, contrast, brightness = (v.numpy() for v in augmentation_parameters((s, 5)))
        assert CONTRAST[0] <= contrast < CONTRAST[1] and BRIGHTNESS[0] <= brightness < BRIGHTNESS[1]
        flips.append(bool(flip))
    assert 60 < sum(flips) < 140


def test_augment_bag_flips_left_right_and_scales_about_mid_grey_for_the_whole_bag():
    bag = np.random.default_rng(1).uniform(0, 255, (3, 4, 6, 3)).astype(np.float32)
    bag[1] = bag[0]  # two equal instances stay equal: one draw per bag
    flips = set()
    for s in range(12):
        seed = (s, 9)
        flip, contrast, brightness = (v.numpy() for v in augmentation_parameters(seed))
        got = augment_bag(bag, seed).numpy()
        np.testing.assert_allclose(got, _reference_augment(bag, flip, contrast, brightness), rtol=0, atol=1e-4)
        np.testing.assert_array_equal(got[0], got[1])
        np.testing.assert_array_equal(got, augment_bag(bag, seed).numpy())
        flips.add(bool(flip))
    assert flips == {True, False}
    assert not np.array_equal(augment_bag(bag, (0, 9)).numpy(), augment_bag(bag, (1, 9)).numpy())


# Recorded from make_dataset before sampling and augmentation moved to mims_tf.data.transforms
# (commit 6e9cccc): `(label, kept instances)` of the first 6 training batches and the first
# 4 augmented rows of a ramp. The refactor must not change a run's data.
RECORDED_SAMPLES = {
    4: [(1, [1, 1, 2, 2]), (0, [1, 2, 6, 9]), (1, [0, 2, 2, 2]), (0, [3, 5, 6, 7]), (1, [1, 1, 2, 2]),
        (0, [2, 3, 4, 8])],
    (2, 6): [(1, [1, 1, 2, 2]), (0, [1, 2, 6, 9]), (1, [0, 1]), (0, [3, 5, 6, 7]), (1, [1, 1, 2, 2]), (0, [3, 8])],
}
RECORDED_EVALUATION = [(0, [0, 1, 4, 5]), (1, [0, 0, 2, 2])]
RECORDED_AUGMENTED = [
    [24.0331, 72.1961, 120.3591, 168.5221, 216.685],
    [8.4431, 72.9878, 137.5324, 202.0771, 255.0],
    [216.2281, 158.7358, 101.2434, 43.751, 0.0],
    [0.0, 35.5886, 100.8871, 166.1856, 231.4841],
]


def test_make_dataset_gives_the_recorded_samples_and_augmentation(tmp_path):
    rows = []
    for i, count in enumerate([10, 3]):
        np.save(tmp_path / f"v{i}.npy", _bag(count, 6, 5)[..., 0])
        rows.append({"path": str(tmp_path / f"v{i}.npy"), "label": i, "split": "train"})
    source = BagSource(from_rows(rows), normalize="none", progress=False)
    for instances, expected in RECORDED_SAMPLES.items():
        data = make_dataset(source, True, image_size=(6, 5), instances=instances, augment=False, seed=0, repeat=True,
                            replacement=True)  # recorded with 0.1, which copied instances of small bags
        got = [(int(y[0]), x.numpy()[0, :, 0, 0, 0].astype(int).tolist()) for x, y in data.take(6)]
        assert got == expected
    data = make_dataset(source, False, image_size=(6, 5), instances=4, seed=0, replacement=True)
    assert [(int(y[0]), x.numpy()[0, :, 0, 0, 0].astype(int).tolist()) for x, y in data] == RECORDED_EVALUATION

    np.save(tmp_path / "ramp.npy", np.broadcast_to(np.arange(5, dtype=np.float32) * 60, (2, 1, 5)).copy())
    ramp = BagSource(from_rows([{"path": str(tmp_path / "ramp.npy"), "label": 0, "split": "train"}]), normalize="none",
                     progress=False)
    data = make_dataset(ramp, True, image_size=(1, 5), channels=1, seed=0, repeat=True)
    got = [x.numpy()[0, 0, 0, :, 0] for x, _ in data.take(4)]
    np.testing.assert_allclose(got, RECORDED_AUGMENTED, rtol=0, atol=1e-3)


def test_transforms_do_not_import_tensorflow_at_module_level():
    import ast

    import mims_tf.data.transforms as module

    tree = ast.parse(open(os.path.abspath(module.__file__)).read())
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not any("tensorflow" in ast.dump(n) for n in top_imports)
