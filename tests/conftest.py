import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

if keras.backend.backend() == "jax":
    import jax

    # NumPy references are float64; JAX's GPU default for float32 matmuls and
    # convolutions is TF32 (about 1e-3 relative error), so ask for full float32.
    jax.config.update("jax_default_matmul_precision", "highest")

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")


@pytest.fixture(autouse=True)
def _float32_policy_and_seed():
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    yield
    keras.config.set_dtype_policy("float32")


def requires_tensorflow():
    return pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="TensorFlow-only feature"
    )


def gradient(fn, variable):
    """d fn() / d variable on the active backend; fn returns a scalar tensor."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = fn()
        return np.asarray(tape.gradient(out, variable.value))
    if backend == "jax":
        import jax

        def f(value):
            with keras.StatelessScope(state_mapping=[(variable, value)]):
                return fn()

        return np.asarray(jax.grad(f)(variable.value))
    if backend == "torch":
        variable.value.grad = None
        fn().backward()
        return variable.value.grad.detach().cpu().numpy()
    raise NotImplementedError(backend)


def roundtrip(layer):
    """A fresh layer from the JSON-serialised config of `layer`."""
    import json

    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    return clone
