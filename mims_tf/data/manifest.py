"""Manifests: a CSV of `path, label, bag, split` (plus optional `group` and any extra columns).

One row is one file (a volume, a 2D image, a tile). Rows with the same `bag`
form one bag (e.g. the tiles of a patient); a bag has one label and one split.
`group` (default: the bag) keeps related bags, such as two eyes of one patient,
in the same split. Relative paths are relative to the CSV's folder.

Builders for known layouts: `from_medmnist` (official splits),
`from_class_folders` (one folder per class; the bag from the file name by a
pattern, e.g. the TCGA patient of a Kather tile), `from_files`. Splits:
`assign_splits` (stratified by label, grouped by `group`, reproducible by seed).
"""

import collections
import csv
import dataclasses
import os
import re

import numpy as np

from mims_tf.data.errors import DataError
from mims_tf.data.readers import IMAGE_SUFFIXES, TIFF_SUFFIXES, natural_key
from mims_tf.utils import atomic_open

REQUIRED = ("path", "label")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Bag:
    """One bag: its id, label index, label name, split and files."""

    bag: str
    label: int
    label_name: str
    split: str
    paths: list


@dataclasses.dataclass
class Manifest:
    """Rows (dicts with at least path, label, bag, split, group) and the class names in index order."""

    rows: list
    classes: list
    source: str = "<manifest>"

    def __post_init__(self):
        self.validate()

    def __len__(self):
        return len(self.rows)

    def validate(self):
        """Raises DataError for duplicates, unknown labels, mixed-label bags, bags across splits."""
        if not self.rows:
            raise DataError(self.source, "manifest has no rows")
        seen = {}
        bag_labels = collections.defaultdict(set)
        bag_splits = collections.defaultdict(set)
        group_splits = collections.defaultdict(set)
        for number, row in enumerate(self.rows, start=2):  # row 1 is the header
            if row["path"] in seen:
                raise DataError(self.source, f"duplicate path {row['path']} (rows {seen[row['path']]} and {number})")
            seen[row["path"]] = number
            if row["label"] not in self.classes:
                raise DataError(self.source, f"row {number}: unknown label {row['label']!r} (classes: {', '.join(self.classes)})")
            bag_labels[row["bag"]].add(row["label"])
            bag_splits[row["bag"]].add(row["split"])
            group_splits[row["group"]].add(row["split"])
        for bag, labels in bag_labels.items():
            if len(labels) > 1:
                raise DataError(self.source, f"bag {bag!r} has rows with different labels: {', '.join(sorted(labels))}")
        for bag, splits in bag_splits.items():
            if len(splits) > 1:
                raise DataError(self.source, f"bag {bag!r} is in several splits: {', '.join(sorted(splits))}")
        for group, splits in group_splits.items():
            if len(splits) > 1:
                raise DataError(self.source, f"group {group!r} is in several splits: {', '.join(sorted(splits))}")

    def check_files(self):
        """Raises DataError for the first row whose file does not exist."""
        for number, row in enumerate(self.rows, start=2):
            file_path = row["path"].split("#")[0]
            if not os.path.exists(file_path):
                raise DataError(file_path, f"file not found (row {number} of {self.source})")
        return self

    def bags(self, split=None):
        """Returns the bags of a split (all if None) in order of first appearance."""
        if split is not None and split not in {row["split"] for row in self.rows}:
            counts = ", ".join(f"{k}: {v}" for k, v in self.split_counts().items())
            raise DataError(self.source, f"split {split!r} is empty ({counts})")
        bags = {}
        for row in self.rows:
            if split is not None and row["split"] != split:
                continue
            if row["bag"] not in bags:
                label = row["label"]
                bags[row["bag"]] = Bag(row["bag"], self.classes.index(label), label, row["split"], [])
            bags[row["bag"]].paths.append(row["path"])
        return list(bags.values())

    def split_counts(self):
        """Returns {split: number of bags}."""
        counts = collections.Counter()
        seen = set()
        for row in self.rows:
            if row["bag"] not in seen:
                seen.add(row["bag"])
                counts[row["split"] or "(none)"] += 1
        return dict(counts)

    def label_counts(self, split=None):
        """Returns {label: number of bags} in a split (all if None)."""
        return dict(collections.Counter(bag.label_name for bag in self.bags(split)))

    def with_splits(self, splits_by_group):
        """Returns a copy whose rows get `split = splits_by_group[row["group"]]`."""
        rows = [dict(row, split=splits_by_group[row["group"]]) for row in self.rows]
        return Manifest(rows, list(self.classes), self.source)


