"""Binary metrics at a threshold (with intervals for the operating point), and the mean and spread of a metric
over runs."""

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


def wilson_interval(successes, total, z=1.959964):
    """The Wilson score 95 % interval `(low, high)` of a proportion `successes / total` (NaN for none): honest at
    the small counts a validation split gives (a sensitivity of 10/10 is not certainly 1.0)."""
    if total <= 0:
        return float("nan"), float("nan")
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def operating_point(labels, scores, threshold):
    """Sensitivity and specificity at `threshold` with their Wilson 95 % intervals and counts:
    `{"sensitivity", "sensitivity_low", "sensitivity_high", "positives", "specificity", ..., "negatives"}`."""
    labels = np.asarray(labels)
    predicted = np.asarray(scores) >= threshold
    point = {}
    for name, members, hits, count in (("sensitivity", labels == 1, predicted, "positives"),
                                       ("specificity", labels == 0, ~predicted, "negatives")):
        n, k = int(members.sum()), int(hits[members].sum())
        low, high = wilson_interval(k, n)
        point.update({name: k / n if n else float("nan"), f"{name}_low": low, f"{name}_high": high, count: n})
    return point


def mean_and_spread(values):
    """`(mean, sample standard deviation (0 for one value), count)` of a metric over runs (e.g. seeds)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("mean_and_spread needs at least one value. Received: []")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values)
