import os
import shutil

import keras
import numpy as np
import pytest

from mims_tf.export import export_saved_model, export_tflite, float32_copy
from mims_tf.export.tflite import run_tflite
from mims_tf.models import build_model
from tests.conftest import requires_tensorflow

pytestmark = requires_tensorflow()


def _bags(b, s, size=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (b, s, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return build_model("mims", backbone="tiny", weights=None, image_size=(32, 32))


def _size(folder):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(folder) for f in fs)


@pytest.mark.slow
def test_saved_model_versions_signature_dynamic_instances_and_single_copy_of_variables(model, tmp_path):
    import tensorflow as tf

    first = export_saved_model(model, tmp_path, name="m", sample=_bags(2, 3))
    second = export_saved_model(model, tmp_path, name="m")
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    served = tf.saved_model.load(first).signatures["serving_default"]
    assert served.structured_input_signature[1]["bags"].shape.as_list() == [None, None, 32, 32, 3]
    for b, s in [(1, 2), (3, 7)]:
        x = _bags(b, s, seed=s)
        np.testing.assert_allclose(served(bags=tf.constant(x))["probabilities"].numpy(),
                                   model.predict(x, verbose=0), atol=1e-6)
    weights = sum(w.nbytes for w in model.get_weights())
    keras_export = tmp_path / "keras_export"
    model.export(str(keras_export), format="tf_saved_model", verbose=False)
    ours, theirs = _size(os.path.join(first, "variables")), _size(keras_export / "variables")
    assert ours < 1.5 * weights + 4096 < theirs  # Keras stores every variable twice
    with pytest.raises(ValueError, match="version 1 exists"):
        export_saved_model(model, tmp_path, name="m", version=1)


def test_a_failed_export_leaves_earlier_versions_loadable(model, tmp_path, monkeypatch):
    import tensorflow as tf

    first = export_saved_model(model, tmp_path, name="m")
    original = tf.saved_model.save

    def crash_midway(module, path, signatures=None):
        original(module, path, signatures=signatures)
        shutil.rmtree(os.path.join(path, "variables"))  # half-written
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(tf.saved_model, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, tmp_path, name="m")
    assert sorted(os.listdir(tmp_path / "m")) == ["1"]
    assert tf.saved_model.load(first).signatures["serving_default"] is not None


@pytest.mark.slow
def test_mixed_precision_model_exports_as_float32(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    mixed = build_model("mims", backbone="tiny", weights=None, image_size=(32, 32))
    keras.config.set_dtype_policy("float32")
    copy = float32_copy(mixed)
    assert all(layer.dtype_policy.name == "float32" for layer in copy.layers)
    x = _bags(1, 3)
    np.testing.assert_allclose(copy.predict(x, verbose=0), mixed.predict(x, verbose=0), atol=0.02)
    assert os.path.isdir(export_saved_model(mixed, tmp_path, sample=x))
    assert export_tflite(mixed, str(tmp_path / "m.tflite"), sample=x)["bytes"] > 0


@pytest.mark.parametrize("quantize, tolerance", [("none", 1e-5), ("float16", 5e-3), ("int8", 5e-2)])
def test_tflite_builtins_dynamic_instances_and_quantisation(model, tmp_path, quantize, tolerance):
    info = export_tflite(model, str(tmp_path / "m.tflite"), quantize=quantize)
    assert info["max_abs_difference"] <= tolerance and os.path.getsize(info["path"]) == info["bytes"]
    for s in (1, 6):
        x = _bags(1, s, seed=s)
        np.testing.assert_allclose(run_tflite(info["path"], x), model.predict(x, verbose=0), atol=tolerance)


def test_tflite_needs_a_fixed_image_size_and_a_known_option(tmp_path):
    dynamic = build_model("mims", backbone="tiny", weights=None)
    with pytest.raises(ValueError, match="needs a fixed image size"):
        export_tflite(dynamic, str(tmp_path / "m.tflite"))
    with pytest.raises(ValueError, match="Received: quantize='int4'"):
        export_tflite(dynamic, str(tmp_path / "m.tflite"), quantize="int4")


KILL_EXPORT = """
import os, signal, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
import mims_tf
from mims_tf.export import export_saved_model
original = tf.saved_model.save

def save_then_die(module, path, signatures=None):
    original(module, path, signatures=signatures)
    os.kill(os.getpid(), signal.SIGKILL)  # killed after writing, before the check and the rename

tf.saved_model.save = save_then_die
export_saved_model(mims_tf.load_model(sys.argv[1]), sys.argv[2], name="m")
"""


@pytest.mark.slow
def test_sigkill_during_export_leaves_only_complete_versions_visible(model, tmp_path):
    import subprocess
    import sys

    import tensorflow as tf

    model.save(tmp_path / "m.keras")
    first = export_saved_model(model, tmp_path / "base", name="m")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run([sys.executable, "-c", KILL_EXPORT, str(tmp_path / "m.keras"), str(tmp_path / "base")],
                          env=env, capture_output=True)
    assert done.returncode == -9
    versions = [n for n in os.listdir(tmp_path / "base" / "m") if n.isdigit()]
    assert versions == ["1"]  # the half-done export is a hidden .tmp-* folder, which TF Serving ignores
    assert tf.saved_model.load(first).signatures["serving_default"] is not None
    assert any(n.startswith(".tmp-") for n in os.listdir(tmp_path / "base" / "m"))  # the dead export's copy
    assert os.path.basename(export_saved_model(model, tmp_path / "base", name="m")) == "2"
    assert sorted(os.listdir(tmp_path / "base" / "m")) == ["1", "2"]  # the next export removed it
