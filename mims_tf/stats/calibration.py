"""Calibration of class probabilities: a temperature or Platt scaling fitted on validation, ECE, Brier score.

All functions take integer labels `(N,)` and probabilities `(N, classes)` as NumPy arrays. For two classes,
ECE and the reliability diagram are over `P(positive)` (the last class): in each bin, the mean predicted
probability against the fraction of positive bags, the reading a clinician needs. For more classes they are
over the top-label confidence (Guo et al., 2017).
"""

import numpy as np

EPSILON = 1e-7


def temperature_scale(probs, temperature, bias=None):
    """`softmax(log(p) / T + b)`: the NumPy twin of `mims_tf.layers.TemperatureScaling`."""
    logits = np.log(np.clip(np.asarray(probs, np.float64), EPSILON, 1.0)) / float(temperature)
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def negative_log_likelihood(labels, probs):
    probs = np.clip(np.asarray(probs, np.float64), EPSILON, 1.0)
    return float(-np.mean(np.log(probs[np.arange(len(labels)), np.asarray(labels, int)])))


def fit_temperature(labels, probs, bounds=(0.05, 20.0)):
    """The temperature minimising the negative log-likelihood of `labels` under the scaled `probs`.

    A one-parameter fit (bounded search over log T, scipy), so it cannot overfit a small validation split
    much and never changes the ranking of bags (AUROC) nor the decision of a threshold mapped with it.
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, int)
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one bag")
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(labels, temperature_scale(probs, np.exp(log_t))),
        bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def fit_platt(labels, probs, bounds=(0.05, 20.0)):
    """`(T, bias)` of Platt scaling for two classes: `P(positive) = sigmoid(logit(p) / T + beta)`.

    Two parameters fitted by negative log-likelihood (scipy, L-BFGS-B, T bounded): besides over- or
    under-confidence (T) it corrects a shift of all probabilities towards one class (beta), which
    temperature alone cannot. `bias` is `[0, beta]`, for `temperature_scale` and `TemperatureScaling`.
    """
    from scipy.optimize import minimize

    labels = np.asarray(labels, int)
    if np.asarray(probs).shape[1] != 2:
        raise ValueError(f"Platt scaling is for two classes. Received: {np.asarray(probs).shape[1]} classes")

    def loss(params):
        return negative_log_likelihood(labels, temperature_scale(probs, np.exp(params[0]), [0.0, params[1]]))

    start = [np.log(fit_temperature(labels, probs, bounds)), 0.0]
    result = minimize(loss, start, method="L-BFGS-B", bounds=[tuple(np.log(bounds)), (-20.0, 20.0)])
    return float(np.exp(result.x[0])), [0.0, float(result.x[1])]


def _confidence_and_correct(labels, probs):
    labels, probs = np.asarray(labels, int), np.asarray(probs, np.float64)
    if probs.shape[1] == 2:
        return probs[:, 1], (labels == 1).astype(float)
    return probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float)


def reliability_bins(labels, probs, bins=15):
    """Per equal-width bin of the predicted probability: `(count, mean predicted, observed fraction)`."""
    confidence, outcome = _confidence_and_correct(labels, probs)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        rows.append((int(mask.sum()), float(confidence[mask].mean()) if mask.any() else float("nan"),
                     float(outcome[mask].mean()) if mask.any() else float("nan")))
    return rows


def expected_calibration_error(labels, probs, bins=15):
    """ECE: the bag-weighted mean |predicted - observed| over `bins` equal-width bins."""
    rows = reliability_bins(labels, probs, bins)
    total = sum(count for count, _, _ in rows)
    return float(sum(count * abs(p - o) for count, p, o in rows if count) / total)


def brier_score(labels, probs):
    """Mean squared error of the probabilities: `(P(positive) - y)^2` for two classes, summed over classes else."""
    labels, probs = np.asarray(labels, int), np.asarray(probs, np.float64)
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - labels) ** 2))
    return float(np.mean(np.sum((probs - np.eye(probs.shape[1])[labels]) ** 2, axis=1)))