def _normalize_rows(rows, source, base=None):
    out = []
    for number, row in enumerate(rows, start=2):
        missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
        if missing:
            raise DataError(source, f"row {number}: empty {', '.join(missing)}")
        row = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        file_path, hash_mark, item = row["path"].partition("#")
        if not os.path.isabs(file_path):  # relative to the CSV's folder, else to the working directory
            file_path = os.path.normpath(os.path.join(base or os.getcwd(), file_path))
        path = row["path"] = file_path + hash_mark + item
        row["bag"] = row.get("bag") or path
        row["group"] = row.get("group") or row["bag"]
        row["split"] = row.get("split") or ""
        out.append(row)
    return out


def _class_names(labels, classes):
    if classes is not None:
        return [str(c) for c in classes]
    unique = sorted(set(labels))
    if all(re.fullmatch(r"-?\d+", label) for label in unique):
        return sorted(unique, key=int)
    return unique


def read_manifest(path, classes=None, check_files=True, require_labels=True):
    """Reads and validates a manifest CSV.

    Args:
        path: the CSV file.
        classes: label names in index order (default: sorted labels; numeric
            labels sort numerically). A label not in `classes` is an error.
        check_files: fail on rows whose file does not exist.
        require_labels: False for manifests of unlabelled files (prediction):
            a missing label column or empty labels become "?".
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(path, "manifest not found")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in columns and (require_labels or c != "label")]
            if missing:
                raise DataError(path, f"missing column(s) {', '.join(missing)}; a manifest has path, label, bag, split")
            rows = list(reader)
            if not require_labels:
                rows = [dict(row, label=row.get("label") or "?") for row in rows]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(path, f"not a readable CSV file ({error})") from None
    rows = _normalize_rows(rows, path, base=os.path.dirname(os.path.abspath(path)))
    manifest = Manifest(rows, _class_names([r["label"] for r in rows], classes), path)
    return manifest.check_files() if check_files else manifest


def write_manifest(manifest, path):
    """Writes the CSV atomically (a temporary file renamed into place)."""
    path = os.fspath(path)
    columns = ["path", "label", "bag", "split", "group"]
    extra = sorted({k for row in manifest.rows for k in row} - set(columns))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=columns + extra)
        writer.writeheader()
        writer.writerows(manifest.rows)
    return path


def from_rows(rows, classes=None, source="<rows>"):
    """A manifest from dicts with path and label (bag, split, group optional)."""
    rows = _normalize_rows([{k: str(v) if v is not None else "" for k, v in r.items()} for r in rows], source)
    return Manifest(rows, _class_names([r["label"] for r in rows], classes), source)


def from_medmnist(npz_path, classes=None):
    """One row per item of a MedMNIST-style npz (`<split>_images`, `<split>_labels`), official splits.

    Paths are `npz_path#<split>_images/<index>`; each item is its own bag.
    """
    npz_path = os.fspath(npz_path)
    if not os.path.isfile(npz_path):
        raise DataError(npz_path, "file not found")
    with np.load(npz_path, allow_pickle=False) as data:
        labels = {split: np.asarray(data[f"{split}_labels"]).reshape(len(data[f"{split}_labels"]), -1)
                  for split in SPLITS if f"{split}_labels" in data.files}
    if not labels:
        raise DataError(npz_path, "no <split>_labels arrays: not a MedMNIST-style file")
    rows = []
    for split, values in labels.items():
        if values.shape[1] != 1:
            raise DataError(npz_path, f"{split}_labels has {values.shape[1]} columns: multi-label files are not supported")
        for index, label in enumerate(values[:, 0]):
            rows.append({"path": f"{npz_path}#{split}_images/{index}", "label": str(int(label)),
                         "bag": f"{split}/{index}", "split": split})
    return from_rows(rows, classes, source=npz_path)


def from_class_folders(root, bag_pattern=None, classes=None, suffixes=IMAGE_SUFFIXES + TIFF_SUFFIXES):
    """One row per file in `root/<class>/`; the class is the folder name.

    Args:
        root: folder with one subfolder per class.
        bag_pattern: regular expression searched in each file name; its group
            `bag` (or group 1, or the whole match) names the bag. None: each
            file is its own bag. Kather tiles: `r"TCGA-\\w\\w-\\w\\w\\w\\w"`.
        classes: class folder names in index order (default sorted).
        suffixes: file name endings to include.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(root, "folder not found")
    class_dirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if classes is not None:
        unknown = sorted(set(classes) - set(class_dirs))
        if unknown:
            raise DataError(root, f"no class folder(s) {', '.join(unknown)} (has {', '.join(class_dirs)})")
        class_dirs = list(classes)
    if not class_dirs:
        raise DataError(root, "no class folders")
    pattern = re.compile(bag_pattern) if bag_pattern else None
    rows = []
    for name in class_dirs:
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder), key=natural_key):
            if not file.lower().endswith(suffixes):
                continue
            bag = file
            if pattern:
                match = pattern.search(file)
                if not match:
                    raise DataError(os.path.join(folder, file), f"file name does not match bag_pattern {bag_pattern!r}")
                bag = match.groupdict().get("bag") or (match.group(1) if match.groups() else match.group(0))
            rows.append({"path": os.path.join(folder, file), "label": name, "bag": bag})
    if not rows:
        raise DataError(root, f"no files ending in {', '.join(suffixes)} in the class folders")
    return from_rows(rows, class_dirs, source=root)


