"""Cross-validation for small data: K patient-grouped, stratified folds over the train and val bags, each fold a
normal run folder inside one parent run; every pool bag predicted out of fold exactly once; the calibration
and the threshold fitted on those out-of-fold predictions (K times the bags one validation split gives); the
fold ensemble as the run's model.

    <run>/config.yaml          the configuration (`training.folds` = K)
    <run>/manifest.csv         every bag with its split and its fold (`fold`; empty for test bags)
    <run>/folds/fold_<k>.csv   fold k's manifest: its bags are validation, the pool's others training
    <run>/fold_<k>/            fold k's run folder (resumable on its own)
    <run>/oof.csv              every pool bag: fold, label, P(positive) of the best and last models (raw)
    <run>/decision.json        the run's decision, fitted out of fold
    <run>/input_contract.json  fold 1's (its training bags are (K-1)/K of the pool)

The ensemble (`RunFolder.load_model` of a cross-validated run) averages the K fold models' probabilities; the
scoring model calibrates that mean with the out-of-fold calibration, so evaluate, predict, explain and every
export score one model. The test split, where the data declares one, is never used for training or choice.
Each fold keeps as `best.keras` what `training.keep` says (`KEPT`; by default the mean of its last epochs'
weights, said in the training summary); `oof.csv` holds the last epoch's out-of-fold scores too, and
`evaluate_out_of_fold` reports both.
"""

import csv
import logging
import os
import shutil

import numpy as np

from mims_tf.runs.folder import RunFolder
from mims_tf.utils import atomic_open, check_choice, read_json, write_json

logger = logging.getLogger("mims_tf")

# How each fold keeps its model (`best.keras`, `training.keep`); `benchmarks/model_choice.py` measured the
# candidates out of fold: the mean of the last epochs' weights did best (the default of a cross-validated run).
KEPT = {"average_last": "the mean of the weights of the last ceil(epochs / 3) epochs",
        "best_auroc": "the epoch of the best validation AUROC (ties: the lower validation loss)"}


def fold_config(config, run, k, classes):
    """The configuration of fold `k`: the parent's, on the fold's manifest, one split."""
    from mims_tf.runs.checkpoint import kept_model
    from mims_tf.runs.config import RunConfig

    values = config.to_dict()
    values["out"] = run.fold_path(k)
    values["training"].update(folds=None, keep=kept_model(config.training))  # each fold keeps what the run says
    values["data"].update(source=os.path.join(run.path, "folds", f"fold_{k}.csv"), classes=list(classes))
    return RunConfig.from_dict(values)


