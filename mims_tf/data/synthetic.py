"""A synthetic MIL set: textured volumes where positive bags hold a few lesions of varying size.

Deterministic by seed. It is the built-in data of `mims demo` and a controlled
test of scale invariance: train on one lesion size range, test on another.
Each lesion is a bright, soft-edged ellipse with a darker rim (so it is not
found by brightness alone), planted in a few slices of a positive volume.
Where every lesion lies is kept: its mask (`<split>_masks`) and its centre and
radii (`<split>_lesions`, one row per lesion, `LESION_COLUMNS`), so heatmaps
can be scored against it (`mims_tf.explain.pointing`).
"""

import os

import numpy as np

from mims_tf.data.errors import DataError
from mims_tf.utils import atomic_path

# The columns of `<split>_lesions`: the bag's index in its split, the slice, the centre (row, column) and the
# ellipse's radii (rows, columns) in pixels; the mask marks the pixels within the ellipse.
LESION_COLUMNS = ("bag", "slice", "row", "column", "radius_rows", "radius_columns")


def _texture(rng, shape, smooth):
    """Smooth noise in [0, 1] per slice (Gaussian-filtered white noise)."""
    from scipy.ndimage import gaussian_filter

    noise = rng.normal(size=shape).astype(np.float32)
    noise = gaussian_filter(noise, sigma=(0, smooth, smooth))
    noise -= noise.min(axis=(1, 2), keepdims=True)
    noise /= noise.max(axis=(1, 2), keepdims=True) + 1e-6
    return noise


def make_volumes(count=64, instances=16, size=64, lesion_size=(4, 12), lesion_slices=(1, 3),
                 lesions_per_slice=(1, 2), positive_fraction=0.5, contrast=0.35, seed=0, return_lesions=False):
    """Generates volumes, labels and lesion masks (and, on request, each lesion's centre and radii).

    Args:
        count: number of volumes (bags).
        instances: slices per volume.
        size: slice height and width.
        lesion_size: (min, max) lesion diameter in pixels.
        lesion_slices: (min, max) number of slices with lesions in a positive volume.
        lesions_per_slice: (min, max) lesions in such a slice.
        positive_fraction: share of positive volumes.
        contrast: lesion brightness above the background, in [0, 1].
        seed: fixes everything.
        return_lesions: also return the lesions' table (the volumes are the same either way).

    Returns:
        `(volumes, labels, masks)`: uint8 `(count, instances, size, size)`, int
        `(count,)`, bool `(count, instances, size, size)` marking lesion pixels;
        with `return_lesions`, `(volumes, labels, masks, lesions)`: float32
        `(lesion count, 6)`, one row per planted lesion in `LESION_COLUMNS` order.
    """
    low, high = lesion_size
    if not 1 <= low <= high < size:
        raise ValueError("`lesion_size` needs 1 <= min <= max < size. "
                         f"Received: lesion_size={lesion_size}, size={size}")
    if not 1 <= lesion_slices[0] <= lesion_slices[1] <= instances:
        raise ValueError(f"`lesion_slices` must be within 1..instances. Received: lesion_slices={lesion_slices}")
    rng = np.random.default_rng(seed)
    labels = (rng.permutation(count) < round(count * positive_fraction)).astype(np.int64)
    background = 0.35 + 0.3 * _texture(rng, (count * instances, size, size), smooth=1.5)
    background += 0.1 * _texture(rng, (count * instances, size, size), smooth=6.0)
    volumes = background.reshape(count, instances, size, size)
    masks = np.zeros(volumes.shape, dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    lesions = []
    for bag in np.flatnonzero(labels):
        n_slices = rng.integers(lesion_slices[0], lesion_slices[1] + 1)
        for s in rng.choice(instances, size=n_slices, replace=False):
            for _ in range(rng.integers(lesions_per_slice[0], lesions_per_slice[1] + 1)):
                diameter = rng.uniform(low, high)
                ry, rx = diameter / 2 * rng.uniform(0.7, 1.0, size=2)
                cy, cx = rng.uniform(ry, size - ry), rng.uniform(rx, size - rx)
                r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
                lesion = np.clip(1.5 - r, 0, 1) ** 0.5 * contrast - np.clip(1.0 - abs(r - 1.25) * 4, 0, 1) * 0.15
                volumes[bag, s] += lesion
                masks[bag, s] |= r <= 1.0
                lesions.append((bag, s, cy, cx, ry, rx))
    volumes = (np.clip(volumes, 0, 1) * 255).astype(np.uint8)
    if return_lesions:
        return volumes, labels, masks, np.asarray(lesions, np.float32).reshape(-1, len(LESION_COLUMNS))
    return volumes, labels, masks


def write_dataset(folder, seed=0, splits=(("train", 96), ("val", 32), ("test", 32)), **kwargs):
    """Writes `synthetic.npz` (MedMNIST-style: `<split>_images`, `<split>_labels`; and where the lesions are:
    `<split>_masks`, bool like the images, and `<split>_lesions`, one row per lesion in `LESION_COLUMNS` order).

    Each split uses its own seed (`seed`, `seed + 1`, ...); `kwargs` go to
    `make_volumes` (a dict per split is allowed: `lesion_size={"test": (12, 20)}`
    tests scale invariance). Returns the npz path; `layouts.from_medmnist`
    reads it.
    """
    os.makedirs(folder, exist_ok=True)
    arrays = {}
    for offset, (split, count) in enumerate(splits):
        options = {k: (v.get(split, next(iter(v.values()))) if isinstance(v, dict) else v) for k, v in kwargs.items()}
        volumes, labels, masks, lesions = make_volumes(count=count, seed=seed + offset, return_lesions=True,
                                                       **options)
        arrays.update({f"{split}_images": volumes, f"{split}_labels": labels[:, None], f"{split}_masks": masks,
                       f"{split}_lesions": lesions})
    path = os.path.join(folder, "synthetic.npz")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    if not os.path.getsize(path):
        raise DataError(path, "empty file written")
    return path
