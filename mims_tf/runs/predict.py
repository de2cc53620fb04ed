"""Class probabilities for new files or a manifest, from a run's best model."""

import contextlib
import csv
import json
import logging
import os

from mims_tf.data import read_manifest
from mims_tf.data.readers import natural_key
from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import predict_bags, unlabelled_source
from mims_tf.utils import atomic_open

logger = logging.getLogger("mims_tf")


def predict(run, paths=(), manifest_path=None, out=None, fmt="csv", skip_unreadable=False, which="best",
            decision=None, each=None, strict=False):
    """Predicts every bag: each path (file or folder) is one bag; a manifest groups rows by bag.

    Probabilities are the run's calibrated ones and the class its decision (`mims_tf.runs.decision`): the
    same numbers `evaluate` reports for the same bag.

    Args:
        run: a `RunFolder` or its path (its `best.keras`, `config.yaml`, `decision.json`).
        paths: files or folders, one bag each.
        manifest_path: a manifest CSV instead (labels optional; every row is used).
        out: output file to write (None: none; see `write_predictions`).
        fmt: `"csv"` or `"json"`.
        skip_unreadable: skip unreadable files (reported) instead of failing.
        which: `"best"` or `"last"` model.
        decision: the name of a decision made by `decide_run`; None: the run's own.
        each: a folder among `paths` is one bag per file (True) or one bag (False); None: one bag where the run
            was trained on bags of several instances, else an error asking which (a folder is never guessed).
        strict: refuse a bag outside the run's input contract (`mims_tf.runs.contract`) instead of warning.

    Returns:
        A list of `{"bag", "paths", "probabilities": {class: p}, "predicted", "threshold", "decision",
        "input_check"}` dicts (`threshold`: on P(last class), None for more than two classes; `decision`: its
        name; `input_check`: how the bag differs from the training bags, "" where it does not; `paths` as
        given, or relative to the working folder).
    """
    run = RunFolder.of(run)
    with run.reading():
        return _predict(run, paths, manifest_path, out, fmt, skip_unreadable, which, decision, each, strict)


def _predict(run, paths, manifest_path, out, fmt, skip_unreadable, which, decision_name, each, strict):
    from mims_tf.runs.contract import check_source, run_contract
    from mims_tf.runs.decision import OWN, decide, load_scoring_model

    if fmt not in ("csv", "json"):
        raise ValueError(f"`format` must be csv or json. Received: format={fmt!r}")
    if bool(paths) == bool(manifest_path):
        raise ValueError("give either input files (paths) or a manifest (manifest_path), not both")
    if out:
        _check_output(out, [*paths, manifest_path] if manifest_path else paths, run)
    model, config, run_manifest, decision = load_scoring_model(run, which, decision_name or OWN)
    classes = run_manifest.classes
    contract = run_contract(run)
    if manifest_path:
        rows = read_manifest(manifest_path, require_labels=False).rows
    else:
        rows = _rows(paths, each, contract)
    source = unlabelled_source(config, classes, rows, skip_unreadable)
    files = sum(_file_count(path) for bag in source.bags for path in bag.paths)
    logger.info("%d bag(s) formed from %d file(s)", len(source.bags), files)
    if contract is None:
        _warn_single_instances(run, source)
    outside = check_source(run, config, source, strict)
    probs = predict_bags(model, config, source)
    spread = None
    if run.folds():  # a cross-validated run: how much its folds disagree on each bag
        from mims_tf.runs.cv import fold_spread

        spread = fold_spread(run, config, source, decision, which)
    results = [
        {"bag": _shown(bag.bag), "paths": [_shown(p) for p in bag.paths],
         "probabilities": {c: float(p) for c, p in zip(classes, row)}, "predicted": classes[int(k)],
         "threshold": decision["threshold"], "decision": decision["name"],
         "input_check": "; ".join(outside.get(bag.bag, [])),
         **({} if spread is None else {"fold_spread": float(spread[index])})}
        for index, (bag, row, k) in enumerate(zip(source.bags, probs, decide(probs, decision)))
    ]
    if out:
        write_predictions(results, classes, out, fmt)
    return results


