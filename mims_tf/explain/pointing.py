"""The pointing game: does a heatmap's peak fall on the lesion that makes a bag positive?

For a positive bag whose lesions are known (the synthetic set's `<split>_masks`,
`mims_tf.data.synthetic`), the heatmap of `explain_bag` is computed over all the
bag's slices (`contributions`, then `heatmaps` with the blur `explain_bag` draws
with) and its single peak, over every slice of the bag, is a hit when it lies
inside a planted lesion of that slice or within `tolerance` pixels of one
(Euclidean distance; `TOLERANCE` = 3 px by default: the blur spreads a peak by
about 2 px at 64 px, and a lesion's soft edge reaches beyond its mask). The hit
rate over the positive bags is the measure (the pointing game of Zhang et al.,
"Top-down neural attention by excitation backprop", ECCV 2016).
"""

import numpy as np

from mims_tf.explain.heatmap import BLUR, contributions, heatmaps

TOLERANCE = 3  # pixels between the heatmap's peak and the nearest lesion pixel that still count as a hit


def peak(t, size, blur=BLUR):
    """`(slice, row, column)` of the largest value of the bag's heatmaps (as `explain_bag` draws them).

    Args:
        t: contribution maps `(S, h, w)` of one bag (`contributions`).
        size: `(H, W)` of the images.
        blur: as in `heatmaps` (`BLUR`: as `explain_bag` draws them).
    """
    maps = heatmaps(t, size, blur=blur)
    s, y, x = np.unravel_index(int(np.argmax(maps)), maps.shape)
    return int(s), int(y), int(x)


def distance_to_lesion(mask, y, x):
    """Euclidean distance in pixels from `(y, x)` to the nearest `True` pixel of the 2-D `mask` (0 inside it;
    inf where the slice holds no lesion)."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("inf")
    return float(distance_transform_edt(~mask)[y, x])


def pointing_game(model, bags, masks, tolerance=TOLERANCE, layer_name=None, method=None, blur=BLUR):
    """Scores each positive bag: is the peak of its heatmap (over all its slices) on a planted lesion?

    Args:
        model: a model from `build_model` (or loaded from a run).
        bags: iterable of float32 `(1, S, H, W, C)` bags, read as the model reads them.
        masks: iterable of bool `(S, H, W)` lesion masks, one per bag, aligned with its slices.
        tolerance: a peak this many pixels (Euclidean) from a lesion pixel of its slice still counts.
        layer_name, method: as in `contributions` (default: the defaults of `explain_bag`).
        blur: as in `heatmaps` (default: `explain_bag`'s).

    Returns:
        `{"hit_rate", "hits", "bags", "tolerance", "per_bag": [{"slice", "row", "column", "distance", "hit",
        "probability"}, ...]}`: `hit_rate` is `hits / bags`.
    """
    if not 0 <= tolerance < float("inf"):
        raise ValueError(f"`tolerance` must be a non-negative number of pixels. Received: tolerance={tolerance!r}")
    per_bag = []
    for bag, mask in zip(bags, masks):
        mask = np.asarray(mask, bool)
        if mask.shape != bag.shape[1:4]:
            raise ValueError(f"a lesion mask of shape {mask.shape} for a bag of {bag.shape[1]} slices of "
                             f"{bag.shape[2]} x {bag.shape[3]} px: the masks must match the bags as the model "
                             "reads them (resize neither)")
        if not mask.any():
            raise ValueError("a bag without lesions: the pointing game scores positive bags only")
        t, probs = contributions(model, bag, layer_name, class_index=1, method=method)
        s, y, x = peak(t, bag.shape[2:4], blur=blur)
        distance = distance_to_lesion(mask[s], y, x)
        per_bag.append({"slice": s, "row": y, "column": x, "distance": distance, "hit": distance <= tolerance,
                        "probability": float(probs[1])})
    if not per_bag:
        raise ValueError("the pointing game needs at least one positive bag. Received: none")
    hits = sum(b["hit"] for b in per_bag)
    return {"hit_rate": hits / len(per_bag), "hits": hits, "bags": len(per_bag), "tolerance": tolerance,
            "per_bag": per_bag}
