"""mims-tf: the Multi-Instance Multi-Scale CNN (Li et al., MICCAI 2019) in Keras 3.

Subpackages: `mims_tf.data` (readers, manifests, tf.data pipelines), `mims_tf.layers` (MSConv, MagnitudeNorm, TopKPooling, ...),
`mims_tf.models` (`build_model`, `list_presets`), `mims_tf.train` (optimizers
with a per-variable learning rate). They load on first use, so the command line
can quiet TensorFlow's logging before TensorFlow is imported.
"""

import importlib

__version__ = "0.1.0"
_SUBPACKAGES = ("data", "layers", "models", "train")
__all__ = [*_SUBPACKAGES, "__version__"]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mims_tf.{name}")
    raise AttributeError(f"module 'mims_tf' has no attribute {name!r}")
