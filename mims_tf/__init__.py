"""mims-tf: the Multi-Instance Multi-Scale CNN (Li et al., MICCAI 2019) in Keras 3."""

from mims_tf import layers, models, train

__version__ = "0.1.0"
__all__ = ["layers", "models", "train", "__version__"]
