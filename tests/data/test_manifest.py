import collections
import os
import re

import pytest

from mims_tf.data import (
    DataError,
    assign_splits,
    from_class_folders,
    from_medmnist,
    from_rows,
    read_manifest,
    write_manifest,
)
from tests.conftest import SHARED

DATA = os.path.join(SHARED, "data")
KATHER = os.path.join(DATA, "kather-crc-msi")
TCGA = r"TCGA-\w\w-\w\w\w\w"


def _error(path, reason):
    return pytest.raises(DataError, match=re.escape(f"{path}: ") + ".*" + re.escape(reason))


@pytest.fixture(scope="module")
def kather():
    return from_class_folders(KATHER, bag_pattern=TCGA, classes=["MSS_JPEG", "MSIMUT_JPEG"])


def test_kather_tiles_patients_and_classes_match_source(kather):
    tiles = collections.Counter(row["label"] for row in kather.rows)
    assert tiles == {"MSIMUT_JPEG": 2169, "MSS_JPEG": 3259}
    assert kather.label_counts() == {"MSIMUT_JPEG": 65, "MSS_JPEG": 279}
    per_patient = [len(bag.paths) for bag in kather.bags()]
    assert min(per_patient) == 1 and max(per_patient) == 130
    assert kather.classes == ["MSS_JPEG", "MSIMUT_JPEG"]  # MSI is the positive class (index 1)


@pytest.mark.parametrize(
    "folder, file, expected",
    [
        ("adrenalmnist3d", "adrenalmnist3d.npz", {"train": (929, 259), "val": (76, 22), "test": (229, 69)}),
        ("adrenalmnist3d", "adrenalmnist3d_64.npz", {"train": (929, 259), "val": (76, 22), "test": (229, 69)}),
        ("breastmnist", "breastmnist.npz", {"train": (147, 399), "val": (21, 57), "test": (42, 114)}),
        ("pneumoniamnist", "pneumoniamnist.npz", {"train": (1214, 1214), "val": (135, 135), "test": (234, 234)}),
    ],
)
def test_medmnist_counts_match_source(folder, file, expected):
    manifest = from_medmnist(os.path.join(DATA, folder, file))
    for split, (negatives, positives) in expected.items():
        assert manifest.label_counts(split) == {"0": negatives, "1": positives}


def test_splits_by_patient_are_stratified_reproducible_and_never_cross(kather):
    first = assign_splits(kather, seed=3)
    again = assign_splits(kather, seed=3)
    other = assign_splits(kather, seed=4)
    assert [r["split"] for r in first.rows] == [r["split"] for r in again.rows]
    assert [r["split"] for r in first.rows] != [r["split"] for r in other.rows]
    split_of_patient = collections.defaultdict(set)
    for row in first.rows:
        split_of_patient[row["bag"]].add(row["split"])
    assert all(len(s) == 1 for s in split_of_patient.values())
    counts = first.split_counts()
    assert sum(counts.values()) == 344 and counts["test"] >= 40 and counts["val"] >= 40
    for split in ("train", "val", "test"):
        share = first.label_counts(split)["MSIMUT_JPEG"] / sum(first.label_counts(split).values())
        assert 0.12 < share < 0.26  # 65 / 344 = 0.19 overall


def test_groups_keep_bags_together():
    rows = [{"path": f"/v{i}.nii", "label": i % 2, "bag": f"eye{i}", "group": f"patient{i // 2}"} for i in range(40)]
    manifest = assign_splits(from_rows(rows), fractions=(0.6, 0.2, 0.2), seed=0)
    by_group = collections.defaultdict(set)
    for row in manifest.rows:
        by_group[row["group"]].add(row["split"])
    assert all(len(s) == 1 for s in by_group.values())


@pytest.mark.parametrize("group_pattern", [None, r"TCGA-\w\w-\w\w\w\w"])
def test_one_tile_per_bag_still_splits_by_the_patient_in_the_file_names(group_pattern):
    tiles = from_class_folders(os.path.join(DATA, "kather-crc-msi"), one_bag_per_file=True,
                               classes=["MSS_JPEG", "MSIMUT_JPEG"])
    manifest = assign_splits(tiles, seed=0, group_pattern=group_pattern)
    split_of_patient = collections.defaultdict(set)
    for row in manifest.rows:
        split_of_patient[re.search(r"TCGA-\w\w-\w\w\w\w", row["path"]).group(0)].add(row["split"])
    assert len(split_of_patient) == 344 and all(len(s) == 1 for s in split_of_patient.values())
    assert len(manifest.bags()) == 5428 and manifest.split_counts()["test"] > 500  # tiles are the bags


