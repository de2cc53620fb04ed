"""Manifests: a CSV of `path, label, bag, split` (plus optional `group` and any extra columns).

One row is one file (a volume, a 2D image, a tile). Rows with the same `bag`
form one bag (e.g. the tiles of a patient); a bag has one label and one split.
`group` (default: the bag) keeps related bags, such as two eyes of one patient,
in the same split. Relative paths are relative to the CSV's folder.

This module holds `Bag`, `Manifest`, `read_manifest` / `write_manifest` (the CSV),
`from_rows` (a manifest from dicts) and `check_shared_groups`. Builders for known
dataset layouts are in `mims_tf.data.layouts` (`from_medmnist`, `from_class_folders`);
drawing splits is in `mims_tf.data.splits` (`assign_splits`: stratified by label,
grouped by `group`, reproducible by seed).

Checks that keep data errors from passing silently:

- a bag has one label and one split; a group one split; a path appears once
  (`.npz` items compare by `key/index` without leading zeros);
- labels outside the declared `classes` are errors, and without declared classes
  a label on very few rows (a typo such as `l` for `1`) is an error;
- a manifest's split column is either complete or entirely empty (then
  `assign_splits` draws it); rows the user placed are never moved;
- a patient seen in the file names (a TCGA id `TCGA-XX-XXXX`, or the match of
  `group_pattern`) may not appear in two splits, unless `allow_shared_groups=True`.
"""

import collections
import csv
import dataclasses
import os
import re

from mims_tf.data.errors import DataError, rows_text
from mims_tf.data.labels import class_names, counts_text
from mims_tf.data.readers import check_regular, normalize_item, split_item
from mims_tf.utils import atomic_open

REQUIRED = ("path", "label")
KNOWN_COLUMNS = (*REQUIRED, "bag", "split", "group")
SPLITS = ("train", "val", "test")
TCGA_PATIENT = r"TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}(?![A-Z0-9])"


def _match_name(match, name):
    """A pattern's group `name`, else group 1, else the whole match."""
    return match.groupdict().get(name) or (match.group(1) if match.groups() else match.group(0))


