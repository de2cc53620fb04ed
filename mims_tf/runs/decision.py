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

Decisions are never silently replaced. The run's own (`decision.json`, the run's rule) is made after
training and made again only when its model changes. Another operating point is a named decision
(`decide_run(run, "screening", "sensitivity", 0.95)` -> `decisions/screening.json`), made once; each records
the SHA-256 of the model it was made for, and one made for an earlier model is refused, not used.
"""

import logging
import numbers
import os
import re

import numpy as np

from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import bag_source, predict_bags
from mims_tf.utils import check_choice, json_sha256, read_json, write_json

logger = logging.getLogger("mims_tf")

# How a bag is scored, everywhere (evaluate, predict, explain, exports): every instance of the bag in one pass.
# Measured against the mean over 8 subsets of the training bag size (benchmarks/bag_inference.py): subsets
# did not score better where models learn (AdrenalMNIST3D: -0.05 to +0.01 AUROC by pooling) and they can
# miss a lesion's slices, so whole bags stay the default.
SCORING = "whole bag"
MIN_RELIABLE_BAGS = 30  # validation splits smaller than this give a rough threshold
MIN_RELIABLE_PER_CLASS = 5
OWN = "run"  # the name of the run's own decision (decision.json); named ones live in decisions/<name>.json


def choose_decision(run, which="best", rule=None, target=None, method=None):
    """Fits the calibration and picks the threshold on the validation split; returns the decision (stores
    nothing: `calibrate_run` and `decide_run` do).

    Args:
        run: a `RunFolder` or its path.
        which: `"best"` or `"last"` model.
        rule: a threshold rule of `mims_tf.stats.thresholds.THRESHOLD_RULES`, with its `target`; None: the
            run's own (its config's decision block).
        target: the rule's target (e.g. a sensitivity of 0.95).
        method: `"platt"` (two classes only) or `"temperature"`; None: Platt for two classes.

    Returns:
        `{"model", "model_sha256", "method", "temperature", "bias", "rule", "target", "threshold",
        "threshold_from", "val_bags", "val_auroc", "val_sensitivity", "val_specificity" (with `_low`, `_high`:
        Wilson 95 % intervals), "reliable", "why"}`; `threshold` is None for more than two classes (the
        decision is the most probable class).
    """
    from sklearn.metrics import roc_auc_score

    from mims_tf.data import DataError
    from mims_tf.export import as_float32
    from mims_tf.stats.calibration import fit_platt, fit_temperature
    from mims_tf.stats.metrics import operating_point
    from mims_tf.stats.thresholds import check_rule, choose_threshold, describe_rule

    run = RunFolder.of(run)
    if run.folds():  # cross-validated: fitted on the out-of-fold predictions
        from mims_tf.runs.cv import choose_cv_decision

        return choose_cv_decision(run, which, rule, target, method)
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
    decision = {"model": which, "model_sha256": run.model_sha256(which), "scoring": SCORING, "method": method,
                "temperature": temperature, "bias": bias, "rule": rule, "target": target, "threshold": None,
                "threshold_from": "most probable class", "val_bags": int(len(labels)), "val_auroc": None,
                "reliable": True, "why": ""}
    if probs.shape[1] == 2:
        # The threshold is chosen on the very numbers every path computes: the scoring model's (float32).
        scores = predict_bags(scoring_model(model, decision), config, source)[:, 1]
        threshold = choose_threshold(labels, scores, rule, target)
        auroc = float(roc_auc_score(labels, scores))
        reasons = unreliable_because(labels, scores, auroc, "validation")
        if np.ptp(scores) <= 1e-6:
            logger.warning(
                "%s: the %s model gives every validation bag the same score (%.4g): it did not learn; retrain it "
                "(in mixed precision, try float32)", run.path, which, float(scores[0]))
        point = operating_point(labels, scores, threshold)
        decision.update(threshold=float(threshold), threshold_from=f"validation ({describe_rule(rule, target)})",
                        val_auroc=auroc, reliable=not reasons, why="; ".join(reasons),
                        **{f"val_{key}": value for key, value in point.items()})
    return decision


def calibrate_run(run, which="best"):
    """Makes the run's own decision for its `which` model (by the run's rule), stores it in `decision.json`
    and returns it (see `choose_decision`)."""
    run = RunFolder.of(run)
    with run.reading():
        decision = {"name": OWN, **choose_decision(run, which)}
        stored = _read(run, run.decision_path) if os.path.isfile(run.decision_path) else {}
        stored[which] = decision
        write_json(run.decision_path, stored)
    return decision


def decide_run(run, name, rule, target=None, which="best", method=None):
    """Makes a named decision (another operating point) for the run's `which` model and stores it in
    `decisions/<name>.json`; a name already used for that model is refused (decisions are never replaced).

    Args:
        run: a `RunFolder` or its path.
        name: a plain name (letters, digits, `_.-`), not `"run"` (the run's own decision).
        rule, target: the threshold rule and its target (`mims_tf.stats.thresholds`).
        which: `"best"` or `"last"` model.
        method: as in `choose_decision`.

    Returns:
        The decision, with its `name`.
    """
    from mims_tf.stats.thresholds import check_rule

    check_decision_name(name, own=False)
    check_rule(rule, target)
    run = RunFolder.of(run)
    path = run.named_decision_path(name)
    with run.reading():
        if os.path.isfile(path) and which in _read(run, path):
            raise ValueError(f"{path}: a decision named {name!r} exists for the {which} model; decisions are never "
                             "replaced: choose another name, or remove that file first")
        decision = {"name": name, **choose_decision(run, which, rule, target, method)}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        stored = _read(run, path) if os.path.isfile(path) else {}
        try:  # a new name is created exclusively: of two processes making it at once, one is refused
            write_json(path, {**stored, which: decision}, replace=bool(stored))
        except FileExistsError:
            raise ValueError(f"{path}: a decision named {name!r} was just made by another process; choose another "
                             "name") from None
    return decision


def check_decision_name(name, own=True):
    """Raises `ValueError` unless `name` is a plain decision name (`"run"`, the run's own, where `own`)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or (
            name == OWN and not own):
        what = "another name than 'run' (the run's own decision)" if name == OWN else "a plain name"
        raise ValueError(f"a decision's name must be {what}: letters, digits, '_', '.', '-', at most 64. "
                         f"Received: name={name!r}")
    return name


def rule_of(decision):
    """`(rule, target)` of a stored decision (one written before the rules table holds `sensitivity` only)."""
    if "rule" in decision:
        return decision["rule"], decision.get("target")
    target = decision.get("sensitivity")
    return ("youden", None) if target is None else ("sensitivity", target)


def read_decisions(run, name=OWN):
    """`{which: decision}` of the run's own decision (`decision.json`) or of a named one ({} where none)."""
    run = RunFolder.of(run)
    path = run.decision_path if name == OWN else run.named_decision_path(check_decision_name(name))
    return _read(run, path) if os.path.isfile(path) else {}


def _read(run, path):
    recover = ("delete it: the run's own decision is made again when next needed" if path == run.decision_path
               else "restore it, or remove it and make the decision again")
    stored = read_json(path)
    for which, decision in stored.items():
        problem = _problem(decision) if which in ("best", "last") else f"an unknown model {which!r} (best or last)"
        if problem:
            raise ValueError(f"{path}: {which!r} holds {problem}; {recover}")
    return stored


def _problem(decision):
    """What makes a stored decision unusable ('' where nothing): a temperature > 0, a bias of one number per
    class (Platt's beta b is stored as [0, b]), a threshold in [0, 1] or none."""
    if not isinstance(decision, dict):
        return f"{decision!r}, not a decision"

    def number(value):
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)

    temperature, bias, threshold = decision.get("temperature"), decision.get("bias"), decision.get("threshold")
    if not (number(temperature) and temperature > 0):
        return f"temperature {temperature!r}, not a number > 0"
    if bias is not None and not (isinstance(bias, list) and len(bias) >= 2 and all(number(b) for b in bias)):
        hint = f" (Platt's beta {bias} is written [0.0, {bias}])" if number(bias) else ""
        return f"bias {bias!r}, not a list of one number per class{hint}"
    if threshold is not None and not (number(threshold) and 0 <= threshold <= 1):
        return f"threshold {threshold!r}, not a number in [0, 1] or null"
    return ""


