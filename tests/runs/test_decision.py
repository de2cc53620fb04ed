"""One score and one decision everywhere: evaluate, predict, explain, SavedModel and TFLite agree."""

import csv
import json
import os

import numpy as np
import pytest

from mims_tf.runs.checkpoint import is_better
from mims_tf.runs.config import RunConfig
from mims_tf.runs.decision import calibrate_run, decide, decide_run, load_scoring_model
from mims_tf.runs.evaluate import compare_runs, evaluate_run
from mims_tf.runs.fit import train
from mims_tf.runs.predict import predict
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


@pytest.fixture
def run(trained_run_copy):
    return trained_run_copy  # the session's tiny run (tests/conftest.py), copied: these tests write into it


def test_training_stores_a_temperature_and_a_threshold_chosen_on_validation(run):
    decision = json.load(open(os.path.join(run, "decision.json")))["best"]
    assert decision["method"] == "platt" and decision["temperature"] > 0 and len(decision["bias"]) == 2
    assert 0 <= decision["threshold"] <= 1
    assert decision["threshold_from"] == "validation (Youden's J)" and decision["val_bags"] == 32
    target = decide_run(run, "all", "sensitivity", 1.0)  # a target sensitivity: a named decision beside the run's own
    assert target["threshold_from"] == "validation (sensitivity >= 1)" and target["threshold"] <= decision["threshold"]
    assert target["val_sensitivity"] == 1.0 and target["val_sensitivity_low"] < 1.0  # the interval says how sure
    assert json.load(open(os.path.join(run, "decision.json")))["best"]["threshold"] == decision["threshold"]
    assert json.load(open(os.path.join(run, "decisions", "all.json")))["best"]["threshold"] == target["threshold"]


def test_predict_class_equals_evaluate_class_for_every_test_bag(run, tmp_path):
    evaluate_run(run)
    evaluated = {r["bag"]: r for r in csv.DictReader(open(os.path.join(run, "eval_test.csv")))}
    manifest = [r for r in csv.DictReader(open(os.path.join(run, "manifest.csv"))) if r["split"] == "test"]
    path = tmp_path / "test.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "bag"])
        writer.writeheader()
        writer.writerows({"path": os.path.join(run, r["path"]), "bag": r["bag"]} for r in manifest)
    predicted = predict(run, manifest_path=str(path))
    assert len(predicted) == len(evaluated) == 32
    for r in predicted:
        assert r["predicted"] == evaluated[r["bag"]]["predicted"]
        assert abs(r["probabilities"]["1"] - float(evaluated[r["bag"]]["p_1"])) < 1e-5


@pytest.mark.slow
def test_one_file_scores_the_same_through_all_five_paths(run, tmp_path):
    import tensorflow as tf

    from mims_tf.export.tflite import run_tflite
    from mims_tf.runs.explain import explain_file
    from mims_tf.runs.export import export_run
    from mims_tf.runs.inputs import eval_batches, unlabelled_source

    evaluate_run(run, n_resamples=0)
    evaluated = next(csv.DictReader(open(os.path.join(run, "eval_test.csv"))))  # a test bag, as evaluate scored it
    manifest_rows = [r for r in csv.DictReader(open(os.path.join(run, "manifest.csv"))) if r["bag"] == evaluated["bag"]]
    path = os.path.join(run, manifest_rows[0]["path"])  # manifest.csv's paths are relative to the run folder
    model, config, manifest, decision = load_scoring_model(run)
    bag = next(iter(eval_batches(config, unlabelled_source(config, manifest.classes, [{"path": path}]))))[0].numpy()

    scores = {"evaluate": float(evaluated["p_1"]), "predict": predict(run, [path])[0]["probabilities"]["1"]}
    _, _, probabilities = explain_file(run, path, out=str(tmp_path / "explain"), slices=1)
    scores["explain"] = probabilities["1"]
    title = open(tmp_path / "explain" / "index.md").read().splitlines()[0]
    assert f"P(1) = {probabilities['1']:.4f}" in title and "threshold" in title
    saved = export_run(run, "saved_model", out=str(tmp_path / "saved"))
    served = tf.saved_model.load(saved["path"]).signatures["serving_default"]
    scores["saved_model"] = float(served(bags=tf.constant(bag))["probabilities"].numpy()[0, 1])
    tflite = export_run(run, "tflite", out=str(tmp_path / "lite"))
    scores["tflite"] = float(run_tflite(tflite["path"], bag)[0, 1])
    assert max(scores.values()) - min(scores.values()) < 1e-5, scores
    assert saved["metadata"]["decision"]["threshold"] == decision["threshold"]
    assert json.load(open(os.path.splitext(tflite["path"])[0] + ".json"))["decision"]["bias"] == decision["bias"]