def _compile(pattern, argument):
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as error:
        raise ValueError(f"`{argument}` is not a valid regular expression ({error}). "
                         f"Received: {argument}={pattern!r}") from None


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
    """Rows (dicts with at least path, label, bag, split, group) and the class names in index order.

    `lines` numbers the rows in messages (a CSV's line numbers; default 2, 3, ... as under a header).
    """

    rows: list
    classes: list
    source: str = "<manifest>"
    lines: list = None

    def __post_init__(self):
        if self.lines is None:
            self.lines = list(range(2, len(self.rows) + 2))
        self.lines = list(self.lines)
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
        unknown = collections.defaultdict(list)
        known = set(self.classes)
        for number, row in zip(self.lines, self.rows):
            file_path, item = split_item(row["path"])
            real = os.path.realpath(file_path) + (f"#{item}" if item else "")  # links to one file are one file
            if real in seen:
                first, path = seen[real]
                also = "" if path == row["path"] else f"; both are {real}"
                raise DataError(self.source, f"duplicate path {row['path']} (rows {first} and {number}{also})")
            seen[real] = (number, row["path"])
            if row["label"] not in known:
                unknown[row["label"]].append(number)
            bag_labels[row["bag"]].add(row["label"])
            bag_splits[row["bag"]].add(row["split"])
            group_splits[row["group"]].add(row["split"])
        for label, numbers in unknown.items():
            raise DataError(self.source, f"{rows_text(numbers)}: unknown label {label!r} "
                                         f"(classes: {', '.join(self.classes)})")
        for bag, labels in bag_labels.items():
            if len(labels) > 1:
                raise DataError(self.source, f"bag {bag!r} has rows with different labels: {', '.join(sorted(labels))}")
        for bag, splits in bag_splits.items():
            if len(splits) > 1:
                shown = ", ".join(sorted(s or "(none)" for s in splits))
                raise DataError(self.source, f"bag {bag!r} is in several splits: {shown}")
        for group, splits in group_splits.items():
            if len(splits) > 1:
                shown = ", ".join(sorted(s or "(none)" for s in splits))
                raise DataError(self.source, f"group {group!r} is in several splits: {shown}")

    def check_files(self):
        """Raises DataError for the first row whose file does not exist."""
        for number, row in zip(self.lines, self.rows):
            file_path = split_item(row["path"])[0]
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

    def check_trainable(self, pooled=False):
        """Raises DataError where a model cannot be trained, validated and tested on this manifest: a class absent
        from a split that holds bags (nothing teaches it, or it cannot be validated or tested), or a validation
        split of one class (no AUROC, no threshold). `pooled`: the train and val bags are one pool (cross-
        validation, whose folds are checked when they are drawn)."""
        present = self.split_counts()  # pooled: the folds need no val split (nor a test one); else every split
        counts = {split: self.label_counts(split) if present.get(split) or not pooled else {}
                  for split in ("train", "val", "test")}
        if pooled:
            counts = {"train and val": collections.Counter(counts["train"]) + collections.Counter(counts["val"]),
                      "test": counts["test"]}
        training = "train and val" if pooled else "train"
        missing = [name for name in self.classes if not counts[training].get(name)]
        if missing:
            raise DataError(self.source, f"split {training!r} has no bag of class(es) {', '.join(map(repr, missing))} "
                                         f"(bags per class: {counts_text(counts[training])}); every class needs "
                                         "training bags")
        if not pooled and len(counts["val"]) < 2:
            raise DataError(self.source, f"split 'val' holds one class only ({counts_text(counts['val'])}): "
                                         "validation AUROC, the best epoch and the decision threshold need both")
        bags = collections.Counter({name: sum(counts[split].get(name, 0) for split in counts) for name in self.classes})
        splits = [split for split in counts if counts[split]]
        absent = [name for name in self.classes if any(not counts[split].get(name) for split in splits)]
        if absent:  # e.g. a label carried by one bag (a typo) becomes a class no split but one can hold
            name = absent[0]
            where = ", ".join(f"{split} {counts[split].get(name, 0)}" for split in splits)
            raise DataError(self.source, f"class {name!r} has {bags[name]} bag(s) ({where}): it cannot appear in every "
                                         f"split ({', '.join(splits)}); a typo? Fix its label, or give it bags in "
                                         "every split")
        return self

    def with_splits(self, splits_by_group):
        """Returns a copy whose rows get `split = splits_by_group[row["group"]]`."""
        rows = [dict(row, split=splits_by_group[row["group"]]) for row in self.rows]
        return Manifest(rows, list(self.classes), self.source, self.lines)


def _normalize_rows(rows, source, base=None, lines=None):
    out = []
    for number, row in zip(lines or range(2, len(rows) + 2), rows):
        missing = [c for c in REQUIRED if not (row.get(c) or "").strip()]
        if missing:
            raise DataError(source, f"row {number}: empty {', '.join(missing)}")
        row = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        control = next((k for k in KNOWN_COLUMNS if any(ord(ch) < 32 for ch in row.get(k) or "")), None)
        if control:  # a NUL or another control character (a damaged or binary file read as text)
            raise DataError(source, f"row {number}: the {control} holds a control character "
                                    f"(e.g. NUL): {row[control]!r}")
        file_path, item = split_item(row["path"])
        if not os.path.isabs(file_path):  # relative to the CSV's folder, else to the working directory
            file_path = os.path.normpath(os.path.join(base or os.getcwd(), file_path))
        path = row["path"] = file_path + (f"#{normalize_item(item)}" if item else "")
        row["bag"] = row.get("bag") or path
        row["group"] = row.get("group") or row["bag"]
        row["split"] = row.get("split") or ""
        out.append(row)
    return out


