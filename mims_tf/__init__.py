"""mims-tf: the Multi-Instance Multi-Scale CNN (Li et al., MICCAI 2019) in Keras 3.

Subpackages: `mims_tf.data` (readers, manifests, tf.data pipelines), `mims_tf.layers` (MSConv, MagnitudeNorm, TopKPooling, ...),
`mims_tf.models` (`build_model`, `list_presets`), `mims_tf.train` (optimizers
with a per-variable learning rate). They load on first use, so the command line
can quiet TensorFlow's logging before TensorFlow is imported.
"""

import importlib

__version__ = "0.1.0"
_SUBPACKAGES = ("data", "layers", "models", "train")
__all__ = [*_SUBPACKAGES, "load_model", "__version__"]


def load_model(path, safe_mode=True):
    """Loads a `.keras` file saved from a mims-tf model (registers the custom layers first)."""
    import keras

    import mims_tf.layers  # noqa: F401 - registers the layers
    import mims_tf.train  # noqa: F401 - registers the optimizers and metrics

    return keras.saving.load_model(path, safe_mode=safe_mode)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mims_tf.{name}")
    raise AttributeError(f"module 'mims_tf' has no attribute {name!r}")
