"""Export a run's best model with its calibration built in (SavedModel for TF Serving, TFLite, or `.keras`),
and the run's metadata beside it: how an input must be prepared, the classes, the decision threshold."""

import os
import re

from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import sample_bags
from mims_tf.utils import atomic_path, check_choice, read_json, write_json

FORMATS = ("saved_model", "tflite", "keras")
SAVED_MODELS = "saved_models"  # TF Serving's --model_base_path parent, in the working directory


def export_metadata(config, classes, decision, run=None, contract=None):
    """What a client needs to prepare an input and read the output of an exported run, and the claims an
    export is checked by: the run, the SHA-256 of its model and decision (`check_export`; where `run` is
    given), and the input signature (`export_saved_model` refuses a version whose signature differs from its
    name's others)."""
    import mims_tf
    from mims_tf.runs.decision import decision_sha256

    data = {key: value for key, value in config.to_dict()["data"].items() if key not in ("source", "cache_dir")}
    which = decision.get("model", "best")
    return {
        "mims_tf_version": mims_tf.__version__,
        **({"run": run.name, "model_file": f"{which}.keras", "model_sha256": run.model_sha256(which)} if run else {}),
        "preset": config.preset,
        "classes": list(classes),
        "positive_class": classes[-1],
        "input": {"shape": "(bags, instances, height, width, channels)", "dtype": "float32",
                  "pixel_range": [0, 255], "instance_shape": [*config.data.image_size, config.data.channels]},
        "data": data,
        "precision_trained": config.precision,
        "output": "calibrated probabilities (bags, classes): softmax(log(p) / temperature + bias) of the model's p",
        "decision": {key: decision.get(key) for key in ("name", "scoring", "method", "temperature", "bias",
                                                        "threshold", "threshold_from", "reliable", "why")},
        "decision_sha256": decision_sha256(decision),
        "decision_rule": (f"{classes[-1]} where P({classes[-1]}) >= threshold, else {classes[0]}"
                          if decision["threshold"] is not None else "the most probable class"),
        # what the training bags looked like: `mims_tf.export.serving.check_input` checks a client's bag with it
        "input_contract": None if contract is None else contract.to_dict(),
    }


