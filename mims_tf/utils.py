"""Small helpers shared by every concern: atomic file writes and a quiet Keras import.

Every file mims-tf writes (models, configs, manifests, tables, plots, exports) is
written to a temporary file beside its target and renamed onto it, so an
interrupted run never leaves a half-written file under the real name.
"""

import contextlib
import json
import os
import sys


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside `path` and renames it onto `path` when the block succeeds.

    Args:
        path: the file to write.
        suffix: ending of the temporary name, for writers that choose the format
            by extension (`".keras"` for `model.save`, `".png"` for `savefig`).

    Example:

    >>> with atomic_path("roc.png", suffix=".png") as tmp:
    ...     figure.savefig(tmp)

    On an exception the temporary file is removed and `path` is left as it was.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Opens a temporary file beside `path` (text, UTF-8, or binary with `mode="wb"`) and renames it on success."""
    kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_text(path, text):
    """Writes `text` (UTF-8) to `path` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def write_json(path, values):
    """Writes `values` as indented JSON to `path` atomically."""
    with atomic_open(path) as f:
        json.dump(values, f, indent=2)


def import_keras_quietly():
    """Imports Keras (and TensorFlow) with file descriptor 2 muted.

    TensorFlow 2.21 prints absl/oneDNN/CUDA lines at import whatever
    TF_CPP_MIN_LOG_LEVEL says. Set MIMS_VERBOSE=1 to see them.
    """
    if os.environ.get("MIMS_VERBOSE") == "1":
        import keras  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