def test_one_file_per_bag_splits_by_the_group_pattern_in_the_file_names(tmp_path):
    for p in range(20):
        folder = tmp_path / ("MSI" if p % 2 else "MSS")
        folder.mkdir(exist_ok=True)
        for t in range(5):
            (folder / f"p{p:02d}_t{t}.png").write_bytes(b"")
    tiles = from_class_folders(str(tmp_path), classes=["MSS", "MSI"], one_bag_per_file=True)
    manifest = assign_splits(tiles, seed=0, group_pattern=r"^(p\d+)_")
    split_of = collections.defaultdict(set)
    for row in manifest.rows:
        split_of[os.path.basename(row["path"])[:3]].add(row["split"])
    assert len(split_of) == 20 and all(len(s) == 1 for s in split_of.values())
    assert {"train", "val", "test"} == set.union(*split_of.values())


def test_csv_roundtrip_keeps_extra_columns_and_resolves_relative_paths(tmp_path, kather):
    manifest = assign_splits(kather, seed=0)
    manifest.rows[0]["scanner"] = "Aperio"
    path = write_manifest(manifest, tmp_path / "m.csv")
    again = read_manifest(path, classes=["MSS_JPEG", "MSIMUT_JPEG"])
    assert again.rows == [dict(r, scanner=r.get("scanner", "")) for r in manifest.rows]
    (tmp_path / "img.png").write_bytes(b"")
    (tmp_path / "rel.csv").write_text("path,label,bag,split\nimg.png,a,p1,train\n")
    assert read_manifest(tmp_path / "rel.csv").rows[0]["path"] == str(tmp_path / "img.png")


def _csv(tmp_path, text, name="m.csv"):
    for file in ("a.png", "b.png", "c.png"):
        (tmp_path / file).write_bytes(b"")
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, reason",
    [
        ("file,label\na.png,x\n", "missing column(s) path"),
        ("path,label,bag,split\n", "manifest has no rows"),
        ("path,label,bag,split\na.png,x,p1,train\na.png,x,p1,train\n", "duplicate path"),
        ("path,label,bag,split\na.png,x,p1,train\nb.png,y,p1,train\n", "bag 'p1' has rows with different labels: x, y"),
        ("path,label,bag,split\na.png,x,p1,train\nb.png,x,p1,test\n", "bag 'p1' is in several splits: test, train"),
        ("path,label,bag,split\na.png,x,p1,train\nb.png,,p2,test\n", "row 3: empty label"),
        ("path,label,bag,split\nmissing.png,x,p1,train\n", "file not found (row 2"),
    ],
)
def test_bad_manifests(tmp_path, text, reason):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError, match=re.escape(reason)):
        read_manifest(path)


def test_unknown_label_and_empty_split(tmp_path):
    path = _csv(tmp_path, "path,label,bag,split\na.png,x,p1,train\nb.png,z,p2,test\n")
    with _error(path, "row 3: unknown label 'z' (classes: x, y)"):
        read_manifest(path, classes=["x", "y"])
    manifest = read_manifest(path)
    with _error(path, "split 'val' is empty (train: 1, test: 1)"):
        manifest.bags("val")
    with _error(KATHER, "no class folder(s) MSI"):
        from_class_folders(KATHER, classes=["MSI", "MSS_JPEG"])
    with _error(os.path.join(KATHER, "MSIMUT_JPEG", "blk-AAADECQEWVSD-TCGA-CM-4746-01Z-00-DX1.jpg"), "does not match"):
        from_class_folders(KATHER, bag_pattern=r"PATIENT-\d+")
    with _error(tmp_path / "m.csv.missing", "manifest not found"):
        read_manifest(tmp_path / "m.csv.missing")


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manifest = from_rows([{"path": "sub/a.npz#train_images/0", "label": 0}])
    assert manifest.rows[0]["path"] == str(tmp_path / "sub" / "a.npz") + "#train_images/0"


def test_known_columns_are_found_whatever_their_case_and_spaces(tmp_path):
    (tmp_path / "m.csv").write_text(" Path ,LABEL,Split,Scanner\na.npy,0,train,X\nb.npy,1,train,Y\n")
    manifest = read_manifest(tmp_path / "m.csv", check_files=False)
    assert [row["label"] for row in manifest.rows] == ["0", "1"] and manifest.rows[0]["Scanner"] == "X"
    assert manifest.rows[0]["split"] == "train"


def test_a_trailing_comma_in_the_header_is_harmless(tmp_path):
    # spreadsheets write "path,label,bag,split,," ; it named an empty column "appearing more than once"
    path = tmp_path / "m.csv"
    for header in ("path,label,bag,split,,", "path,label,bag,split, , "):
        path.write_text(f"{header}\na.png,x,p1,train,,\nb.png,y,p2,train,,\n")
        manifest = read_manifest(str(path), check_files=False)
        assert [r["bag"] for r in manifest.rows] == ["p1", "p2"] and "" not in manifest.rows[0]
    # a cell of another column may hold a line break or a tab (quoted): only the known columns are checked
    path.write_text('path,label,notes\na.png,x,"two\nlines"\nb.png,y,"a\ttab"\n')
    assert len(read_manifest(str(path), check_files=False).rows) == 2