def forget_decision(run, which):
    """Drops the run's own decision of a model that was just saved again (made anew when next needed); named
    decisions stay, and are refused from now on (they record the model they were made for)."""
    run = RunFolder.of(run)
    if not os.path.isfile(run.decision_path):
        return
    try:
        stored = _read(run, run.decision_path)
    except ValueError:  # a damaged file holds no decision worth keeping: every model's is made anew
        os.remove(run.decision_path)
        return
    if which in stored:
        del stored[which]
        write_json(run.decision_path, stored)


def run_decision(run, which="best", name=OWN):
    """The decision `name` of a run's `which` model, checked against the model it was made for and its class
    count. The run's own is made now (and stored) where there is none yet or its model changed; a named one
    made for an earlier model is refused."""
    run = RunFolder.of(run)
    path = run.decision_path if name == OWN else run.named_decision_path(check_decision_name(name))
    decision = read_decisions(run, name).get(which)
    if decision is None and name != OWN:
        names = ", ".join(run.decision_names()) or "none"
        raise ValueError(f"{path}: no decision named {name!r} for the {which} model (named decisions: {names})")
    made_for = (decision or {}).get("model_sha256")
    if decision is not None and made_for is not None and made_for != run.model_sha256(which):
        if name != OWN:
            raise ValueError(f"{path}: made for an earlier {which}.keras (the model changed since): remove it and "
                             "make the decision again")
        logger.warning("%s: made for an earlier %s.keras; the run's decision is made again", path, which)
        decision = None
    if decision is None:
        decision = calibrate_run(run, which)
    classes = run.load_model(which).outputs[0].shape[-1]
    bias = decision.get("bias")
    if bias is not None and len(bias) != classes:
        raise ValueError(f"{path}: {which!r} holds a bias of {len(bias)} values, but {which}.keras gives {classes} "
                         "classes: " + ("delete it: the run's own decision is made again when next needed"
                                        if name == OWN else "remove it and make the decision again"))
    return {"name": name, **decision}


