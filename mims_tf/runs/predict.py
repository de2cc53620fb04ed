"""Class probabilities for new files or a manifest, from a run's best model."""

import contextlib
import csv
import json
import os

from mims_tf.data import read_manifest
from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import predict_bags, unlabelled_source
from mims_tf.utils import atomic_open


def predict(run_dir, paths=(), manifest_path=None, out=None, fmt="csv", skip_unreadable=False):
    """Predicts every bag: each path (file or folder) is one bag; a manifest groups rows by bag.

    Args:
        run_dir: a run folder (its `best.keras`, `config.yaml`).
        paths: files or folders, one bag each.
        manifest_path: a manifest CSV instead (labels optional; every row is used).
        out: output file to write (None: none; see `write_predictions`).
        fmt: `"csv"` or `"json"`.
        skip_unreadable: skip unreadable files (reported) instead of failing.

    Returns:
        A list of `{"bag", "paths", "probabilities": {class: p}}` dicts.
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"`format` must be csv or json. Received: format={fmt!r}")
    if bool(paths) == bool(manifest_path):
        raise ValueError("give either input files (paths) or a manifest (manifest_path), not both")
    model, config, run_manifest = RunFolder(run_dir).load()
    classes = run_manifest.classes
    if manifest_path:
        rows = read_manifest(manifest_path, require_labels=False).rows
    else:
        rows = [{"path": os.path.abspath(p)} for p in paths]
    source = unlabelled_source(config, classes, rows, skip_unreadable)
    probs = predict_bags(model, config, source)
    results = [
        {"bag": bag.bag, "paths": bag.paths, "probabilities": {c: float(p) for c, p in zip(classes, row)}}
        for bag, row in zip(source.bags, probs)
    ]
    if out:
        write_predictions(results, classes, out, fmt)
    return results


def write_predictions(results, classes, out, fmt="csv"):
    """Writes `predict`'s results as CSV or JSON to a path (atomically) or an open text stream."""
    with atomic_open(out) if isinstance(out, (str, os.PathLike)) else contextlib.nullcontext(out) as stream:
        if fmt == "json":
            json.dump(results, stream, indent=2)
            stream.write("\n")
        else:
            writer = csv.writer(stream)
            writer.writerow(["bag", *[f"p_{c}" for c in classes]])
            for r in results:
                writer.writerow([r["bag"], *[f"{r['probabilities'][c]:.6f}" for c in classes]])