def train_folds(config, resume=False, overwrite=False, verbose="auto", callbacks=()):
    """Trains the K folds of `config` (`training.folds`) in the parent run folder `config.out`, fold by fold
    (a finished fold is kept, a stopped one resumed), then makes the run's decision out of fold.

    Returns:
        `{"run", "folds": [each fold's state], "decision", "oof_auroc", "best_val_auroc"` (the out-of-fold AUROC),
        `"best_epoch"` (None), `"environment"}`.
    """
    from mims_tf.data.manifest import write_manifest
    from mims_tf.data.splits import assign_folds
    from mims_tf.runs.checkpoint import kept_model
    from mims_tf.runs.decision import calibrate_run
    from mims_tf.runs.fit import comparable_config, prepare_run_folder, train
    from mims_tf.runs.inputs import build_manifest

    run = RunFolder(config.out)
    fresh = not run.contents()
    with run.lock():
        try:  # a start that fails before the folds (bad data, too many folds) leaves a new folder as it was
            config, resuming = prepare_run_folder(config, resume, overwrite)
            data = config.data
            if resuming and os.path.isfile(run.manifest_path):
                manifest = run.manifest(data.classes)
            else:
                # what a resume compares the parent's config.yaml with (each fold records its own too)
                run.save_state({"config": comparable_config(config, run)})
                manifest = assign_folds(build_manifest(config, run.path).check_trainable(pooled=True),
                                        config.training.folds, seed=data.split_seed,
                                        allow_shared_groups=data.allow_shared_groups, group_pattern=data.group_pattern)
                run.save_manifest(manifest)
        except BaseException:
            if fresh and not resume:
                run.empty()
            raise
        summaries = []
        for k in range(1, config.training.folds + 1):
            rows = [dict(row, split="val" if row["fold"] == str(k) else "train" if row["fold"] else row["split"])
                    for row in manifest.rows]
            path = os.path.join(run.path, "folds", f"fold_{k}.csv")
            if not os.path.isfile(path):
                write_manifest(type(manifest)(rows, list(manifest.classes), manifest.source, manifest.lines), path,
                               relative=True)
            fold = RunFolder(run.fold_path(k))
            done = fold.exists() and fold.state()["epochs_done"] >= config.training.epochs and \
                os.path.isfile(fold.decision_path)
            logger.info("fold %d of %d%s", k, config.training.folds, ": done, kept" if done else "")
            if not done:
                train(fold_config(config, run, k, manifest.classes), resume=fold.exists(), verbose=verbose,
                      callbacks=callbacks)
            summaries.append({"fold": k, **fold.state()})
            if k == 1 and os.path.isfile(fold.contract_path):
                shutil.copyfile(fold.contract_path, run.contract_path)
        run.forget()
        write_out_of_fold(run)
        decision = calibrate_run(run)
    epochs = [f"{summary['averaged']['from']}-{summary['best_epoch']}" if summary.get("averaged") else
              summary.get("best_epoch") for summary in summaries]
    chosen_by = KEPT[kept_model(config.training)]
    logger.info("%d folds: out-of-fold AUROC %.4f on %d bags; threshold %.3f (%s); each fold's model: %s (epochs "
                "%s)", config.training.folds,
                decision["val_auroc"] if decision["val_auroc"] is not None else float("nan"), decision["val_bags"],
                decision["threshold"] if decision["threshold"] is not None else float("nan"),
                decision["threshold_from"], chosen_by, ", ".join(map(str, epochs)))
    from mims_tf.runs.environment import environment, fingerprint

    # the keys of a one-split run's summary that describe the run as a whole: its validation AUROC is out of fold
    return {"run": run.path, "folds": summaries, "fold_models": {"chosen_by": chosen_by, "epochs": epochs},
            "decision": decision, "oof_auroc": decision["val_auroc"],
            "best_val_auroc": decision["val_auroc"], "best_epoch": None, "environment": fingerprint(environment())}


def write_out_of_fold(run):
    """Scores every fold's validation bags with its best and last models (raw probabilities) into `oof.csv`."""
    from mims_tf.export import as_float32
    from mims_tf.runs.inputs import bag_source, predict_bags

    rows = []
    for k, fold in enumerate(run.folds(), start=1):
        config = fold.config()
        manifest = fold.manifest(config.data.classes)
        source = bag_source(config, manifest, "val")
        scores = {which: predict_bags(as_float32(fold.load_model(which)), config, source)
                  for which in ("best", "last")}
        for index, bag in enumerate(source.bags):
            rows.append({"bag": bag.bag, "fold": k, "label": bag.label_name, "label_index": bag.label,
                         **{f"p_{which}": [float(p) for p in probs[index]] for which, probs in scores.items()}})
    classes = run.manifest().classes
    run.forget()  # the fold models' hashes as they are now
    write_json(run.file("oof.json"), {"made_from": {which: run.model_sha256(which) for which in ("best", "last")}})
    with atomic_open(run.file("oof.csv")) as f:
        writer = csv.writer(f)
        writer.writerow(["bag", "fold", "label", *[f"{which}_p_{c}" for which in ("best", "last") for c in classes]])
        for row in rows:
            writer.writerow([row["bag"], row["fold"], row["label"],
                             *[f"{p:.8f}" for which in ("best", "last") for p in row[f"p_{which}"]]])
    return rows