def served_name(run):
    """The default served name of a run's export: the run folder's name, as a plain name."""
    name = os.path.basename(os.path.realpath(RunFolder.of(run).path))
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def export_run(run, fmt="saved_model", out=None, name=None, version=None, quantize="none", decision=None,
               new_signature=False):
    """Exports `best.keras` of a run, verified against Keras on real bags of the run; returns a summary.

    Args:
        run: a `RunFolder` or its path.
        fmt: `"saved_model"`, `"tflite"` or `"keras"`.
        out: for a SavedModel, the base folder holding `<name>/<version>/` (default `saved_models/` in the
            working directory, where TF Serving's `--model_base_path=saved_models/<name>` finds it); for
            the others, the folder of the file (default `<run>/export`).
        name: the served model's name (default: the run folder's name, `served_name`).
        version: the SavedModel version (default: the next free one); an existing version is never replaced.
        quantize: TFLite weights: `"none"`, `"float16"` or `"int8"`.
        decision: the name of a decision made by `decide_run`; None: the run's own.
        new_signature: allow a SavedModel version whose classes or input shape differ from the name's
            existing versions (refused by default: TF Serving would switch the endpoint's meaning silently).

    Returns:
        `{"path", "format", "metadata"}`, plus `"bytes"` and `"max_abs_difference"` for TFLite.
    """
    check_choice("format", fmt, FORMATS)
    if name is not None and (not isinstance(name, str) or name in ("", ".", "..") or re.search(r"[/\\\0]", name)):
        raise ValueError(f"`name` must be a plain name (no folder, no '/' or '\\'). Received: name={name!r}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ValueError(f"`version` must be a whole number >= 0 (TF Serving's version folders). "
                         f"Received: version={version!r}")
    run = RunFolder.of(run)
    with run.reading():
        return _export(run, fmt, out, name or served_name(run), version, quantize, decision, new_signature)


def _export(run, fmt, out, name, version, quantize, decision_name, new_signature):
    from mims_tf.export import export_saved_model, export_tflite
    from mims_tf.export.saved_model import METADATA
    from mims_tf.runs.decision import OWN, load_scoring_model

    model, config, manifest, decision = load_scoring_model(run, decision=decision_name or OWN)
    from mims_tf.runs.contract import run_contract

    metadata = export_metadata(config, manifest.classes, decision, run, run_contract(run))
    if fmt == "saved_model":
        base = out or SAVED_MODELS
        # the run, from the metadata's folder (`<base>/<name>/<version>/assets.extra`), for `check_export`
        metadata["run_path"] = _relative(run.path, os.path.join(base, name, "1", os.path.dirname(METADATA)))
        path = export_saved_model(model, base, name=name, version=version, sample=sample_bags(config, manifest),
                                  metadata=metadata, new_signature=new_signature)
        return {"path": path, "format": fmt, "metadata": metadata}
    out = out or run.export_dir
    os.makedirs(out, exist_ok=True)
    metadata["run_path"] = _relative(run.path, out)
    if fmt == "tflite":
        suffix = "" if quantize == "none" else f"_{quantize}"
        info = export_tflite(model, os.path.join(out, f"{name}{suffix}.tflite"), quantize,
                             sample=sample_bags(config, manifest)[:1])
        write_json(os.path.splitext(info["path"])[0] + ".json", metadata)
        return {**info, "format": fmt, "metadata": metadata}
    path = os.path.join(out, f"{name}.keras")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    write_json(os.path.splitext(path)[0] + ".json", metadata)
    return {"path": path, "format": fmt, "metadata": metadata}


def _relative(path, folder):
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


def read_export_metadata(path):
    """The metadata of an export: a SavedModel version folder (its `assets.extra/mims_tf.json`), or a `.tflite`
    or `.keras` file (the `.json` beside it)."""
    from mims_tf.export.saved_model import METADATA

    path = os.fspath(path)
    found = os.path.join(path, METADATA) if os.path.isdir(path) else os.path.splitext(path)[0] + ".json"
    if not os.path.isfile(found):
        raise ValueError(f"{path}: no export metadata ({found} not found): not an export of mims-tf")
    return read_json(found), found


def check_export(path, run=None):
    """Whether an export still serves its run's current model and decision.

    Args:
        path: a SavedModel version folder, or a `.tflite` / `.keras` export.
        run: the run (default: the one recorded in the export's metadata).

    Returns:
        `{"export", "run", "current": bool, "stale": [reasons]}`.
    """
    from mims_tf.runs.decision import decision_sha256, read_decisions

    metadata, found = read_export_metadata(path)
    recorded = metadata.get("run_path")
    run = RunFolder.of(run or (os.path.normpath(os.path.join(os.path.dirname(found), recorded)) if recorded else ""))
    if not run.exists():
        raise ValueError(f"{path}: its run {run.path!r} is not found; name the run folder")
    stale = []
    model_file = metadata.get("model_file", "best.keras")
    which = "last" if model_file == "last.keras" else "best"
    with run.reading():
        if run.model_sha256(which) != metadata.get("model_sha256"):
            stale.append(f"{which}.keras changed since the export (the run was trained again or replaced)")
        name = (metadata.get("decision") or {}).get("name") or "run"
        current = read_decisions(run, name).get(which)
        if current is None:
            stale.append(f"the decision {name!r} it serves is no longer stored in the run")
        elif decision_sha256(current) != metadata.get("decision_sha256"):
            stale.append(f"the decision {name!r} changed since the export")
    return {"export": os.fspath(path), "run": run.path, "current": not stale, "stale": stale}