def decision_sha256(decision):
    """The SHA-256 of a decision's numbers and rule (what an export records to be checked against its run)."""
    keys = ("model_sha256", "method", "temperature", "bias", "rule", "target", "threshold")
    return json_sha256({key: decision.get(key) for key in keys})


def unreliable_because(labels, scores, auroc, where):
    """Why a threshold chosen on `(labels, scores)` (`where`: "validation", "out-of-fold") cannot be trusted: a
    list of reasons, empty where it can."""
    smallest = int(np.bincount(np.asarray(labels, int), minlength=2).min())
    reasons = []
    if auroc >= 1.0:
        reasons.append(f"{where} AUROC is 1.0 (saturated: any threshold between the classes fits)")
    if np.ptp(scores) <= 1e-6:  # e.g. a run whose fp16 training saturated: it must not pass as a model
        reasons.append(f"every {where} bag gets the same score: the model ranks nothing (it did not learn)")
    elif auroc <= 0.5:  # a threshold on a model that ranks no better than chance decides nothing
        reasons.append(f"{where} AUROC is {auroc:.3f}, no better than chance: the model ranks nothing")
    if len(labels) < MIN_RELIABLE_BAGS or smallest < MIN_RELIABLE_PER_CLASS:
        reasons.append(f"{len(labels)} {where} bags, {smallest} in the smaller class")
    return reasons


def describe_decision(decision):
    """`the run's own decision (Youden's J on validation)` or `decision 'screening' (sensitivity >= 0.95 ...)`."""
    who = "the run's own decision" if decision.get("name", OWN) == OWN else f"decision {decision['name']!r}"
    return f"{who}: threshold from {decision['threshold_from']}" if decision.get("threshold") is not None else who


def scoring_model(model, decision):
    """`model` with the decision's calibration (`TemperatureScaling`) after its softmax."""
    import keras

    from mims_tf.layers import TemperatureScaling

    layer = TemperatureScaling(decision["temperature"], bias=decision.get("bias"), name="calibration")
    outputs = layer(model.outputs[0])
    return keras.Model(model.inputs, outputs, name=model.name)


def load_scoring_model(run, which="best", decision=OWN):
    """`(scoring model, config, manifest, decision)` of a run: the calibrated model every path uses, with the
    decision named `decision` (the run's own by default)."""
    from mims_tf.export import as_float32

    run = RunFolder.of(run)
    model, config, manifest = run.load(which)
    decision = run_decision(run, which, decision)
    return scoring_model(as_float32(model), decision), config, manifest, decision


def decide(probabilities, decision):
    """Predicted class indices for calibrated `probabilities` `(N, classes)`: P(positive) >= the threshold for
    two classes, the most probable class otherwise."""
    probabilities = np.asarray(probabilities)
    if decision.get("threshold") is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, -1] >= decision["threshold"]).astype(int)
