"""Cross-validation: folds by patient, every pool bag out of fold once, resumable fold by fold, the ensemble as
one model."""

import csv
import os

import keras
import numpy as np
import pytest

from mims_tf.data import from_rows
from mims_tf.data.splits import assign_folds
from tests.conftest import TINY_RUN, requires_tensorflow


def _manifest(patients=30, bags_per_patient=3):
    rows = []
    for patient in range(patients):
        for index in range(bags_per_patient):
            split = "test" if patient < 6 else "val" if patient < 10 else "train"
            rows.append({"path": f"p{patient}_{index}.npy", "label": str(patient % 2), "bag": f"p{patient}_{index}",
                         "group": f"patient{patient}", "split": split})
    return from_rows(rows)


def test_folds_keep_patients_whole_and_put_every_pool_bag_in_exactly_one():
    manifest = assign_folds(_manifest(), 4, seed=3)
    pool = [row for row in manifest.rows if row["split"] in ("train", "val")]
    assert sorted({row["fold"] for row in pool}) == ["1", "2", "3", "4"]
    assert all(row["fold"] == "" for row in manifest.rows if row["split"] == "test")  # the test split untouched
    folds_of_patient = {}
    for row in pool:
        folds_of_patient.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(folds) == 1 for folds in folds_of_patient.values())  # no patient in two folds
    for fold in "1234":  # stratified: both classes in every fold
        assert {row["label"] for row in pool if row["fold"] == fold} == {"0", "1"}
    assert assign_folds(_manifest(), 4, seed=3).rows == manifest.rows  # the same seed, the same folds


@pytest.mark.parametrize("folds, message", [(1, "must be an integer >= 2"), (True, "must be an integer >= 2"),
                                            (30, "too few for 30 folds")])
def test_impossible_folds_are_refused(folds, message):
    with pytest.raises(ValueError, match=message):
        assign_folds(_manifest(), folds)


def test_sampling_ece_is_what_a_calibrated_model_shows_from_sampling_alone():
    from mims_tf.runs.cv import sampling_ece
    from mims_tf.stats.calibration import expected_calibration_error

    # a NumPy reference: labels drawn with the model's own probabilities, mean ECE over the draws
    scores = np.array([0.05, 0.1, 0.2, 0.9])
    rng, values = np.random.default_rng(0), []
    for _ in range(200):
        p = rng.choice(scores, 300)
        labels = (rng.uniform(0, 1, 300) < p).astype(int)
        values.append(expected_calibration_error(labels, np.stack([1 - p, p], axis=1)))
    assert sampling_ece(300, scores=scores) == pytest.approx(np.mean(values), abs=1e-12)
    # more bags, less sampling noise; scores near 0 and 1 leave less of it than uniform ones
    assert sampling_ece(3000) < sampling_ece(300) < sampling_ece(30)
    assert sampling_ece(300, scores=[0.01, 0.99]) < sampling_ece(300)


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import train

    keras.utils.set_random_seed(0)
    out = str(tmp_path_factory.mktemp("cv") / "run")
    summary = train(RunConfig.from_dict(dict(out=out, folds=3, **{**TINY_RUN, "epochs": 1})), verbose=0)
    return out, summary


@pytest.mark.slow
@requires_tensorflow()
def test_every_pool_bag_is_scored_out_of_fold_exactly_once(cv_run):
    out, summary = cv_run
    manifest = list(csv.DictReader(open(os.path.join(out, "manifest.csv"))))
    pool = {row["bag"]: row["fold"] for row in manifest if row["split"] in ("train", "val")}
    oof = list(csv.DictReader(open(os.path.join(out, "oof.csv"))))
    assert sorted(row["bag"] for row in oof) == sorted(pool)  # each once
    assert all(row["fold"] == pool[row["bag"]] for row in oof)  # by the model that did not train on it
    decision = summary["decision"]
    assert decision["val_bags"] == len(pool) and decision["folds"] == 3
    assert decision["threshold_from"].startswith(f"out of fold, {len(pool)} bags")
    assert summary["fold_models"]["epochs"] == ["1-1", "1-1", "1-1"]  # each fold: the mean of epochs 1 to 1
    assert "mean of the weights" in summary["fold_models"]["chosen_by"]