def _check_split_column(manifest):
    """Split names are train / val / test, and the column is complete or entirely empty."""
    bad = collections.defaultdict(list)
    empty = []
    for number, row in zip(manifest.lines, manifest.rows):
        if not row["split"]:
            empty.append(number)
        elif row["split"] not in SPLITS:
            bad[row["split"]].append(number)
    for split, numbers in bad.items():
        raise DataError(manifest.source, f"{rows_text(numbers)}: unknown split {split!r} (splits: {', '.join(SPLITS)})")
    if empty and len(empty) < len(manifest.rows):
        raise DataError(manifest.source, f"{rows_text(empty)}: empty split while other rows have one; fill in every "
                                         "split, or leave the whole split column empty to have splits assigned")


def name_groups(manifest, group_pattern=None):
    """A copy whose bags without a group of their own (group = bag) take the group their file names show:
    the `group_pattern` match, else a TCGA patient id; so splits assigned by group keep a patient's bags
    (e.g. one bag per tile) together. A bag takes the group of its first row."""
    pattern = _compile(group_pattern, "group_pattern") if group_pattern else re.compile(TCGA_PATIENT, re.IGNORECASE)
    canonical = str if group_pattern else str.upper
    by_bag = {}
    for row in manifest.rows:
        if row["bag"] in by_bag:
            continue
        group = row["group"]
        if group == row["bag"]:
            match = pattern.search(os.path.basename(split_item(row["path"])[0].rstrip("/\\")))
            if match:
                group = canonical(_match_name(match, "group"))
        by_bag[row["bag"]] = group
    rows = [dict(row, group=by_bag[row["bag"]]) for row in manifest.rows]
    return Manifest(rows, list(manifest.classes), manifest.source, manifest.lines)


def check_shared_groups(manifest, group_pattern=None):
    """Raises DataError where file names show one group in two splits.

    Groups are TCGA patient ids (`TCGA-XX-XXXX`) and, if given, the match of `group_pattern`
    (its group `group`, or group 1, or the whole match), searched in each row's file name.
    Rows without a split are not compared.
    """
    patterns = [("TCGA patient", re.compile(TCGA_PATIENT, re.IGNORECASE), str.upper)]
    if group_pattern:
        patterns.append(("group", _compile(group_pattern, "group_pattern"), str))
    names = []
    for row in manifest.rows:
        file_path = split_item(row["path"])[0]
        names.append(os.path.basename(file_path.rstrip("/\\")))
    for kind, pattern, canonical in patterns:
        first = {}  # group -> (split, line)
        for number, row, name in zip(manifest.lines, manifest.rows, names):
            if not row["split"]:
                continue
            match = pattern.search(name)
            if not match:
                continue
            group = canonical(_match_name(match, "group"))
            split, line = first.setdefault(group, (row["split"], number))
            if split != row["split"]:
                raise DataError(manifest.source, f"{kind} {group!r} is in two splits: {split} (row {line}) and "
                                                 f"{row['split']} (row {number}); give its files one bag or group, "
                                                 "or pass allow_shared_groups=True to accept it")
    return manifest


