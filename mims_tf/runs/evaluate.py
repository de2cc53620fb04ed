"""Bag-level evaluation of one or several runs (the paper's protocol: mean and spread over runs)."""

import csv

import numpy as np

from mims_tf.data import DataError
from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import bag_source, predict_bags
from mims_tf.utils import atomic_open, atomic_path, write_json

METRICS = ("auroc", "accuracy", "sensitivity", "specificity")


def youden_threshold(labels, scores):
    """The threshold maximising sensitivity + specificity - 1 on (labels, scores)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def binary_metrics(labels, scores, threshold):
    """AUROC (scikit-learn, exact) and accuracy / sensitivity / specificity at `threshold`."""
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


def _scores(model, config, manifest, split, instances=None):
    source = bag_source(config, manifest, split)
    labels = source.labels
    if len(set(labels.tolist())) < 2:
        raise DataError(manifest.source, f"split {split!r} holds only one class: AUROC is undefined")
    probs = predict_bags(model, config, source, instances)
    return source, labels, probs


def output_stem(split, instances=None):
    """Stem of an evaluation's files: `eval_<stem>.csv|json`, `roc_<stem>.png` (`test`, `test_4inst`)."""
    return split + (f"_{instances}inst" if instances else "")


def evaluate_run(run_dir, split="test", threshold=None, write=True, instances=None):
    """Evaluates `best.keras` of a run on a split; writes the per-bag CSV, ROC PNG and metrics JSON.

    `instances`: evaluate every bag on that many of its instances, sampled once (fixed seed), e.g. the
    training bag size, so bag size cannot act as a signal; the files then end in `_<instances>inst`.
    Default: whole bags, as in the paper.
    """
    run = RunFolder(run_dir)
    model, config, manifest = run.load()
    if len(manifest.classes) != 2:
        raise ValueError(f"{run_dir}: evaluate supports two classes; this run has {len(manifest.classes)}")
    source, labels, probs = _scores(model, config, manifest, split, instances)
    scores = probs[:, 1]
    picked_on = "given"
    if threshold is None:
        _, val_labels, val_probs = _scores(model, config, manifest, "val", instances)
        threshold, picked_on = youden_threshold(val_labels, val_probs[:, 1]), "validation (Youden's J)"
    metrics = binary_metrics(labels, scores, threshold)
    result = {"run": run_dir, "split": split, "bags": int(len(labels)), "instances": instances or "all",
              "threshold": threshold, "threshold_from": picked_on, **metrics}
    if write:
        paths = run.evaluation_paths(output_stem(split, instances))
        _write_per_bag(paths["csv"], source, labels, probs, threshold, manifest.classes)
        _plot_roc(paths["roc"], [(labels, scores, run.name)])
        write_json(paths["json"], result)
    return result


def evaluate_runs(run_dirs, split="test", threshold=None, instances=None):
    """Evaluates each run and returns `(results, summary)`; summary holds mean and std per metric."""
    results = [evaluate_run(run, split, threshold, instances=instances) for run in run_dirs]
    summary = {}
    for name in METRICS:
        values = np.array([r[name] for r in results])
        summary[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return results, summary


def _write_per_bag(path, source, labels, probs, threshold, classes):
    with atomic_open(path) as f:
        writer = csv.writer(f)
        writer.writerow(["bag", "label", *[f"p_{c}" for c in classes], "predicted"])
        for bag, label, p in zip(source.bags, labels, probs):
            writer.writerow([bag.bag, classes[label], *[f"{v:.6f}" for v in p], classes[int(p[1] >= threshold)]])


def _plot_roc(path, curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for labels, scores, name in curves:
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set_xlabel("1 - specificity")
    axis.set_ylabel("sensitivity")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp)
    plt.close(figure)
