"""Heatmaps of a run's decision on one file: the file read as the run reads bags, then `explain_bag`."""

import os
import re

import numpy as np

from mims_tf.data.readers import readable_suffix
from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import eval_batches, unlabelled_source


def explain_file(run, path, out=None, layer_name=None, class_index=1, slices=3, method=None, decision=None,
                 strict=False):
    """Ranks the slices of one file (a bag) by their contribution; writes overlays, `index.md` and `index.png`.

    Args:
        run: a `RunFolder` or its path.
        path: a volume, image or folder (one bag).
        out: output folder (default `<run>/explain/<file name>`).
        layer_name: layer whose input is explained (default: the backbone, pixel level).
        class_index: the class to explain.
        slices: overlays for the top N slices.
        method: `"smoothgrad"` or `"gradient_x_input"` (default: `heatmap.DEFAULT_METHOD`, SmoothGrad).
        decision: the name of a decision made by `decide_run`; None: the run's own.
        strict: refuse a bag outside the run's input contract instead of warning (`mims_tf.runs.contract`).

    Returns:
        `(out, [(slice, contribution, png path), ...], {class: calibrated probability})`.
    """
    if not isinstance(slices, int) or isinstance(slices, bool) or slices < 1:
        raise ValueError(f"`slices` must be a positive integer. Received: slices={slices!r}")
    run = RunFolder.of(run)
    with run.reading():
        return _explain(run, path, out, layer_name, class_index, slices, method, decision, strict)


def _explain(run, path, out, layer_name, class_index, slices, method, decision_name, strict):
    from mims_tf.data.source import central_slices
    from mims_tf.explain.heatmap import explain_bag, instance_names
    from mims_tf.runs.contract import check_source
    from mims_tf.runs.decision import OWN, decide, load_scoring_model

    model, config, manifest, decision = load_scoring_model(run, decision=decision_name or OWN)
    classes = manifest.classes
    if not isinstance(class_index, int) or not 0 <= class_index < len(classes):
        raise ValueError(f"class index {class_index} is out of range for {len(classes)} classes. "
                         f"Received: class_index={class_index}")
    source = unlabelled_source(config, classes, [{"path": os.path.abspath(path)}])
    check_source(run, config, source, strict)
    bag = next(iter(eval_batches(config, source)))[0].numpy()
    probs = model.predict(bag, verbose=0)
    predicted = int(decide(probs, decision)[0])
    threshold = decision["threshold"]
    prediction = (f"predicted: {classes[predicted]} (P({classes[-1]}) = {probs[0, -1]:.4f}"
                  + (f", threshold {threshold:.4f}, decision {decision['name']})" if threshold is not None else ")"))
    name = item_name(path)
    out = out or run.explain_dir(name)
    names = instance_names(path)  # a folder of images (tiles): each slice named by its file
    if names is not None:
        names = list(central_slices(np.array(names, dtype=object), config.data.central))
        names = names if len(names) == bag.shape[1] else None
    explained = model
    if run.folds():  # a cross-validated run: the mean of its calibrated fold models' maps
        from mims_tf.export import as_float32
        from mims_tf.runs.decision import scoring_model

        explained = [scoring_model(as_float32(fold.load_model("best")), decision) for fold in run.folds()]
    written = explain_bag(explained, bag, out, layer_name=layer_name, class_index=class_index, slices=slices, name=name,
                          prediction=prediction, class_name=classes[class_index], method=method, slice_names=names)
    return out, written, {c: float(p) for c, p in zip(classes, probs[0])}


def item_name(path):
    """A folder name for a file or `.npz` item: `scan.nii.gz` -> `scan`,
    `set.npz#test_images/2` -> `set_test_images_2`."""
    base, _, item = os.fspath(path).partition("#") if ".npz#" in os.fspath(path) else (os.fspath(path), "", "")
    stem = os.path.basename(os.path.normpath(base))
    stem = stem[: len(stem) - len(readable_suffix(stem))]
    return re.sub(r"[^\w.-]+", "_", f"{stem}_{item}" if item else stem).strip("_") or "bag"