def read_manifest(path, classes=None, check_files=True, require_labels=True, allow_shared_groups=False,
                  group_pattern=None):
    """Reads and validates a manifest CSV (UTF-8, with or without a byte-order mark).

    Args:
        path: the CSV file.
        classes: label names in index order (default: sorted labels; numeric
            labels sort numerically). A label not in `classes` is an error; without
            `classes`, so is a label on very few rows (under 1 % and fewer than 3).
        check_files: fail on rows whose file does not exist.
        require_labels: False for manifests of unlabelled files (prediction):
            a missing label column or empty labels become "?", and splits are not checked.
        allow_shared_groups: accept a TCGA patient (or `group_pattern` match) in the
            file names of two splits.
        group_pattern: regular expression naming a group (e.g. a patient) in each file
            name; one group in two splits is an error (see `check_shared_groups`).

    A split column must be complete (train / val / test on every row) or entirely empty.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(path, "manifest not found")
    if os.path.isdir(path):
        raise DataError(path, "is a folder, not a manifest CSV file")
    check_regular(path, folders=False)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            # " Path", "LABEL": the known columns whatever their case and surrounding spaces
            columns = [c.strip().lower() if c and c.strip().lower() in KNOWN_COLUMNS else (c if c and c.strip() else "")
                       for c in reader.fieldnames or []]
            reader.fieldnames = columns
            repeated = sorted(c for c, k in collections.Counter(c for c in columns if c).items() if k > 1)
            if repeated:
                raise DataError(path, f"column(s) {', '.join(repeated)} appear more than once in the header")
            missing = [c for c in REQUIRED if c not in columns and (require_labels or c != "label")]
            if missing:
                separator = next((s for s in (";", "\t", "|") if s in ",".join(c or "" for c in columns)), None)
                hint = f" (the header holds {separator!r}: columns are separated by commas)" if separator else ""
                raise DataError(path, f"missing column(s) {', '.join(missing)}; a manifest has path, label, bag, "
                                      f"split{hint}")
            rows, lines = [], []
            for row in reader:
                if None in row:
                    raise DataError(path, f"row {reader.line_num}: {len(row[None])} more field(s) than the "
                                          f"{len(columns)} columns of the header")
                if any(row.get(c) for c in columns if not c):  # a trailing comma in the header is harmless
                    raise DataError(path, f"row {reader.line_num}: a value under a column without a name")
                row.pop("", None)
                rows.append(row)
                lines.append(reader.line_num)
            if not require_labels:
                rows = [dict(row, label=row.get("label") or "?") for row in rows]
    except (UnicodeDecodeError, csv.Error) as error:
        raise DataError(path, f"not a readable CSV file ({error})") from None
    rows = _normalize_rows(rows, path, base=os.path.dirname(os.path.abspath(path)), lines=lines)
    labels = [r["label"] for r in rows]
    manifest = Manifest(rows, class_names(labels, classes, path, lines, rare_check=require_labels), path, lines)
    if require_labels:
        _check_split_column(manifest)
        if not allow_shared_groups:
            check_shared_groups(manifest, group_pattern)
    return manifest.check_files() if check_files else manifest


def write_manifest(manifest, path, relative=False):
    """Writes the CSV atomically (a temporary file renamed into place).

    With `relative=True`, file paths are written relative to the CSV's folder (where `read_manifest` resolves
    them from), so the CSV moved together with its files still finds them; bag and group names are kept.
    """
    path = os.fspath(path)
    columns = ["path", "label", "bag", "split", "group"]
    extra = sorted({k for row in manifest.rows for k in row} - set(columns))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    rows = manifest.rows
    if relative:
        rows = [{**row, "path": relative_item(row["path"], folder)} for row in rows]
    with atomic_open(path) as f:
        writer = csv.DictWriter(f, fieldnames=columns + extra)
        writer.writeheader()
        writer.writerows(rows)
    return path


def relative_item(path, folder):
    """`path` (a file, or an `.npz` item `file.npz#key/index`) relative to `folder` where it can be (same drive)."""
    file_path, item = split_item(path)
    try:
        file_path = os.path.relpath(file_path, folder)
    except ValueError:  # another drive (Windows): stays absolute
        pass
    return file_path + (f"#{item}" if item else "")


def from_rows(rows, classes=None, source="<rows>"):
    """A manifest from dicts with path and label (bag, split, group optional); rows number from 1 in messages.

    Without `classes`, a label on very few rows (under 1 % and fewer than 3) is refused as a likely typo.
    """
    lines = list(range(1, len(rows) + 1))
    rows = _normalize_rows([{k: str(v) if v is not None else "" for k, v in r.items()} for r in rows], source,
                           lines=lines)
    return Manifest(rows, class_names([r["label"] for r in rows], classes, source, lines), source, lines)

