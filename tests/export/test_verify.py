import os
import re

import numpy as np
import pytest

from mims_tf.export import export_saved_model, export_tflite
from mims_tf.export.verify import VerificationError, verify_outputs
from mims_tf.models import build_model
from tests.conftest import requires_tensorflow


def test_verify_outputs_returns_the_largest_difference_and_raises_above_the_tolerance():
    expected = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    assert verify_outputs(expected, expected, 0.0, "m.tflite") == 0.0
    got = expected + np.array([[0.0, 1e-3], [-3e-3, 0.0]], np.float32)
    assert verify_outputs(expected, got, 1e-2, "m.tflite") == pytest.approx(3e-3, rel=1e-4)
    with pytest.raises(VerificationError, match=re.escape(
            "m.tflite: the exported model differs from the Keras model by 3.00e-03 (> 0.001)")):
        verify_outputs(expected, got, 1e-3, "m.tflite")
    with pytest.raises(ValueError, match="by nan"):  # NaN never passes
        verify_outputs(expected, np.full_like(expected, np.nan), 1.0, "m.tflite")
    with pytest.raises(RuntimeError, match=re.escape("outputs shape (2, 3), the Keras model (2, 2)")):
        verify_outputs(expected, np.zeros((2, 3)), 1.0, "m.tflite")


@requires_tensorflow()
def test_both_exporters_refuse_a_model_that_fails_the_check_and_write_nothing(tmp_path):
    model = build_model("mims", backbone="tiny", weights=None, image_size=(32, 32))
    path = str(tmp_path / "m.tflite")
    with pytest.raises(VerificationError, match=re.escape(path) + ": the exported model differs .* \\(> 1e-09\\)"):
        export_tflite(model, path, quantize="int8", tolerance=1e-9)
    assert not os.path.exists(path)
    final = os.path.join(str(tmp_path), "m", "1")
    with pytest.raises(VerificationError, match=re.escape(final) + ": the exported model differs .* \\(> -1.0\\)"):
        export_saved_model(model, tmp_path, name="m", tolerance=-1.0)  # a tolerance nothing meets
    assert os.listdir(tmp_path / "m") == []
