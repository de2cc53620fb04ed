"""What turns a run's scores into a decision: a calibration and an operating threshold, chosen on validation.

After training, `calibrate_run` scores the validation split with the run's model, fits a calibration
(for two classes Platt scaling, `P(positive) = sigmoid(logit(p) / T + beta)`; for more, a temperature,
`softmax(log p / T)`; either way the ranking and AUROC are unchanged), and picks the threshold on the
calibrated P(positive):
by the run's rule (`mims_tf.stats.thresholds`): Youden's J (where sensitivity + specificity is largest, the
operating point the paper's sensitivity and specificity describe), or the threshold that reaches a target
sensitivity or specificity. Both go into the run
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


def calibrate_run(run, which="best", rule=None, target=None, method=None):
    """Fits the calibration and picks the threshold on the validation split; stores and returns them.

    Args:
        run: a `RunFolder` or its path.
        which: `"best"` or `"last"` model.
        rule: a threshold rule of `mims_tf.stats.thresholds.THRESHOLD_RULES`, with its `target`; None: the
            run's own (its config's decision block).
        target: the rule's target (e.g. a sensitivity of 0.95).
        method: `"platt"` (two classes only) or `"temperature"`; None: Platt for two classes.

    Returns:
        `{"model", "method", "temperature", "bias", "rule", "target", "threshold", "threshold_from", "val_bags",
        "val_auroc", "reliable", "why"}`; `threshold` is None for more than two classes (the decision is the
        most probable class).
    """
    from sklearn.metrics import roc_auc_score

    from mims_tf.data import DataError
    from mims_tf.export import as_float32
    from mims_tf.stats.calibration import fit_platt, fit_temperature
    from mims_tf.stats.thresholds import check_rule, choose_threshold, describe_rule

    run = RunFolder.of(run)
    model, config, manifest = run.load(which)
    if rule is None:
        rule, target = config.decision.rule, config.decision.target
    check_rule(rule, target)
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
                "rule": rule, "target": target, "threshold": None, "threshold_from": "most probable class",
                "val_bags": int(len(labels)), "val_auroc": None, "reliable": True, "why": ""}
    if probs.shape[1] == 2:
        # The threshold is chosen on the very numbers every path computes: the scoring model's (float32).
        scores = predict_bags(scoring_model(model, decision), config, source)[:, 1]
        threshold = choose_threshold(labels, scores, rule, target)
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
        decision.update(threshold=float(threshold), threshold_from=f"validation ({describe_rule(rule, target)})",
                        val_auroc=auroc, reliable=not reasons, why="; ".join(reasons))
    stored = read_decisions(run)
    stored[which] = decision
    write_json(run.decision_path, stored)
    return decision


def rule_of(decision):
    """`(rule, target)` of a stored decision (one written before the rules table holds `sensitivity` only)."""
    if "rule" in decision:
        return decision["rule"], decision.get("target")
    target = decision.get("sensitivity")
    return ("youden", None) if target is None else ("sensitivity", target)


def read_decisions(run):
    """`{which: decision}` stored in the run's `decision.json` ({} where there is none)."""
    path = RunFolder.of(run).decision_path
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
    run = RunFolder.of(run)
    try:
        stored = read_decisions(run)
    except ValueError:  # a damaged file holds no decision worth keeping: every model's is chosen anew
        os.remove(run.decision_path)
        return
    if which in stored:
        del stored[which]
        write_json(run.decision_path, stored)


def run_decision(run, which="best"):
    """The stored decision of a run's model; calibrated now (and stored) where the run has none yet, by the
    run's own rule."""
    stored = read_decisions(run).get(which)
    if stored is not None:
        return stored
    return calibrate_run(run, which)


def scoring_model(model, decision):
    """`model` with the decision's calibration (`TemperatureScaling`) after its softmax."""
    import keras

    from mims_tf.layers import TemperatureScaling

    layer = TemperatureScaling(decision["temperature"], bias=decision.get("bias"), name="calibration")
    outputs = layer(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def load_scoring_model(run, which="best"):
    """`(scoring model, config, manifest, decision)` of a run: the calibrated model every path uses."""
    from mims_tf.export import as_float32

    run = RunFolder.of(run)
    decision = run_decision(run, which)
    model, config, manifest = run.load(which)
    return scoring_model(as_float32(model), decision), config, manifest, decision


def decide(probabilities, decision):
    """Predicted class indices for calibrated `probabilities` `(N, classes)`: P(positive) >= the threshold for
    two classes, the most probable class otherwise."""
    probabilities = np.asarray(probabilities)
    if decision.get("threshold") is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, -1] >= decision["threshold"]).astype(int)
