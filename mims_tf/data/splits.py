"""Splits: `assign_splits` draws train / val / test for a manifest's groups, stratified by label and
reproducible by seed (rows the user placed are never moved); `shared_content` finds the same image in two
splits (a copied file, a duplicate in a published set)."""

import collections
import hashlib
import itertools
import os

import numpy as np

from mims_tf.data.errors import DataError, rows_text
from mims_tf.data.manifest import check_shared_groups, name_groups
from mims_tf.data.readers import split_item

_EDGE = 1 << 16  # bytes hashed at each end of a file to find candidates before hashing it whole


def check_fractions(fractions, name="fractions"):
    """`(train, val, test)` as floats: each >= 0, train > 0, summing to 1; else a `ValueError`."""
    try:
        train, val, test = (float(f) for f in fractions)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` are (train, val, test). Received: {name}={fractions!r}") from None
    if not min(train, val, test) >= 0 or not abs(train + val + test - 1) <= 1e-6 or train <= 0:
        raise ValueError(f"`{name}` are (train, val, test), nonnegative, train above 0, summing to 1. "
                         f"Received: {name}={fractions!r}")
    return train, val, test


def fold_share(fraction, groups, most_folds=20):
    """`(taken, folds)`: hold out `taken` of `folds` group folds, near `fraction`; `(None, None)` if nothing is.

    One fold of `round(1 / fraction)` where that is within 0.02 (0.15: 1 of 7; 0.2: 1 of 5); else the nearest
    share of at most 20 folds, the fewest folds on a tie (0.6: 3 of 5, where one fold of 2, 50 %, was used
    before), if within 0.02 or a third of `fraction`, whichever is more (0.01 is never 5 %).
    """
    one = max(2, round(1 / fraction))
    if one <= groups and abs(1 / one - fraction) <= 0.02:
        return 1, one
    shares = [(abs(taken / folds - fraction), folds, taken) for folds in range(2, min(groups, most_folds) + 1)
              for taken in range(1, folds)]
    error, folds, taken = min(shares, default=(1.0, None, None))
    return (taken, folds) if error <= max(0.02, fraction / 3) + 1e-9 else (None, None)


def assign_splits(manifest, fractions=(0.7, 0.15, 0.15), seed=0, allow_shared_groups=False, group_pattern=None):
    """Returns a copy with `split` set to train / val / test, by group, stratified by label.

    Uses scikit-learn's `StratifiedGroupKFold` over the groups: a bag's `group`, else
    the group its file names show (the `group_pattern` match, else a TCGA patient id;
    see `name_groups`; not with `allow_shared_groups`), else the bag itself. The test part is one fold of
    `round(1 / test)` folds (`fold_share`: several folds where one cannot come near), then val likewise from the rest.
    A group (so a bag) never crosses splits, so one tile per bag still keeps a patient's tiles in one
    split; the same seed gives the same splits. Fractions are approximate (whole groups).

    Rows the user placed are never moved: a manifest whose split column is
    partly filled is an error. A split that puts one TCGA patient id (or one
    `group_pattern` match) of the file names in two splits is refused unless
    `allow_shared_groups=True` (see `check_shared_groups`).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    train, val, test = check_fractions(fractions)
    empty = [number for number, row in zip(manifest.lines, manifest.rows) if not row["split"]]
    if empty and len(empty) < len(manifest.rows):
        raise DataError(manifest.source, f"{rows_text(empty)}: empty split while other rows have one; rows the user "
                                         "placed are never moved: fill in every split, or clear the whole split column")
    if not allow_shared_groups:  # accepting shared groups: the bags themselves are split (patients may span)
        manifest = name_groups(manifest, group_pattern)
    bags = manifest.bags()
    bag_names = [bag.bag for bag in bags]
    labels = np.array([bag.label for bag in bags])
    group_of_bag = {row["bag"]: row["group"] for row in manifest.rows}
    group_ids = np.array([group_of_bag[name] for name in bag_names])
    split = np.array(["train"] * len(bag_names), dtype=object)

    def hold_out(indices, fraction, name, seed_offset):
        groups = len(set(group_ids[indices]))
        taken, folds = fold_share(fraction, groups)
        if folds is None:
            raise DataError(manifest.source, f"too few groups ({groups}) for a {name} split of {fraction:.0%}")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + seed_offset)
        for _, held in itertools.islice(splitter.split(np.zeros(len(indices)), labels[indices], group_ids[indices]),
                                        taken):
            split[indices[held]] = name

    everything = np.arange(len(bag_names))
    if test > 0:
        hold_out(everything, test, "test", 0)
    if val > 0:
        rest = everything[split == "train"]
        hold_out(rest, val / (train + val), "val", 1)
    result = manifest.with_splits(dict(zip(group_ids, split)))
    if not allow_shared_groups:
        check_shared_groups(result, group_pattern)
    return result


def assign_folds(manifest, folds, seed=0, allow_shared_groups=False, group_pattern=None):
    """Returns a copy with a `fold` column (1..folds) on the pool (the train and val bags), by group, stratified
    by label (scikit-learn's `StratifiedGroupKFold`); test bags keep their split and an empty fold.

    A group (a patient) is in one fold only, and every pool bag is in exactly one fold: fold k's bags are
    validation for the model trained on the others (its out-of-fold predictions).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`folds` must be an integer >= 2. Received: folds={folds!r}")
    if not allow_shared_groups:
        manifest = name_groups(manifest, group_pattern)
    pool = [bag for bag in manifest.bags() if bag.split in ("train", "val")]
    group_of_bag = {row["bag"]: row["group"] for row in manifest.rows}
    groups = np.array([group_of_bag[bag.bag] for bag in pool])
    labels = np.array([bag.label for bag in pool])
    if len(set(groups.tolist())) < folds:
        raise DataError(manifest.source, f"{len(set(groups.tolist()))} groups (patients) in the train and val splits: "
                                         f"too few for {folds} folds")
    # counted in groups: a patient's bags go to one fold together, so a class needs a patient per fold
    groups_of_class = [len(set(groups[labels == c].tolist())) for c in range(len(manifest.classes))]
    smallest = int(np.argmin(groups_of_class))
    if groups_of_class[smallest] < folds:
        raise DataError(manifest.source, f"class {manifest.classes[smallest]!r} is in {groups_of_class[smallest]} "
                                         f"group(s) (patients) of the train and val splits: too few for {folds} folds "
                                         "(each fold validates every class)")
    fold_of_group = {}
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for number, (_, held) in enumerate(splitter.split(np.zeros(len(pool)), labels, groups), start=1):
        missing = [manifest.classes[c] for c in range(len(manifest.classes)) if not np.any(labels[held] == c)]
        if missing:  # possible where classes cluster in a few large patients
            raise DataError(manifest.source, f"fold {number} of {folds} would validate no bag of class "
                                             f"{missing[0]!r} (patients hold their bags together): use fewer folds")
        for group in groups[held]:
            fold_of_group[group] = number
    rows = [dict(row, fold=str(fold_of_group[row["group"]]) if row["split"] in ("train", "val") else "")
            for row in manifest.rows]
    return type(manifest)(rows, list(manifest.classes), manifest.source, manifest.lines)


def shared_content(manifest):
    """Rows of different splits whose content is identical: files byte for byte, `.npz` items array for array.

    Files are compared by size, then by a hash of five samples (ends and middle), then whole; folders (image
    stacks) are not compared. Unreadable files are left to the readers, which name them when the bag is read.

    Returns:
        A list of groups, each a sorted list of `(split, path)` with at least two splits.
    """
    digests = []
    by_size = collections.defaultdict(list)
    arrays = collections.defaultdict(list)
    for row in manifest.rows:
        file_path, item = split_item(row["path"])
        if item:
            arrays[file_path].append((item, row["split"], row["path"]))
        elif os.path.isfile(file_path):
            by_size[_size(file_path)].append((row["split"], row["path"], file_path))
    for group in by_size.values():
        if len({split for split, _, _ in group}) < 2:
            continue
        edges = collections.defaultdict(list)
        for split, path, file_path in group:
            edges[_file_hash(file_path, _EDGE)].append((split, path, file_path))
        for candidates in edges.values():
            if len({split for split, _, _ in candidates}) > 1:
                digests += [(_file_hash(file_path), split, path) for split, path, file_path in candidates]
    for file_path, items in arrays.items():
        digests += _item_hashes(file_path, items)
    groups = collections.defaultdict(list)
    for digest, split, path in digests:
        if digest is not None:
            groups[digest].append((split, path))
    return [sorted(members) for members in groups.values() if len({split for split, _ in members}) > 1]


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _file_hash(path, edge=None):
    """SHA-256 of the whole file, or (`edge`) of its size and `edge` bytes at its start, its end and three points
    between (volumes of one shape share their headers and background edges); None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            if edge is None:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
            else:
                size = os.fstat(f.fileno()).st_size
                digest.update(repr(size).encode())
                for start in sorted({0, *(max(0, size * k // 4 - edge // 2) for k in (1, 2, 3)), max(0, size - edge)}):
                    f.seek(start)
                    digest.update(f.read(edge))
    except OSError:
        return None
    return digest.hexdigest()


def _item_hashes(path, items):
    """`(digest, split, path)` of `.npz` items `key/index` (or `key`); none where the file cannot be read."""
    found = []
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {}
            for item, split, row_path in items:
                key, _, index = item.partition("/")
                if key not in loaded:
                    loaded[key] = data[key]
                array = np.ascontiguousarray(loaded[key][int(index)] if index else loaded[key])
                digest = hashlib.sha256(repr((array.shape, array.dtype.str)).encode() + array.tobytes()).hexdigest()
                found.append((digest, split, row_path))
    except Exception:  # noqa: BLE001 - a damaged .npz is named by the readers when its bags are read
        return found
    return found
