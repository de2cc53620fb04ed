"""Bag-level evaluation of one or several runs (the paper's protocol: mean and spread over runs)."""

import csv
import os

import numpy as np

from mims_tf.data import DataError
from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import bag_source, predict_bags
from mims_tf.utils import atomic_open, new_figure, save_figure, write_json

METRICS = ("auroc", "accuracy", "sensitivity", "specificity", "ece_calibrated", "brier_calibrated")


def split_scores(model, config, manifest, split, instances=None):
    """`(source, labels, probabilities)` of every bag of a split; an error if it holds one class only."""
    source = bag_source(config, manifest, split)
    labels = source.labels
    if len(set(labels.tolist())) < 2:
        raise DataError(manifest.source, f"split {split!r} holds only one class: AUROC is undefined")
    return source, labels, predict_bags(model, config, source, instances)


def output_stem(split, instances=None, which="best", threshold=None, decision=None):
    """Stem of an evaluation's files: `eval_<stem>.csv|json`, `roc_<stem>.png` (`test`, `test_4inst`, `test_last`,
    `test_screening` for a named decision, `test_at0.9`: a threshold given by hand never overwrites the files
    made at the run's own)."""
    from mims_tf.runs.decision import OWN

    return (split + (f"_{instances}inst" if instances else "") + ("" if which == "best" else f"_{which}")
            + ("" if decision in (None, OWN) else f"_{decision}") + ("" if threshold is None else f"_at{threshold:g}"))


def evaluate_run(run, split="test", threshold=None, write=True, instances=None, which="best", decision=None,
                 n_resamples=2000, strict=False):
    """Evaluates a run's model on a split with its calibrated probabilities and stored decision threshold.

    Writes the per-bag CSV (calibrated probabilities, predicted class), the ROC curve, the reliability
    diagram (before and after calibration) and the metrics JSON, which records the SHA-256 of the model and
    of the decision it used.

    Args:
        run: a `RunFolder` or its path.
        split: the split to evaluate.
        threshold: a decision threshold on the calibrated P(positive); None: the decision's (chosen on
            validation). Files made at a given threshold end in `_at<threshold>`.
        write: write the files.
        instances: score every bag on that many of its instances, sampled once (fixed seed), e.g. the
            training bag size, so bag size cannot act as a signal; the threshold is then chosen on
            validation bags scored the same way, and the files end in `_<instances>inst`.
        which: `"best"` or `"last"` model.
        decision: the name of a decision made by `decide_run` (its files end in `_<name>`); None: the run's own.
        n_resamples: bootstrap resamples of the AUROC interval (0: none).
        strict: refuse a bag outside the run's input contract instead of warning (`mims_tf.runs.contract`).

    Returns:
        A dict: `auroc` and its 95 % interval `auroc_low`, `auroc_high`; `accuracy`, `sensitivity`,
        `specificity` at `threshold` (with Wilson 95 % intervals `sensitivity_low` ...); `ece`, `brier`
        (uncalibrated) and `ece_calibrated`, `brier_calibrated`; `temperature`; `decision`, `threshold_from`,
        `threshold_reliable`, `threshold_warning`; `bags_outside_contract`.
    """
    run = RunFolder.of(run)
    with run.reading():
        return _evaluate(run, split, threshold, write, instances, which, decision, n_resamples, strict)


def _evaluate(run, split, threshold, write, instances, which, decision_name, n_resamples, strict):
    import keras

    from mims_tf.export import as_float32
    from mims_tf.runs.contract import check_source
    from mims_tf.runs.decision import OWN, decision_sha256, rule_of, run_decision, scoring_model
    from mims_tf.stats.bootstrap import auroc_ci
    from mims_tf.stats.calibration import brier_score, expected_calibration_error
    from mims_tf.stats.metrics import binary_metrics, operating_point
    from mims_tf.stats.thresholds import check_threshold, choose_threshold, describe_rule

    if threshold is not None:
        check_threshold(threshold)
    given = threshold
    decision_name = decision_name or OWN
    folds = run.folds()
    if folds and split in ("train", "val"):
        raise ValueError(f"{run.path}: a cross-validated run's {split} bags trained {len(folds) - 1} of its "
                         f"{len(folds)} fold models, so its scores on them are in-sample; its out-of-fold figures "
                         "are the honest ones (mims_tf.runs.cv.evaluate_out_of_fold), and the test split's")
    model, config, manifest = run.load(which)
    if len(manifest.classes) != 2:
        raise ValueError(f"{run.path}: evaluate supports two classes; this run has {len(manifest.classes)}")
    decision = run_decision(run, which, decision_name)
    temperature, bias = decision["temperature"], decision.get("bias")
    model = as_float32(model)
    # The scoring model every path uses, with the uncalibrated output beside it (for ECE and Brier before).
    both = keras.Model(model.inputs, [model.outputs[0], scoring_model(model, decision).outputs[0]])
    source, labels, (raw, probs) = split_scores(both, config, manifest, split, instances)
    outside = check_source(run, config, source, strict)
    scores = probs[:, 1]
    picked_on, reliable, warning = "given", True, ""
    if threshold is None and instances:
        _, val_labels, (_, val_probs) = split_scores(both, config, manifest, "val", instances)
        rule, target = rule_of(decision)
        threshold = choose_threshold(val_labels, val_probs[:, 1], rule, target)
        picked_on = f"validation on {instances} instances ({describe_rule(rule, target)})"
        reliable, warning = decision["reliable"], decision["why"]
    elif threshold is None:
        threshold, picked_on = decision["threshold"], decision["threshold_from"]
        reliable, warning = decision["reliable"], decision["why"]
    metrics = {**binary_metrics(labels, scores, threshold), **operating_point(labels, scores, threshold)}
    low = high = float("nan")
    if n_resamples:
        _, low, high = auroc_ci(labels, scores, n_resamples=n_resamples)
    result = {"run": run.name, "model": which, "model_sha256": run.model_sha256(which), "split": split,
              "bags": int(len(labels)), "instances": instances or "all",
              "preset": config.preset, "data": _shown_path(config.data.source, run.path),
              "decision": decision_name, "decision_sha256": decision_sha256(decision),
              "threshold": float(threshold), "threshold_from": picked_on, "threshold_reliable": bool(reliable),
              "threshold_warning": warning, **metrics, "auroc_low": low, "auroc_high": high,
              "calibration": decision.get("method", "temperature"), "temperature": temperature, "bias": bias,
              "ece": expected_calibration_error(labels, raw),
              "ece_calibrated": expected_calibration_error(labels, probs), "brier": brier_score(labels, raw),
              "brier_calibrated": brier_score(labels, probs), "bags_outside_contract": len(outside)}
    if write:
        paths = run.evaluation_paths(output_stem(split, instances, which, given, decision_name))
        _write_per_bag(paths["csv"], source, labels, probs, threshold, manifest.classes, outside)
        _plot_roc(paths["roc"], [(labels, scores, run.name)])
        _plot_reliability(paths["reliability"], labels, raw, probs, decision)
        write_json(paths["json"], result)
    result["path"] = run.path  # where the run is, for messages; not written (a run folder may move)
    result["data_path"] = config.data.source  # what groups runs in `evaluate_runs`; not written
    result["scores"] = scores  # for paired comparisons; not written
    result["labels"] = labels
    result["bag_ids"] = [bag.bag for bag in source.bags]
    return result