def assign_splits(manifest, fractions=(0.7, 0.15, 0.15), seed=0):
    """Returns a copy with `split` set to train / val / test, by group, stratified by label.

    Uses scikit-learn's `StratifiedGroupKFold` over the groups (default: bags):
    the test part is one fold of `round(1 / test)` folds, then val is one fold of
    the rest. A group (so a bag) never crosses splits; the same seed gives the
    same splits. Fractions are approximate (whole groups).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    train, val, test = fractions
    if min(fractions) < 0 or abs(train + val + test - 1) > 1e-6 or train <= 0:
        raise ValueError(f"`fractions` are (train, val, test), nonnegative and summing to 1. Received: fractions={fractions}")
    bags = manifest.bags()
    bag_names = [bag.bag for bag in bags]
    labels = np.array([bag.label for bag in bags])
    group_of_bag = {row["bag"]: row["group"] for row in manifest.rows}
    group_ids = np.array([group_of_bag[name] for name in bag_names])
    split = np.array(["train"] * len(bag_names), dtype=object)

    def hold_out(indices, fraction, name, seed_offset):
        folds = max(2, int(round(1.0 / fraction)))
        if len(set(group_ids[indices])) < folds:
            raise DataError(manifest.source, f"too few groups ({len(set(group_ids[indices]))}) for a {name} split of {fraction:.0%}")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + seed_offset)
        _, held = next(splitter.split(np.zeros(len(indices)), labels[indices], group_ids[indices]))
        split[indices[held]] = name

    everything = np.arange(len(bag_names))
    if test > 0:
        hold_out(everything, test, "test", 0)
    if val > 0:
        rest = everything[split == "train"]
        hold_out(rest, val / (train + val), "val", 1)
    return manifest.with_splits(dict(zip(group_ids, split)))
