"""`Volume`: what every reader returns (`mims_tf.data.readers` and the vendor OCT readers in `mims_tf.data.oct`).

A module of its own so the readers import it without importing one another:
`readers` imports `oct` (to dispatch OCT suffixes), `oct` imports only this.
"""

import dataclasses

import numpy as np


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
