"""The check both exporters make before writing: the exported model's outputs against Keras's."""

import numpy as np


class VerificationError(ValueError, RuntimeError):
    """An exported model's outputs differ from the Keras model's by more than the tolerance.

    A `ValueError`; also a `RuntimeError`, which the exporters raised before.
    """


def verify_outputs(expected, got, tolerance, what):
    """Returns the largest absolute difference of `got` from `expected`; raises if above `tolerance`.

    Args:
        expected: the Keras model's outputs on the sample.
        got: the exported model's outputs on the same sample.
        tolerance: largest allowed absolute difference.
        what: the exported file or folder, named in the error.

    Raises:
        VerificationError (a ValueError): the shapes differ, an output is not
            finite where Keras's is, or the difference exceeds `tolerance`.
    """
    expected = np.asarray(expected, np.float64)
    got = np.asarray(got, np.float64)
    if expected.shape != got.shape:
        raise VerificationError(f"{what}: exported model outputs shape {got.shape}, the Keras model {expected.shape}")
    difference = float(np.abs(got - expected).max()) if got.size else 0.0
    if not difference <= tolerance:  # NaN fails too
        raise VerificationError(
            f"{what}: the exported model differs from the Keras model by {difference:.2e} (> {tolerance}) "
            "on the check sample"
        )
    return difference