def evaluate_runs(runs, split="test", threshold=None, instances=None, which="best", n_resamples=2000,
                  decision=None, strict=False):
    """Evaluates each run; returns `(results, groups)`.

    `groups` maps `(preset, data source)` to `{metric: {"mean", "std", "n"}}`: runs of different presets or
    data sets are never averaged together (the paper's protocol is mean and spread over runs of one model).
    """
    from mims_tf.stats.metrics import mean_and_spread

    seen = {}
    runs = [RunFolder.of(run) for run in runs]
    for run in runs:
        real = os.path.realpath(run.path)
        if real in seen:
            raise ValueError(f"{run.path}: given twice (also as {seen[real]}); each run counts once in the mean and "
                             "spread")
        seen[real] = run.path
    results = [evaluate_run(run, split, threshold, instances=instances, which=which, n_resamples=n_resamples,
                            decision=decision, strict=strict) for run in runs]
    groups = {}
    for r in results:
        groups.setdefault((r["preset"], r["data_path"]), []).append(r)
    summary = {}
    for key, members in groups.items():
        summary[key] = {}
        for name in METRICS:
            mean, std, n = mean_and_spread([m[name] for m in members])
            summary[key][name] = {"mean": mean, "std": std, "n": n}
    return results, summary


def compare_runs(a, b, n_resamples=2000):
    """Paired bootstrap 95 % interval of AUROC(a) - AUROC(b) for two `evaluate_run` results on the same bags."""
    from mims_tf.stats.bootstrap import paired_auroc_difference_ci

    if a["bag_ids"] != b["bag_ids"] or not np.array_equal(a["labels"], b["labels"]):
        raise ValueError(f"{a['path']} and {b['path']} were not evaluated on the same bags: no paired comparison")
    return paired_auroc_difference_ci(a["labels"], a["scores"], b["scores"], n_resamples=n_resamples)


def _shown_path(path, folder):
    """`path` relative to `folder` (what a run's files store: a run folder moves with its data)."""
    if not isinstance(path, str) or path == "synthetic" or not os.path.isabs(path):
        return path
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows)
        return path


def _write_per_bag(path, source, labels, probs, threshold, classes, outside):
    with atomic_open(path) as f:
        writer = csv.writer(f)
        writer.writerow(["bag", "label", *[f"p_{c}" for c in classes], "predicted", "threshold", "input_check"])
        for bag, label, p in zip(source.bags, labels, probs):
            writer.writerow([bag.bag, classes[label], *[f"{v:.6f}" for v in p], classes[int(p[1] >= threshold)],
                             f"{threshold:.6f}", "; ".join(outside.get(bag.bag, []))])


def _figure():
    figure = new_figure(4.5, 4.5, dpi=120)
    return figure, figure.subplots()


def _plot_roc(path, curves):
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = _figure()
    for labels, scores, name in curves:
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.legend(loc="lower right", fontsize=8)
    save_figure(figure, path)


def _plot_reliability(path, labels, raw, calibrated, decision, bins=15):
    from mims_tf.stats.calibration import expected_calibration_error, reliability_bins

    figure, axis = _figure()
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    for probs, name in ((raw, "model"), (calibrated, f"calibrated ({decision.get('method', 'temperature')})")):
        rows = [(p, o, n) for n, p, o in reliability_bins(labels, probs, bins) if n]
        axis.plot([r[0] for r in rows], [r[1] for r in rows], marker="o",
                  label=f"{name}: ECE {expected_calibration_error(labels, probs, bins):.3f}")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("predicted P(positive)")
    axis.set_ylabel("fraction of positive bags")
    axis.set_title(f"reliability ({bins} bins, {len(labels)} bags)", fontsize=9)
    axis.legend(loc="upper left", fontsize=7)
    save_figure(figure, path)