def read_out_of_fold(run, which="best"):
    """`(bag ids, labels, folds, raw probabilities (N, classes))` of a cross-validated run's `oof.csv`."""
    run = RunFolder.of(run)
    classes = run.manifest().classes
    path = run.file("oof.csv")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not found: the run's folds have not all been trained (resume it)")
    made_from = None
    if os.path.isfile(run.file("oof.json")):
        try:
            made_from = read_json(run.file("oof.json"), {"made_from": dict}).get("made_from", {}).get(which)
        except ValueError:
            made_from = None
    if made_from != run.model_sha256(which):  # a fold model changed since (or an older run): score them again
        logger.warning("%s: scored by other fold models than the run's %s models now; scoring the folds again",
                       path, which)
        write_out_of_fold(run)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        probs = np.array([[float(row[f"{which}_p_{c}"]) for c in classes] for row in rows])
        labels = np.array([classes.index(row["label"]) for row in rows])
        folds = np.array([int(row["fold"]) for row in rows])
    except (KeyError, ValueError) as error:
        raise ValueError(f"{path}: damaged ({error}); delete it and resume the run to score the folds again") from None
    return [row["bag"] for row in rows], labels, folds, probs


def choose_cv_decision(run, which="best", rule=None, target=None, method=None):
    """A cross-validated run's decision: the calibration and threshold fitted on its out-of-fold predictions
    (see `mims_tf.runs.decision.choose_decision`, whose keys it has, plus `folds`)."""
    from sklearn.metrics import roc_auc_score

    from mims_tf.runs.decision import unreliable_because
    from mims_tf.stats.calibration import fit_platt, fit_temperature, temperature_scale
    from mims_tf.stats.metrics import operating_point
    from mims_tf.stats.thresholds import check_rule, choose_threshold, describe_rule

    run = RunFolder.of(run)
    config = run.config()
    if rule is None:
        rule, target = config.decision.rule, config.decision.target
    check_rule(rule, target)
    _, labels, folds, probs = read_out_of_fold(run, which)
    method = method or ("platt" if probs.shape[1] == 2 else "temperature")
    check_choice("method", method, ("platt", "temperature"))
    temperature, bias = fit_platt(labels, probs) if method == "platt" else (fit_temperature(labels, probs), None)
    decision = {"model": which, "model_sha256": run.model_sha256(which), "scoring": "whole bag, mean of the folds",
                "method": method, "temperature": temperature, "bias": bias, "rule": rule, "target": target,
                "threshold": None, "threshold_from": "most probable class", "val_bags": int(len(labels)),
                "val_auroc": None, "reliable": True, "why": "", "folds": int(folds.max())}
    if probs.shape[1] == 2:
        scores = temperature_scale(probs, temperature, bias)[:, 1]
        threshold = choose_threshold(labels, scores, rule, target)
        auroc = float(roc_auc_score(labels, scores))
        reasons = unreliable_because(labels, scores, auroc, "out-of-fold")
        decision.update(threshold=float(threshold), val_auroc=auroc, reliable=not reasons, why="; ".join(reasons),
                        threshold_from=f"out of fold, {len(labels)} bags ({describe_rule(rule, target)})",
                        **{f"val_{key}": value for key, value in operating_point(labels, scores, threshold).items()})
    return decision


