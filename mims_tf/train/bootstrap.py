"""Bootstrap confidence intervals for AUROC, of one model and of the difference between two on the same bags."""

import numpy as np


def _resamples(labels, n_resamples, seed):
    """Index arrays of stratified resamples (positives and negatives drawn apart, so every AUROC is defined)."""
    from sklearn.utils import resample

    labels = np.asarray(labels)
    indices = np.arange(len(labels))
    for i in range(n_resamples):
        yield resample(indices, replace=True, stratify=labels, random_state=seed + i)


def auroc_ci(labels, scores, n_resamples=2000, level=0.95, seed=0):
    """`(auroc, low, high)`: AUROC and its percentile bootstrap interval over bags (stratified resamples)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels), np.asarray(scores)
    values = [roc_auc_score(labels[i], scores[i]) for i in _resamples(labels, n_resamples, seed)]
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(roc_auc_score(labels, scores)), float(low), float(high)


def paired_auroc_difference_ci(labels, scores_a, scores_b, n_resamples=2000, level=0.95, seed=0):
    """`(difference, low, high)` of AUROC(a) - AUROC(b) on the same bags, resampling bags jointly (paired)."""
    from sklearn.metrics import roc_auc_score

    labels, scores_a, scores_b = np.asarray(labels), np.asarray(scores_a), np.asarray(scores_b)
    if not len(labels) == len(scores_a) == len(scores_b):
        raise ValueError("paired scores need the same bags: "
                         f"Received: {len(labels)} labels, {len(scores_a)} and {len(scores_b)} scores")
    values = [roc_auc_score(labels[i], scores_a[i]) - roc_auc_score(labels[i], scores_b[i])
              for i in _resamples(labels, n_resamples, seed)]
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    difference = roc_auc_score(labels, scores_a) - roc_auc_score(labels, scores_b)
    return float(difference), float(low), float(high)
