"""Export a run's best model with its calibration built in (SavedModel for TF Serving, TFLite, or `.keras`),
and the run's metadata beside it: how an input must be prepared, the classes, the decision threshold."""

import os
import re

from mims_tf.runs.folder import RunFolder
from mims_tf.runs.inputs import sample_bags
from mims_tf.utils import atomic_path, check_choice, write_json

FORMATS = ("saved_model", "tflite", "keras")
SAVED_MODELS = "saved_models"  # TF Serving's --model_base_path parent, in the working directory


def export_metadata(config, classes, decision):
    """What a client needs to prepare an input and read the output of an exported run."""
    import mims_tf

    return {
        "mims_tf_version": mims_tf.__version__,
        "preset": config.preset,
        "classes": list(classes),
        "positive_class": classes[-1],
        "input": {"shape": "(bags, instances, height, width, channels)", "dtype": "float32",
                  "pixel_range": [0, 255]},
        "data": config.to_dict()["data"],
        "precision_trained": config.precision,
        "output": "calibrated probabilities (bags, classes): softmax(log(p) / temperature + bias) of the model's p",
        "decision": {key: decision.get(key) for key in ("scoring", "method", "temperature", "bias", "threshold",
                                                        "threshold_from", "reliable", "why")},
        "decision_rule": (f"{classes[-1]} where P({classes[-1]}) >= threshold, else {classes[0]}"
                          if decision["threshold"] is not None else "the most probable class"),
    }


def export_run(run, fmt="saved_model", out=None, name=None, version=None, quantize="none"):
    """Exports `best.keras` of a run, verified against Keras on real bags of the run; returns a summary.

    Args:
        run: a `RunFolder` or its path.
        fmt: `"saved_model"`, `"tflite"` or `"keras"`.
        out: for a SavedModel, the base folder holding `<name>/<version>/` (default `saved_models/` in the
            working directory, where TF Serving's `--model_base_path=saved_models/<name>` finds it); for
            the others, the folder of the file (default `<run>/export`).
        name: the model name (default: the run's preset).
        version: the SavedModel version (default: the next free one).
        quantize: TFLite weights: `"none"`, `"float16"` or `"int8"`.

    Returns:
        `{"path", "format", "metadata"}`, plus `"bytes"` and `"max_abs_difference"` for TFLite.
    """
    from mims_tf.export import export_saved_model, export_tflite
    from mims_tf.runs.decision import load_scoring_model

    check_choice("format", fmt, FORMATS)
    if name is not None and (not isinstance(name, str) or name in ("", ".", "..") or re.search(r"[/\\\0]", name)):
        raise ValueError(f"`name` must be a plain name (no folder, no '/' or '\\'). Received: name={name!r}")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise ValueError(f"`version` must be a whole number >= 0 (TF Serving's version folders). "
                         f"Received: version={version!r}")
    run = RunFolder.of(run)
    model, config, manifest, decision = load_scoring_model(run)
    name = name or config.preset
    metadata = export_metadata(config, manifest.classes, decision)
    if fmt == "saved_model":
        base = out or SAVED_MODELS
        path = export_saved_model(model, base, name=name, version=version, sample=sample_bags(config, manifest),
                                  metadata=metadata)
        return {"path": path, "format": fmt, "metadata": metadata}
    out = out or run.export_dir
    os.makedirs(out, exist_ok=True)
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
