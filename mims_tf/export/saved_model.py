"""SavedModel export in TF Serving's layout `<base>/<name>/<version>/`, verified, written atomically.

`model.export(format="tf_saved_model")` (Keras 3.15, TF 2.21) stores every
variable twice: a Keras variable on the TensorFlow backend is itself a
trackable object wrapping a `tf.Variable`, and the export archive tracks both
(a ResNet-50 `mims` model: 185 MB against 92 MB in `.keras`). Here the module
that is saved tracks only the `tf.Variable`s, and the serving function closes
over the model, so each variable is written once (93 MB) with identical outputs.
"""

import contextlib
import json
import os
import re
import shutil

import numpy as np

from mims_tf.export.verify import verify_outputs
from mims_tf.utils import process_alive

METADATA = os.path.join("assets.extra", "mims_tf.json")  # in a version folder: the run's metadata


def float32_copy(model):
    """The same model with every layer computing in float32 (weights copied).

    A model built under a mixed-precision policy serves and converts to TFLite
    builtins only as float32; its weights (float32 variables) carry over as is.
    """
    config = json.loads(json.dumps(model.get_config()))

    def visit(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
                node["config"]["name"] = "float32"
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def as_float32(model):
    """`model` itself if every layer computes in float32, else its `float32_copy`."""
    mixed = any(getattr(layer.dtype_policy, "name", "float32") != "float32" for layer in _all_layers(model))
    return float32_copy(model) if mixed else model


def serving_module(model):
    """A `tf.Module` with a `serving_default` function: float32 bags `(B, S, H, W, C)` -> probabilities."""
    import tensorflow as tf

    _, _, height, width, channels = model.input_shape
    module = tf.Module()
    module.variables_once = [v.value for v in model.variables]  # tf.Variables only: each saved once

    @tf.function(input_signature=[tf.TensorSpec([None, None, height, width, channels], tf.float32, name="bags")])
    def serve(bags):
        return {"probabilities": model(bags, training=False)}

    module.serve = serve
    return module


def remove_stale_temporaries(folder):
    """Removes `.tmp-<version>-<pid>` folders of exports whose process is gone (killed mid-export)."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        match = re.fullmatch(r"\.tmp-\d+-(\d+)", name)
        if match and not process_alive(int(match.group(1))):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(name)
    return removed


def next_version(folder):
    """1 + the largest numeric version folder in `folder` (1 if none)."""
    versions = [int(n) for n in os.listdir(folder) if re.fullmatch(r"\d+", n)] if os.path.isdir(folder) else []
    return max(versions, default=0) + 1


def export_saved_model(model, base_dir, name="mims", version=None, sample=None, tolerance=1e-4, metadata=None,
                       new_signature=False):
    """Writes `<base_dir>/<name>/<version>/` and returns its path.

    The SavedModel is written to a temporary folder beside it, reloaded and
    compared with the Keras model on `sample` (a real bag batch; random pixels
    if None), and only then renamed into place: TF Serving never sees half a
    version, and a failed export leaves the existing versions untouched. The
    version is claimed under a lock on `<name>/`: an existing version is never
    replaced, and exports running at once each get their own version.

    Args:
        model: a Keras model from `build_model` (mixed precision is exported as float32).
        base_dir: the TF Serving model base path.
        name: the model name (a folder).
        version: an int; default the next free one.
        sample: float32 bags `(B, S, H, W, C)` for the check.
        tolerance: largest allowed absolute difference of probabilities
            (above it: a `VerificationError`, see `verify_outputs`; nothing is written).
        metadata: the run's metadata (`assets.extra/mims_tf.json`); its `classes` and `input.instance_shape` are
            the version's signature.
        new_signature: allow a version whose signature differs from the name's existing versions.
    """
    import tensorflow as tf

    folder = os.path.join(os.fspath(base_dir), name)
    if version is not None and os.path.exists(os.path.join(folder, str(int(version)))):
        raise ValueError(f"{os.path.join(folder, str(version))}: version {version} exists; "
                         "choose another version or leave it out for the next free one")
    if metadata is not None and not new_signature and os.path.isdir(folder):
        check_signature(folder, metadata)  # before the minutes of saving; again when the version is claimed
    model = as_float32(model)
    os.makedirs(folder, exist_ok=True)
    remove_stale_temporaries(folder)
    tmp = os.path.join(folder, f".tmp-{0 if version is None else int(version)}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        module = serving_module(model)
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
        if sample is None:
            _, _, height, width, channels = model.input_shape
            sample = np.random.default_rng(0).uniform(0, 255, (2, 3, height or 64, width or 64, channels))
        sample = np.asarray(sample, np.float32)
        served = tf.saved_model.load(tmp).signatures["serving_default"]
        shown = os.path.join(folder, str(next_version(folder) if version is None else int(version)))
        verify_outputs(model.predict(sample, verbose=0), served(bags=tf.constant(sample))["probabilities"].numpy(),
                       tolerance, shown)
        if metadata is not None:  # TF Serving ignores assets.extra; clients and people read it
            os.makedirs(os.path.join(tmp, os.path.dirname(METADATA)), exist_ok=True)
            with open(os.path.join(tmp, METADATA), "w", encoding="utf-8") as f:
                json.dump(metadata, f, indent=2)
        with _claim(folder):
            if metadata is not None and not new_signature:
                check_signature(folder, metadata)
            version = next_version(folder) if version is None else int(version)
            final = os.path.join(folder, str(version))
            if os.path.exists(final):
                raise ValueError(f"{final}: version {version} exists; choose another version or leave it out for "
                                 "the next free one")
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextlib.contextmanager
def _claim(folder):
    """An exclusive lock on a served name's folder while a version is chosen and renamed into place."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        yield
        return
    handle = os.open(folder, os.O_RDONLY)  # the folder itself is locked: no file is left beside the versions
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # waits: the claim itself takes milliseconds
        yield
    finally:
        os.close(handle)  # releases the lock


def signature(metadata):
    """What a served name promises its clients: the classes (in order) and the instance shape."""
    return {"classes": list(metadata.get("classes") or []),
            "instance_shape": list((metadata.get("input") or {}).get("instance_shape") or [])}


def check_signature(folder, metadata):
    """Raises `ValueError` where the versions in `folder` serve another signature than `metadata`'s: TF Serving
    moves a name's clients to the newest version, so a new version must mean what the others mean."""
    wanted = signature(metadata)
    for version in sorted((n for n in os.listdir(folder) if re.fullmatch(r"\d+", n)), key=int):
        path = os.path.join(folder, version, METADATA)
        if not os.path.isfile(path):
            continue  # a version not exported by mims-tf: nothing to compare
        try:
            with open(path, encoding="utf-8") as f:
                theirs = signature(json.load(f))
        except (OSError, ValueError, AttributeError):
            continue
        if theirs != wanted:
            differs = "; ".join(f"{key} {theirs[key]} there, {wanted[key]} here" for key in wanted
                                if theirs[key] != wanted[key])
            raise ValueError(f"{folder}: version {version} serves another signature ({differs}); TF Serving would "
                             "switch this name's clients to a model of another meaning: export under another name, "
                             "or allow a new signature explicitly")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
