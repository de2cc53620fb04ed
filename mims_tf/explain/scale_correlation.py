"""Supplement B: how much do a backbone's features of a resized image correlate with the original's?

For each image, the backbone's globally average-pooled features at each scale
are compared with those at scale 1 by Pearson correlation; the table reports
the mean (and spread) over images, like the paper's Table 3 (ResNet-101 on 100
CRC-MSI tiles: 0.261 at 2x, 0.451 at 0.75x, 0.257 at 0.5x). A low correlation
means an image pyramid hands the next layer unrelated features per scale.
"""

import os

import numpy as np

from mims_tf.data.readers import IMAGE_SUFFIXES, read_volume


def find_images(folder, count, seed=0):
    """`count` image files drawn at random (seeded) from `folder` and its subfolders."""
    files = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_SUFFIXES)
    )
    if not files:
        raise ValueError(f"{folder}: no image files")
    if count > len(files):
        raise ValueError(f"{folder}: asked for {count} images, found {len(files)}. Received: count={count}")
    picked = np.random.default_rng(seed).choice(len(files), size=count, replace=False)
    return [files[i] for i in sorted(picked)]


def pearson(a, b):
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-12)


def scale_correlation(files, backbone="mobilenet", weights="imagenet", scales=(2.0, 0.75, 0.5), batch_size=16,
                      **backbone_kwargs):
    """Returns `{scale: (mean, std)}` of per-image Pearson correlations with scale 1.

    Args:
        files: RGB image files (all the same size).
        backbone, weights, backbone_kwargs: as `mims_tf.models.build_backbone`.
        scales: resize factors compared with 1.
        batch_size: images per forward pass.
    """
    import keras
    import tensorflow as tf

    from mims_tf.layers import BackbonePreprocessing
    from mims_tf.models import build_backbone
    from mims_tf.models.backbones import preprocessing_mode

    images = np.stack([read_volume(f).array[0] for f in files]).astype(np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"scale correlation needs RGB images of one size; got shape {images.shape}")
    net = build_backbone(backbone, weights=weights, **backbone_kwargs)
    preprocess = BackbonePreprocessing(preprocessing_mode(backbone))
    height, width = images.shape[1:3]

    def features(scale):
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            if scale != 1.0:
                x = tf.image.resize(x, (round(height * scale), round(width * scale)), method="bilinear")
            maps = net(preprocess(x), training=False)
            out.append(keras.ops.convert_to_numpy(keras.ops.mean(maps, axis=(1, 2))))
        return np.concatenate(out)

    reference = features(1.0)
    table = {}
    for scale in scales:
        r = pearson(features(scale), reference)
        table[scale] = (float(r.mean()), float(r.std()))
    return table


def format_table(table, title):
    lines = [title, "", "| scale | Pearson correlation (mean +- std over images) |", "|---|---|"]
    lines += [f"| {scale:g} | {mean:.3f} +- {std:.3f} |" for scale, (mean, std) in table.items()]
    return "\n".join(lines)
