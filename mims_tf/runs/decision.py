"""What turns a run's scores into a decision: a calibration and an operating threshold, chosen on validation.

After training, `calibrate_run` scores the validation split with the run's model, fits a calibration
(for two classes Platt scaling, `P(positive) = sigmoid(logit(p) / T + beta)`; for more, a temperature,
`softmax(log p / T)`; either way the ranking and AUROC are unchanged), and picks the threshold on the
calibrated P(positive):
Youden's J (where sensitivity + specificity is largest, the operating point the paper's sensitivity and
specificity describe) or the highest threshold that reaches a target sensitivity. Both go into the run
folder (`decision.json`), and every path that scores a bag (`evaluate`, `predict`, `explain`, the exported
SavedModel and TFLite file) computes the same float32 numbers: `scoring_model`, the run's model (as
float32) with that calibration built in; `evaluate` runs it with the uncalibrated output beside it.
"""

import logging
import os

import numpy as np

from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import bag_source, predict_bags
from mims_tf.utils import check_choice, read_json, write_json

logger = logging.getLogger("mims_tf")

# How a bag is scored, everywhere (evaluate, predict, explain, exports): every instance of the bag in one pass.
# Measured against the mean over 8 subsets of the training bag size (benchmarks/bag_inference.py): subsets
# did not score better where models learn (AdrenalMNIST3D: -0.05 to +0.01 AUROC by pooling) and they can
# miss a lesion's slices, so whole bags stay the default.
SCORING = "whole bag"
MIN_RELIABLE_BAGS = 30  # validation splits smaller than this give a rough threshold
MIN_RELIABLE_PER_CLASS = 5


def calibrate_run(run_dir, which="best", sensitivity=None, method=None):
    """Fits the temperature and picks the threshold on the validation split; stores and returns them.

    Args:
        run_dir: the run folder.
        which: `"best"` or `"last"` model.
        sensitivity: a target sensitivity in (0, 1] for the threshold; None: Youden's J.
        method: `"platt"` (two classes only) or `"temperature"`; None: Platt for two classes.

    Returns:
        `{"model", "method", "temperature", "bias", "threshold", "threshold_from", "val_bags", "val_auroc",
        "reliable", "why"}`;
        `threshold` is None for more than two classes (the decision is the most probable class).
    """
    from sklearn.metrics import roc_auc_score

    from mims_tf.data import DataError
    from mims_tf.train.calibration import fit_platt, fit_temperature, sensitivity_threshold, youden_threshold

    from mims_tf.export import as_float32

    run = RunFolder(run_dir)
    model, config, manifest = run.load(which)
    model = as_float32(model)  # every path scores in float32, as the exports do
    source = bag_source(config, manifest, "val")
    labels = source.labels
    if len(set(labels.tolist())) < 2:
        raise DataError(manifest.source, "the validation split holds only one class: no calibration or threshold")
    probs = predict_bags(model, config, source)
    method = method or ("platt" if probs.shape[1] == 2 else "temperature")
    check_choice("method", method, ("platt", "temperature"))
    if method == "platt":
        temperature, bias = fit_platt(labels, probs)
    else:
        temperature, bias = fit_temperature(labels, probs), None
    decision = {"model": which, "scoring": SCORING, "method": method, "temperature": temperature, "bias": bias,
                "sensitivity": sensitivity, "threshold": None,
                "threshold_from": "most probable class",
                "val_bags": int(len(labels)), "val_auroc": None, "reliable": True, "why": ""}
    if probs.shape[1] == 2:
        # The threshold is chosen on the very numbers every path computes: the scoring model's (float32).
        scores = predict_bags(scoring_model(model, decision), config, source)[:, 1]
        if sensitivity is None:
            threshold, picked = youden_threshold(labels, scores), "validation (Youden's J)"
        else:
            threshold, picked = sensitivity_threshold(labels, scores, sensitivity), f"validation (sensitivity >= {sensitivity:g})"
        auroc = float(roc_auc_score(labels, scores))
        smallest = int(np.bincount(labels, minlength=2).min())
        reasons = []
        if auroc >= 1.0:
            reasons.append("validation AUROC is 1.0 (saturated: any threshold between the classes fits)")
        if np.ptp(scores) <= 1e-6:  # e.g. a run whose fp16 training saturated: it must not pass as a model
            reasons.append("every validation bag gets the same score: the model ranks nothing (it did not learn)")
            logger.warning(
                "%s: the %s model gives every validation bag the same score (%.4g): it did not learn; retrain it "
                "(in mixed precision, try float32)", run.path, which, float(scores[0]))
        elif auroc <= 0.5:  # a threshold on a model that ranks no better than chance decides nothing
            reasons.append(f"validation AUROC is {auroc:.3f}, no better than chance: the model ranks nothing")
        if len(labels) < MIN_RELIABLE_BAGS or smallest < MIN_RELIABLE_PER_CLASS:
            reasons.append(f"{len(labels)} validation bags, {smallest} in the smaller class")
        decision.update(threshold=float(threshold), threshold_from=picked, val_auroc=auroc, reliable=not reasons,
                        why="; ".join(reasons))
    stored = read_decisions(run)
    stored[which] = decision
    write_json(decision_path(run), stored)
    return decision