def evaluate_out_of_fold(run, which="best", n_resamples=2000, write=True, decision=None):
    """The cross-validated metrics of a run, from its out-of-fold predictions: AUROC with its bootstrap 95 %
    interval over all pool bags; sensitivity and specificity at the run's threshold with Wilson intervals; ECE
    and Brier before and after calibration, the calibration cross-fitted (fitted on the other folds' bags, so
    no bag is calibrated by a fit that saw it). Writes `eval_oof.json` (and `eval_oof_last.json`)."""
    from mims_tf.runs.decision import OWN, run_decision
    from mims_tf.stats.bootstrap import auroc_ci
    from mims_tf.stats.calibration import brier_score, expected_calibration_error, fit_platt, temperature_scale
    from mims_tf.stats.metrics import binary_metrics, operating_point

    run = RunFolder.of(run)
    bag_ids, labels, folds, probs = read_out_of_fold(run, which)
    if probs.shape[1] != 2:
        raise ValueError(f"{run.path}: out-of-fold evaluation supports two classes; this run has {probs.shape[1]}")
    decision = run_decision(run, which, decision or OWN)
    calibrated = temperature_scale(probs, decision["temperature"], decision.get("bias"))
    crossfit = np.zeros_like(probs)
    for k in np.unique(folds):
        fit = fit_platt(labels[folds != k], probs[folds != k])
        crossfit[folds == k] = temperature_scale(probs[folds == k], *fit)
    scores, threshold = calibrated[:, 1], decision["threshold"]
    low = high = float("nan")
    if n_resamples:
        _, low, high = auroc_ci(labels, scores, n_resamples=n_resamples)
    result = {"run": run.name, "model": which, "split": "out of fold", "folds": int(folds.max()),
              "bags": int(len(labels)), "threshold": threshold, "threshold_from": decision["threshold_from"],
              **binary_metrics(labels, scores, threshold), **operating_point(labels, scores, threshold),
              "auroc_low": low, "auroc_high": high, "ece": expected_calibration_error(labels, probs),
              "ece_calibrated": expected_calibration_error(labels, crossfit), "brier": brier_score(labels, probs),
              "brier_calibrated": brier_score(labels, crossfit),
              # what a calibrated model with these scores shows from sampling alone (and one with uniform scores)
              "ece_of_a_calibrated_model_at_this_size": sampling_ece(len(labels), scores=crossfit[:, 1]),
              "ece_of_a_calibrated_uniform_model_at_this_size": sampling_ece(len(labels))}
    result.update(decision=decision["name"], model_sha256=run.model_sha256(which))
    if write:
        stem = "oof" + ("" if which == "best" else f"_{which}") + ("" if decision["name"] == OWN else
                                                                  f"_{decision['name']}")
        write_json(run.file(f"eval_{stem}.json"), result)
    return {**result, "path": run.path, "scores": scores, "labels": labels, "bag_ids": bag_ids}


def sampling_ece(bags, draws=200, seed=0, scores=None):
    """The mean ECE (15 bins) that a perfectly calibrated model shows from sampling alone on `bags` bags: each
    label drawn with the model's own probability, so no calibration can go below it on average.

    Args:
        bags: the number of bags.
        scores: the model's P(positive) (its score distribution: each draw resamples `bags` of them); None:
            probabilities uniform in [0, 1].
    """
    from mims_tf.stats.calibration import expected_calibration_error

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        p = rng.uniform(0, 1, bags) if scores is None else rng.choice(np.asarray(scores, float), bags)
        labels = (rng.uniform(0, 1, bags) < p).astype(int)
        values.append(expected_calibration_error(labels, np.stack([1 - p, p], axis=1)))
    return float(np.mean(values))


def ensemble(models, name="fold_ensemble"):
    """One Keras model whose output is the mean of `models`' probabilities (each a run's model, same input)."""
    import keras

    inputs = keras.Input(shape=models[0].input_shape[1:], name="bags")
    outputs = [keras.Model(m.inputs, m.outputs[0], name=f"fold_{k}")(inputs) for k, m in enumerate(models, start=1)]
    return keras.Model(inputs, keras.layers.Average(name="fold_mean")(outputs), name=name)


def fold_spread(run, config, source, decision, which="best"):
    """The standard deviation across the folds of each bag's calibrated probability of the last class (the
    positive one of two; a cross-validated run's `which` fold models)."""
    from mims_tf.export import as_float32
    from mims_tf.runs.inputs import predict_bags
    from mims_tf.stats.calibration import temperature_scale

    scores = [temperature_scale(predict_bags(as_float32(fold.load_model(which)), config, source),
                                decision["temperature"], decision.get("bias"))[:, -1] for fold in run.folds()]
    return np.std(np.stack(scores), axis=0)


def read_cv_state(run):
    """Each fold's state (`state.json`), for the summary of a cross-validated run."""
    return [read_json(fold.state_path) if os.path.isfile(fold.state_path) else {} for fold in RunFolder.of(run).folds()]
