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
