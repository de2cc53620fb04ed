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


# The tiny run that tests of a run folder share (evaluate, predict, export, explain, bad input on a run):
# trained once per session by `trained_run_and_summary`.
TINY_RUN = dict(data="synthetic", epochs=2, batch_size=8, learning_rate=3e-3, checkpoint_steps=5, image_size=32,
                instances=6)


@pytest.fixture(scope="session")
def trained_run_and_summary(tmp_path_factory):
    """A tiny run on the synthetic set (`TINY_RUN`), trained once per session: (its folder, train's summary)."""
    from mims_tf.runs.config import RunConfig
    from mims_tf.runs.fit import train

    keras.config.set_dtype_policy("float32")  # session fixtures start before the per-test fixture below
    keras.utils.set_random_seed(0)
    out = str(tmp_path_factory.mktemp("trained_run") / "run")
    summary = train(RunConfig.from_dict(dict(out=out, **TINY_RUN)), verbose=0)
    before = _files(out)
    yield out, summary
    changed = sorted(set(before.items()) ^ set(_files(out).items()))
    assert not changed, f"a test wrote into the shared trained run (use trained_run_copy): {changed}"


def _files(folder):
    """{path: (size, mtime)} of every file under `folder`."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            stat = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="session")
def trained_run(trained_run_and_summary):
    """The shared trained run's folder. Read-only: a test that writes into a run folder (evaluate writes its
    files there; resume; damaged files) takes `trained_run_copy` instead."""
    return trained_run_and_summary[0]


@pytest.fixture
def trained_run_copy(trained_run, tmp_path):
    """A copy of the shared trained run in this test's own folder, free to change."""
    import shutil

    copy = tmp_path / "trained_run"
    shutil.copytree(trained_run, copy)
    return str(copy)


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
