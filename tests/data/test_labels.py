"""Class names and the class checks before training: a class nothing teaches, a one-class validation split,
`nan` labels and one number spelt two ways are refused, each as one line naming the manifest."""

import os

import numpy as np
import pytest

from mims_tf.data import DataError, from_rows, read_manifest


def _csv(tmp_path, rows):
    (tmp_path / "m.csv").write_text("path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows))
    return tmp_path / "m.csv"


def _split_rows(train, val, test=("0", "1")):
    rows = [(f"{split}{i}.npy", label, split) for split, labels in (("train", train), ("val", val), ("test", test))
            for i, label in enumerate(labels)]
    return rows


@pytest.mark.parametrize("train, val, classes, message", [
    (["0"] * 6, ["0", "1"], None, r"split 'train' has no bag of class\(es\) '1' \(bags per class: 0: 6\)"),
    (["0", "1"] * 3, ["0", "1"], ["0", "1", "2"], r"split 'train' has no bag of class\(es\) '2'"),
    (["0", "1"] * 3, ["1", "1"], None, r"split 'val' holds one class only \(1: 2\)"),
])
def test_a_manifest_that_cannot_train_every_class_is_refused(tmp_path, train, val, classes, message):
    manifest = read_manifest(_csv(tmp_path, _split_rows(train, val)), classes=classes, check_files=False)
    with pytest.raises(DataError, match=f"^{tmp_path / 'm.csv'}: {message}"):
        manifest.check_trainable()


def test_a_manifest_with_every_class_in_training_and_validation_passes(tmp_path):
    manifest = read_manifest(_csv(tmp_path, _split_rows(["0", "1"] * 3, ["0", "1"])), check_files=False)
    assert manifest.check_trainable() is manifest


@pytest.mark.parametrize("labels, message", [
    (["0", "1", "1.0"] * 4, r"labels '1' and '1.0' are one number spelt differently"),
    (["0", "1", "nan"] * 4, r"label 'nan' on 4 row\(s\) is not a number"),
    (["0", "1", "NaN"] * 4, r"label 'NaN' on 4 row\(s\) is not a number"),
    (["00", "0", "1"] * 4, r"labels '0' and '00' are one number spelt differently"),
])
def test_label_spellings_that_would_become_classes_of_their_own_are_refused(tmp_path, labels, message):
    rows = [(f"v{i}.npy", label, "") for i, label in enumerate(labels)]
    with pytest.raises(DataError, match=f"^{tmp_path / 'm.csv'}: {message}"):
        read_manifest(_csv(tmp_path, rows), check_files=False)


def test_words_and_numbers_that_differ_stay_classes(tmp_path):
    rows = [(f"v{i}.npy", label, "") for i, label in enumerate(["none", "mild", "2.5", "inf"] * 3)]
    manifest = read_manifest(_csv(tmp_path, rows), check_files=False)
    assert sorted(manifest.classes) == ["2.5", "inf", "mild", "none"]


def test_a_link_to_a_file_already_listed_is_a_duplicate(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.uint8))
    os.symlink(tmp_path / "a.npy", tmp_path / "b.npy")
    rows = [{"path": str(tmp_path / "a.npy"), "label": "0", "split": "train"},
            {"path": str(tmp_path / "b.npy"), "label": "0", "split": "test"}]
    with pytest.raises(DataError, match=r"duplicate path .*b\.npy \(rows 1 and 2; both are .*a\.npy\)"):
        from_rows(rows)


def test_a_prediction_manifest_keeps_whatever_its_label_column_holds(tmp_path):
    rows = [(f"v{i}.npy", label, "") for i, label in enumerate(["nan", "1", "1.0"])]
    manifest = read_manifest(_csv(tmp_path, rows), check_files=False, require_labels=False)
    assert len(manifest.rows) == 3


def test_declared_class_names_are_read_stripped_like_the_labels(tmp_path):
    # `--classes "no, yes"` named the class " yes", which no (stripped) label matched
    path = _csv(tmp_path, _split_rows(["no", "yes"] * 3, ["no", "yes"], ["no", "yes"]))
    assert read_manifest(path, classes=["no", " yes "], check_files=False).classes == ["no", "yes"]
    with pytest.raises(ValueError, match="holds an empty name"):
        read_manifest(path, classes=["no", " "], check_files=False)


def test_a_class_that_cannot_appear_in_every_split_is_named(tmp_path):
    rows = _split_rows(["0", "1"] * 3 + ["2"], ["0", "1"])  # a label carried by one bag (a typo): a third class
    manifest = read_manifest(_csv(tmp_path, rows), check_files=False)
    with pytest.raises(DataError, match=r"class '2' has 1 bag\(s\) \(train 1, val 0, test 0\): it cannot appear in "
                                        r"every split \(train, val, test\); a typo\?"):
        manifest.check_trainable()