def test_decide_and_ties_in_model_selection():
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert decide(probs, {"threshold": 0.3}).tolist() == [1, 1]
    assert decide(probs, {"threshold": None}).tolist() == [0, 1]
    state = {"best_val_auroc": 1.0, "best_val_loss": 0.4}
    assert is_better(1.0, 0.3, state) and not is_better(1.0, 0.5, state) and not is_better(0.9, 0.1, state)
    assert is_better(0.5, 9.0, {"best_val_auroc": -1.0, "best_val_loss": None})


@pytest.mark.slow
def test_two_runs_on_the_same_bags_get_a_paired_interval(run, tmp_path):
    other = str(tmp_path / "other")
    train(RunConfig.from_dict(dict(out=other, epochs=1, batch_size=8, learning_rate=3e-3, image_size=32, instances=6)),
          verbose=0)
    a, b = evaluate_run(run, n_resamples=200), evaluate_run(other, n_resamples=200)
    difference, low, high = compare_runs(a, b, n_resamples=200)
    assert difference == pytest.approx(a["auroc"] - b["auroc"]) and low <= difference <= high
    assert compare_runs(a, a, n_resamples=50) == (0.0, 0.0, 0.0)


def test_a_model_that_gives_every_bag_one_score_is_flagged_not_passed(run, tmp_path, caplog):
    """A run whose training saturated (one output for every bag) gets an unreliable decision and a warning."""
    import shutil

    import keras

    copy = str(tmp_path / "constant")
    shutil.copytree(run, copy)
    path = os.path.join(copy, "best.keras")
    model = keras.saving.load_model(path)
    last = [layer for layer in model.layers if layer.weights][-1]
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])  # the classifier now ignores its input
    model.save(path)
    with caplog.at_level("WARNING", logger="mims_tf"):
        decision = calibrate_run(copy)
    assert not decision["reliable"] and "the model ranks nothing" in decision["why"]
    assert any("gives every validation bag the same score" in r.getMessage() for r in caplog.records)


def test_a_model_ranking_validation_no_better_than_chance_has_no_reliable_threshold(run, tmp_path):
    import shutil

    import keras

    decisions = []
    for name, sign in (("same", 1.0), ("flipped", -1.0)):  # negating the classifier reverses its ranking
        copy = str(tmp_path / name)
        shutil.copytree(run, copy)
        path = os.path.join(copy, "best.keras")
        model = keras.saving.load_model(path)
        last = [layer for layer in model.layers if layer.weights][-1]
        last.set_weights([sign * w for w in last.get_weights()])
        model.save(path)
        decisions.append(calibrate_run(copy))
    below = min(decisions, key=lambda d: d["val_auroc"])
    assert below["val_auroc"] < 0.5 < max(d["val_auroc"] for d in decisions)
    assert not below["reliable"] and "no better than chance" in below["why"]


def test_a_threshold_given_by_hand_writes_its_own_files(run):
    evaluate_run(run, n_resamples=0)
    own = open(os.path.join(run, "eval_test.csv")).read()
    result = evaluate_run(run, threshold=0.9, n_resamples=0)
    assert result["threshold"] == 0.9 and result["threshold_from"] == "given"
    assert open(os.path.join(run, "eval_test.csv")).read() == own  # the run's own record is kept
    rows = list(csv.DictReader(open(os.path.join(run, "eval_test_at0.9.csv"))))
    assert len(rows) == 32 and all((float(r["p_1"]) >= 0.9) == (r["predicted"] == "1") for r in rows)
