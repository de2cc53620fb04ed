"""`Volume`: what every reader returns (`mims_tf.data.readers`, the NumPy readers in `mims_tf.data.arrays`,
the DICOM reader in `mims_tf.data.dicom` and the vendor OCT readers in `mims_tf.data.oct`), and `as_instances`,
the rule that turns an array into a volume's instances.

A module of its own so the readers import it without importing one another:
`readers` imports `arrays`, `dicom` and `oct` (to dispatch their suffixes); these import only this and
`errors` (`dicom` also `limits`, the size limit `readers` shares).
"""

import dataclasses

import numpy as np

from mims_tf.data.errors import DataError


@dataclasses.dataclass
class Volume:
    """A bag's instances read from one file.

    Attributes:
        array: `(S, H, W)` or `(S, H, W, C)` array.
        spacing: `(slice, row, column)` spacing in mm where the format has it, else None.
        meta: format-specific metadata.
    """

    array: np.ndarray
    spacing: tuple = None
    meta: dict = dataclasses.field(default_factory=dict)


def as_instances(array, path):
    """2D -> (1, H, W); 3D and 4D as they are; any other rank is a DataError naming `path`."""
    array = np.asarray(array)
    if array.ndim == 2:
        return array[None]
    if array.ndim in (3, 4):
        return array
    raise DataError(path, f"wrong dimensions {array.shape}: expected 2 to 4 axes")