def _rows(paths, each, contract):
    """One manifest row per bag: a file, or a folder (one bag, or one per file with `each`)."""
    rows = []
    for path in paths:
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            rows.append({"path": path})
            continue
        files = sorted((os.path.join(path, name) for name in os.listdir(path)
                        if not name.startswith(".") and os.path.isfile(os.path.join(path, name))), key=natural_key)
        if each is None and contract is not None and contract.data["instances"][1] == 1 and len(files) > 1:
            raise ValueError(f"{path}: a folder of {len(files)} files, but the model was trained on bags of one image; "
                             "say how to score it: each file as its own bag, or the whole folder as one bag")
        rows += [{"path": file} for file in files] if each else [{"path": path}]
    return rows


def _file_count(path):
    """Files a bag's path stands for: a folder's files, else 1."""
    if os.path.isdir(path):
        return sum(1 for name in os.listdir(path) if not name.startswith(".") and
                   os.path.isfile(os.path.join(path, name)))
    return 1


def _shown(path):
    """A path relative to the working folder where it lies under it (no machine's absolute paths in outputs)."""
    here = os.getcwd()
    if isinstance(path, str) and os.path.isabs(path) and path.startswith(here.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, here)
    return path


def _warn_single_instances(run, source):
    """A warning where bags of one instance (a single image) go to a model whose training bags all held several
    (volumes): a 2D image given to a 3D run is scored, but the score means little."""
    trained = run.state().get("training_instances")
    counts = source.known_instance_counts()  # none read just for this
    if trained and trained[0] > 1 and counts:
        single = [bag.bag for bag, count in zip(source.bags, counts) if count == 1]
        if single:
            logger.warning("%d bag(s) hold a single instance (e.g. %s), while every training bag held %d to %d: are "
                           "these the images the model was made for?", len(single), single[0], *trained)


def _check_output(out, inputs, run):
    """Before any scoring: `out` is a file in an existing folder, outside the run folder (the run's record),
    and neither an input nor inside an input folder."""
    real = os.path.realpath(out)
    if os.path.isdir(real):
        raise ValueError(f"{out}: is a folder; name the file to write")
    if not os.path.isdir(os.path.dirname(real)):
        raise ValueError(f"{out}: its folder {os.path.dirname(real)} does not exist")
    if real.startswith(os.path.realpath(run.path).rstrip(os.sep) + os.sep):
        raise ValueError(f"{out}: is inside the run folder {run.path}, which holds the run's own record; write the "
                         "predictions elsewhere")
    for path in inputs:
        given = os.path.realpath(path)
        if real == given or real.startswith(given.rstrip(os.sep) + os.sep):
            raise ValueError(f"{out}: is {'an input' if real == given else 'inside the input folder ' + str(path)}; "
                             "write the predictions elsewhere")


def write_predictions(results, classes, out, fmt="csv"):
    """Writes `predict`'s results as CSV or JSON to a path (atomically) or an open text stream."""
    with atomic_open(out) if isinstance(out, (str, os.PathLike)) else contextlib.nullcontext(out) as stream:
        if fmt == "json":
            json.dump(results, stream, indent=2)
            stream.write("\n")
        else:
            writer = csv.writer(stream)
            folds = any("fold_spread" in r for r in results)
            writer.writerow(["bag", *[f"p_{c}" for c in classes], "predicted", "threshold", "decision",
                             "input_check", *(["fold_spread"] if folds else [])])
            for r in results:
                threshold = "" if r["threshold"] is None else f"{r['threshold']:.6f}"
                writer.writerow([r["bag"], *[f"{r['probabilities'][c]:.6f}" for c in classes], r["predicted"],
                                 threshold, r.get("decision", ""), r.get("input_check", ""),
                                 *([f"{r['fold_spread']:.6f}"] if folds else [])])