def decision_path(run):
    return run.file("decision.json")


def read_decisions(run):
    path = decision_path(run)
    if not os.path.isfile(path):
        return {}
    stored = read_json(path)
    for which, decision in stored.items():
        if not isinstance(decision, dict) or not _usable(decision):
            raise ValueError(f"{path}: {which!r} holds {_bad_entry(decision)}; delete the file to choose the "
                             "decision anew")
    return stored


def _usable(decision):
    """The stored numbers make sense: finite temperature(s) > 0 and bias, a threshold in [0, 1] or none."""
    try:
        temperature = np.asarray(decision["temperature"], dtype=float)
        bias = np.asarray(decision.get("bias") or 0.0, dtype=float)
        threshold = decision.get("threshold")
        return bool(np.isfinite(temperature).all() and (temperature > 0).all() and np.isfinite(bias).all() and (
            threshold is None or (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                                  and 0 <= threshold <= 1)))
    except (KeyError, TypeError, ValueError):
        return False


def _bad_entry(decision):
    if not isinstance(decision, dict):
        return f"{decision!r}, not a decision"
    shown = {key: decision.get(key) for key in ("temperature", "bias", "threshold")}
    return "an unusable decision (" + ", ".join(f"{key} {value!r}" for key, value in shown.items()) + ")"


def forget_decision(run, which):
    """Drops the stored decision of a model that was just saved again (it is chosen anew when next needed)."""
    try:
        stored = read_decisions(run)
    except ValueError:  # a damaged file holds no decision worth keeping: every model's is chosen anew
        os.remove(decision_path(run))
        return
    if which in stored:
        del stored[which]
        write_json(decision_path(run), stored)


def run_decision(run_dir, which="best"):
    """The stored decision of a run's model; calibrated now (and stored) where the run has none yet, with the
    run's own target sensitivity."""
    stored = read_decisions(RunFolder(run_dir)).get(which)
    if stored is not None:
        return stored
    return calibrate_run(run_dir, which, RunFolder(run_dir).config().sensitivity)


def scoring_model(model, decision):
    """`model` with the decision's calibration (`TemperatureScaling`) after its softmax."""
    import keras

    from mims_tf.layers import TemperatureScaling

    layer = TemperatureScaling(decision["temperature"], bias=decision.get("bias"), name="calibration")
    outputs = layer(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def load_scoring_model(run_dir, which="best"):
    """`(scoring model, config, manifest, decision)` of a run: the calibrated model every path uses."""
    from mims_tf.export import as_float32

    decision = run_decision(run_dir, which)
    model, config, manifest = RunFolder(run_dir).load(which)
    return scoring_model(as_float32(model), decision), config, manifest, decision


def decide(probabilities, decision):
    """Predicted class indices for calibrated `probabilities` `(N, classes)`: P(positive) >= the threshold for
    two classes, the most probable class otherwise."""
    probabilities = np.asarray(probabilities)
    if decision.get("threshold") is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, -1] >= decision["threshold"]).astype(int)
