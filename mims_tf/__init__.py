"""mims-tf: the Multi-Instance Multi-Scale CNN (Li et al., MICCAI 2019) in Keras 3.

Subpackages, one concern each (lower ones never import higher ones):

    layers/    MSConv, MagnitudeNorm, TopKPooling and the other bag layers
    data/      readers for medical formats, manifests with bag-level splits, tf.data pipelines
    models/    `build_model` and the paper's presets (as data, with metadata)
    export/    SavedModel (TF Serving) and TFLite, verified against Keras
    train/     what trains any Keras model: optimizers with per-variable rates, metrics, `compile_model`
    runs/      the run folder: config, fit and resume, evaluate, predict, export, explain
    explain/   heatmaps, the scale-correlation analysis
    bench/     the paper's tables: presets by table, a resumable runner, reports
    cli/       the `mims` command

`import mims_tf` is fast (no TensorFlow) and enough for plain Keras to load a saved model: every
serializable class of the package (layers, optimizers, metrics) registers as soon as Keras is imported,
before or after this package. When Keras is imported after this package, TensorFlow's C++ start-up lines
(absl, oneDNN, CUDA probing) are kept off the terminal; `MIMS_VERBOSE=1` shows them.

    import mims_tf, keras
    model = keras.saving.load_model("runs/adrenal/best.keras")
"""

import importlib
import importlib.abc
import importlib.util
import os
import sys

__version__ = "0.1.0"
_SUBPACKAGES = ("bench", "data", "explain", "export", "layers", "models", "runs", "train")
__all__ = [*_SUBPACKAGES, "load_model", "__version__"]


def register_serializables():
    """Imports the modules that register mims-tf's classes with Keras (`package="mims_tf"`)."""
    import mims_tf.layers  # noqa: F401
    import mims_tf.train.metrics  # noqa: F401
    import mims_tf.train.optimizers  # noqa: F401


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Runs `register_serializables` right after the `keras` package finishes importing, and keeps
    TensorFlow's C++ start-up lines off the terminal while `keras` or `tensorflow` imports."""

    watched = {"keras", "tensorflow"}

    def find_spec(self, name, path=None, target=None):
        if name not in self.watched:
            return None
        self.watched = self.watched - {name}
        if not self.watched:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)  # the next finder: this one no longer answers for `name`
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_quietly(module):
            from mims_tf.utils import stderr_muted

            with stderr_muted():  # TensorFlow's C++ start-up lines (MIMS_VERBOSE=1 shows them)
                exec_module(module)
            if name == "keras":
                register_serializables()

        spec.loader.exec_module = exec_quietly
        return spec


if "tensorflow" not in sys.modules and os.environ.get("MIMS_VERBOSE") != "1":
    # TensorFlow's C++ log lines ("failed call to cuInit ... (303)" on a machine without a GPU reads like a
    # fault); MIMS_VERBOSE=1, or TF_CPP_MIN_LOG_LEVEL set by the user, keeps them.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

if "keras" in sys.modules:
    register_serializables()
elif not any(isinstance(finder, _RegisterAfterKeras) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())


def load_model(path, safe_mode=True):
    """Loads a `.keras` file saved from a mims-tf model (same as `keras.saving.load_model` after this import)."""
    import keras

    register_serializables()
    return keras.saving.load_model(path, safe_mode=safe_mode)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mims_tf.{name}")
    raise AttributeError(f"module 'mims_tf' has no attribute {name!r}")
