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
    """Runs `register_serializables` right after the `keras` package finishes importing."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            from mims_tf.utils import stderr_muted

            with stderr_muted():  # TensorFlow's C++ start-up lines (MIMS_VERBOSE=1 shows them)
                exec_module(module)
            register_serializables()

        spec.loader.exec_module = exec_and_register
        return spec


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