@pytest.mark.slow
@requires_tensorflow()
def test_the_exported_ensemble_is_the_calibrated_mean_of_the_fold_models(cv_run, tmp_path):
    from mims_tf.export.tflite import run_tflite
    from mims_tf.runs.decision import run_decision
    from mims_tf.runs.export import export_run
    from mims_tf.runs.folder import RunFolder, load_keras_file
    from mims_tf.runs.inputs import eval_batches, unlabelled_source
    from mims_tf.stats.calibration import temperature_scale

    out, _ = cv_run
    run = RunFolder(out)
    config = run.config()
    item = os.path.join(out, "data", "synthetic.npz") + "#test_images/3"
    bag = next(iter(eval_batches(config, unlabelled_source(config, ["0", "1"], [{"path": item}]))))[0].numpy()
    folds = [load_keras_file(os.path.join(out, f"fold_{k}", "best.keras")).predict(bag, verbose=0) for k in (1, 2, 3)]
    decision = run_decision(run)
    expected = temperature_scale(np.mean(folds, axis=0), decision["temperature"], decision["bias"])
    lite = export_run(out, "tflite", out=str(tmp_path))
    np.testing.assert_allclose(run_tflite(lite["path"], bag), expected, atol=1e-5)


@pytest.mark.slow
@requires_tensorflow()
def test_a_cross_validated_run_resumes_in_the_middle_of_a_fold(tmp_path):
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import resume_config, train

    class StopInFoldTwo(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if os.path.isdir(os.path.join(out, "fold_2")) and batch == 6:  # after fold 2's checkpoint at step 5
                raise KeyboardInterrupt("killed")

    out = str(tmp_path / "run")
    config = RunConfig.from_dict(dict(out=out, folds=2, **{**TINY_RUN, "epochs": 1}))
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, callbacks=[StopInFoldTwo()])
    first = os.stat(os.path.join(out, "fold_1", "best.keras")).st_mtime_ns
    assert os.path.isfile(os.path.join(out, "fold_2", "last.keras"))
    assert not os.path.isfile(os.path.join(out, "oof.csv"))
    summary = train(resume_config(out), resume=True, verbose=0)
    assert os.stat(os.path.join(out, "fold_1", "best.keras")).st_mtime_ns == first  # a finished fold is kept
    assert [fold["epochs_done"] for fold in summary["folds"]] == [1, 1] and os.path.isfile(os.path.join(out, "oof.csv"))


@pytest.mark.slow
@requires_tensorflow()
def test_evaluate_reports_the_cross_validated_figures(cv_run, capsys):
    import shutil

    from mims_tf.cli.main import main

    out, _ = cv_run
    copy = out + "_copy"
    shutil.copytree(out, copy)
    assert main(["evaluate", copy]) == 0
    printed = capsys.readouterr().out
    assert "cross-validated (3 folds, out of fold) AUROC" in printed
    assert "a perfectly calibrated model with these scores shows" in printed
    assert os.path.isfile(os.path.join(copy, "eval_oof.json"))


@pytest.mark.slow
@requires_tensorflow()
def test_explain_on_a_cross_validated_run_maps_the_fold_ensemble(cv_run, tmp_path):
    from mims_tf.runs.explain import explain_file

    out, _ = cv_run
    item = os.path.join(out, "data", "synthetic.npz") + "#test_images/1"
    folder, written, probabilities = explain_file(out, item, out=str(tmp_path / "explain"), slices=1,
                                                  method="gradient_x_input")
    assert len(written) == 1 and os.path.isfile(written[0][2]) and abs(sum(probabilities.values()) - 1) < 1e-5


def test_a_class_held_by_too_few_patients_for_the_folds_is_refused():
    from mims_tf.data import DataError

    rows = [row for row in _manifest().rows if not (row["label"] == "1" and row["split"] != "test")]
    rows += [{"path": f"q{i}.npy", "label": "1", "bag": f"q{i}", "group": "one_patient", "split": "train"}
             for i in range(5)]  # five positive bags, one patient: one fold at most can validate them
    with pytest.raises(DataError, match="class '1' is in 1 group"):
        assign_folds(from_rows(rows), 3)


