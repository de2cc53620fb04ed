"""Binary metrics at a threshold, and the mean and spread of a metric over runs."""

import numpy as np


def binary_metrics(labels, scores, threshold):
    """AUROC (scikit-learn, exact) and accuracy / sensitivity / specificity at `threshold` (P >= threshold is
    positive)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    predicted = np.asarray(scores) >= threshold
    positives, negatives = labels == 1, labels == 0
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "accuracy": float(np.mean(predicted == positives)),
        "sensitivity": float(np.mean(predicted[positives])) if positives.any() else float("nan"),
        "specificity": float(np.mean(~predicted[negatives])) if negatives.any() else float("nan"),
    }


def mean_and_spread(values):
    """`(mean, sample standard deviation (0 for one value), count)` of a metric over runs (e.g. seeds)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_and_spread needs at least one value. Received: []")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)
