"""Manifests of known dataset layouts: `from_medmnist` (a MedMNIST-style `.npz`, its official splits) and
`from_class_folders` (one folder per class; the bag from the file name by a pattern, e.g. the TCGA
patient of a Kather tile, or one bag per file).

Both build their rows and hand them to `mims_tf.data.manifest.from_rows`, which checks them.
"""

import logging
import os

import numpy as np

from mims_tf.data.arrays import npz_shape, read_npz_array
from mims_tf.data.errors import DataError
from mims_tf.data.labels import declared_classes
from mims_tf.data.manifest import SPLITS, _compile, _match_name, from_rows
from mims_tf.data.readers import IMAGE_SUFFIXES, TIFF_SUFFIXES, check_regular, natural_key

logger = logging.getLogger("mims_tf")


def from_medmnist(npz_path, classes=None):
    """One row per item of a MedMNIST-style npz (`<split>_images`, `<split>_labels`), official splits.

    Paths are `npz_path#<split>_images/<index>`; each item is its own bag.
    """
    npz_path = os.fspath(npz_path)
    if not os.path.exists(npz_path):
        raise DataError(npz_path, "file not found")
    check_regular(npz_path, folders=False)
    import zipfile

    try:
        with zipfile.ZipFile(npz_path) as archive:
            keys = {name[:-4] if name.endswith(".npy") else name for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(npz_path, "unreadable or corrupt .npz file: not a zip archive, "
                                  f"or truncated ({error})") from None
    labels = {}
    for split in SPLITS:
        if f"{split}_labels" not in keys:
            continue
        values = read_npz_array(npz_path, f"{split}_labels")
        if values.ndim == 0 or values.dtype.kind not in "uifb":
            raise DataError(npz_path, f"{split}_labels is not an array of class numbers "
                                      f"(shape {values.shape}, {values.dtype})")
        values = values.reshape(len(values), -1)
        if values.dtype.kind == "f" and not (np.isfinite(values).all() and (values == np.round(values)).all()):
            raise DataError(npz_path, f"{split}_labels holds values that are not whole class numbers")
        if f"{split}_images" not in keys:
            raise DataError(npz_path, f"{split}_labels has no {split}_images array")
        shape = npz_shape(npz_path, f"{split}_images")
        if not shape or shape[0] != len(values):
            raise DataError(npz_path, f"{split}_images has {shape[0] if shape else 0} items but {split}_labels "
                                      f"has {len(values)}")
        labels[split] = values
    if not labels:
        raise DataError(npz_path, "no <split>_labels arrays: not a MedMNIST-style file")
    rows = []
    for split, values in labels.items():
        if values.shape[1] != 1:
            raise DataError(npz_path, f"{split}_labels has {values.shape[1]} columns: "
                                      "multi-label files are not supported")
        for index, label in enumerate(values[:, 0]):
            rows.append({"path": f"{npz_path}#{split}_images/{index}", "label": str(int(label)),
                         "bag": f"{split}/{index}", "split": split})
    return from_rows(rows, classes, source=npz_path)


def from_class_folders(root, bag_pattern=None, classes=None, suffixes=IMAGE_SUFFIXES + TIFF_SUFFIXES,
                       one_bag_per_file=False):
    """One row per file in `root/<class>/`; the class is the folder name.

    The grouping of files into bags must be given: `bag_pattern`, or `one_bag_per_file=True`
    (then a patient's files may land in different splits: `assign_splits` refuses a split
    that puts one TCGA patient, or one `group_pattern` match, in two splits).

    Args:
        root: folder with one subfolder per class.
        bag_pattern: regular expression searched in each file name; its group
            `bag` (or group 1, or the whole match) names the bag.
            Kather tiles: `r"TCGA-\\w\\w-\\w\\w\\w\\w"` (one bag per patient).
        classes: class folder names in index order; the last is the positive
            class of a binary task (Kather: `["MSS_JPEG", "MSIMUT_JPEG"]`). Default:
            every class folder, sorted by name (logged, as it may pick the wrong positive class).
        suffixes: file name endings to include.
        one_bag_per_file: each file is its own bag (needed when `bag_pattern` is None).
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(root, "folder not found")
    if bag_pattern and one_bag_per_file:
        raise ValueError(f"Give either `bag_pattern` or `one_bag_per_file=True`, not both. "
                         f"Received: bag_pattern={bag_pattern!r}, one_bag_per_file={one_bag_per_file!r}")
    class_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if classes is not None:
        classes = declared_classes(classes)
        unknown = sorted(set(classes) - set(class_dirs))
        if unknown:
            raise DataError(root, f"no class folder(s) {', '.join(unknown)} (has {', '.join(class_dirs)})")
        class_dirs = list(classes)
    if not class_dirs:
        raise DataError(root, "no class folders")
    if not bag_pattern and not one_bag_per_file:
        raise DataError(root, "the grouping of files into bags must be given: a bag pattern (bag_pattern, e.g. "
                              "a patient id in the file names) or one bag per file (one_bag_per_file=True)")
    if classes is None:
        logger.warning("%s: classes not given; using the class folders sorted by name: %s (the last, %s, is the "
                       "positive class of a binary task); pass classes to choose the order",
                       root, ", ".join(class_dirs), class_dirs[-1])
    pattern = _compile(bag_pattern, "bag_pattern") if bag_pattern else None
    rows = []
    for name in class_dirs:
        folder = os.path.join(root, name)
        files = [f for f in sorted(os.listdir(folder), key=natural_key)
                 if f.lower().endswith(suffixes) and not f.startswith(".")]
        if not files:
            raise DataError(folder, f"class folder without files ending in {', '.join(suffixes)}")
        for file in files:
            bag = file
            if pattern:
                match = pattern.search(file)
                if not match:
                    raise DataError(os.path.join(folder, file), f"file name does not match bag_pattern {bag_pattern!r}")
                bag = _match_name(match, "bag")
            rows.append({"path": os.path.join(folder, file), "label": name, "bag": bag})
    return from_rows(rows, class_dirs, source=root)
