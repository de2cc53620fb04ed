import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mims_tf.train import BagAUROC


def _probs(rng, n, classes):
    logits = rng.normal(size=(n, classes))
    return (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype("float32")


def test_two_classes_is_the_auroc_of_class_one_against_integer_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = _probs(rng, 200, 2)
    metric = BagAUROC(classes=2, num_thresholds=2000)
    for start in range(0, 200, 50):  # several batches accumulate
        metric.update_state(labels[start:start + 50], probs[start:start + 50])
    assert abs(float(metric.result()) - roc_auc_score(labels, probs[:, 1])) < 2e-3


def test_more_classes_is_the_mean_one_vs_rest_auroc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    probs = _probs(rng, 300, 3)
    metric = BagAUROC(classes=3, num_thresholds=2000)
    metric.update_state(labels, probs)
    expected = np.mean([roc_auc_score(labels == c, probs[:, c]) for c in range(3)])
    assert abs(float(metric.result()) - expected) < 2e-3


def test_labels_of_any_shape_and_a_perfect_ranking():
    metric = BagAUROC()
    metric.update_state(np.array([[0], [1], [0], [1]]), np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]]))
    assert float(metric.result()) == pytest.approx(1.0)
    metric.reset_state()
    metric.update_state(np.array([1, 0]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert float(metric.result()) == pytest.approx(0.0)


def test_config_round_trip():
    metric = BagAUROC(classes=4, num_thresholds=50, name="val_auc")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(clone) is BagAUROC
    assert (clone.classes, clone.num_thresholds, clone.name, clone.multi_label) == (4, 50, "val_auc", True)


def test_scores_packed_near_one_half_still_rank_like_scikit_learn():
    # an untrained model's scores: 30 validation bags within 0.02 of each other (the best epoch is chosen on this)
    errors = {20000: [], 1000: []}  # the default and the former one
    for seed in range(20):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, 30)
        scores = 0.47 + 0.02 * rng.random(30) + 0.003 * labels
        for buckets in errors:
            metric = BagAUROC(2, num_thresholds=buckets)
            metric.update_state(labels, np.stack([1 - scores, scores], 1).astype("float32"))
            errors[buckets].append(abs(float(metric.result()) - roc_auc_score(labels, scores)))
    assert BagAUROC(2).get_config()["num_thresholds"] == 20000
    assert np.mean(errors[20000]) < 0.0015 and max(errors[20000]) < 0.005  # a tie or two, at most
    assert np.mean(errors[1000]) > 3 * np.mean(errors[20000])
