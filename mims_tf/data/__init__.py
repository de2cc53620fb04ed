"""Data: readers for medical formats, manifests with bag-level splits, tf.data pipelines, a synthetic set."""

from mims_tf.data.errors import DataError
from mims_tf.data.layouts import from_class_folders, from_medmnist
from mims_tf.data.manifest import Bag, Manifest, check_shared_groups, from_rows, read_manifest, write_manifest
from mims_tf.data.pipeline import make_dataset
from mims_tf.data.readers import read_volume
from mims_tf.data.source import BagSource, normalize_volume
from mims_tf.data.splits import assign_splits
from mims_tf.data.volume import Volume

__all__ = [
    "Bag",
    "BagSource",
    "DataError",
    "Manifest",
    "Volume",
    "assign_splits",
    "check_shared_groups",
    "from_class_folders",
    "from_medmnist",
    "from_rows",
    "make_dataset",
    "normalize_volume",
    "read_manifest",
    "read_volume",
    "write_manifest",
]