def test_the_pool_is_checked_as_one_for_cross_validation():
    from mims_tf.data import DataError

    rows = [dict(row, split="train" if row["split"] == "val" else row["split"]) for row in _manifest().rows]
    manifest = from_rows(rows)  # no val split: a one-split run cannot validate, the folds can
    with pytest.raises(DataError, match="split 'val' is empty"):
        manifest.check_trainable()
    assert manifest.check_trainable(pooled=True) is manifest


@requires_tensorflow()
def test_a_failed_cross_validated_start_leaves_the_new_folder_as_it_was(tmp_path):
    from mims_tf.data import DataError
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import train

    data = str(tmp_path / "small.npz")  # MedMNIST's layout: 4 pool images of each class
    images = np.random.default_rng(0).integers(0, 255, (12, 16, 16), dtype=np.uint8)
    labels = np.array([[0], [1]] * 6)
    np.savez(data, train_images=images[:6], train_labels=labels[:6], val_images=images[6:8],
             val_labels=labels[6:8], test_images=images[8:], test_labels=labels[8:])
    out = str(tmp_path / "run")
    with pytest.raises(DataError, match="too few for 5 folds"):
        train(RunConfig.from_dict(dict(out=out, folds=5, **{**TINY_RUN, "data": data, "instances": 1,
                                                             "image_size": 16, "epochs": 1})), verbose=0)
    from mims_tf.runs.folder import RunFolder

    assert not RunFolder(out).contents()  # the corrected command may run in it


@pytest.fixture
def cv_copy(cv_run, tmp_path):
    import shutil

    copy = str(tmp_path / "copy")
    shutil.copytree(cv_run[0], copy)
    return copy


@pytest.mark.slow
@requires_tensorflow()
def test_a_resume_refuses_an_edited_parent_config(cv_copy):
    from mims_tf.runs.fit import resume_config, train

    path = os.path.join(cv_copy, "config.yaml")
    text = open(path).read()
    assert "folds: 3" in text
    open(path, "w").write(text.replace("folds: 3", "folds: 2"))
    with pytest.raises(ValueError, match="edited since the run started"):
        train(resume_config(cv_copy), resume=True, verbose=0)


@pytest.mark.slow
@requires_tensorflow()
def test_out_of_fold_scores_of_replaced_fold_models_are_made_again(cv_copy, caplog):
    import shutil

    from mims_tf.runs.cv import read_out_of_fold
    from mims_tf.runs.decision import run_decision
    from mims_tf.runs.folder import RunFolder

    before = read_out_of_fold(cv_copy)[3]
    shutil.copyfile(os.path.join(cv_copy, "fold_1", "best.keras"), os.path.join(cv_copy, "fold_2", "best.keras"))
    decision = run_decision(RunFolder(cv_copy))  # the model changed: the decision is made again, on new scores
    assert any("scoring the folds again" in r.getMessage() for r in caplog.records)
    _, _, folds, after = read_out_of_fold(cv_copy)
    assert not np.allclose(before[folds == 2], after[folds == 2]) and np.allclose(before[folds != 2],
                                                                                   after[folds != 2], atol=1e-6)
    assert decision["model_sha256"] == RunFolder(cv_copy).model_sha256("best")


@pytest.mark.slow
@requires_tensorflow()
def test_out_of_fold_figures_use_the_decision_of_the_model_and_name_asked(cv_copy):
    from mims_tf.runs.cv import evaluate_out_of_fold
    from mims_tf.runs.decision import decide_run, run_decision
    from mims_tf.runs.evaluate import evaluate_run

    last = evaluate_out_of_fold(cv_copy, "last", n_resamples=0)
    assert last["threshold"] == run_decision(cv_copy, "last")["threshold"]
    named = decide_run(cv_copy, "screening", "sensitivity", 0.99)
    assert evaluate_out_of_fold(cv_copy, decision="screening", n_resamples=0)["threshold"] == named["threshold"]
    assert os.path.isfile(os.path.join(cv_copy, "eval_oof_screening.json"))
    with pytest.raises(ValueError, match="in-sample"):  # K-1 of the fold models trained on them
        evaluate_run(cv_copy, split="val", write=False)
